"""The pure phases of a transfer: refusal rules and evaluation on arrays (no database)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.core.pls import LinearSoftSensor, fit_pls
from app.enums import TransferMethod
from app.errors import InvalidInput
from app.schemas.transfers import MAX_FLAG_RATE_99
from app.services.transfer_evaluation import (
    CV_BASIS,
    VALIDATION_BASIS,
    CandidateStandards,
    TransferPlan,
    check_axis_unit,
    check_standards_fit_the_plan,
    evaluate_acceptance,
    evaluate_transfer,
    pair_by_sample_id,
)


def plan(
    method: TransferMethod = TransferMethod.pds,
    n_standards: int = 6,
    fixed_params: dict[str, Any] | None = None,
    acceptance: dict[str, Any] | None = None,
) -> TransferPlan:
    return TransferPlan(
        method=method,
        n_standards=n_standards,
        fixed_params={"window": 5, "rcond": 0.01} if fixed_params is None else fixed_params,
        acceptance={"max_rmse_ratio": 3.0} if acceptance is None else acceptance,
    )


def ids(n: int, prefix: str = "S") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def test_pairing_returns_the_source_row_of_each_target_standard() -> None:
    rows = pair_by_sample_id(["b", "c", "a"], ["a", "b", "c", "d"], "the file")
    assert rows.tolist() == [1, 2, 0]


def test_unpaired_sample_ids_are_refused_naming_them() -> None:
    with pytest.raises(InvalidInput, match=r"2 target standard\(s\) have no source-probe row"):
        pair_by_sample_id(["a", "x", "y"], ["a", "b"], "the source standards file")
    with pytest.raises(InvalidInput, match="'x', 'y'"):
        pair_by_sample_id(["a", "x", "y"], ["a", "b"], "the source standards file")


def test_standards_inside_the_validation_set_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"1 standard\(s\) are also in the validation set"):
        check_standards_fit_the_plan(
            plan(), target_ids=ids(8), validation_ids=["S003", "V001"], n_channels=50
        )


def test_fewer_standards_than_planned_are_refused() -> None:
    with pytest.raises(InvalidInput, match="need 6 target standards, got 5"):
        check_standards_fit_the_plan(plan(), target_ids=ids(5), validation_ids=None, n_channels=50)


def test_more_candidates_than_kennard_stone_takes_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"21 candidate standards offered.*at most 20"):
        check_standards_fit_the_plan(
            plan(), target_ids=ids(21), validation_ids=None, n_channels=50, max_candidates=20
        )


def test_a_window_wider_than_the_spectrum_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"window \(11 channels\) is wider than the spectrum"):
        check_standards_fit_the_plan(
            plan(fixed_params={"window": 11, "rcond": 0.01}),
            target_ids=ids(8),
            validation_ids=None,
            n_channels=9,
        )


def test_too_few_standards_for_cross_validation_without_validation_set_are_refused() -> None:
    small = plan(n_standards=2)
    with pytest.raises(InvalidInput, match="needs at least 3; the plan has 2"):
        check_standards_fit_the_plan(small, target_ids=ids(4), validation_ids=None, n_channels=50)
    # With a validation set the same plan is acceptable.
    check_standards_fit_the_plan(small, target_ids=ids(4), validation_ids=["V1"], n_channels=50)


def test_another_axis_unit_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'nm' differs from the source model's 'cm-1'"):
        check_axis_unit("nm", "cm-1")
    check_axis_unit("cm-1", "cm-1")


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    p = 40
    axis = np.linspace(400.0, 1800.0, p)
    grid = np.linspace(0.0, 1.0, p)
    bands = np.exp(-0.5 * ((grid[None, :] - np.array([[0.3], [0.6]])) / 0.05) ** 2)
    amounts = rng.uniform(0.2, 1.0, (60, 2))
    X = amounts @ bands + 1e-3 * rng.normal(size=(60, p))
    y = 3.0 * amounts[:, 0]
    linear = fit_pls(X[:40], y[:40], axis, n_components=2)
    X_tgt = 0.9 * X + 0.02 + 1e-3 * rng.normal(size=X.shape)
    return {"X": X, "y": y, "X_tgt": X_tgt, "linear": linear}


def standards(c: dict[str, Any], *, validation: bool) -> CandidateStandards:
    return CandidateStandards(
        sample_ids=ids(20),
        X_tgt=c["X_tgt"][40:],
        y_tgt=c["y"][40:],
        X_src=c["X"][40:],
        y_src=c["y"][40:],
        validation=(c["X_tgt"][:40], c["y"][:40]) if validation else None,
    )


def test_fixed_method_with_validation_set_is_fitted_and_scored_on_the_validation_set(
    campaign: dict[str, Any],
) -> None:
    linear: LinearSoftSensor = campaign["linear"]
    outcome = evaluate_transfer(
        standards(campaign, validation=True),
        plan(n_standards=8),
        linear=linear,
        source_metrics={"rmse": 0.05},
    )
    assert outcome.method == "pds"
    assert outcome.selection is None
    assert outcome.metrics_basis == VALIDATION_BASIS
    assert len(outcome.standard_sample_ids) == 8
    assert outcome.reference_agreement_max_abs == 0.0
    assert outcome.post_transfer_metrics["rmse"] < outcome.naive_metrics["rmse"]


def test_without_validation_set_the_metrics_are_cross_validated(campaign: dict[str, Any]) -> None:
    outcome = evaluate_transfer(
        standards(campaign, validation=False),
        plan(method=TransferMethod.auto, n_standards=10, fixed_params={}),
        linear=campaign["linear"],
        source_metrics=None,
    )
    assert outcome.selection is not None
    assert outcome.metrics_basis == CV_BASIS
    # max_rmse_ratio cannot be evaluated without the source's figures: the verdict is fail.
    assert outcome.acceptance.verdict == "fail"


def test_a_transfer_that_cannot_be_fitted_is_refused(campaign: dict[str, Any]) -> None:
    c = campaign
    flat = LinearSoftSensor.from_arrays(
        {**c["linear"].to_arrays(), "coef": np.zeros(c["X"].shape[1])}
    )
    with pytest.raises(InvalidInput, match="could not be fitted"):
        evaluate_transfer(
            standards(c, validation=True),
            plan(method=TransferMethod.sbc, fixed_params={}),
            linear=flat,
            source_metrics=None,
        )


def test_acceptance_passes_only_if_every_criterion_passes() -> None:
    both = {"max_rmse": 1.0, "max_rmse_ratio": 2.0}
    naive = {"rmse": 5.0}
    ok = evaluate_acceptance(both, {"rmse": 0.5}, {"rmse": 0.4}, naive, flag_rate_99=0.02)
    assert ok.verdict == "pass"
    assert [r["criterion"] for r in ok.results] == [
        "not_worse_than_naive",
        "max_flag_rate",
        "max_rmse",
        "max_rmse_ratio",
    ]
    assert [r["passed"] for r in ok.results] == [True, True, True, True]
    bad = evaluate_acceptance(both, {"rmse": 0.9}, {"rmse": 0.4}, naive, flag_rate_99=0.02)
    assert bad.verdict == "fail"
    assert bad.results[3]["observed"] == pytest.approx(2.25)


def test_a_transfer_worse_than_naive_fails_whatever_was_requested() -> None:
    """The kept-out pair's case: max_rmse alone passed a transfer 3.2x worse than naive."""
    outcome = evaluate_acceptance(
        {"max_rmse": 10.0}, {"rmse": 3.2}, None, {"rmse": 1.0}, flag_rate_99=0.0
    )
    assert outcome.verdict == "fail"
    assert outcome.results[0] == {
        "criterion": "not_worse_than_naive",
        "limit": 1.0,
        "observed": 3.2,
        "passed": False,
    }
    assert outcome.results[2]["passed"] is True


