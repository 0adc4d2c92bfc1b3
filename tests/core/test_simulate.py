from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.core.simulate import (
    DEFAULT_AXIS,
    NEW_MEDIA_LOT,
    NO_SHIFT,
    SIMULATOR_VERSION,
    MediaLotShift,
    ProbeShift,
    SimulatedBatch,
    apply_probe_shift,
    remeasure,
    simulate_batch,
    simulate_campaign,
    spectral_columns,
    to_arrow_table,
    with_foreign_band,
    write_parquet,
)

BATCH = "BATCH-2026-001"


@pytest.fixture(scope="module")
def batch() -> SimulatedBatch:
    return simulate_batch(BATCH, seed=2026)


def test_same_seed_gives_identical_arrays(batch: SimulatedBatch) -> None:
    again = simulate_batch(BATCH, seed=2026)
    for name in ("X", "signal", "titer_g_L", "glucose_g_L", "lactate_g_L", "vcd", "hour"):
        assert np.array_equal(getattr(batch, name), getattr(again, name)), name


def test_different_seeds_give_different_data(batch: SimulatedBatch) -> None:
    other = simulate_batch(BATCH, seed=2027)
    assert not np.allclose(batch.X, other.X)
    assert not np.allclose(batch.titer_g_L, other.titer_g_L)


def test_campaign_batches_differ_and_match_single_batch_simulation(
    batch: SimulatedBatch,
) -> None:
    campaign = simulate_campaign(seed=2026, n_batches=2)
    assert [b.batch_id for b in campaign] == [BATCH, "BATCH-2026-002"]
    assert np.array_equal(campaign[0].X, batch.X)  # depends on (seed, batch_id) only
    assert not np.allclose(campaign[0].titer_g_L, campaign[1].titer_g_L)
    assert campaign[0].feed_hours != campaign[1].feed_hours


def test_shapes_and_axis(batch: SimulatedBatch) -> None:
    assert batch.X.shape == (336, 701)
    assert batch.X.dtype == np.float64
    assert batch.X.flags.c_contiguous
    assert batch.axis[0] == 400.0
    assert batch.axis[-1] == 1800.0
    assert np.all(np.diff(batch.axis) == 2.0)
    assert np.array_equal(batch.hour, np.arange(336.0))
    assert np.isfinite(batch.X).all()
    assert batch.sample_ids[0] == "BATCH-2026-001-H000"
    assert batch.sample_ids[-1] == "BATCH-2026-001-H335"


def test_titer_starts_at_zero_rises_monotonically_to_plausible_end(
    batch: SimulatedBatch,
) -> None:
    titer = batch.titer_g_L
    assert titer[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(titer) >= 0.0)
    assert 5.0 <= titer[-1] <= 6.5


@pytest.mark.parametrize("seed", [1, 7])
def test_titer_end_stays_plausible_for_other_seeds(seed: int) -> None:
    assert 5.0 <= simulate_batch(BATCH, seed=seed).titer_g_L[-1] <= 6.5


def test_process_states_are_plausible(batch: SimulatedBatch) -> None:
    assert batch.vcd[0] == pytest.approx(0.45, rel=0.2)
    assert 8.0 <= batch.vcd.max() <= 25.0  # 1e6 cells/mL
    assert 150 <= int(np.argmax(batch.vcd)) <= 320  # peak in the second week
    assert batch.glucose_g_L.min() > 0.5  # fed, never exhausted
    assert 1.0 <= batch.lactate_g_L.max() <= 4.0
    feeds_in_run = [h for h in batch.feed_hours if h < 335]
    assert len(feeds_in_run) == 11  # daily from day 3
    assert 165.0 <= batch.shift_hour <= 171.0


def test_titer_is_learnable_from_the_spectra(batch: SimulatedBatch) -> None:
    from sklearn.cross_decomposition import PLSRegression

    train = np.arange(336) % 2 == 0
    pls = PLSRegression(n_components=8, scale=False).fit(batch.X[train], batch.titer_g_L[train])
    pred = pls.predict(batch.X[~train]).ravel()
    y = batch.titer_g_L[~train]
    r2 = 1.0 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 >= 0.99


