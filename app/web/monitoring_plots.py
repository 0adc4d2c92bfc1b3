"""A version's monitoring plots as SVG (matplotlib, rendered on the server): the EWMA and
CUSUM chart with their limits and the alarm point, predicted against reference over sample
time, and the T²/Q exceedance rates against the rate at which the binomial test alarms.

The monitoring changes with every reference, so plots are cached by the sha256 of the
monitoring read model they are drawn from (the same state draws the same bytes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from app.schemas.monitoring import MonitoringRead
from app.web.figures import new_figure, svg_bytes
from app.web.plots import PlotCache

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KINDS = ("chart", "predicted", "exceedance")
CAPTIONS = {
    "chart": "EWMA (top) and two-sided CUSUM (bottom) of the standardized residuals, with "
    "their limits; the first point beyond a limit is marked",
    "predicted": "Predicted and reference titre of the monitored samples over sample time",
    "exceedance": "Share of predicted spectra beyond the 99 % T² and Q limits, cumulative, "
    "against the nominal 1 % and the rate at which the binomial test alarms",
}
POINT, EWMA, ALARM, LIMIT, Q_COLOUR = "#8a94a0", "#1f4e8c", "#b3261e", "#555", "#e07b00"


def _empty(message: str) -> bytes:
    fig = new_figure(figsize=(6.4, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    return svg_bytes(fig)


def _dates(times: Sequence[datetime]) -> np.ndarray:
    """Matplotlib's date numbers (days) of UTC times; the axes then call ``xaxis_date``."""
    # Days since matplotlib's epoch (1970-01-01 UTC), as matplotlib.dates.date2num counts.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return np.array([(t - epoch).total_seconds() / 86400.0 for t in times], dtype=np.float64)


def _alarm_marker(ax: Axes, x: float, y: float, label: str) -> None:
    ax.plot([x], [y], "o", ms=11, mfc="none", mec=ALARM, mew=2, zorder=5)
    ax.annotate(
        label,
        (x, y),
        xytext=(8, 8),
        textcoords="offset points",
        color=ALARM,
        fontsize=9,
    )


def _chart(m: MonitoringRead) -> bytes:
    if not m.series:
        return _empty("No reference result in the monitoring window yet")
    if m.settings.validation_sep is None:
        return _empty("The version has no validation SEP: residuals cannot be standardized")
    stamps = [pt.sample_time for pt in m.series]
    times = _dates(stamps)
    p = m.settings.parameters
    limit = m.settings.design.ewma_limit
    fig: Figure = new_figure(figsize=(7.2, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    z = [pt.z or 0.0 for pt in m.series]
    ewma = [pt.ewma or 0.0 for pt in m.series]
    top.plot(times, z, ".", ms=5, color=POINT, label="standardized residual z")
    top.plot(times, ewma, "-", lw=1.6, color=EWMA, label=f"EWMA (λ = {p.ewma_lambda:g})")
    for sign in (1, -1):
        top.axhline(sign * limit, color=ALARM, ls="--", lw=1)
    top.axhline(0, color=LIMIT, lw=0.8)
    top.set_ylabel("SEP")
    top.set_title(f"{m.model} v{m.version}: {len(m.series)} references, status {m.status.value}")
    upper = [pt.cusum_upper or 0.0 for pt in m.series]
    lower = [-(pt.cusum_lower or 0.0) for pt in m.series]
    bottom.plot(times, upper, "-", lw=1.4, color=EWMA, label="C⁺ (under-prediction)")
    bottom.plot(times, lower, "-", lw=1.4, color=Q_COLOUR, label="−C⁻ (over-prediction)")
    for sign in (1, -1):
        bottom.axhline(sign * p.cusum_h, color=ALARM, ls="--", lw=1)
    bottom.set_ylabel("SEP")
    states = {s.rule.value: s for s in m.rules}
    for rule, ax, values in (("ewma", top, ewma), ("cusum", bottom, None)):
        first = states[rule].first_breach_at
        if first is None:
            continue
        i = stamps.index(first)
        cusum_side = upper[i] if upper[i] > -lower[i] else lower[i]  # the side that crossed h
        y = values[i] if values is not None else cusum_side
        _alarm_marker(ax, float(times[i]), y, f"{rule.upper()} alarm")
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("sample time (UTC)")
    bottom.xaxis_date()
    fig.autofmt_xdate()
    return svg_bytes(fig)


def _predicted(m: MonitoringRead) -> bytes:
    if not m.series:
        return _empty("No reference result in the monitoring window yet")
    times = _dates([p.sample_time for p in m.series])
    fig = new_figure(figsize=(7.2, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(
        times,
        [p.reference for p in m.series],
        "o-",
        ms=4,
        lw=1,
        color="#1e6b34",
        label="reference (laboratory)",
    )
    ax.plot(
        times, [p.predicted for p in m.series], "x--", ms=5, lw=1, color=EWMA, label="predicted"
    )
    firsts = [s.first_breach_at for s in m.rules if s.first_breach_at is not None]
    if firsts:
        ax.axvline(
            float(_dates([min(firsts)])[0]), color=ALARM, ls=":", lw=1.5, label="first alarm"
        )
    ax.set_ylabel(f"titre ({m.units})")
    ax.set_xlabel("sample time (UTC)")
    ax.xaxis_date()
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return svg_bytes(fig)


def _exceedance(m: MonitoringRead) -> bytes:
    if not m.exceedance:
        return _empty("No prediction in the monitoring window yet")
    n = [e.n_spectra for e in m.exceedance]
    fig = new_figure(figsize=(7.2, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(n, [100 * e.t2_rate for e in m.exceedance], "-", color=EWMA, label="T² beyond 99 %")
    ax.plot(n, [100 * e.q_rate for e in m.exceedance], "-", color=Q_COLOUR, label="Q beyond 99 %")
    ax.plot(
        n,
        [100 * e.alarm_rate for e in m.exceedance],
        "--",
        color=ALARM,
        label=f"alarm rate (p < {m.settings.parameters.exceedance_alpha:g})",
    )
    ax.axhline(1.0, color=LIMIT, ls=":", lw=1, label="nominal 1 %")
    ax.set_ylim(0, max(5.0, 100 * max(e.alarm_rate for e in m.exceedance[len(n) // 4 :]) + 1))
    ax.set_xlabel("spectra predicted in the window (calls in time order)")
    ax.set_ylabel("share beyond the limit (%)")
    ax.legend(loc="upper right", fontsize=8)
    return svg_bytes(fig)


_DRAW: dict[str, Callable[[MonitoringRead], bytes]] = {
    "chart": _chart,
    "predicted": _predicted,
    "exceedance": _exceedance,
}
plots = PlotCache(maxsize=128)


def content_sha256(m: MonitoringRead) -> str:
    blob = json.dumps(m.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def draw(kind: str, m: MonitoringRead) -> bytes:
    """The SVG of ``kind`` for this state of the monitoring (cached by its content)."""
    key = (content_sha256(m), kind)
    svg = plots.get(key)
    if svg is None:
        svg = _DRAW[kind](m)
        plots.put(key, svg)
    return svg