@pytest.mark.parametrize(("rate", "passed"), [(0.0, True), (0.05, True), (0.06, False)])
def test_a_flag_rate_far_above_nominal_fails_whatever_was_requested(
    rate: float, passed: bool
) -> None:
    outcome = evaluate_acceptance(
        {"max_rmse": 10.0}, {"rmse": 0.5}, None, {"rmse": 1.0}, flag_rate_99=rate
    )
    assert outcome.results[1] == {
        "criterion": "max_flag_rate",
        "limit": MAX_FLAG_RATE_99,
        "observed": rate,
        "passed": passed,
    }
    assert outcome.verdict == ("pass" if passed else "fail")


def test_the_outcome_carries_limits_calibrated_on_the_target_spectra(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    outcome = evaluate_transfer(
        standards(c, validation=True),
        plan(n_standards=8),
        linear=c["linear"],
        source_metrics={"rmse": 0.05},
    )
    limits = outcome.applicability
    assert limits.calibrated
    # 8 standards held out by refits, the 12 offered ones not chosen, 40 validation spectra.
    assert (limits.n_standards, limits.n_other, limits.n_validation) == (8, 12, 40)
    assert limits.rates_on == "validation"
    assert outcome.acceptance.results[1]["observed"] == limits.rates.worst_99
    _, q = outcome.serving.diagnose(c["X_tgt"][:40])
    # The source model's limits were learned on source spectra; these are the target's.
    assert limits.limits != limits.source_limits
    assert np.mean(q > limits.limits.q_99) <= 0.05


def test_the_conclusion_reads_records_with_missing_cv_figures() -> None:
    from app.db.models import TransferRecord
    from app.enums import TransferStatus
    from app.services.transfers import _conclusion

    record = TransferRecord(
        status=TransferStatus.completed, method_chosen="weighted", n_standards=8
    )
    result = {
        "cv_table": [
            {"method": "naive", "params": {}, "rmsecv": 0.5},
            {"method": "pds", "params": {"window": 3, "rcond": 0.1}, "rmsecv": None},
        ],
        "members": [{"method": "naive", "params": {}, "weight": 1.0}],
        "acceptance_results": [
            {"criterion": "not_worse_than_naive", "limit": 1.0, "observed": 0.5, "passed": True}
        ],
    }
    text = _conclusion(record, result)
    assert text is not None
    assert "naive carries the largest weight" in text
    assert "passed every acceptance criterion" in text
