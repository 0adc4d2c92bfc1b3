"""Matplotlib for the pages, loaded on the first plot rather than at start-up: deterministic
SVG (fixed ids, no date, text as text)."""

from __future__ import annotations

import io
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@cache
def _figure_class() -> type[Figure]:
    import matplotlib as mpl
    from matplotlib.figure import Figure

    mpl.rcParams.update({"svg.hashsalt": "softsensor-registry", "svg.fonttype": "none"})
    return Figure


def new_figure(**kwargs: Any) -> Figure:
    return _figure_class()(**kwargs)


def svg_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()
