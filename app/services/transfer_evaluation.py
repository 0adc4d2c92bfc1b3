"""The pure part of running a transfer: refusal rules on arrays, and arrays + plan -> outcome.

No database, no store, no settings: everything here takes arrays and plain values, so the
rules that refuse an upload (unpaired sample ids, standards inside the validation set, too
few or too many standards, a window wider than the spectrum, too few standards for
cross-validation, another axis unit) and the evaluation itself (Kennard–Stone, fit or
selection by cross-validation, naive and post-transfer metrics, acceptance verdict) are
tested in milliseconds. :mod:`app.services.transfers` reads the uploads before and records
the outcome after.

The applicability limits (Hotelling T², Q) of the transferred version are calibrated here too,
on target-probe data (:mod:`app.core.applicability`), and their flag rate is an acceptance
criterion of every transfer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.core.applicability import (
    MIN_CALIBRATION_VALUES,
    ControlLimits,
    FlagRates,
    TargetLimits,
    calibrate_target_limits,
)
from app.core.kennard_stone import kennard_stone
from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.core.spectra import FloatArray, IntArray
from app.core.transfer import CalibrationTransfer, TransferSelection, fit_transfer, select_transfer
from app.enums import TransferMethod
from app.errors import InvalidInput
from app.schemas.transfers import MAX_CANDIDATES, MAX_FLAG_RATE_99, MIN_CV_STANDARDS
from app.services.models import metrics_record

CV_BASIS = "cross-validated over the standards (no validation set)"
VALIDATION_BASIS = "validation set: target-probe samples that are not among the standards"
LIMITS_METHOD = (
    "scaled chi-squared g·χ²_h with g = v/(2m), h = 2m²/v from the mean m and variance v of the "
    "calibration values (Nomikos & MacGregor 1995), for T² and for Q"
)
_MAX_IDS_SHOWN = 10


def shown(ids: Sequence[str]) -> str:
    """The first ids, quoted, and how many more: for messages a scientist reads."""
    head = ", ".join(repr(s) for s in ids[:_MAX_IDS_SHOWN])
    more = f" and {len(ids) - _MAX_IDS_SHOWN} more" if len(ids) > _MAX_IDS_SHOWN else ""
    return head + more


# --------------------------------------------------------------------------------------------
# Refusal rules
# --------------------------------------------------------------------------------------------


def check_axis_unit(asked: str, source_unit: str) -> None:
    """The standards must be on the source model's axis unit (cm-1 or nm)."""
    if asked != source_unit:
        raise InvalidInput(
            f"the axis unit {asked!r} differs from the source model's {source_unit!r}"
        )


def pair_by_sample_id(target_ids: Sequence[str], source_ids: Sequence[str], where: str) -> IntArray:
    """Row of ``source_ids`` holding each target standard's sample, in target order.

    Raises InvalidInput naming the target standards without a source-probe row in ``where``.
    """
    row_of = {sid: i for i, sid in enumerate(source_ids)}
    unpaired = [sid for sid in target_ids if sid not in row_of]
    if unpaired:
        raise InvalidInput(
            f"{len(unpaired)} target standard(s) have no source-probe row with the same sample "
            f"id in {where}: {shown(unpaired)}"
        )
    return np.asarray([row_of[sid] for sid in target_ids], dtype=np.intp)


@dataclass(frozen=True)
class TransferPlan:
    """What the opened transfer fixed before any target data was seen."""

    method: TransferMethod
    n_standards: int
    fixed_params: Mapping[str, float | int | str]
    acceptance: Mapping[str, Any]


def check_standards_fit_the_plan(
    plan: TransferPlan,
    *,
    target_ids: Sequence[str],
    validation_ids: Sequence[str] | None,
    n_channels: int,
    max_candidates: int = MAX_CANDIDATES,
) -> None:
    """Counts and overlaps: the rules every offered set of standards must meet, in order.

    No standard in the validation set; at most ``max_candidates`` offered and at least the
    planned number; without a validation set at least ``MIN_CV_STANDARDS`` planned (metrics
    are then cross-validated); a fixed PDS window no wider than the spectrum.
    """
    if validation_ids is not None:
        in_val = set(validation_ids)
        overlap = [sid for sid in target_ids if sid in in_val]
        if overlap:
            raise InvalidInput(
                f"{len(overlap)} standard(s) are also in the validation set: {shown(overlap)}; "
                "post-transfer metrics must be computed on samples the transfer did not use"
            )
    n_std, n_offered = plan.n_standards, len(target_ids)
    if n_offered > max_candidates:
        raise InvalidInput(
            f"{n_offered} candidate standards offered; Kennard–Stone selection takes at most "
            f"{max_candidates}"
        )
    if n_offered < n_std:
        raise InvalidInput(
            f"the transfer plans {n_std} standards: need {n_std} target standards, got {n_offered}"
        )
    if validation_ids is None and n_std < MIN_CV_STANDARDS:
        raise InvalidInput(
            f"without a validation set the metrics are cross-validated over the standards, "
            f"which needs at least {MIN_CV_STANDARDS}; the plan has {n_std}"
        )
    window = plan.fixed_params.get("window")
    if window is not None and int(window) > n_channels:
        raise InvalidInput(
            f"the PDS window ({window} channels) is wider than the spectrum ({n_channels} channels)"
        )


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _limits(limits: ControlLimits) -> dict[str, float]:
    return {"t2_95": limits.t2_95, "t2_99": limits.t2_99, "q_95": limits.q_95, "q_99": limits.q_99}


