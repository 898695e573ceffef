"""Deterministic SVG figures: the same numbers give the same bytes (no date, fixed element ids).

Examples
--------
>>> fig = new_figure()
>>> _ = fig.add_subplot().plot([0, 1], [0, 1])
>>> svg_text(fig) == svg_text(fig)
True
>>> "<dc:date>" in svg_text(fig)
False
"""

from __future__ import annotations

import io

__all__ = ["new_figure", "svg_text"]

_SALT = "medtwin-credibility"


def new_figure(width: float = 6.0, height: float = 3.6):
    """A matplotlib Figure (no pyplot, no global state), size in inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg_text(figure) -> str:
    """The figure as SVG text: no metadata, ids from a fixed hash salt, text as paths (font independent)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": _SALT, "svg.fonttype": "path", "font.family": "DejaVu Sans"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                        "Type": None})
    text = buffer.getvalue()
    start = text.find("<svg")  # drop the XML prolog and doctype: the SVG is inlined in HTML
    return text[start:]