def test_no_shift_returns_an_identical_copy(batch: SimulatedBatch) -> None:
    rng = np.random.default_rng(0)
    out = apply_probe_shift(batch.X, batch.axis, NO_SHIFT, rng=rng)
    assert np.array_equal(out, batch.X)
    assert out is not batch.X
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # no draw


def test_sub_channel_drift_changes_spectra_smoothly(batch: SimulatedBatch) -> None:
    X = batch.signal[:5]
    rng = np.random.default_rng(0)
    small = apply_probe_shift(X, batch.axis, replace(NO_SHIFT, axis_drift=0.2), rng=rng)
    larger = apply_probe_shift(X, batch.axis, replace(NO_SHIFT, axis_drift=0.4), rng=rng)
    d_small = np.abs(small - X).max()
    d_larger = np.abs(larger - X).max()
    assert 0.0 < d_small < d_larger
    assert d_larger == pytest.approx(2.0 * d_small, rel=0.1)  # ~linear in the drift
    # A drift by exactly one channel reads the next channel's value.
    one = apply_probe_shift(X, batch.axis, replace(NO_SHIFT, axis_drift=2.0), rng=rng)
    assert np.allclose(one[:, :-1], X[:, 1:], rtol=0, atol=1e-9)


def test_gain_and_baseline_follow_their_parameters(batch: SimulatedBatch) -> None:
    X = batch.signal[:3]
    rng = np.random.default_rng(0)
    gained = apply_probe_shift(X, batch.axis, replace(NO_SHIFT, gain=0.5), rng=rng)
    assert np.allclose(gained, 0.5 * X)
    sloped = apply_probe_shift(
        X, batch.axis, replace(NO_SHIFT, offset=100.0, offset_slope=50.0), rng=rng
    )
    added = sloped - X
    assert np.allclose(added[:, 0], 50.0)
    assert np.allclose(added[:, -1], 150.0)
    tilted = apply_probe_shift(X, batch.axis, replace(NO_SHIFT, gain_slope=-0.2), rng=rng)
    assert np.allclose(tilted[:, 0] / X[:, 0], 1.2)
    assert np.allclose(tilted[:, -1] / X[:, -1], 0.8)


def test_extra_noise_has_the_requested_size(batch: SimulatedBatch) -> None:
    out = apply_probe_shift(
        batch.signal, batch.axis, replace(NO_SHIFT, noise_sd=5.0), rng=np.random.default_rng(1)
    )
    assert np.std(out - batch.signal) == pytest.approx(5.0, rel=0.02)


def test_probe_shift_rejects_a_gain_that_vanishes_on_the_axis() -> None:
    with pytest.raises(ValueError, match="positive across the axis"):
        ProbeShift(gain_slope=-1.2)
    with pytest.raises(ValueError, match="noise_sd"):
        ProbeShift(noise_sd=-1.0)


def test_remeasure_pairs_samples_with_independent_noise(batch: SimulatedBatch) -> None:
    same_probe = remeasure(batch, NO_SHIFT, seed=2026, probe="dev-raman-ambr250-again")
    assert same_probe.probe == "dev-raman-ambr250-again"
    assert np.array_equal(same_probe.titer_g_L, batch.titer_g_L)
    assert same_probe.sample_ids == batch.sample_ids
    diff = same_probe.X - batch.X
    assert 0.0 < np.std(diff) < 0.05 * np.std(batch.X)  # new noise only
    assert np.array_equal(
        remeasure(batch, NO_SHIFT, seed=2026).X, remeasure(batch, NO_SHIFT, seed=2026).X
    )


def test_default_shift_is_strong(batch: SimulatedBatch) -> None:
    target = remeasure(batch, ProbeShift(), seed=2026)
    assert target.probe == "plant-raman-2000L"
    rel = np.abs(target.X - batch.X).mean() / np.abs(batch.X).mean()
    assert rel > 0.2


