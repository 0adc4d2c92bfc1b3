"""Monitoring a deployed soft sensor against sparse reference results: the numerics.

A version predicts continuously; the offline assay that can tell whether it is still right
returns a reference value once or twice a day. Each reference ``r`` for a predicted sample
``p`` gives a residual ``e = r − p`` (reference − prediction, the analyte's units), and the
residuals are charted **standardized by the version's validation figures**::

    z = (e − centre) / SEP

``SEP`` is the bias-corrected standard deviation of the validation residuals
(:mod:`app.core.metrics`); ``centre`` is the validation mean residual (``−bias``, as the
metrics define bias as prediction − reference) or zero. With the validation figures the
in-control ``z`` is about N(0, 1), so a chart's design numbers (limits in σ, average run
lengths) apply in units of the version's own validated error.

On ``z`` (every function takes series along the last axis, so many series can be charted at
once):

- :func:`rolling_bias_rmse`: mean and root-mean-square residual over the last N references;
- :func:`ewma_chart`: the EWMA ``w_i = λ z_i + (1 − λ) w_{i−1}``, ``w_0 = 0``, against the
  **asymptotic** limits ``± L √(λ / (2 − λ))`` (Roberts 1959 [1]_; Montgomery [2]_ §9.2). The
  exact, time-varying limits ``± L √(λ/(2−λ) (1 − (1−λ)^{2i}))`` are tighter over the first
  points; the asymptotic ones are what the standard ARL tables (Lucas & Saccucci 1990 [3]_)
  and :func:`ewma_arl` describe, so the chart's false-alarm rate is the designed one;
- :func:`cusum_chart`: the two-sided tabular CUSUM ``C⁺_i = max(0, z_i − k + C⁺_{i−1})``,
  ``C⁻_i = max(0, −z_i − k + C⁻_{i−1})``, ``C_0 = 0``, alarm when either exceeds ``h``
  (Page 1954 [4]_; Montgomery [2]_ §9.1), no head start, not reset (the first alarm is what
  counts: the version then goes to requalification);
- :func:`exceedance_test`: the share of predicted spectra whose T² or Q exceeded the 99 %
  limit against the nominal 1 %, one-sided exact binomial test (``scipy.stats.binomtest``);
- :func:`ewma_arl`, :func:`cusum_arl`: average run lengths of those charts by the Markov-chain
  method of Brook & Evans (1972) [5]_ (EWMA after Lucas & Saccucci [3]_), for a mean shift
  ``δ`` in σ: ``δ = 0`` is the in-control ARL₀ (one false alarm every ARL₀ references on
  average), ``δ = 1`` the ARL₁ of a 1-SEP bias step. Two-sided CUSUM:
  ``1/ARL = 1/ARL⁺ + 1/ARL⁻`` (Lucas & Crosier 1982 [6]_).

Defaults and their design figures: EWMA λ = 0.2, L = 3 and CUSUM k = 0.5, h = 5. Montgomery's
tables give CUSUM (k = 0.5, h = 5) ARL₀ = 465 and ARL₁(1σ) = 10.4 (his Table 9.3); for the
EWMA (Lucas & Saccucci's, his Table 9.11) λ = 0.2 needs L = 2.962 for ARL₀ = 500, with
ARL₁(1σ) = 10.5; L = 3 is a little more conservative: ARL₀ ≈ 560, ARL₁(1σ) ≈ 10.8 (the Markov
chain here reproduces both columns to the table's digits).

References
----------
.. [1] Roberts, S. W. "Control chart tests based on geometric moving averages."
   Technometrics 1 (1959) 239–250.
.. [2] Montgomery, D. C. *Introduction to Statistical Quality Control*, 7th ed., Wiley (2013),
   chapter 9.
.. [3] Lucas, J. M. & Saccucci, M. S. "Exponentially weighted moving average control schemes:
   properties and enhancements." Technometrics 32 (1990) 1–12.
.. [4] Page, E. S. "Continuous inspection schemes." Biometrika 41 (1954) 100–115.
.. [5] Brook, D. & Evans, D. A. "An approach to the probability distribution of CUSUM run
   length." Biometrika 59 (1972) 539–549.
.. [6] Lucas, J. M. & Crosier, R. B. "Fast initial response for CUSUM quality-control
   schemes." Technometrics 24 (1982) 199–205.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal, special, stats

from app.core.spectra import FloatArray

__all__ = [
    "CusumChart",
    "EwmaChart",
    "ExceedanceTest",
    "critical_count",
    "cusum_arl",
    "cusum_chart",
    "ewma_arl",
    "ewma_chart",
    "ewma_limit",
    "exceedance_test",
    "first_alarm",
    "rolling_bias_rmse",
    "standardized_residuals",
]


def _series(values: ArrayLike, name: str) -> FloatArray:
    a = np.ascontiguousarray(values, dtype=np.float64)
    if a.ndim == 0:
        raise ValueError(f"{name} must be a series (at least 1-D), got a scalar")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def standardized_residuals(
    reference: ArrayLike, predicted: ArrayLike, *, sep: float, centre: float = 0.0
) -> FloatArray:
    """``(reference − predicted − centre) / sep``.

    Parameters
    ----------
    reference, predicted : array-like of shape (n,)
        Reference results and the predictions of the same samples, in the analyte's units.
    sep : float
        The version's validation SEP (> 0), same units.
    centre : float, default=0
        The in-control mean residual (reference − prediction), e.g. ``−bias`` of validation.

    Returns
    -------
    ndarray of shape (n,)
    """
    r, p = _series(reference, "reference"), _series(predicted, "predicted")
    if r.shape != p.shape:
        raise ValueError(f"reference has shape {r.shape} but predicted {p.shape}")
    if not (math.isfinite(sep) and sep > 0):
        raise ValueError(f"sep must be a positive number, got {sep}")
    if not math.isfinite(centre):
        raise ValueError(f"centre must be finite, got {centre}")
    out: FloatArray = (r - p - centre) / sep
    return out


def rolling_bias_rmse(residuals: ArrayLike, window: int) -> tuple[FloatArray, FloatArray]:
    """Mean and root-mean-square of each point's last ``window`` residuals (fewer at the start).

    Parameters
    ----------
    residuals : array-like of shape (..., n)
    window : int
        Number of references, >= 1.

    Returns
    -------
    bias, rmse : ndarray of shape (..., n)
        Point ``i`` summarizes residuals ``max(0, i − window + 1) … i``.
    """
    e = _series(residuals, "residuals")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = e.shape[-1]
    count = np.minimum(np.arange(1, n + 1), window).astype(np.float64)
    bias = _trailing_sum(e, window) / count
    rmse = np.sqrt(_trailing_sum(e * e, window) / count)
    return bias, rmse


def _trailing_sum(a: FloatArray, window: int) -> FloatArray:
    c = np.cumsum(a, axis=-1)
    out = c.copy()
    out[..., window:] -= c[..., :-window]
    return out


def ewma_limit(lam: float, L: float) -> float:
    """The asymptotic EWMA limit ``L √(λ / (2 − λ))`` in units of σ."""
    _check_ewma(lam, L)
    return L * math.sqrt(lam / (2.0 - lam))


def _check_ewma(lam: float, L: float) -> None:
    if not (math.isfinite(lam) and 0.0 < lam <= 1.0):
        raise ValueError(f"EWMA lambda must be in (0, 1], got {lam}")
    if not (math.isfinite(L) and L > 0):
        raise ValueError(f"EWMA L must be positive, got {L}")


def _check_cusum(k: float, h: float) -> None:
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"CUSUM k must be >= 0, got {k}")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"CUSUM h must be positive, got {h}")


def first_alarm(out_of_limits: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 where there is none."""
    hit = np.asarray(out_of_limits, dtype=bool)
    if hit.shape[-1] == 0:
        return np.full(hit.shape[:-1], -1, dtype=np.intp)
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), first, -1)


