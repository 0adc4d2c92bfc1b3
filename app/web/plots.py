"""The transfer record's plots as SVG (matplotlib, rendered on the server).

A completed record never changes, so its plots are cached by the sha256 of the record's
canonical content: a record altered behind the application's back hashes differently and is
drawn afresh. The SVGs carry no date and fixed ids, so the same record draws the same bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from app.schemas.transfers import TransferRead
from app.services.transfer_plots import PlotData
from app.web.figures import new_figure, svg_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
KINDS = ("predicted", "spectra", "residuals", "cv", "t2q")
CAPTIONS = {
    "predicted": "Predicted vs reference on the validation set: naive and corrected",
    "spectra": "Mean spectra of the chosen standards: source, target and corrected target",
    "residuals": "Residuals (predicted − reference) of the validation set in sample order",
    "cv": "Cross-validated error of every candidate; the chosen ones in colour",
    "t2q": "Hotelling T² and Q of the validation spectra against the target limits",
}
NAIVE, CORRECTED, SOURCE = "#b3261e", "#1f4e8c", "#1e6b34"


def _figure() -> tuple[Figure, Axes]:
    fig = new_figure(figsize=(6.4, 4.2), layout="constrained")
    return fig, fig.subplots()


def _empty(message: str) -> bytes:
    fig, ax = _figure()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    return svg_bytes(fig)


def _predicted(data: PlotData, _: TransferRead) -> bytes:
    v = data.validation
    if v is None:
        return _empty("No validation set was uploaded: the record's figures are cross-validated")
    fig, ax = _figure()
    ax.scatter(v.reference, v.naive, s=10, color=NAIVE, alpha=0.6, label="naive (source model)")
    ax.scatter(v.reference, v.corrected, s=10, color=CORRECTED, alpha=0.7, label="corrected")
    lo = float(min(v.reference.min(), v.corrected.min()))
    hi = float(max(v.reference.max(), v.corrected.max()))
    ax.plot([lo, hi], [lo, hi], color="#555", lw=1, ls="--", label="identity")
    ax.set_xlabel(f"reference ({data.units})")
    ax.set_ylabel(f"predicted ({data.units})")
    ax.set_title(f"Transfer #{data.number}: {v.reference.size} validation spectra")
    ax.legend(loc="upper left", fontsize=9)
    return svg_bytes(fig)


def _spectra(data: PlotData, _: TransferRead) -> bytes:
    s = data.spectra
    if s is None:
        return _empty("The standards' spectra could not be paired on both probes")
    fig, ax = _figure()
    ax.fill_between(
        s.axis,
        s.target_low,
        s.target_high,
        color=NAIVE,
        alpha=0.12,
        label=f"target standards, range ({s.n_standards})",
    )
    ax.plot(s.axis, s.source_mean, color=SOURCE, lw=3.5, alpha=0.45, label="source probe, mean")
    ax.plot(s.axis, s.target_mean, color=NAIVE, lw=1.2, label="target probe, mean")
    if s.corrected_mean is not None:
        ax.plot(
            s.axis,
            s.corrected_mean,
            color="#e07b00",
            lw=1.3,
            ls="--",
            label="target corrected, mean (lies on the source's when the transfer works)",
        )
    else:
        ax.text(
            0.02,
            0.02,
            "the correction acts on predictions, not spectra",
            transform=ax.transAxes,
            fontsize=9,
        )
    ax.set_xlabel(f"axis ({s.axis_unit})")
    ax.set_ylabel("intensity")
    ax.legend(fontsize=9)
    return svg_bytes(fig)


def _residuals(data: PlotData, _: TransferRead) -> bytes:
    v = data.validation
    if v is None:
        return _empty("No validation set was uploaded")
    fig, ax = _figure()
    order = np.arange(v.reference.size)
    ax.axhline(0, color="#555", lw=1)
    ax.plot(order, v.naive - v.reference, ".", ms=4, color=NAIVE, alpha=0.6, label="naive")
    ax.plot(order, v.corrected - v.reference, ".", ms=4, color=CORRECTED, label="corrected")
    ax.set_xlabel("validation sample (file order)")
    ax.set_ylabel(f"residual ({data.units})")
    ax.legend(fontsize=9)
    return svg_bytes(fig)


def _cv(_: PlotData, t: TransferRead) -> bytes:
    rows = [r for r in (t.transfer.cv_table or []) if r.rmsecv is not None]
    if not rows:
        return _empty("No cross-validation table: the method was fixed")
    rows.sort(key=lambda r: r.rmsecv or 0.0)
    labels = [r.method + " " + " ".join(f"{k}={v}" for k, v in r.params.items()) for r in rows]
    values = [r.rmsecv or 0.0 for r in rows]
    chosen = [(r.weight or 0) > 0 or r.method == t.transfer.method_chosen for r in rows]
    fig = new_figure(figsize=(6.4, 0.9 + 0.22 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(rows)), values, color=[CORRECTED if c else "#b8c2cc" for c in chosen])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"RMSECV ({t.source.units}, log scale)")
    return svg_bytes(fig)


def _t2q(data: PlotData, _: TransferRead) -> bytes:
    v = data.validation
    if v is None:
        return _empty("No validation set was uploaded")
    fig, ax = _figure()
    ax.scatter(v.t2, v.q, s=10, color=CORRECTED, alpha=0.7)
    for value, style in ((data.t2_limit_95, ":"), (data.t2_limit_99, "--")):
        ax.axvline(value, color=NAIVE, ls=style, lw=1)
    for value, style in ((data.q_limit_95, ":"), (data.q_limit_99, "--")):
        ax.axhline(value, color=NAIVE, ls=style, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Hotelling T² (limits 95 % dotted, 99 % dashed)")
    ax.set_ylabel("Q (SPE)")
    return svg_bytes(fig)


_DRAW: dict[str, Callable[[PlotData, TransferRead], bytes]] = {
    "predicted": _predicted,
    "spectra": _spectra,
    "residuals": _residuals,
    "cv": _cv,
    "t2q": _t2q,
}


class PlotCache:
    """Bounded LRU of drawn SVGs by (record content sha256, kind)."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            svg = self._items.get(key)
            if svg is not None:
                self._items.move_to_end(key)
            return svg

    def put(self, key: tuple[str, str], svg: bytes) -> None:
        with self._lock:
            self._items[key] = svg
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)


plots = PlotCache()


def draw(
    kind: str, content_sha256: str, inputs: Callable[[], tuple[PlotData, TransferRead]]
) -> bytes:
    """The SVG of ``kind`` for the record whose content hashes to ``content_sha256``;
    ``inputs`` (the record read, its datasets and artifact loaded) is called only when the
    plot is not cached."""
    key = (content_sha256, kind)
    svg = plots.get(key)
    if svg is None:
        svg = _DRAW[kind](*inputs())
        plots.put(key, svg)
    return svg
