"""Applicability limits of a transferred soft sensor, calibrated in the target domain.

A transferred version computes Hotelling's T² and Q (SPE) in the source model's latent space
(:meth:`app.core.serving.ServingModel.diagnose`): a spectral transfer (PDS, DS, naive, or a
weighted combination) maps the target spectra to the source basis first; a correction of the
predictions (slope/bias, bias) leaves them as they are. Either way the target spectra need
not follow the source calibration's distribution — corrected spectra carry the transfer's
residual and the target probe's noise, uncorrected ones the whole probe difference — so the
source version's limits can flag most in-control target spectra (DESIGN.md §2). This module
calibrates the limits on target data:

- **calibration values**: T² and Q of (a) each chosen transfer standard passed through a
  transfer refitted *without* it (K venetian folds; a correction that does not map spectra is
  not refitted: the standard's own target spectrum is used), (b) the offered target standards
  that Kennard–Stone did not choose, and (c) the validation spectra, both through the final
  transfer — none of them was seen by the transfer that maps it;
- **limits**: a scaled chi-squared ``g · χ²_h`` with ``g`` and ``h`` matched to the mean ``m``
  and variance ``v`` of the calibration values, ``g = v / (2m)``, ``h = 2m² / v`` (Nomikos &
  MacGregor [1]_ for Q, after Box [2]_). The same moment fit serves T², which after a transfer
  is no longer F-distributed (the source scores' covariance does not hold for target spectra);
- **flag rates**: each evaluation value (the validation spectra, else every calibration value)
  is compared with limits calibrated on all the *other* calibration values (leave-one-out), so
  no value sets the limit it is judged by; rates at 95 % and 99 % against the nominal 5 % and
  1 %.

How often in-control target spectra are flagged with these limits, against the source
version's, is measured by ``bench/flag_rates.py`` (figures in the README).
Moment fits are not robust: a calibration set with a sizeable share (~15 %) of gross outliers
inflates the variance until the outliers are no longer flagged — the validation set must be
in-control target data, as the post-transfer metrics already assume. A robust variant (start
from the quartiles, drop the far tail, refit the moments) resisted that but flagged
in-control tablet spectra well above nominal: real Q has a heavy tail, which the moments see
and the quartiles do not (README).
For a correction that leaves the spectra unmapped (SBC), T² and Q measure the distance from
the *source* model, so limits calibrated on target spectra flag spectra further away than
those, not spectra lying between them and the source (a development-probe spectrum is not
flagged by an SBC version).

References
----------
.. [1] Nomikos, P. & MacGregor, J. F. "Multivariate SPC charts for monitoring batch
   processes." Technometrics 37 (1995) 41–59.
.. [2] Box, G. E. P. "Some theorems on quadratic forms applied in the study of analysis of
   variance problems, I." Annals of Mathematical Statistics 25 (1954) 290–302.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.base import clone

from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.core.spectra import FloatArray, as_spectra
from app.core.transfer import (
    DS,
    PDS,
    CalibrationTransfer,
    NaiveTransfer,
    SpectralTransfer,
    WeightedTransfer,
)

__all__ = [
    "HELD_OUT_FOLDS",
    "MIN_CALIBRATION_VALUES",
    "WEIGHTED_HELD_OUT_FOLDS",
    "ControlLimits",
    "FlagRates",
    "TargetLimits",
    "calibrate_target_limits",
    "held_out_diagnostics",
    "scaled_chi2_limit",
]

HELD_OUT_FOLDS = 6
"""At most this many refits of a spectral transfer for the standards' held-out values.