def _rates(rates: FlagRates, *, spectra: str, method: str) -> dict[str, Any]:
    return {
        "spectra": spectra,
        "n": rates.n,
        "method": method,
        "at_95": {"nominal": 0.05, "t2": rates.t2_95, "q": rates.q_95, "either": rates.either_95},
        "at_99": {"nominal": 0.01, "t2": rates.t2_99, "q": rates.q_99, "either": rates.either_99},
    }


def applicability_record(t: TargetLimits) -> dict[str, Any]:
    """The record's account of the target version's T²/Q limits: values, basis, flag rates."""
    n = t.n_values
    what = "validation spectra" if t.rates_on == "validation" else "calibration values"
    if t.calibrated:
        summary = (
            f"calibrated on {n} target-probe values: {t.n_standards} standards "
            f"({t.standards_scheme}), {t.n_other} other offered standards and "
            f"{t.n_validation} validation spectra, each through a transfer that did not see it; "
            "scaled chi-squared fitted to their mean and variance"
        )
        method = (
            f"each of the {t.rates.n} {what} against limits calibrated on the other {n - 1} "
            "values (leave-one-out)"
        )
    else:
        summary = (
            f"the source version's limits: {n} target-probe values, fewer than the "
            f"{MIN_CALIBRATION_VALUES} a calibration needs"
        )
        method = f"the {t.rates.n} {what} against the source version's limits"
    return {
        "calibrated": t.calibrated,
        "summary": summary,
        "limits": _limits(t.limits),
        "calibration": {
            "method": LIMITS_METHOD,
            "n_values": n,
            "n_standards": t.n_standards,
            "standards": t.standards_scheme,
            "n_other_candidates": t.n_other,
            "n_validation": t.n_validation,
        },
        "flag_rates": _rates(t.rates, spectra=t.rates_on, method=method),
        "source_limits": _limits(t.source_limits),
        "source_limits_flag_rates": _rates(
            t.source_rates,
            spectra=t.rates_on,
            method=f"the same {t.source_rates.n} {what} against the source version's limits",
        ),
    }


@dataclass(frozen=True)
class CandidateStandards:
    """Target standards offered, each with its source-probe row of the same sample.

    ``X_tgt``/``X_src`` have shape (n_offered, n_channels), rows paired; ``y_tgt`` and
    ``y_src`` are the reference values recorded with each; ``validation`` is the target-probe
    validation set (X, y), if one was uploaded.
    """

    sample_ids: list[str]
    X_tgt: FloatArray
    y_tgt: FloatArray
    X_src: FloatArray
    y_src: FloatArray
    validation: tuple[FloatArray, FloatArray] | None = None


@dataclass(frozen=True)
class AcceptanceResult:
    """Each criterion with its limit, observed value and outcome, and the overall verdict."""

    results: list[dict[str, Any]]
    verdict: Literal["pass", "fail"]


@dataclass(frozen=True)
class TransferOutcome:
    """What evaluating a plan on the standards produced, before anything is recorded."""

    standard_sample_ids: list[str]
    transfer: CalibrationTransfer
    serving: ServingModel
    selection: TransferSelection | None
    naive_metrics: dict[str, Any]
    post_transfer_metrics: dict[str, Any]
    metrics_basis: str
    acceptance: AcceptanceResult
    reference_agreement_max_abs: float
    applicability: TargetLimits

    @property
    def method(self) -> str:
        return self.transfer.method


