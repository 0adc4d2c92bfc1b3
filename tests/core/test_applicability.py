"""Target-domain T²/Q limits of a transferred model (app.core.applicability).

Simulated campaign: the source model is fitted on BATCH-2026-001 (development probe); the
plant probe (ProbeShift) measures every 6th hour of it (the offered standards, Kennard–Stone
picks 20) and every 2nd hour of BATCH-2026-002 (the validation set). BATCH-2026-003 on the
plant probe is in-control target data that no fit and no calibration saw; the same batch with
an ethanol band (simulate.with_foreign_band) is a process the model was not calibrated for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from app.core.applicability import (
    MIN_CALIBRATION_VALUES,
    ControlLimits,
    TargetLimits,
    calibrate_target_limits,
    held_out_diagnostics,
    scaled_chi2_limit,
)
from app.core.kennard_stone import kennard_stone
from app.core.pls import LinearSoftSensor, PLSSoftSensor, fit_pls
from app.core.serving import ServingModel
from app.core.simulate import ProbeShift, remeasure, simulate_batch, with_foreign_band
from app.core.spectra import FloatArray
from app.core.transfer import (
    NaiveTransfer,
    SpectralTransfer,
    WeightedTransfer,
    fit_transfer,
    select_transfer,
)
from tests.core.test_tablets import DATA, N_COMPONENTS, auto, read_pair

SEED = 11
PLANT = "plant-raman-2000L"


@dataclass(frozen=True)
class Campaign:
    model: LinearSoftSensor
    X_tgt: FloatArray  # offered standards, plant probe
    X_src: FloatArray  # the same samples, development probe
    y: FloatArray
    chosen: np.ndarray
    X_val: FloatArray
    X_new: FloatArray  # in-control, seen by nothing
    X_other_process: FloatArray

    @property
    def others(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.X_tgt.shape[0]), self.chosen)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    shift = ProbeShift()
    source = simulate_batch("BATCH-2026-001", seed=SEED)
    model = fit_pls(source.X, source.titer_g_L, source.axis, n_components=5)
    plant = remeasure(source, shift, seed=SEED, probe=PLANT)
    offered = np.arange(0, source.n_samples, 6)
    validation = remeasure(simulate_batch("BATCH-2026-002", seed=SEED), shift, seed=SEED)
    new = simulate_batch("BATCH-2026-003", seed=SEED)
    return Campaign(
        model=model,
        X_tgt=plant.X[offered],
        X_src=source.X[offered],
        y=source.titer_g_L[offered],
        chosen=kennard_stone(plant.X[offered], 20),
        X_val=validation.X[::2],
        X_new=remeasure(new, shift, seed=SEED, probe=PLANT).X,
        X_other_process=remeasure(with_foreign_band(new), shift, seed=SEED, probe=PLANT).X,
    )


def _serving(c: Campaign, method: str, **params: float | int | str) -> ServingModel:
    transfer = fit_transfer(
        method,
        c.X_src[c.chosen],
        c.X_tgt[c.chosen],
        coef=c.model.coef,
        intercept=c.model.intercept,
        y_ref=c.y[c.chosen],
        **params,
    )
    return ServingModel.transferred(c.model, transfer)


def _calibrate(c: Campaign, serving: ServingModel, *, validation: bool = True) -> TargetLimits:
    return calibrate_target_limits(
        serving,
        c.X_tgt[c.chosen],
        c.X_src[c.chosen],
        X_other=c.X_tgt[c.others],
        X_val=c.X_val if validation else None,
    )


def _rates(serving: ServingModel, limits: ControlLimits, X: FloatArray) -> tuple[float, float]:
    t2, q = serving.diagnose(X)
    return float(np.mean(t2 > limits.t2_99)), float(np.mean(q > limits.q_99))


# --------------------------------------------------------------------------------------------
# The limit
# --------------------------------------------------------------------------------------------


def test_scaled_chi2_limit_matches_the_mean_and_variance() -> None:
    values = np.array([1.0, 2.0, 2.5, 4.0, 7.5])
    m, v = values.mean(), values.var(ddof=1)
    expected = v / (2 * m) * stats.chi2.ppf(0.99, 2 * m * m / v)
    assert scaled_chi2_limit(values, 0.99) == pytest.approx(expected, rel=1e-12)


def test_scaled_chi2_limit_recovers_a_scaled_chi2_quantile() -> None:
    values = 3.0 * np.random.default_rng(0).chisquare(5, 20_000)
    for confidence in (0.95, 0.99):
        assert scaled_chi2_limit(values, confidence) == pytest.approx(
            3.0 * stats.chi2.ppf(confidence, 5), rel=0.03
        )


def test_scaled_chi2_limit_of_degenerate_values() -> None:
    assert scaled_chi2_limit(np.zeros(4), 0.99) == 0.0
    assert scaled_chi2_limit(np.full(4, 2.5), 0.99) == 2.5
    with pytest.raises(ValueError, match="at least 2"):
        scaled_chi2_limit([1.0], 0.99)


# --------------------------------------------------------------------------------------------
# Calibration on target data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params"),
    [("ds", {"rcond": 0.03}), ("pds", {"window": 5, "rcond": 0.03})],
)
def test_target_limits_flag_in_control_target_spectra_near_nominal(
    campaign: Campaign, method: str, params: dict[str, float]
) -> None:
    serving = _serving(campaign, method, **params)
    result = _calibrate(campaign, serving)
    assert result.calibrated
    t2_rate, q_rate = _rates(serving, result.limits, campaign.X_new)
    assert t2_rate <= 0.03
    assert q_rate <= 0.03
    recorded = result.rates
    assert recorded.n == campaign.X_val.shape[0]
    assert recorded.t2_99 <= 0.03
    assert recorded.q_99 <= 0.03
    assert 0.01 <= recorded.q_95 <= 0.12


def test_spectra_from_another_process_are_flagged(campaign: Campaign) -> None:
    serving = _serving(campaign, "ds", rcond=0.03)
    result = _calibrate(campaign, serving)
    assert _rates(serving, result.limits, campaign.X_other_process)[1] >= 0.95
    assert _rates(serving, result.limits, campaign.X_new)[1] <= 0.03
    # The source version's limits cannot tell the two apart: they flag the in-control too.
    assert _rates(serving, result.source_limits, campaign.X_new)[1] > 0.3
    assert result.source_rates.q_99 > 0.3


def test_slope_bias_correction_calibrates_on_the_raw_target_spectra(campaign: Campaign) -> None:
    serving = _serving(campaign, "sbc")
    t2, q, scheme = held_out_diagnostics(
        serving, campaign.X_tgt[campaign.chosen], campaign.X_src[campaign.chosen]
    )
    raw_t2, raw_q = campaign.model.diagnose(campaign.X_tgt[campaign.chosen])
    np.testing.assert_allclose(t2, raw_t2)
    np.testing.assert_allclose(q, raw_q)
    assert "do" in scheme  # "...the correction does not map spectra"
    result = _calibrate(campaign, serving)
    assert max(_rates(serving, result.limits, campaign.X_new)) <= 0.03
    assert result.source_rates.t2_99 == result.source_rates.q_99 == 1.0
    # A far stronger probe difference is still outside the target spectra (T² flags all).
    stronger = ProbeShift(gain=0.45, offset=400.0, axis_drift=3.0)
    X_far = remeasure(simulate_batch("BATCH-2026-003", seed=SEED), stronger, seed=SEED).X
    assert max(_rates(serving, result.limits, X_far)) >= 0.95


def test_standards_are_judged_by_transfers_refitted_without_them(campaign: Campaign) -> None:
    c = campaign
    serving = _serving(c, "ds", rcond=0.03)
    Xt, Xs = c.X_tgt[c.chosen], c.X_src[c.chosen]
    t2, q, scheme = held_out_diagnostics(serving, Xt, Xs, folds=4)
    assert scheme == "4-fold venetian refits of the transfer, standard i held out in fold i mod 4"
    held_out = np.arange(Xt.shape[0]) % 4 == 1
    refit = fit_transfer(
        "ds", Xs[~held_out], Xt[~held_out], coef=c.model.coef, intercept=c.model.intercept
    )
    ref_t2, ref_q = c.model.diagnose(refit.transform(Xt[held_out]))
    np.testing.assert_allclose(t2[held_out], ref_t2, rtol=1e-10)
    np.testing.assert_allclose(q[held_out], ref_q, rtol=1e-10)
    # In-sample, the transfer fits its own standards: their Q would understate new spectra's.
    assert np.median(serving.diagnose(Xt)[1]) < np.median(q)


def test_a_weighted_transfer_is_refitted_member_by_member_with_its_weights(
    campaign: Campaign,
) -> None:
    c = campaign
    Xt, Xs = c.X_tgt[c.chosen], c.X_src[c.chosen]
    selection = select_transfer(
        Xs, Xt, coef=c.model.coef, intercept=c.model.intercept, y_ref=c.y[c.chosen]
    )
    weighted = selection.transfer
    assert isinstance(weighted, WeightedTransfer)
    serving = ServingModel.transferred(c.model, weighted)
    t2, q, scheme = held_out_diagnostics(serving, Xt, Xs)
    assert scheme.startswith("3-fold venetian refits")  # each refit fits every member
    held_out = np.arange(Xt.shape[0]) % 3 == 2
    members = [
        fit_transfer(
            m.method,
            Xs[~held_out],
            Xt[~held_out],
            coef=c.model.coef,
            intercept=c.model.intercept,
            **m.params(),
        )
        if isinstance(m, SpectralTransfer)
        else NaiveTransfer().fit(Xt[~held_out], Xs[~held_out])  # SBC, bias: identity maps
        for m in weighted.members_
    ]
    refit = WeightedTransfer.of(members, weighted.weights_)
    ref_t2, ref_q = c.model.diagnose(refit.transform(Xt[held_out]))
    np.testing.assert_allclose(t2[held_out], ref_t2, rtol=1e-9)
    np.testing.assert_allclose(q[held_out], ref_q, rtol=1e-9)
    result = _calibrate(c, serving)
    assert max(_rates(serving, result.limits, c.X_new)) <= 0.03
    assert _rates(serving, result.limits, c.X_other_process)[1] >= 0.95


def test_recorded_rates_are_leave_one_out_over_the_calibration_values(
    campaign: Campaign,
) -> None:
    c = campaign
    serving = _serving(c, "ds", rcond=0.03)
    result = _calibrate(c, serving)
    t2_std, q_std, _ = held_out_diagnostics(serving, c.X_tgt[c.chosen], c.X_src[c.chosen])
    parts = [(t2_std, q_std), serving.diagnose(c.X_tgt[c.others]), serving.diagnose(c.X_val)]
    q_all = np.concatenate([p[1] for p in parts])
    n_val = c.X_val.shape[0]
    assert result.n_values == q_all.size
    assert (result.n_standards, result.n_other, result.n_validation) == (
        c.chosen.size,
        c.others.size,
        n_val,
    )
    assert result.limits.q_99 == pytest.approx(scaled_chi2_limit(q_all, 0.99), rel=1e-12)
    rows = range(q_all.size - n_val, q_all.size)
    flagged = [q_all[i] > scaled_chi2_limit(np.delete(q_all, i), 0.99) for i in rows]
    assert result.rates.q_99 == pytest.approx(np.mean(flagged), abs=1e-12)
    assert result.rates_on == "validation"


def test_without_a_validation_set_the_rates_are_those_of_the_standards(
    campaign: Campaign,
) -> None:
    result = _calibrate(campaign, _serving(campaign, "ds", rcond=0.03), validation=False)
    assert result.calibrated
    assert result.rates_on == "standards"
    assert result.n_validation == 0
    assert result.rates.n == result.n_values == campaign.X_tgt.shape[0]


def test_too_few_target_values_keep_the_source_limits(campaign: Campaign) -> None:
    c = campaign
    two = c.chosen[:2]
    transfer = fit_transfer(
        "ds", c.X_src[two], c.X_tgt[two], coef=c.model.coef, intercept=c.model.intercept
    )
    serving = ServingModel.transferred(c.model, transfer)
    result = calibrate_target_limits(serving, c.X_tgt[two], c.X_src[two], X_val=c.X_val[:2])
    assert result.n_standards == 0  # a refit without one of two standards is impossible
    assert result.n_values == 2 < MIN_CALIBRATION_VALUES
    assert not result.calibrated
    assert result.limits == ControlLimits.of(c.model)
    assert result.rates == result.source_rates


# --------------------------------------------------------------------------------------------
# Real instrument pair: the tablet shoot-out subset (tests/data, see test_tablets.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_standards", [8, 30])
def test_tablet_limits_flag_the_other_instruments_tablets_near_nominal(n_standards: int) -> None:
    t = read_pair(DATA, "tablets_subset")[0]
    cal, test, trans = t.rows("cal"), t.rows("test"), t.rows("trans")
    model = PLSSoftSensor(N_COMPONENTS).fit(t.X1[cal], t.y[cal]).model_
    standards, selection = auto(t, model, n_standards)
    serving = ServingModel.transferred(model, selection.transfer)
    others = np.setdiff1d(trans, standards)
    result = calibrate_target_limits(
        serving,
        t.X2[standards],
        t.X1[standards],
        X_other=t.X2[others],
        X_val=t.X2[test],
    )
    # Instrument 2's cal tablets: neither the model, the transfer nor the limits saw them.
    assert max(_rates(serving, result.limits, t.X2[cal])) <= 0.03
    assert result.rates.worst_99 <= 0.03
    # An absorption band the formulation lacks (0.3 AU, 5 channels wide) is flagged.
    channel = np.arange(t.X2.shape[1])
    band = 0.3 * np.exp(-np.log(2) * ((channel - 40) / 2.5) ** 2)
    t2, q = serving.diagnose(t.X2[test] + band)
    assert np.mean((t2 > result.limits.t2_99) | (q > result.limits.q_99)) >= 0.95
