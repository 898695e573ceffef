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
    """A matplotlib Figure (no pyplot, no global state), size in inches, fixed margins (no layout engine)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=0.15, bottom=0.17, right=0.97, top=0.9, wspace=0.3)
    return figure


def svg_text(figure) -> str:
    """The figure as SVG text: no metadata, element ids from a fixed hash salt, text as SVG text elements.

    (Text as paths, ``svg.fonttype = "path"``, made each figure several times slower to write.)"""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": _SALT, "svg.fonttype": "none", "font.family": "DejaVu Sans"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                        "Type": None})
    text = buffer.getvalue()
    start = text.find("<svg")  # drop the XML prolog and doctype: the SVG is inlined in HTML
    return text[start:]