@dataclass(frozen=True, eq=False)
class EwmaChart:
    """An EWMA chart of standardized residuals.

    Attributes
    ----------
    statistic : ndarray of shape (..., n)
        ``w_i``.
    limit : float
        The asymptotic limit ``L √(λ/(2−λ))``: the chart alarms when ``|w_i| > limit``.
    alarm : ndarray of int, shape (...)
        Index of the first point beyond a limit, -1 when none.
    """

    statistic: FloatArray
    limit: float
    alarm: np.ndarray


def ewma_chart(z: ArrayLike, *, lam: float = 0.2, L: float = 3.0) -> EwmaChart:
    """The EWMA of ``z`` (starting at the target 0) with its asymptotic limits.

    Parameters
    ----------
    z : array-like of shape (..., n)
        Standardized residuals in time order along the last axis.
    lam : float, default=0.2
        Weight λ of the newest point, in (0, 1].
    L : float, default=3
        Width of the limits in σ of the EWMA's asymptotic standard deviation.
    """
    x = _series(z, "z")
    limit = ewma_limit(lam, L)
    # w_i = λ z_i + (1 − λ) w_{i−1}, w_0 = 0: a first-order recursive filter
    w = np.asarray(signal.lfilter([lam], [1.0, lam - 1.0], x, axis=-1), dtype=np.float64)
    return EwmaChart(w, limit, first_alarm(np.abs(w) > limit))