def test_a_foreign_band_adds_one_peak_and_keeps_the_samples(batch: SimulatedBatch) -> None:
    other = with_foreign_band(batch, centre_cm1=883.0, fwhm_cm1=20.0, height=200.0)
    added = other.signal - batch.signal
    assert np.allclose(other.X - batch.X, added)
    assert np.allclose(added, added[0])  # the same band in every spectrum
    peak = int(np.argmax(added[0]))
    assert batch.axis[peak] == 882.0 or batch.axis[peak] == 884.0
    assert added[0, peak] == pytest.approx(200.0, rel=0.01)
    assert added[0, np.abs(batch.axis - 883.0) > 100].max() < 0.05 * 200.0
    assert other.sample_ids == batch.sample_ids
    assert np.array_equal(other.titer_g_L, batch.titer_g_L)
    with pytest.raises(ValueError, match="height"):
        with_foreign_band(batch, height=0.0)


def test_spectral_column_names() -> None:
    names = spectral_columns(DEFAULT_AXIS)
    assert names[0] == "wn_400"
    assert names[1] == "wn_402"
    assert names[-1] == "wn_1800"
    assert len(names) == 701
    assert spectral_columns([400.5, 401.25]) == ["wn_400.5", "wn_401.25"]


def test_parquet_round_trip_keeps_columns_values_and_metadata(
    batch: SimulatedBatch, tmp_path: Path
) -> None:
    table = to_arrow_table(batch, probe="dev-raman-ambr250", scale="250 mL Ambr")
    path = tmp_path / "raman_spectra.parquet"
    write_parquet(path, table)
    back = pq.read_table(path)
    assert back.num_rows == 336
    assert back.column_names[:7] == [
        "sample_id",
        "batch_id",
        "hour",
        "titer_g_L",
        "glucose_g_L",
        "lactate_g_L",
        "vcd",
    ]
    assert back.column_names[7] == "wn_400"
    assert back.column_names[-1] == "wn_1800"
    assert back.num_columns == 7 + 701
    assert back.column("sample_id")[0].as_py() == "BATCH-2026-001-H000"
    assert back.column("hour").to_pylist()[:3] == [0, 1, 2]
    X = np.column_stack([back.column(c).to_numpy() for c in back.column_names[7:]])
    assert np.array_equal(X, batch.X)
    assert np.array_equal(back.column("titer_g_L").to_numpy(), batch.titer_g_L)
    meta = {k.decode(): v.decode() for k, v in back.schema.metadata.items()}
    assert meta["batch"] == BATCH
    assert meta["probe"] == "dev-raman-ambr250"
    assert meta["scale"] == "250 mL Ambr"
    assert meta["seed"] == "2026"
    assert meta["simulator_version"] == SIMULATOR_VERSION


def test_table_of_several_batches_stacks_them_in_order() -> None:
    batches = simulate_campaign(seed=3, n_batches=2, hours=24)
    table = to_arrow_table(batches, scale="250 mL Ambr", metadata={"note": "short"})
    assert table.num_rows == 48
    assert table.column("batch_id")[24].as_py() == "BATCH-2026-002"
    meta = table.schema.metadata
    assert meta[b"batch"] == b"BATCH-2026-001,BATCH-2026-002"
    assert meta[b"probe"] == b"dev-raman-ambr250"
    assert meta[b"note"] == b"short"


def test_table_needs_probe_when_batches_come_from_several_probes(batch: SimulatedBatch) -> None:
    target = remeasure(batch, ProbeShift(), seed=1)
    with pytest.raises(ValueError, match="several probes"):
        to_arrow_table([batch, target], scale="mixed")


def test_a_media_lot_shift_changes_only_the_medium() -> None:
    plain = simulate_batch("BATCH-2026-003", seed=7, hours=48)
    shifted = simulate_batch("BATCH-2026-003", seed=7, hours=48, media=NEW_MEDIA_LOT)
    assert np.array_equal(plain.titer_g_L, shifted.titer_g_L)  # same kinetics and ids
    assert plain.sample_ids == shifted.sample_ids
    # less autofluorescence: a lower baseline, most at the high-wavenumber end (0.55 + 0.45 u)
    drop = (plain.signal - shifted.signal).mean(axis=0)
    assert np.all(drop > 0)
    assert drop[-1] > 2 * drop[0]
    same = simulate_batch("BATCH-2026-003", seed=7, hours=48, media=MediaLotShift())
    assert np.array_equal(plain.X, same.X)
    with pytest.raises(ValueError, match="autofluorescence must be positive"):
        MediaLotShift(autofluorescence=0.0)