def evaluate_acceptance(
    criteria: Mapping[str, Any],
    post: Mapping[str, Any],
    source: Mapping[str, Any] | None,
    naive: Mapping[str, Any],
    *,
    flag_rate_99: float | None,
) -> AcceptanceResult:
    """Evaluate the criteria every transfer must meet, then the requested ones.

    Always: ``not_worse_than_naive`` — the post-transfer RMSE at most the naive RMSE on the same
    rows (a requested ``max_rmse`` alone let a transfer 3x worse than no correction pass);
    ``max_flag_rate`` — ``flag_rate_99``, the larger of the T² and Q flag rates at 99 % of the
    in-control validation spectra (cross-fitted; of the standards without a validation set),
    at most :data:`MAX_FLAG_RATE_99` (nominal 1 %).
    Requested: ``max_rmse`` and ``max_rmse_ratio`` (against the source's in-domain RMSE).
    """
    rmse, naive_rmse = post.get("rmse"), naive.get("rmse")
    results: list[dict[str, Any]] = [
        {
            "criterion": "not_worse_than_naive",
            "limit": naive_rmse,
            "observed": rmse,
            "passed": rmse is not None and naive_rmse is not None and rmse <= naive_rmse,
        },
        {
            "criterion": "max_flag_rate",
            "limit": MAX_FLAG_RATE_99,
            "observed": flag_rate_99,
            "passed": flag_rate_99 is not None and flag_rate_99 <= MAX_FLAG_RATE_99,
        },
    ]
    if criteria.get("max_rmse") is not None:
        limit = float(criteria["max_rmse"])
        results.append(
            {
                "criterion": "max_rmse",
                "limit": limit,
                "observed": rmse,
                "passed": rmse is not None and rmse <= limit,
            }
        )
    if criteria.get("max_rmse_ratio") is not None:
        limit = float(criteria["max_rmse_ratio"])
        source_rmse = source.get("rmse") if source else None
        ratio = None
        if rmse is not None and source_rmse:
            value = rmse / source_rmse
            ratio = value if math.isfinite(value) else None
        results.append(
            {
                "criterion": "max_rmse_ratio",
                "limit": limit,
                "observed": ratio,
                "passed": ratio is not None and ratio <= limit,
            }
        )
    return AcceptanceResult(results, "pass" if all(r["passed"] for r in results) else "fail")


def evaluate_transfer(
    standards: CandidateStandards,
    plan: TransferPlan,
    *,
    linear: LinearSoftSensor,
    source_metrics: Mapping[str, Any] | None,
) -> TransferOutcome:
    """Choose the standards, fit (or select by CV) the transfer, compute metrics and verdict.

    Standards: Kennard–Stone on the target spectra (all of them, in KS order, when the number
    offered is the number planned). With a validation set and a fixed method, that method is
    fitted; otherwise candidates are cross-validated over the standards (the plan's method
    alone, or the default grid for ``auto``) and the post-transfer metrics are the CV figures.
    The target version's T²/Q limits are calibrated on the standards held out (mapped by the
    selection's own cross-validation folds, or by refits of a fixed method), the offered
    standards not chosen and the validation set (:func:`calibrate_target_limits`).

    Raises InvalidInput when the transfer cannot be fitted on these standards.
    """
    chosen = kennard_stone(standards.X_tgt, plan.n_standards)
    Xt, Xs = standards.X_tgt[chosen], standards.X_src[chosen]
    y, y_src = standards.y_tgt[chosen], standards.y_src[chosen]
    params = dict(plan.fixed_params)
    method = plan.method
    selection: TransferSelection | None = None
    try:
        if method is TransferMethod.auto or standards.validation is None:
            candidates = None if method is TransferMethod.auto else [(method.value, params)]
            selection = select_transfer(
                Xs,
                Xt,
                coef=linear.coef,
                intercept=linear.intercept,
                y_ref=y,
                candidates=candidates,
                held_out_spectra=True,
            )
            fitted: CalibrationTransfer = selection.transfer
        else:
            fitted = fit_transfer(
                method.value,
                Xs,
                Xt,
                coef=linear.coef,
                intercept=linear.intercept,
                y_ref=y,
                **params,
            )
    except ValueError as exc:
        raise InvalidInput(f"the transfer could not be fitted on these standards: {exc}") from None
    serving = ServingModel.transferred(linear, fitted)
    others = np.setdiff1d(np.arange(standards.X_tgt.shape[0]), chosen)
    applicability = calibrate_target_limits(
        serving,
        Xt,
        Xs,
        X_other=standards.X_tgt[others],
        X_val=standards.validation[0] if standards.validation is not None else None,
        held_out=(
            None
            if selection is None or selection.cv_spectra is None
            else (selection.cv_spectra, selection.scheme)
        ),
    )
    if standards.validation is not None:
        X_val, y_val = standards.validation
        naive = metrics_record(y_val, linear.predict(X_val))
        post = metrics_record(y_val, serving.predict(X_val))
        basis = VALIDATION_BASIS
    else:
        assert selection is not None
        naive = metrics_record(y, linear.predict(Xt))
        post = metrics_record(selection.cv_reference, selection.cv_predictions)
        basis = CV_BASIS
    return TransferOutcome(
        standard_sample_ids=[standards.sample_ids[i] for i in chosen],
        transfer=fitted,
        serving=serving,
        selection=selection,
        naive_metrics=naive,
        post_transfer_metrics=post,
        metrics_basis=basis,
        acceptance=evaluate_acceptance(
            plan.acceptance,
            post,
            source_metrics,
            naive,
            flag_rate_99=applicability.rates.worst_99,
        ),
        reference_agreement_max_abs=float(np.max(np.abs(y - y_src))),
        applicability=applicability,
    )