@dataclass(frozen=True, eq=False)
class CusumChart:
    """A two-sided tabular CUSUM of standardized residuals.

    Attributes
    ----------
    upper, lower : ndarray of shape (..., n)
        ``C⁺_i`` (residuals above the centre: the model under-predicts) and ``C⁻_i``.
    h : float
        The decision interval: alarm when ``C⁺_i > h`` or ``C⁻_i > h``.
    alarm : ndarray of int, shape (...)
        Index of the first point beyond ``h``, -1 when none.
    """

    upper: FloatArray
    lower: FloatArray
    h: float
    alarm: np.ndarray


def cusum_chart(z: ArrayLike, *, k: float = 0.5, h: float = 5.0) -> CusumChart:
    """The two-sided tabular CUSUM of ``z`` with reference value ``k`` and interval ``h`` (σ).

    Parameters
    ----------
    z : array-like of shape (..., n)
        Standardized residuals in time order along the last axis.
    k : float, default=0.5
        Allowance (half the shift to detect fastest), in σ.
    h : float, default=5
        Decision interval, in σ.
    """
    x = _series(z, "z")
    _check_cusum(k, h)
    upper, lower = np.empty_like(x), np.empty_like(x)
    cp = np.zeros(x.shape[:-1])
    cm = np.zeros(x.shape[:-1])
    for i in range(x.shape[-1]):
        cp = np.maximum(0.0, x[..., i] - k + cp)
        cm = np.maximum(0.0, -x[..., i] - k + cm)
        upper[..., i], lower[..., i] = cp, cm
    return CusumChart(upper, lower, h, first_alarm((upper > h) | (lower > h)))


@dataclass(frozen=True)
class ExceedanceTest:
    """One-sided exact binomial test of an exceedance count against its nominal rate.

    ``p_value`` is P(X >= exceedances) for X ~ Binomial(n, nominal_rate); ``alarm`` is
    ``p_value < alpha``, i.e. ``exceedances >= critical``, the smallest count whose p-value is
    below ``alpha`` (``n + 1`` when no count is). With no spectra the test has no data:
    ``p_value`` 1, no alarm.
    """

    n: int
    exceedances: int
    rate: float
    nominal_rate: float
    p_value: float
    alpha: float
    critical: int

    @property
    def alarm(self) -> bool:
        return self.p_value < self.alpha

    @property
    def critical_rate(self) -> float:
        """The exceedance rate at which the test alarms for ``n`` spectra."""
        return self.critical / self.n if self.n else 1.0


