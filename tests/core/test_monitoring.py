"""Monitoring numerics: the charts by definition, their average run lengths against the
standard tables (Markov chains) and against simulated reference series (seeded, fast).

Measured here (seed 2026, 2000 series of 5000 in-control references, 2000 stepped series):
in control, the EWMA (λ = 0.2, L = 3) ran 549 ± 12 references on average before its first
false alarm (design ARL₀ 560 by Markov chain; the tables' L = 2.962 gives 500) and the
two-sided CUSUM (k = 0.5, h = 5) 457 ± 10 (design 465, Montgomery's Table 9.3); after a 1-SEP
step from the start, the EWMA caught it after 10.9 ± 0.15 references on average (ARL₁ 10.8)
and the CUSUM after 10.3 ± 0.12 (ARL₁ 10.4). The tests assert each against its Markov chain
within 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.monitoring import (
    cusum_arl,
    cusum_chart,
    ewma_arl,
    ewma_chart,
    ewma_limit,
    exceedance_test,
    first_alarm,
    rolling_bias_rmse,
    standardized_residuals,
)

SEED = 2026
N_SERIES = 2000


def test_standardized_residuals_centre_and_scale() -> None:
    z = standardized_residuals([2.0, 3.0], [1.5, 3.5], sep=0.5, centre=0.1)
    assert z == pytest.approx([(0.5 - 0.1) / 0.5, (-0.5 - 0.1) / 0.5])
    with pytest.raises(ValueError, match="sep must be a positive"):
        standardized_residuals([1.0], [1.0], sep=0.0)
    with pytest.raises(ValueError, match="shape"):
        standardized_residuals([1.0, 2.0], [1.0], sep=1.0)
    with pytest.raises(ValueError, match="finite"):
        standardized_residuals([math.nan], [1.0], sep=1.0)


def test_rolling_bias_and_rmse_over_the_last_n() -> None:
    e = np.array([1.0, -1.0, 3.0, 3.0, -3.0])
    bias, rmse = rolling_bias_rmse(e, 3)
    assert bias == pytest.approx([1.0, 0.0, 1.0, 5 / 3, 1.0])
    assert rmse == pytest.approx(
        [1.0, 1.0, math.sqrt(11 / 3), math.sqrt(19 / 3), math.sqrt(27 / 3)]
    )


def test_ewma_follows_its_recursion_from_zero() -> None:
    z = np.array([1.0, 2.0, -1.0, 0.5])
    chart = ewma_chart(z, lam=0.3, L=1.5)
    w, expected = 0.0, []
    for x in z:
        w = 0.3 * x + 0.7 * w
        expected.append(w)
    assert chart.statistic == pytest.approx(expected)  # 0.3, 0.81, 0.267, 0.3369
    assert chart.limit == pytest.approx(1.5 * math.sqrt(0.3 / 1.7))  # 0.630
    assert int(chart.alarm) == 1
    assert int(ewma_chart(z, lam=0.3, L=2.0).alarm) == -1  # limit 0.840 > 0.81


def test_ewma_limit_is_asymptotic() -> None:
    assert ewma_limit(0.2, 3.0) == pytest.approx(1.0)  # 3·sqrt(0.2/1.8)
    with pytest.raises(ValueError, match="lambda"):
        ewma_limit(0.0, 3.0)


def test_cusum_accumulates_beyond_k_on_both_sides() -> None:
    z = np.array([1.5, 1.5, -0.2, 3.0, -4.0, -4.0])
    chart = cusum_chart(z, k=0.5, h=3.0)
    assert chart.upper == pytest.approx([1.0, 2.0, 1.3, 3.8, 0.0, 0.0])
    assert chart.lower == pytest.approx([0.0, 0.0, 0.0, 0.0, 3.5, 7.0])
    assert int(chart.alarm) == 3
    with pytest.raises(ValueError, match="CUSUM h"):
        cusum_chart(z, k=0.5, h=0.0)


def test_first_alarm_is_minus_one_without_one() -> None:
    assert first_alarm(np.array([[False, True, True], [False, False, False]])).tolist() == [1, -1]


def test_an_empty_series_charts_nothing() -> None:
    assert int(ewma_chart(np.array([])).alarm) == -1
    assert int(cusum_chart(np.array([])).alarm) == -1
    bias, rmse = rolling_bias_rmse(np.array([]), 5)
    assert bias.size == rmse.size == 0


@pytest.mark.parametrize(
    ("k", "h", "shift", "table"),
    # Montgomery, Introduction to SQC (7th ed.), Table 9.3: two-sided tabular CUSUM, k = 1/2.
    [
        (0.5, 5.0, 0.0, 465.0),
        (0.5, 5.0, 0.5, 38.0),
        (0.5, 5.0, 1.0, 10.4),
        (0.5, 5.0, 2.0, 4.01),
        (0.5, 4.0, 0.0, 168.0),
        (0.5, 4.0, 1.0, 8.38),
    ],
)
def test_cusum_arl_reproduces_the_table(k: float, h: float, shift: float, table: float) -> None:
    assert cusum_arl(k, h, shift) == pytest.approx(table, rel=0.005)


@pytest.mark.parametrize(
    ("lam", "L", "shift", "table"),
    # Montgomery, Table 9.11 (Lucas & Saccucci 1990): EWMA with asymptotic limits.
    [
        (0.2, 2.962, 0.0, 500.0),
        (0.2, 2.962, 0.5, 41.8),
        (0.2, 2.962, 1.0, 10.5),
        (0.2, 2.962, 2.0, 3.7),
        (0.1, 2.814, 0.0, 500.0),
        (0.1, 2.814, 1.0, 10.3),
    ],
)
def test_ewma_arl_reproduces_the_table(lam: float, L: float, shift: float, table: float) -> None:
    assert ewma_arl(lam, L, shift) == pytest.approx(table, rel=0.01, abs=0.05)


def _run_lengths(alarm: np.ndarray, n: int) -> np.ndarray:
    """First alarm (1-based); a series without one counts as its length (conservative)."""
    return np.where(alarm >= 0, alarm + 1, n).astype(np.float64)


def _measured(run_lengths: np.ndarray) -> tuple[float, float]:
    return float(run_lengths.mean()), float(run_lengths.std(ddof=1) / math.sqrt(run_lengths.size))


def _in_control(n: int, chunk: int = 1000) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return [rng.standard_normal((chunk, n)) for _ in range(N_SERIES // chunk)]


def test_ewma_false_alarms_no_more_often_than_designed() -> None:
    n = 5000  # P(no false alarm in 5000 references) ≈ exp(-5000/560) ≈ 1e-4 per series
    lengths = np.concatenate(
        [_run_lengths(ewma_chart(z, lam=0.2, L=3.0).alarm, n) for z in _in_control(n)]
    )
    arl0, se = _measured(lengths)
    design = ewma_arl(0.2, 3.0)
    assert abs(arl0 - design) < 4 * se, (arl0, se, design)
    assert arl0 - 3 * se > 500  # at least the tables' ARL₀ of 500 (L = 2.962)


def test_cusum_false_alarms_no_more_often_than_designed() -> None:
    n = 5000
    lengths = np.concatenate(
        [_run_lengths(cusum_chart(z, k=0.5, h=5.0).alarm, n) for z in _in_control(n)]
    )
    arl0, se = _measured(lengths)
    design = cusum_arl(0.5, 5.0)
    assert abs(arl0 - design) < 4 * se, (arl0, se, design)
    assert arl0 + 4 * se > 465  # not more false alarms than Montgomery's 465 allows


def _stepped(shift: float, n: int = 300) -> np.ndarray:
    return np.random.default_rng(SEED + 1).standard_normal((N_SERIES, n)) + shift


def test_ewma_catches_a_one_sep_step_within_its_arl() -> None:
    lengths = _run_lengths(ewma_chart(_stepped(1.0), lam=0.2, L=3.0).alarm, 300)
    arl1, se = _measured(lengths)
    design = ewma_arl(0.2, 3.0, 1.0)
    assert design == pytest.approx(10.8, abs=0.1)
    assert abs(arl1 - design) < 4 * se, (arl1, se, design)


def test_cusum_catches_a_one_sep_step_within_its_arl() -> None:
    lengths = _run_lengths(cusum_chart(_stepped(1.0), k=0.5, h=5.0).alarm, 300)
    arl1, se = _measured(lengths)
    assert abs(arl1 - 10.4) < 4 * se, (arl1, se)
    assert abs(arl1 - cusum_arl(0.5, 5.0, 1.0)) < 4 * se


def test_cusum_catches_a_downward_step_on_its_lower_side() -> None:
    chart = cusum_chart(_stepped(-1.0)[:200], k=0.5, h=5.0)
    alarmed = chart.alarm[chart.alarm >= 0]
    assert alarmed.size == 200
    rows = np.arange(200)
    assert np.all(chart.lower[rows, chart.alarm] > 5.0)


def test_exceedance_test_keeps_its_false_alarm_rate() -> None:
    rng = np.random.default_rng(SEED)
    for n in (50, 336, 1000, 5000):
        counts = rng.binomial(n, 0.01, size=20_000)
        alarm = {int(k): exceedance_test(int(k), n).alarm for k in np.unique(counts)}
        rate = np.mean([alarm[int(k)] for k in counts])
        assert rate <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / counts.size), (n, rate)


def test_critical_count_is_where_the_p_value_drops_below_alpha() -> None:
    for n in (1, 10, 336, 1000, 5000):
        test = exceedance_test(0, n)
        c = test.critical
        if c <= n:
            assert exceedance_test(c, n).alarm
        if c >= 1:
            assert not exceedance_test(c - 1, n).alarm
    assert exceedance_test(0, 1000).critical == 19  # P(X >= 19) = 0.007, P(X >= 18) = 0.014


def test_exceedance_test_alarms_on_a_tripled_rate() -> None:
    assert exceedance_test(30, 1000).alarm  # 3 % against 1 %
    assert not exceedance_test(12, 1000).alarm
    assert exceedance_test(0, 0).p_value == 1.0
    with pytest.raises(ValueError, match="exceedances"):
        exceedance_test(5, 3)
