"""Stiffness-map figures (matplotlib, Agg): the caller saves them.

Examples
--------
>>> import numpy as np
>>> fig = stiffness_figure({"FEM-TV": np.full((8, 8), 2000.0 + 500j)}, h=1e-3)
>>> len(fig.axes)
2
"""

from __future__ import annotations

import numpy as np

__all__ = ["stiffness_figure"]


def stiffness_figure(maps, *, h: float, vmax_kpa: float | None = None, title: str | None = None):
    """One panel per map of ``|G*|`` (kPa) (a mapping title -> complex G* (Pa), 2-D or the middle slice of a
    3-D volume), sharing a colour scale; returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    images = {}
    for name, g in maps.items():
        g = np.asarray(g)
        if g.ndim == 3:
            g = g[:, :, g.shape[2] // 2]
        images[name] = np.abs(g) / 1e3
    vmax = vmax_kpa if vmax_kpa is not None else max(float(np.nanpercentile(v, 99)) for v in images.values())
    fig = Figure(figsize=(3.2 * len(images) + 0.8, 3.2))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    extent = None
    for ax, (name, img) in zip(axes, images.items()):
        extent = (0, img.shape[0] * h * 1e3, 0, img.shape[1] * h * 1e3)
        im = ax.imshow(img.T, origin="lower", extent=extent, vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y (mm)", fontsize=8)
    cbar = fig.colorbar(im, ax=list(axes), shrink=0.85)
    cbar.set_label("|G*| (kPa)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