Leave-one-out up to 6 standards; above, 6 venetian folds (standard i in fold i mod 6, so each
fold holds out a spread of Kennard–Stone picks). A refit costs one fit, so the folds bound the
cost (``bench/flag_rates.py`` prints it); leave-one-out of 24 standards would cost 4x.
"""
WEIGHTED_HELD_OUT_FOLDS = 3
"""Folds for a :class:`WeightedTransfer`: each refit fits every member (one PDS decomposition
per window), so 3 folds, not 6."""
MIN_CALIBRATION_VALUES = 5
"""Fewer target values than this do not estimate a mean and a variance: no calibration."""

_CONFIDENCES = (0.95, 0.99)
# Rows per diagnose call: temporaries of 64 x 701 float64 stay in cache.
_BLOCK_ROWS = 64


@dataclass(frozen=True)
class ControlLimits:
    """Hotelling T² and Q limits at 95 % and 99 % confidence (Q in squared signal units)."""

    t2_95: float
    t2_99: float
    q_95: float
    q_99: float

    @classmethod
    def of(cls, model: LinearSoftSensor) -> ControlLimits:
        """The limits a trained model carries (estimated in its own, source, domain)."""
        return cls(model.t2_limit_95, model.t2_limit_99, model.q_limit_95, model.q_limit_99)


@dataclass(frozen=True)
class FlagRates:
    """Shares of ``n`` spectra above each limit; ``either``: T² or Q above its limit."""

    n: int
    t2_95: float
    q_95: float
    either_95: float
    t2_99: float
    q_99: float
    either_99: float

    @classmethod
    def count(
        cls,
        t2: FloatArray,
        q: FloatArray,
        *,
        t2_95: ArrayLike,
        t2_99: ArrayLike,
        q_95: ArrayLike,
        q_99: ArrayLike,
    ) -> FlagRates:
        """Rates of ``t2``/``q`` above limits given as scalars or one per value."""

        def share(flags: np.ndarray) -> float:
            return float(np.mean(flags)) if flags.size else 0.0

        a95, a99 = t2 > np.asarray(t2_95), t2 > np.asarray(t2_99)
        b95, b99 = q > np.asarray(q_95), q > np.asarray(q_99)
        return cls(
            n=int(t2.shape[0]),
            t2_95=share(a95),
            q_95=share(b95),
            either_95=share(a95 | b95),
            t2_99=share(a99),
            q_99=share(b99),
            either_99=share(a99 | b99),
        )

    @property
    def worst_99(self) -> float:
        """The larger of the T² and Q rates at 99 % (nominal 1 % each)."""
        return max(self.t2_99, self.q_99)


@dataclass(frozen=True)
class TargetLimits:
    """Limits calibrated for the target domain, what they were calibrated on, and how often
    they flag.

    Attributes
    ----------
    limits : ControlLimits
        The target-domain limits (the source's when ``calibrated`` is False).
    calibrated : bool
        False when fewer than :data:`MIN_CALIBRATION_VALUES` target values were available; the
        source model's limits are then kept.
    n_standards : int
        Held-out values of the chosen standards among the calibration values.
    standards_scheme : str
        How those values were held out, e.g. ``"6-fold venetian refits of the transfer"``.
    n_other : int
        Offered target standards that were not chosen, through the final transfer.
    n_validation : int
        Validation spectra, through the final transfer.
    rates : FlagRates
        Leave-one-out flag rates of the evaluation values (``rates_on``).
    rates_on : {"validation", "standards"}
        The validation spectra, or without a validation set every calibration value.
    source_limits : ControlLimits
        The source model's own limits.
    source_rates : FlagRates
        The same spectra against the source model's limits.
    """

    limits: ControlLimits
    calibrated: bool
    n_standards: int
    standards_scheme: str
    n_other: int
    n_validation: int
    rates: FlagRates
    rates_on: Literal["validation", "standards"]
    source_limits: ControlLimits
    source_rates: FlagRates

    @property
    def n_values(self) -> int:
        return self.n_standards + self.n_other + self.n_validation


def _moment_limit(mean: FloatArray, var: FloatArray, top: FloatArray, conf: float) -> FloatArray:
    """``g · χ²_conf(h)`` elementwise, with the degenerate cases made explicit.

    A zero mean (every value 0, e.g. Q of a model using every direction) gives 0; no spread
    gives the largest value ``top`` (a limit no calibration value exceeds).
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    ok = (mean > 0.0) & (var > 1e-24 * mean * mean)
    safe_mean = np.where(ok, mean, 1.0)
    safe_var = np.where(ok, var, 1.0)
    g = safe_var / (2.0 * safe_mean)
    h = 2.0 * safe_mean * safe_mean / safe_var
    limit = g * stats.chi2.ppf(conf, h)
    out: FloatArray = np.where(ok, limit, np.where(mean > 0.0, top, 0.0))
    return out


def scaled_chi2_limit(values: ArrayLike, confidence: float) -> float:
    """Upper control limit ``g · χ²_confidence(h)`` matched to the values' mean and variance.

    ``g = v / (2m)`` and ``h = 2m² / v`` with ``m`` the mean and ``v`` the variance (ddof 1)
    of ``values`` (Box's approximation, Nomikos & MacGregor's Q limit [1]_).

    Parameters
    ----------
    values : array-like of shape (n_values,)
        Non-negative calibration values of T² or Q; at least 2.
    confidence : float
        In (0, 1), e.g. 0.99.

    Returns
    -------
    float
        The limit; 0 if every value is 0, the largest value if they are all equal.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"need at least 2 finite values, got {v.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(
        _moment_limit(
            np.asarray(v.mean()), np.asarray(v.var(ddof=1)), np.asarray(v.max()), confidence
        )
    )


def _leave_one_out_limits(values: FloatArray, rows: np.ndarray, conf: float) -> FloatArray:
    """The moment limit of ``values`` without value ``i``, for each ``i`` in ``rows``."""
    n = values.shape[0]
    mean = values.mean()
    ss = float(np.sum((values - mean) ** 2))
    x = values[rows]
    mean_i = (n * mean - x) / (n - 1)
    # Removing x from n values: the sum of squares about the new mean drops by
    # (x - mean)² · n / (n - 1).
    var_i = np.maximum(ss - (x - mean) ** 2 * n / (n - 1), 0.0) / (n - 2)
    order = np.sort(values)
    top_i = np.where(x >= order[-1], order[-2], order[-1])
    return _moment_limit(mean_i, var_i, top_i, conf)


def _diagnose(serving: ServingModel, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """:meth:`ServingModel.diagnose`, ``_BLOCK_ROWS`` spectra at a time."""
    Xa = as_spectra(X, "X")
    n = Xa.shape[0]
    t2, q = np.empty(n), np.empty(n)
    for start in range(0, n, _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        t2[rows], q[rows] = serving.diagnose(Xa[rows])
    return t2, q


def _refit_map(
    transfer: SpectralTransfer, X_tgt: FloatArray, X_src: FloatArray
) -> SpectralTransfer:
    """The same spectral map fitted on other standards.

    A plain transfer is cloned and fitted. A :class:`WeightedTransfer` keeps its weights and
    refits its members — PDS batched per window and DS per SVD (``fit_many``, as
    ``select_transfer`` fits them); a member that corrects predictions (SBC, bias) counts as
    the identity in the weighted map whatever its fit, so it becomes a :class:`NaiveTransfer`
    there (the same map; it cannot fail on a fold).
    """
    if not isinstance(transfer, WeightedTransfer):
        refit: SpectralTransfer = clone(transfer).fit(X_tgt, X_src)
        return refit
    members = list(transfer.members_)
    refits: dict[int, CalibrationTransfer] = {}
    pds_by_window: dict[int, list[tuple[int, PDS]]] = {}
    ds_members: list[tuple[int, DS]] = []
    for i, m in enumerate(members):
        if isinstance(m, PDS):
            pds_by_window.setdefault(int(m.window), []).append((i, m))
        elif isinstance(m, DS):
            ds_members.append((i, m))
        else:
            refits[i] = NaiveTransfer().fit(X_tgt, X_src)
    for w, group in pds_by_window.items():
        fitted = PDS.fit_many(X_tgt, X_src, w, [float(m.rcond) for _, m in group])
        refits |= {i: f for (i, _), f in zip(group, fitted, strict=True)}
    if ds_members:
        settings = [(float(m.rcond), m.anchor) for _, m in ds_members]
        fitted_ds = DS.fit_many(X_tgt, X_src, settings)
        refits |= {i: f for (i, _), f in zip(ds_members, fitted_ds, strict=True)}
    return WeightedTransfer.of([refits[i] for i in range(len(members))], transfer.weights_)


def held_out_diagnostics(
    serving: ServingModel,
    X_tgt: ArrayLike,
    X_src: ArrayLike,
    *,
    folds: int = HELD_OUT_FOLDS,
    held_out: tuple[ArrayLike, str] | None = None,
) -> tuple[FloatArray, FloatArray, str]:
    """T² and Q of each transfer standard as a spectrum the transfer did not see.

    A spectral transfer (``serving.transfer`` a :class:`SpectralTransfer`) is refitted
    without each fold of standards (``min(n, folds)`` venetian folds, standard ``i`` in fold
    ``i mod k``; a clone of the fitted transfer, or for a weighted transfer its members with
    the same weights) and maps that fold's target spectra; a correction that leaves the spectra
    unmapped (slope/bias, bias) gives the standards' own target spectra, as
    :meth:`ServingModel.diagnose` does.

    Parameters
    ----------
    serving : ServingModel
        The transferred model (source PLS model and fitted transfer).
    X_tgt, X_src : array-like of shape (n_standards, n_channels)
        The chosen standards on the target and on the source probe, rows paired.
    folds : int, default=HELD_OUT_FOLDS
        At most this many folds (at most :data:`WEIGHTED_HELD_OUT_FOLDS` for a weighted
        transfer).
    held_out : (spectra, scheme), optional
        The standards already mapped to the source basis by transfers fitted without them
        (``select_transfer(..., held_out_spectra=True).cv_spectra`` and its CV scheme): used
        instead of refits for a spectral transfer.

    Returns
    -------
    t2, q : ndarrays of shape (n_standards,), or empty when a spectral transfer has fewer
        than 3 standards (a refit needs 2)
    scheme : str
        How the values were obtained, for the record.
    """
    Xt, Xs = as_spectra(X_tgt, "X_tgt"), as_spectra(X_src, "X_src")
    n = Xt.shape[0]
    transfer = serving.transfer
    # The rule of ServingModel.diagnose: only a spectral transfer maps the spectra.
    if not isinstance(transfer, SpectralTransfer):
        t2, q = _diagnose(serving, Xt)
        return t2, q, "their own target spectra: the correction does not map spectra"
    if held_out is not None:
        spectra, cv_scheme = held_out
        t2, q = _diagnose(replace(serving, transfer=None), as_spectra(spectra, "held_out"))
        return t2, q, f"mapped by the transfers of the selection's cross-validation ({cv_scheme})"
    if n < 3:
        empty = np.empty(0)
        return empty, empty, f"none held out: a refit without some of {n} standards needs 3"
    if isinstance(transfer, WeightedTransfer):
        folds = min(folds, WEIGHTED_HELD_OUT_FOLDS)
    k = min(n, folds)
    fold_of = np.arange(n) % k
    t2, q = np.empty(n), np.empty(n)
    for f in range(k):
        test = fold_of == f
        refit = _refit_map(transfer, Xt[~test], Xs[~test])
        t2[test], q[test] = replace(serving, transfer=refit).diagnose(Xt[test])
    scheme = (
        "leave-one-out refits of the transfer"
        if k == n
        else f"{k}-fold venetian refits of the transfer, standard i held out in fold i mod {k}"
    )
    return t2, q, scheme


def calibrate_target_limits(
    serving: ServingModel,
    X_tgt: ArrayLike,
    X_src: ArrayLike,
    *,
    X_other: ArrayLike | None = None,
    X_val: ArrayLike | None = None,
    folds: int = HELD_OUT_FOLDS,
    held_out: tuple[ArrayLike, str] | None = None,
) -> TargetLimits:
    """Calibrate T² and Q limits for the target domain and measure their flag rates.

    Parameters
    ----------
    serving : ServingModel
        The transferred model whose diagnostics the limits are for.
    X_tgt, X_src : array-like of shape (n_standards, n_channels)
        The chosen transfer standards on the target and the source probe, rows paired.
    X_other : array-like of shape (n_other, n_channels), optional
        Target spectra offered as standards but not chosen (not seen by the transfer).
    X_val : array-like of shape (n_validation, n_channels), optional
        Target-probe validation spectra (not seen by the transfer).
    folds : int, default=HELD_OUT_FOLDS
        Largest number of refits for the standards' held-out values.
    held_out : (spectra, scheme), optional
        The standards mapped by transfers fitted without them: see
        :func:`held_out_diagnostics`.

    Returns
    -------
    TargetLimits
        Limits from every calibration value; flag rates of the validation spectra (else of
        every calibration value), each judged by limits calibrated on the other values.
    """
    t2_std, q_std, scheme = held_out_diagnostics(
        serving, X_tgt, X_src, folds=folds, held_out=held_out
    )
    parts = [(t2_std, q_std)]
    n_other = n_val = 0
    if X_other is not None and np.shape(X_other)[0] > 0:
        parts.append(_diagnose(serving, X_other))
        n_other = parts[-1][0].shape[0]
    if X_val is not None:
        parts.append(_diagnose(serving, X_val))
        n_val = parts[-1][0].shape[0]
    t2 = np.concatenate([p[0] for p in parts])
    q = np.concatenate([p[1] for p in parts])
    n = t2.shape[0]
    rates_on: Literal["validation", "standards"] = "validation" if n_val else "standards"
    rows = np.arange(n - n_val, n) if n_val else np.arange(n)
    source_limits = ControlLimits.of(serving.source)
    source_rates = FlagRates.count(
        t2[rows],
        q[rows],
        t2_95=source_limits.t2_95,
        t2_99=source_limits.t2_99,
        q_95=source_limits.q_95,
        q_99=source_limits.q_99,
    )
    if n < MIN_CALIBRATION_VALUES:
        limits, calibrated, rates = source_limits, False, source_rates
    else:
        loo_t2 = [_leave_one_out_limits(t2, rows, c) for c in _CONFIDENCES]
        loo_q = [_leave_one_out_limits(q, rows, c) for c in _CONFIDENCES]
        t2_lim = [scaled_chi2_limit(t2, c) for c in _CONFIDENCES]
        q_lim = [scaled_chi2_limit(q, c) for c in _CONFIDENCES]
        limits = ControlLimits(t2_lim[0], t2_lim[1], q_lim[0], q_lim[1])
        calibrated = True
        rates = FlagRates.count(
            t2[rows], q[rows], t2_95=loo_t2[0], t2_99=loo_t2[1], q_95=loo_q[0], q_99=loo_q[1]
        )
    return TargetLimits(
        limits=limits,
        calibrated=calibrated,
        n_standards=t2_std.shape[0],
        standards_scheme=scheme,
        n_other=n_other,
        n_validation=n_val,
        rates=rates,
        rates_on=rates_on,
        source_limits=source_limits,
        source_rates=source_rates,
    )