def exceedance_test(
    exceedances: int, n: int, *, nominal_rate: float = 0.01, alpha: float = 0.01
) -> ExceedanceTest:
    """Test whether ``exceedances`` of ``n`` spectra beyond a limit exceed its nominal rate.

    Parameters
    ----------
    exceedances, n : int
        Spectra beyond the limit, and spectra predicted (0 <= exceedances <= n).
    nominal_rate : float, default=0.01
        The rate an in-control process has: 1 − the limit's confidence (99 % limits: 0.01).
    alpha : float, default=0.01
        Significance level of the alarm.
    """
    if n < 0 or not 0 <= exceedances <= max(n, 0):
        raise ValueError(f"need 0 <= exceedances <= n, got {exceedances} of {n}")
    if not 0.0 < nominal_rate < 1.0:
        raise ValueError(f"nominal_rate must be in (0, 1), got {nominal_rate}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n == 0:
        return ExceedanceTest(0, 0, 0.0, nominal_rate, 1.0, alpha, 1)
    result = stats.binomtest(int(exceedances), int(n), nominal_rate, alternative="greater")
    return ExceedanceTest(
        int(n),
        int(exceedances),
        exceedances / n,
        nominal_rate,
        float(result.pvalue),
        alpha,
        critical_count(int(n), nominal_rate=nominal_rate, alpha=alpha),
    )


def critical_count(n: int, *, nominal_rate: float = 0.01, alpha: float = 0.01) -> int:
    """The smallest count ``c`` with P(X >= c) < ``alpha``, X ~ Binomial(n, nominal_rate);
    ``n + 1`` when even ``n`` exceedances are not that unlikely."""
    # binom.sf(c - 1) = P(X >= c); isf gives the neighbourhood, the loops settle the edge.
    c = int(stats.binom.isf(alpha, n, nominal_rate)) + 1
    while c <= n and stats.binom.sf(c - 1, n, nominal_rate) >= alpha:
        c += 1
    while c > 1 and stats.binom.sf(c - 2, n, nominal_rate) < alpha:
        c -= 1
    return min(c, n + 1)


# --------------------------------------------------------------------------------------------
# average run lengths (Markov chains)
# --------------------------------------------------------------------------------------------


def _absorbing_arl(R: FloatArray, start: int) -> float:
    """Expected steps to absorption from state ``start`` of the transient block ``R``."""
    n = R.shape[0]
    arl = np.linalg.solve(np.eye(n) - R, np.ones(n))
    return float(arl[start])


def ewma_arl(lam: float, L: float, shift: float = 0.0, *, n_states: int = 301) -> float:
    """Zero-state ARL of the two-sided EWMA chart with asymptotic limits, by Markov chain.

    The in-control region ``(−c, c)``, ``c = L √(λ/(2−λ))``, is cut into ``n_states`` (odd)
    cells; the chart moves from the centre ``s_i`` of one cell to another's with the
    probability that ``(1−λ) s_i + λ z`` lands in it, ``z ~ N(shift, 1)`` (Lucas & Saccucci
    1990). The chart starts at 0.
    """
    _check_ewma(lam, L)
    if n_states < 3 or n_states % 2 == 0:
        raise ValueError(f"n_states must be odd and >= 3, got {n_states}")
    c = ewma_limit(lam, L)
    width = 2.0 * c / n_states
    centres = -c + width * (np.arange(n_states) + 0.5)
    upper = centres + width / 2.0
    lower = centres - width / 2.0
    base = (1.0 - lam) * centres[:, None]
    R = special.ndtr((upper[None, :] - base) / lam - shift) - special.ndtr(
        (lower[None, :] - base) / lam - shift
    )
    return _absorbing_arl(R, n_states // 2)


def _one_sided_cusum_arl(k: float, h: float, mean: float, n_states: int) -> float:
    # States 0..m-1 at c_j = j w, w = h / (m − 1/2): state 0 holds [0, w/2) and the
    # statistic's atom at 0 (Brook & Evans 1972).
    w = h / (n_states - 0.5)
    centres = w * np.arange(n_states)
    step = centres[None, :] - centres[:, None] + k  # z needed to go from i to j's centre
    R = special.ndtr(step + w / 2.0 - mean) - special.ndtr(step - w / 2.0 - mean)
    R[:, 0] = special.ndtr(step[:, 0] + w / 2.0 - mean)
    return _absorbing_arl(R, 0)


def cusum_arl(
    k: float, h: float, shift: float = 0.0, *, two_sided: bool = True, n_states: int = 400
) -> float:
    """Zero-state ARL of the tabular CUSUM (k, h in σ) for a mean shift, by Markov chain.

    One-sided: the upper CUSUM. Two-sided: ``1/ARL = 1/ARL⁺ + 1/ARL⁻`` (Lucas & Crosier 1982).
    """
    _check_cusum(k, h)
    if n_states < 2:
        raise ValueError(f"n_states must be >= 2, got {n_states}")
    upper = _one_sided_cusum_arl(k, h, shift, n_states)
    if not two_sided:
        return upper
    lower = _one_sided_cusum_arl(k, h, -shift, n_states)
    return 1.0 / (1.0 / upper + 1.0 / lower)
