"""Calibration transfer: PDS, DS, SBC, persistence and selection by cross-validation."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.utils.validation import check_is_fitted

from app.core.spectra import FloatArray
from app.core.transfer import (
    DS,
    FORMAT_VERSION,
    PDS,
    SBC,
    Anchor,
    BiasCorrection,
    CalibrationTransfer,
    NaiveTransfer,
    NotFittedError,
    SpectralTransfer,
    WeightedTransfer,
    default_candidates,
    fit_transfer,
    select_transfer,
    transfer_from_arrays,
)

# --------------------------------------------------------------------------- helpers


def smooth_spectra(rng: np.random.Generator, n: int, p: int, noise: float = 1e-3) -> FloatArray:
    """Raman-like spectra: 6 Gaussian bands with random amounts, a sloped baseline, noise."""
    axis = np.linspace(0.0, 1.0, p)
    centres = rng.uniform(0.1, 0.9, 6)
    widths = rng.uniform(0.01, 0.05, 6)
    bands = np.exp(-0.5 * ((axis[None, :] - centres[:, None]) / widths[:, None]) ** 2)
    amounts = rng.uniform(0.2, 1.0, (n, 6))
    baseline = 0.05 * rng.normal(size=(n, 1)) * axis[None, :]
    return amounts @ bands + baseline + noise * rng.normal(size=(n, p))


def target_probe(X: FloatArray, rng: np.random.Generator, noise: float = 1e-3) -> FloatArray:
    """A different probe: axis drift of 0.3 channel, smooth gain, sloped offset, extra noise."""
    p = X.shape[1]
    ch = np.arange(p, dtype=float)
    shifted = np.stack([np.interp(ch + 0.3, ch, row) for row in X])
    gain = 1.0 + 0.1 * np.sin(np.linspace(0.0, np.pi, p))
    offset = 0.02 + 0.01 * np.linspace(0.0, 1.0, p)
    return shifted * gain + offset + noise * rng.normal(size=X.shape)


def pls_model(X: FloatArray, y: FloatArray, n_components: int = 4) -> tuple[FloatArray, float]:
    """A soft sensor ``y = X @ coef + intercept`` from scikit-learn's PLS.

    scikit-learn 1.9: ``coef_`` has shape (n_targets, n_features) and ``intercept_`` is the
    mean of y, because ``predict`` centres X first; the raw-space intercept subtracts
    ``mean(X) @ coef``.
    """
    pls = PLSRegression(n_components=n_components, scale=False).fit(X, y)
    assert pls.coef_.shape == (1, X.shape[1])
    coef = pls.coef_.ravel().copy()
    intercept = float(pls.intercept_[0] - X.mean(axis=0) @ coef)
    np.testing.assert_allclose(X @ coef + intercept, pls.predict(X).ravel(), atol=1e-10)
    return coef, intercept


def reference_pds(
    X_src: FloatArray, X_tgt: FloatArray, window: int, rcond: float | None
) -> tuple[FloatArray, FloatArray]:
    """The textbook per-channel loop (one lstsq per truncated window), dense F."""
    Xs_c = X_src - X_src.mean(axis=0)
    Xt_c = X_tgt - X_tgt.mean(axis=0)
    p = X_src.shape[1]
    k = window // 2
    F = np.zeros((p, p))
    for j in range(p):
        lo, hi = max(0, j - k), min(p, j + k + 1)
        F[lo:hi, j] = np.linalg.lstsq(Xt_c[:, lo:hi], Xs_c[:, j], rcond=rcond)[0]
    return F, X_src.mean(axis=0) - X_tgt.mean(axis=0) @ F


def fitted(
    method: str, Xs: FloatArray, Xt: FloatArray, coef: FloatArray, icpt: float
) -> CalibrationTransfer:
    params: dict[str, Any] = {"pds": {"window": 7, "rcond": 0.01}, "ds": {"rcond": 0.01}}.get(
        method, {}
    )
    return fit_transfer(method, Xs, Xt, coef=coef, intercept=icpt, **params)


@pytest.fixture(scope="module")
def campaign() -> dict[str, Any]:
    """Calibration set on the source probe, 20 paired standards, a PLS soft sensor."""
    rng = np.random.default_rng(42)
    p = 120
    X_cal = smooth_spectra(rng, 80, p)
    axis = np.linspace(0.0, 1.0, p)
    marker = np.exp(-0.5 * ((axis - 0.5) / 0.03) ** 2)
    y_cal = X_cal @ marker / marker.sum() + 0.01 * rng.normal(size=80)
    coef, intercept = pls_model(X_cal, y_cal)
    X_src = smooth_spectra(np.random.default_rng(7), 20, p)
    X_tgt = target_probe(X_src, rng)
    y_ref = X_src @ marker / marker.sum() + 0.01 * rng.normal(size=20)
    return {"X_src": X_src, "X_tgt": X_tgt, "y_ref": y_ref, "coef": coef, "intercept": intercept}


METHODS_ALL = ["pds", "ds", "sbc", "bias", "naive"]
SPECTRAL = ["pds", "ds", "naive"]

# --------------------------------------------------------------------------- PDS


@pytest.mark.parametrize(
    ("n", "p", "window", "rcond"),
    [
        (20, 40, 5, 0.01),
        (20, 40, 11, 0.1),
        (20, 40, 11, 0.03),
        (20, 40, 11, 1e-3),  # smallest rcond on the eigh path
        (20, 40, 9, 1e-4),  # SVD path
        (20, 40, 9, 1e-6),
        (4, 30, 9, 0.01),  # fewer standards than the window
        (4, 30, 9, 1e-5),
        (3, 25, 25, 0.01),  # every window truncated at an edge
        (12, 9, 9, 0.01),
        (12, 30, 1, 0.01),  # per-channel gain and offset
        (2, 15, 3, 0.01),  # minimum number of standards
    ],
)
def test_pds_matches_per_channel_lstsq_loop(n: int, p: int, window: int, rcond: float) -> None:
    rng = np.random.default_rng(n * 1000 + p + window)
    X_src = smooth_spectra(rng, n, p)
    X_tgt = target_probe(X_src, rng)
    F_ref, b_ref = reference_pds(X_src, X_tgt, window, rcond)
    pds = PDS(window=window, rcond=rcond).fit(X_tgt, X_src)
    scale = max(1.0, float(np.abs(F_ref).max()))
    np.testing.assert_allclose(pds.to_dense(), F_ref, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(pds.bias_, b_ref, rtol=0, atol=1e-8 * scale)


def test_pds_rcond_below_machine_precision_uses_lstsq_default_cutoff() -> None:
    # n < w and centring: every window has exact-zero singular values (and the padded edge
    # windows more); they must be dropped as lstsq's default cut-off eps * max(n, w) does.
    rng = np.random.default_rng(6)
    X_src = rng.normal(size=(4, 20))
    X_tgt = X_src @ (np.eye(20) + 0.1 * rng.normal(size=(20, 20)))
    F_ref, b_ref = reference_pds(X_src, X_tgt, 5, None)
    pds = PDS(window=5, rcond=1e-17).fit(X_tgt, X_src)
    np.testing.assert_allclose(pds.to_dense(), F_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(pds.bias_, b_ref, rtol=0, atol=1e-8)


def test_pds_edge_windows_are_truncated_not_wrapped() -> None:
    rng = np.random.default_rng(3)
    X_src = smooth_spectra(rng, 15, 30)
    X_tgt = target_probe(X_src, rng)
    pds = PDS(window=7, rcond=0.01).fit(X_tgt, X_src)
    Xs_c, Xt_c = X_src - X_src.mean(0), X_tgt - X_tgt.mean(0)
    first = np.linalg.lstsq(Xt_c[:, 0:4], Xs_c[:, 0], rcond=0.01)[0]
    last = np.linalg.lstsq(Xt_c[:, 26:30], Xs_c[:, 29], rcond=0.01)[0]
    np.testing.assert_allclose(pds.coef_[0, 3:], first, atol=1e-10)
    np.testing.assert_allclose(pds.coef_[29, :4], last, atol=1e-10)
    # the band entries that would fall off the spectrum are exactly zero
    assert np.all(pds.coef_[0, :3] == 0.0)
    assert np.all(pds.coef_[29, 4:] == 0.0)
    assert np.all(pds.coef_[1, :2] == 0.0)
    assert np.all(pds.coef_[28, 5:] == 0.0)


def test_pds_stores_a_band_not_a_dense_matrix() -> None:
    rng = np.random.default_rng(4)
    X_src = smooth_spectra(rng, 10, 50)
    pds = PDS(window=5).fit(target_probe(X_src, rng), X_src)
    assert pds.coef_.shape == (50, 5)
    assert pds.bias_.shape == (50,)
    dense = pds.to_dense()
    i, j = np.indices(dense.shape)
    assert np.all(dense[np.abs(i - j) > 2] == 0.0)
    for jj in range(50):
        for ii in range(5):
            row = jj - 2 + ii
            if 0 <= row < 50:
                assert dense[row, jj] == pds.coef_[jj, ii]


@pytest.mark.parametrize("method", SPECTRAL)
def test_transform_and_apply_to_vector_match_the_dense_map(
    method: str, campaign: dict[str, Any]
) -> None:
    c = campaign
    t = fitted(method, c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
    assert isinstance(t, SpectralTransfer)
    F = t.to_dense()
    X_new = target_probe(
        smooth_spectra(np.random.default_rng(11), 9, 120), np.random.default_rng(12)
    )
    np.testing.assert_allclose(t.transform(X_new), X_new @ F + t.bias_, rtol=0, atol=1e-10)
    v = np.random.default_rng(13).normal(size=120)
    np.testing.assert_allclose(t.apply_to_vector(v), F @ v, rtol=0, atol=1e-10)


def test_pds_transform_accepts_fortran_ordered_and_many_rows() -> None:
    rng = np.random.default_rng(5)
    X_src = smooth_spectra(rng, 12, 60)
    pds = PDS(window=9).fit(target_probe(X_src, rng), X_src)
    X = np.asfortranarray(smooth_spectra(rng, 1500, 60))  # several row blocks
    np.testing.assert_allclose(pds.transform(X), X @ pds.to_dense() + pds.bias_, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- DS and SBC


@pytest.mark.parametrize("anchor", ["zero", "identity"])
@pytest.mark.parametrize("rcond", [0.1, 0.01, 1e-4])
def test_ds_equals_pinv_formula_and_is_factored(
    rcond: float, anchor: Anchor, campaign: dict[str, Any]
) -> None:
    Xs, Xt = campaign["X_src"], campaign["X_tgt"]
    ds = DS(rcond=rcond, anchor=anchor).fit(Xt, Xs)
    Xs_c, Xt_c = Xs - Xs.mean(0), Xt - Xt.mean(0)
    if anchor == "zero":  # textbook DS
        F = np.linalg.pinv(Xt_c, rcond=rcond) @ Xs_c
    else:  # standardize the difference between the probes
        F = np.eye(120) + np.linalg.pinv(Xt_c, rcond=rcond) @ (Xs_c - Xt_c)
    np.testing.assert_allclose(ds.to_dense(), F, rtol=0, atol=1e-9 * np.abs(F).max())
    np.testing.assert_allclose(ds.bias_, Xs.mean(0) - Xt.mean(0) @ F, atol=1e-9)
    r = ds.rank_
    assert r <= Xs.shape[0] - 1
    assert ds.factor_left_.shape == (120, r)
    assert ds.factor_right_.shape == (r, 120)


def test_ds_rcond_below_machine_precision_uses_pinv_default_cutoff(
    campaign: dict[str, Any],
) -> None:
    Xs, Xt = campaign["X_src"], campaign["X_tgt"]
    ds = DS(rcond=1e-17, anchor="zero").fit(Xt, Xs)
    F = np.linalg.pinv(Xt - Xt.mean(0)) @ (Xs - Xs.mean(0))
    assert ds.rank_ == Xs.shape[0] - 1  # centring removed one dimension
    np.testing.assert_allclose(ds.to_dense(), F, rtol=0, atol=1e-8 * np.abs(F).max())


def test_anchored_ds_passes_directions_the_standards_do_not_span(
    campaign: dict[str, Any],
) -> None:
    Xs, Xt = campaign["X_src"], campaign["X_tgt"]
    Xt_c = Xt - Xt.mean(0)
    basis = np.linalg.svd(Xt_c, full_matrices=False)[2]  # row space of the standards
    x = np.random.default_rng(3).normal(size=120)
    x -= basis.T @ (basis @ x)  # orthogonal to every centred standard
    anchored = DS(anchor="identity").fit(Xt, Xs)
    textbook = DS(anchor="zero").fit(Xt, Xs)
    np.testing.assert_allclose(x @ anchored.to_dense(), x, atol=1e-10)
    np.testing.assert_allclose(x @ textbook.to_dense(), 0.0, atol=1e-10)
    # with every direction of the standards kept, both map the standards onto the source block
    full = {"rcond": 1e-10}
    np.testing.assert_allclose(DS(**full).fit(Xt, Xs).transform(Xt), Xs, atol=1e-8)
    np.testing.assert_allclose(DS(anchor="zero", **full).fit(Xt, Xs).transform(Xt), Xs, atol=1e-8)


def test_ds_rejects_an_unknown_anchor(campaign: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="anchor must be one of"):
        DS(anchor="source").fit(campaign["X_tgt"], campaign["X_src"])  # type: ignore[arg-type]


def test_sbc_slope_and_offset_are_least_squares_on_the_standards(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    sbc = SBC().fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    yhat_t = c["X_tgt"] @ c["coef"] + c["intercept"]
    yhat_s = c["X_src"] @ c["coef"] + c["intercept"]
    slope, offset = np.polyfit(yhat_t, yhat_s, 1)
    assert sbc.slope_ == pytest.approx(slope, rel=1e-10)
    assert sbc.offset_ == pytest.approx(offset, rel=1e-9, abs=1e-12)


def test_sbc_fits_reference_values_when_given(campaign: dict[str, Any]) -> None:
    c = campaign
    sbc = SBC().fit(
        c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"], y_ref=c["y_ref"]
    )
    slope, offset = np.polyfit(c["X_tgt"] @ c["coef"] + c["intercept"], c["y_ref"], 1)
    assert sbc.slope_ == pytest.approx(slope, rel=1e-10)
    assert sbc.offset_ == pytest.approx(offset, rel=1e-9, abs=1e-12)


def test_sbc_needs_the_model() -> None:
    X = smooth_spectra(np.random.default_rng(0), 5, 10)
    with pytest.raises(ValueError, match="coef"):
        SBC().fit(X, X)


def test_sbc_rejects_constant_predictions() -> None:
    X = smooth_spectra(np.random.default_rng(0), 5, 10)
    with pytest.raises(ValueError, match="slope"):
        SBC().fit(X, X, coef=np.zeros(10), intercept=1.0)


def test_sbc_collapse_refuses_another_model(campaign: dict[str, Any]) -> None:
    c = campaign
    sbc = SBC().fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    with pytest.raises(ValueError, match="different model"):
        sbc.collapse(2.0 * c["coef"], c["intercept"])


def test_bias_correction_is_the_mean_residual_by_hand() -> None:
    # Three standards, two channels, y = x1 + 2 x2 + 1: residuals 0.5, -0.25, 1.0 by hand.
    X_tgt = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    coef, intercept = np.array([1.0, 2.0]), 1.0  # predictions 2, 3, 4
    y_ref = np.array([2.5, 2.75, 5.0])
    bias = BiasCorrection().fit(X_tgt, X_tgt, coef=coef, intercept=intercept, y_ref=y_ref)
    assert bias.offset_ == pytest.approx((0.5 - 0.25 + 1.0) / 3)
    coef_t, intercept_t = bias.collapse(coef, intercept)
    np.testing.assert_array_equal(coef_t, coef)
    assert intercept_t == pytest.approx(1.0 + 1.25 / 3)
    np.testing.assert_allclose(bias.correct([2.0, 3.0]), [2.0 + 1.25 / 3, 3.0 + 1.25 / 3])


def test_bias_correction_without_references_restores_the_source_predictions(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    bias = BiasCorrection().fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    yhat_t = c["X_tgt"] @ c["coef"] + c["intercept"]
    yhat_s = c["X_src"] @ c["coef"] + c["intercept"]
    assert bias.offset_ == pytest.approx(float(np.mean(yhat_s - yhat_t)), rel=1e-12)
    with pytest.raises(ValueError, match="different model"):
        bias.collapse(2.0 * c["coef"], c["intercept"])
    assert not hasattr(bias, "transform")


def test_bias_correction_leave_one_out_equals_refitting_without_each_standard(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    sel = select_transfer(
        c["X_src"],
        c["X_tgt"],
        coef=c["coef"],
        intercept=c["intercept"],
        y_ref=c["y_ref"],
        candidates=[("bias", {})],
        cv="loo",
    )
    n = c["X_src"].shape[0]
    by_refit = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        fold = BiasCorrection().fit(
            c["X_tgt"][keep],
            c["X_src"][keep],
            coef=c["coef"],
            intercept=c["intercept"],
            y_ref=c["y_ref"][keep],
        )
        coef_t, intercept_t = fold.collapse(c["coef"], c["intercept"])
        by_refit[i] = c["X_tgt"][i] @ coef_t + intercept_t
    np.testing.assert_allclose(sel.cv_predictions, by_refit, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- collapse


@pytest.mark.parametrize("method", SPECTRAL)
def test_collapse_equals_transform_then_predict(method: str, campaign: dict[str, Any]) -> None:
    c = campaign
    t = fitted(method, c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
    assert isinstance(t, SpectralTransfer)
    coef_t, intercept_t = t.collapse(c["coef"], c["intercept"])
    X_new = target_probe(
        smooth_spectra(np.random.default_rng(21), 30, 120), np.random.default_rng(2)
    )
    via_spectra = t.transform(X_new) @ c["coef"] + c["intercept"]
    np.testing.assert_allclose(X_new @ coef_t + intercept_t, via_spectra, rtol=0, atol=1e-9)
    assert isinstance(intercept_t, float)


def test_sbc_collapse_is_slope_and_offset(campaign: dict[str, Any]) -> None:
    c = campaign
    sbc = SBC().fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    coef_t, intercept_t = sbc.collapse(c["coef"], c["intercept"])
    np.testing.assert_allclose(coef_t, sbc.slope_ * c["coef"])
    assert intercept_t == pytest.approx(sbc.slope_ * c["intercept"] + sbc.offset_)


def test_sbc_collapse_equals_predict_then_correct(campaign: dict[str, Any]) -> None:
    c = campaign
    sbc = SBC().fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    coef_t, intercept_t = sbc.collapse(c["coef"], c["intercept"])
    X_new = target_probe(
        smooth_spectra(np.random.default_rng(21), 30, 120), np.random.default_rng(2)
    )
    corrected = sbc.correct(X_new @ c["coef"] + c["intercept"])
    np.testing.assert_allclose(X_new @ coef_t + intercept_t, corrected, rtol=0, atol=1e-9)
    assert not hasattr(sbc, "transform")  # it corrects predictions, not spectra


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("method", METHODS_ALL)
def test_to_arrays_round_trips_through_npz_without_pickle(
    method: str, campaign: dict[str, Any]
) -> None:
    c = campaign
    t = fitted(method, c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **t.to_arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        assert str(npz["method"]) == method
        back = transfer_from_arrays(npz)
    assert type(back) is type(t)
    assert back.params() == t.params()
    assert back.n_standards_ == 20
    if isinstance(t, SpectralTransfer):
        assert isinstance(back, SpectralTransfer)
        np.testing.assert_array_equal(back.transform(c["X_tgt"]), t.transform(c["X_tgt"]))
    np.testing.assert_array_equal(
        back.collapse(c["coef"], c["intercept"])[0], t.collapse(c["coef"], c["intercept"])[0]
    )
    assert back.collapse(c["coef"], c["intercept"])[1] == t.collapse(c["coef"], c["intercept"])[1]


def test_transfer_from_arrays_rejects_unknown_method_and_missing_keys(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    arrays = PDS().fit(c["X_tgt"], c["X_src"]).to_arrays()
    with pytest.raises(ValueError, match="unknown transfer method"):
        transfer_from_arrays({**arrays, "method": np.array("magic")})
    del arrays["bias"]
    with pytest.raises(ValueError, match="'bias'"):
        transfer_from_arrays(arrays)


def test_format_1_ds_artifacts_read_as_textbook_ds(campaign: dict[str, Any]) -> None:
    c = campaign
    textbook = DS(anchor="zero").fit(c["X_tgt"], c["X_src"])
    arrays = textbook.to_arrays()
    assert int(arrays["format_version"]) == FORMAT_VERSION == 2
    del arrays["anchor"]  # format 1 predates the anchor
    arrays["format_version"] = np.array(1)
    back = transfer_from_arrays(arrays)
    assert back.params() == {"rcond": 0.01, "anchor": "zero"}
    np.testing.assert_array_equal(back.transform(c["X_tgt"]), textbook.transform(c["X_tgt"]))
    arrays["format_version"] = np.array(3)
    with pytest.raises(ValueError, match="format_version 3 is not supported"):
        transfer_from_arrays(arrays)


def test_params_are_plain_json_types() -> None:
    assert PDS(window=7, rcond=0.03).params() == {"window": 7, "rcond": 0.03}
    assert DS(rcond=0.1).params() == {"rcond": 0.1, "anchor": "identity"}
    assert DS(anchor="zero").params() == {"rcond": 0.01, "anchor": "zero"}
    assert SBC().params() == {}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("cls", [PDS, DS, SBC, BiasCorrection, NaiveTransfer])
def test_transform_before_fit_raises_not_fitted(cls: type[CalibrationTransfer]) -> None:
    if issubclass(cls, SpectralTransfer):
        with pytest.raises(NotFittedError, match="not fitted"):
            cls().transform(np.ones((2, 5)))
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().collapse(np.ones(5), 0.0)


@pytest.mark.parametrize("cls", [PDS, DS, SBC, BiasCorrection, NaiveTransfer])
def test_fit_rejects_unpaired_shapes_naming_both(cls: type[Any]) -> None:
    with pytest.raises(ValueError, match=r"\(5, 10\).*\(4, 10\)"):
        cls().fit(np.ones((4, 10)), np.ones((5, 10)), coef=np.ones(10), intercept=0.0)


@pytest.mark.parametrize("cls", [PDS, DS, SBC, BiasCorrection, NaiveTransfer])
def test_fit_needs_two_standards(cls: type[Any]) -> None:
    with pytest.raises(ValueError, match="at least 2 standards"):
        cls().fit(np.ones((1, 10)), np.ones((1, 10)), coef=np.ones(10), intercept=0.0)


@pytest.mark.parametrize(
    ("window", "message"),
    [(4, "odd"), (0, "odd"), (-3, "odd"), (13, "wider than the spectrum"), (2.5, "odd integer")],
)
def test_pds_rejects_bad_windows(window: Any, message: str) -> None:
    X = smooth_spectra(np.random.default_rng(0), 5, 11)
    with pytest.raises(ValueError, match=message):
        PDS(window=window).fit(X, X)


@pytest.mark.parametrize("rcond", [0.0, 1.0, -0.1, math.nan, 2.0])
def test_rcond_must_be_in_open_unit_interval(rcond: float) -> None:
    X = smooth_spectra(np.random.default_rng(0), 5, 11)
    with pytest.raises(ValueError, match=r"rcond must be in \(0, 1\)"):
        PDS(rcond=rcond).fit(X, X)
    with pytest.raises(ValueError, match=r"rcond must be in \(0, 1\)"):
        DS(rcond=rcond).fit(X, X)


def test_transform_rejects_other_channel_count(campaign: dict[str, Any]) -> None:
    pds = PDS().fit(campaign["X_tgt"], campaign["X_src"])
    with pytest.raises(ValueError, match=r"\(3, 100\).*120 channels"):
        pds.transform(np.ones((3, 100)))


def test_fit_rejects_non_finite_standards() -> None:
    X = np.ones((4, 6))
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match="sample 2, channel 3"):
        PDS(window=3).fit(X, np.ones((4, 6)))


def test_fit_transfer_rejects_unknown_method_and_parameters(campaign: dict[str, Any]) -> None:
    c = campaign
    with pytest.raises(ValueError, match="unknown transfer method"):
        fit_transfer("osc", c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"])
    with pytest.raises(ValueError, match="invalid parameters"):
        fit_transfer(
            "ds", c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"], window=5
        )


# --------------------------------------------------------------------------- selection


def manual_cv(
    method: str,
    params: dict[str, Any],
    c: dict[str, Any],
    fold_of: np.ndarray,
    y: FloatArray,
) -> tuple[float, FloatArray]:
    """Refit each candidate per fold with the public classes: the slow, obvious way."""
    pred = np.empty(y.shape[0])
    for f in np.unique(fold_of):
        tr, te = fold_of != f, fold_of == f
        y_tr = None if c.get("use_y_ref") is None else c["y_ref"][tr]
        t = fit_transfer(
            method,
            c["X_src"][tr],
            c["X_tgt"][tr],
            coef=c["coef"],
            intercept=c["intercept"],
            y_ref=y_tr,
            **params,
        )
        coef_t, intercept_t = t.collapse(c["coef"], c["intercept"])  # SBC has no transform
        pred[te] = c["X_tgt"][te] @ coef_t + intercept_t
    return float(np.sqrt(np.mean((pred - y) ** 2))), pred


@pytest.mark.parametrize(("cv", "use_y_ref"), [("loo", False), (6, True), (7, False)])
def test_select_transfer_scores_equal_refitting_each_fold(
    cv: Any, use_y_ref: bool, campaign: dict[str, Any]
) -> None:
    c = dict(campaign, use_y_ref=True if use_y_ref else None)
    y_ref = c["y_ref"] if use_y_ref else None
    sel = select_transfer(
        c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"], y_ref=y_ref, cv=cv
    )
    n = 20
    fold_of = np.arange(n) if cv == "loo" else np.arange(n) % cv
    y = c["y_ref"] if use_y_ref else c["X_src"] @ c["coef"] + c["intercept"]
    np.testing.assert_allclose(sel.cv_reference, y)
    assert len(sel.cv_table) == len(default_candidates())
    for row in sel.cv_table:
        rmse, _ = manual_cv(row["method"], row["params"], c, fold_of, y)
        assert row["rmsecv"] == pytest.approx(rmse, rel=1e-7, abs=1e-12), row
        assert row["n_folds"] == len(np.unique(fold_of))
        assert row["se"] >= 0.0
    # The weighted transfer's CV predictions, by hand: standard i gets the candidates' own
    # out-of-fold predictions, weighted from the MSEs of the other n - 1 standards.
    P = np.stack([manual_cv(r["method"], r["params"], c, fold_of, y)[1] for r in sel.cv_table])
    E2 = (P - y) ** 2
    expected = np.empty(n)
    for i in range(n):
        mse = np.delete(E2, i, axis=1).mean(axis=1)
        w = (mse / mse.min()) ** (-(n - 1) / 8.0)
        w /= w.sum()
        w = np.where(w >= 0.01, w, 0.0)
        expected[i] = (w / w.sum()) @ P[:, i]
    np.testing.assert_allclose(sel.cv_predictions, expected, rtol=1e-7, atol=1e-10)


def test_select_transfer_min_rule_chooses_the_minimum_and_beats_naive(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    sel = select_transfer(
        c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"], rule="min"
    )
    assert sel.rule == "min"
    scores = {(r["method"], tuple(r["params"].items())): r["rmsecv"] for r in sel.cv_table}
    best = scores[(sel.method, tuple(sel.params.items()))]
    assert best <= min(scores.values()) * (1 + 1e-9) + 1e-15
    assert best < 0.5 * scores[("naive", ())]
    assert sel.reference == "source_model"
    assert sel.scheme == "12-fold venetian-blinds (standard i in fold i mod 12) over 20 standards"


def test_select_transfer_one_se_rule_chooses_the_simplest_within_one_standard_error(
    campaign: dict[str, Any],
) -> None:
    c = campaign
    sel = select_transfer(
        c["X_src"],
        c["X_tgt"],
        coef=c["coef"],
        intercept=c["intercept"],
        y_ref=c["y_ref"],
        rule="one_se",
    )
    assert sel.rule == "one_se"
    best = min(sel.cv_table, key=lambda r: r["rmsecv"])
    threshold = best["rmsecv"] + best["se"]
    eligible = [r for r in sel.cv_table if r["rmsecv"] <= threshold * (1 + 1e-9)]
    chosen = next(r for r in sel.cv_table if (r["method"], r["params"]) == (sel.method, sel.params))
    assert chosen in eligible
    # every eligible candidate earlier in the simplicity order would have been chosen instead
    order = ["naive", "bias", "sbc", "ds-identity", "pds", "ds-zero"]

    def family(r: Any) -> int:
        return order.index(
            r["method"] + (f"-{r['params']['anchor']}" if r["method"] == "ds" else "")
        )

    assert all(family(r) >= family(chosen) for r in eligible)
    naive = next(r for r in sel.cv_table if r["method"] == "naive")
    assert chosen["rmsecv"] <= naive["rmsecv"]


def test_select_transfer_one_se_rule_prefers_a_simpler_candidate_that_is_almost_as_good() -> None:
    rng = np.random.default_rng(13)
    X = smooth_spectra(rng, 10, 30)
    Xt = target_probe(X, rng, noise=0.02)
    coef = rng.normal(size=30)
    grid: list[Any] = [("ds", {"rcond": 1e-6, "anchor": "zero"}), ("sbc", {})]
    by_min = select_transfer(X, Xt, coef=coef, intercept=0.0, candidates=grid, rule="min")
    by_se = select_transfer(X, Xt, coef=coef, intercept=0.0, candidates=grid, rule="one_se")
    ds, sbc = by_se.cv_table
    # DS has the smaller RMSECV, SBC is within one standard error of it and simpler
    assert ds["rmsecv"] < sbc["rmsecv"] <= ds["rmsecv"] + ds["se"]
    assert by_min.method == "ds"
    assert by_se.method == "sbc"


def test_default_grid_has_anchored_ds_only() -> None:
    ds = [dict(p) for m, p in default_candidates() if m == "ds"]
    assert len(ds) == 5
    assert all(p["anchor"] == "identity" for p in ds)
    assert len(default_candidates()) == 23


def test_select_transfer_rejects_an_unknown_rule() -> None:
    X = smooth_spectra(np.random.default_rng(0), 6, 10)
    with pytest.raises(ValueError, match="rule must be"):
        select_transfer(X, X, coef=np.ones(10), intercept=0.0, rule="best")  # type: ignore[arg-type]


def test_select_transfer_refits_the_members_on_all_standards(campaign: dict[str, Any]) -> None:
    c = campaign
    sel = select_transfer(
        c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"], y_ref=c["y_ref"]
    )
    assert sel.method == "weighted"
    assert isinstance(sel.transfer, WeightedTransfer)
    assert sel.transfer.n_standards_ == 20
    coef_t = np.zeros_like(c["coef"])
    intercept_t = 0.0
    for member in sel.weights:
        again = fit_transfer(
            member["method"],
            c["X_src"],
            c["X_tgt"],
            coef=c["coef"],
            intercept=c["intercept"],
            y_ref=c["y_ref"],
            **member["params"],
        )
        mc, mb = again.collapse(c["coef"], c["intercept"])
        coef_t += member["weight"] * mc
        intercept_t += member["weight"] * mb
    got_coef, got_intercept = sel.transfer.collapse(c["coef"], c["intercept"])
    np.testing.assert_allclose(got_coef, coef_t, rtol=1e-12, atol=1e-15)
    assert got_intercept == pytest.approx(intercept_t, rel=1e-12)
    assert sum(m["weight"] for m in sel.weights) == pytest.approx(1.0)
    assert sel.reference == "y_ref"


def test_weighted_rule_weights_follow_the_cv_mse_by_hand(campaign: dict[str, Any]) -> None:
    c = campaign
    sel = select_transfer(
        c["X_src"], c["X_tgt"], coef=c["coef"], intercept=c["intercept"], y_ref=c["y_ref"]
    )
    mse = np.array([r["rmsecv"] ** 2 for r in sel.cv_table])
    w = (mse / mse.min()) ** (-20 / 8.0)
    w /= w.sum()
    w = np.where(w >= 0.01, w, 0.0)
    w /= w.sum()
    np.testing.assert_allclose([r["weight"] for r in sel.cv_table], w, rtol=1e-12)
    kept = [(r["method"], r["params"]) for r in sel.cv_table if r["weight"] > 0]
    assert [(m["method"], m["params"]) for m in sel.weights] == kept
    assert len(kept) < len(sel.cv_table)  # the poor candidates (naive, ...) are dropped
    assert ("naive", {}) not in kept


def test_weighted_rule_is_deterministic(campaign: dict[str, Any]) -> None:
    c = campaign
    runs = [
        select_transfer(
            np.asfortranarray(c["X_src"].copy()),
            c["X_tgt"].copy(),
            coef=c["coef"],
            intercept=c["intercept"],
            y_ref=c["y_ref"],
        )
        for _ in range(2)
    ]
    assert runs[0].cv_table == runs[1].cv_table
    assert runs[0].weights == runs[1].weights
    np.testing.assert_array_equal(runs[0].cv_predictions, runs[1].cv_predictions)
    np.testing.assert_array_equal(
        runs[0].transfer.collapse(c["coef"], c["intercept"])[0],
        runs[1].transfer.collapse(c["coef"], c["intercept"])[0],
    )


def test_weighted_transfer_maps_spectra_by_the_weighted_members(campaign: dict[str, Any]) -> None:
    c = campaign
    members = [
        fitted(m, c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
        for m in ("pds", "ds", "sbc", "naive")
    ]
    members.append(
        fit_transfer("pds", c["X_src"], c["X_tgt"], coef=c["coef"], intercept=0.0, window=3)
    )
    weights = np.array([0.4, 0.3, 0.1, 0.05, 0.15])
    wt = WeightedTransfer.of(members, weights)
    X_new = target_probe(
        smooth_spectra(np.random.default_rng(21), 30, 120), np.random.default_rng(2)
    )
    mapped = sum(
        w * (m.transform(X_new) if isinstance(m, SpectralTransfer) else X_new)
        for m, w in zip(members, weights, strict=True)
    )
    np.testing.assert_allclose(wt.transform(X_new), mapped, rtol=0, atol=1e-10)
    predicted = sum(
        w * (X_new @ mc + mb)
        for m, w in zip(members, weights, strict=True)
        for mc, mb in [m.collapse(c["coef"], c["intercept"])]
    )
    coef_t, intercept_t = wt.collapse(c["coef"], c["intercept"])
    np.testing.assert_allclose(X_new @ coef_t + intercept_t, predicted, rtol=0, atol=1e-10)
    buf = io.BytesIO()
    np.savez(buf, **wt.to_arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as d:
        again = transfer_from_arrays(dict(d))
    assert isinstance(again, WeightedTransfer)
    np.testing.assert_array_equal(again.transform(X_new), wt.transform(X_new))
    np.testing.assert_array_equal(again.collapse(c["coef"], c["intercept"])[0], coef_t)


def test_weighted_transfer_refuses_bad_weights(campaign: dict[str, Any]) -> None:
    c = campaign
    a = fitted("pds", c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
    b = fitted("ds", c["X_src"], c["X_tgt"], c["coef"], c["intercept"])
    for weights in ([0.5, 0.6], [1.5, -0.5], [1.0]):
        with pytest.raises(ValueError, match="weight"):
            WeightedTransfer.of([a, b], weights)
    with pytest.raises(TypeError, match="fitted members"):
        WeightedTransfer().fit(c["X_tgt"], c["X_src"])


def test_select_transfer_prefers_naive_on_identical_probes() -> None:
    rng = np.random.default_rng(8)
    X = smooth_spectra(rng, 12, 40)
    sel = select_transfer(X, X.copy(), coef=rng.normal(size=40), intercept=0.5, rule="one_se")
    # every candidate reproduces the source exactly (up to rounding): the tie goes to naive
    assert sel.method == "naive"
    assert isinstance(sel.transfer, NaiveTransfer)


def test_select_transfer_picks_sbc_for_a_pure_gain() -> None:
    rng = np.random.default_rng(9)
    X = smooth_spectra(rng, 12, 40)
    # a pure gain on the target probe: slope/bias correction is exact, the others are not
    sel = select_transfer(
        X,
        1.5 * X,
        coef=rng.normal(size=40),
        intercept=0.5,
        candidates=[("ds", {"rcond": 0.01}), ("pds", {"window": 3, "rcond": 0.1}), ("sbc", {})],
    )
    assert isinstance(sel.transfer, SBC)
    assert sel.transfer.slope_ == pytest.approx(1.0 / 1.5)  # target -> source predictions


def test_select_transfer_tie_break_prefers_the_more_regularized_candidate() -> None:
    rng = np.random.default_rng(9)
    X = smooth_spectra(rng, 12, 40)
    # a one-channel window has one singular value, always kept: both rconds give equal scores
    sel = select_transfer(
        X,
        target_probe(X, rng),
        coef=rng.normal(size=40),
        intercept=0.5,
        candidates=[("pds", {"window": 1, "rcond": 0.01}), ("pds", {"window": 1, "rcond": 0.1})],
        rule="one_se",
    )
    assert sel.cv_table[0]["rmsecv"] == sel.cv_table[1]["rmsecv"]
    assert sel.params == {"window": 1, "rcond": 0.1}


def test_select_transfer_skips_windows_wider_than_the_spectrum() -> None:
    rng = np.random.default_rng(10)
    X = smooth_spectra(rng, 8, 7)
    sel = select_transfer(X, target_probe(X, rng), coef=rng.normal(size=7), intercept=0.0)
    skipped = {(s["method"], s["params"]["window"]) for s in sel.skipped}
    assert skipped == {("pds", 9), ("pds", 11)}
    assert all(r["params"].get("window", 0) <= 7 for r in sel.cv_table)
    assert len(sel.cv_table) == len(default_candidates()) - 6


def test_select_transfer_skips_sbc_when_slope_is_undefined() -> None:
    rng = np.random.default_rng(12)
    X = smooth_spectra(rng, 6, 12)
    sel = select_transfer(X, X + 0.1, coef=np.zeros(12), intercept=1.0)
    assert [s["method"] for s in sel.skipped] == ["sbc"]
    assert "sbc" not in {r["method"] for r in sel.cv_table}


@pytest.mark.parametrize(
    ("n", "cv", "message"),
    [(2, "loo", "at least 3 standards"), (6, 1, "2 <= folds"), (6, 7, "2 <= folds")],
)
def test_select_transfer_validates_cv(n: int, cv: Any, message: str) -> None:
    X = smooth_spectra(np.random.default_rng(0), n, 10)
    with pytest.raises(ValueError, match=message):
        select_transfer(X, X, coef=np.ones(10), intercept=0.0, cv=cv)


def test_select_transfer_rejects_malformed_candidates() -> None:
    X = smooth_spectra(np.random.default_rng(0), 6, 10)
    with pytest.raises(ValueError, match="odd"):
        select_transfer(
            X, X, coef=np.ones(10), intercept=0.0, candidates=[("pds", {"window": 4, "rcond": 0.1})]
        )
    with pytest.raises(ValueError, match="needs parameters"):
        select_transfer(X, X, coef=np.ones(10), intercept=0.0, candidates=[("ds", {})])


def test_venetian_blinds_scheme_is_described() -> None:
    X = smooth_spectra(np.random.default_rng(0), 9, 10)
    sel = select_transfer(
        X, X + 0.01, coef=np.ones(10), intercept=0.0, cv=4, candidates=[("naive", {})]
    )
    assert sel.scheme.startswith("4-fold venetian-blinds")
    assert sel.cv_table[0]["n_folds"] == 4
    loo = select_transfer(
        X, X + 0.01, coef=np.ones(10), intercept=0.0, cv=9, candidates=[("naive", {})]
    )
    assert loo.scheme == "leave-one-out over 9 standards"


# --------------------------------------------------------------------------- properties


def well_conditioned(seed: int, n: int, p: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) + 5.0


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    half=st.integers(0, 4),
    extra_channels=st.integers(0, 20),
    extra_standards=st.integers(2, 15),
    rcond=st.sampled_from([1e-10, 1e-3]),
)
def test_identity_instrument_gives_identity_pds(
    seed: int, half: int, extra_channels: int, extra_standards: int, rcond: float
) -> None:
    window = 2 * half + 1
    p = window + extra_channels
    n = 3 * window + extra_standards if rcond >= 1e-3 else window + extra_standards
    X = well_conditioned(seed, n, p)
    pds = PDS(window=window, rcond=rcond).fit(X, X)
    np.testing.assert_allclose(pds.to_dense(), np.eye(p), rtol=0, atol=1e-8)
    np.testing.assert_allclose(pds.bias_, 0.0, atol=1e-7)
    np.testing.assert_allclose(pds.transform(X), X, rtol=0, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    half=st.integers(0, 4),
    extra_channels=st.integers(0, 30),
    gain_amplitude=st.floats(0.0, 0.6),
    offset=st.floats(-2.0, 2.0),
)
def test_pds_recovers_a_smooth_gain_and_offset(
    seed: int, half: int, extra_channels: int, gain_amplitude: float, offset: float
) -> None:
    window = 2 * half + 1
    p = window + extra_channels
    n = 3 * window + 5
    ch = np.linspace(0.0, 1.0, p)
    gain = 1.0 + gain_amplitude * np.sin(2.0 * np.pi * ch)  # in [0.4, 1.6]
    off = offset * (1.0 + ch)
    X_src = well_conditioned(seed, n, p)
    pds = PDS(window=window, rcond=1e-3).fit(X_src * gain + off, X_src)
    fresh = well_conditioned(seed + 1, 25, p)
    np.testing.assert_allclose(pds.transform(fresh * gain + off), fresh, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- scikit-learn shape


@pytest.mark.parametrize(
    "estimator", [PDS(window=7, rcond=0.03), DS(rcond=0.1, anchor="zero"), SBC(), NaiveTransfer()]
)
def test_transfers_are_scikit_learn_estimators(estimator: Any) -> None:
    params = estimator.get_params()
    twin = clone(estimator)
    assert type(twin) is type(estimator)
    assert twin.get_params() == params
    assert twin.set_params(**params) is twin


def test_set_params_changes_the_fit(campaign: dict[str, Any]) -> None:
    c = campaign
    pds = PDS().set_params(window=9, rcond=0.1)
    assert pds.params() == {"window": 9, "rcond": 0.1}
    assert pds.fit(c["X_tgt"], c["X_src"]).coef_.shape == (120, 9)


@pytest.mark.parametrize("method", METHODS_ALL)
def test_fit_returns_self_and_sets_n_features_in(method: str, campaign: dict[str, Any]) -> None:
    c = campaign
    estimator: Any = {
        "pds": PDS(),
        "ds": DS(),
        "sbc": SBC(),
        "bias": BiasCorrection(),
        "naive": NaiveTransfer(),
    }[method]
    with pytest.raises(NotFittedError):
        check_is_fitted(estimator)
    out = estimator.fit(c["X_tgt"], c["X_src"], coef=c["coef"], intercept=c["intercept"])
    assert out is estimator
    assert estimator.n_features_in_ == 120
    check_is_fitted(estimator)
    assert isinstance(estimator, CalibrationTransfer)


def test_fit_transform_takes_target_then_source(campaign: dict[str, Any]) -> None:
    c = campaign
    pds = PDS(window=5)
    np.testing.assert_array_equal(
        pds.fit_transform(c["X_tgt"], c["X_src"]), pds.transform(c["X_tgt"])
    )


def test_init_only_stores_arguments() -> None:
    # scikit-learn contract: validation happens in fit, so clone/set_params never fail early.
    pds = PDS(window=4, rcond=2.0)
    assert pds.get_params() == {"window": 4, "rcond": 2.0}
    assert not [k for k in vars(pds) if k.endswith("_")]


# --------------------------------------------------------------------------- stored artifacts

FROZEN = Path(__file__).parents[1] / "data" / "transfer_artifacts_format2.npz"


@pytest.mark.parametrize("name", ["pds", "ds", "dszero", "dsv1", "sbc", "naive"])
def test_artifacts_written_before_the_estimator_rewrite_still_predict_identically(
    name: str,
) -> None:
    """Arrays written by the format-1/2 code (frozen in tests/data) load and predict as then."""
    with np.load(FROZEN, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}
    arrays = {k.removeprefix(f"{name}__"): v for k, v in d.items() if k.startswith(f"{name}__")}
    t = transfer_from_arrays(arrays)
    coef_t, intercept_t = t.collapse(d["coef"], float(d["intercept"]))
    np.testing.assert_array_equal(coef_t, d[f"expected_{name}__coef_t"])
    assert intercept_t == float(d[f"expected_{name}__intercept_t"])
    np.testing.assert_array_equal(
        d["X_new"] @ coef_t + intercept_t, d[f"expected_{name}__predictions"]
    )
    if f"expected_{name}__transform" in d:
        assert isinstance(t, SpectralTransfer)
        np.testing.assert_array_equal(t.transform(d["X_new"]), d[f"expected_{name}__transform"])
    # What is written today is what was written then: same keys, same values.
    rewritten = t.to_arrays()
    if name != "dsv1":
        assert set(rewritten) == set(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(rewritten[k], v)


def test_default_cv_is_leave_one_out_up_to_twelve_standards(campaign: dict[str, Any]) -> None:
    c = campaign
    for n, scheme in (
        (12, "leave-one-out over 12 standards"),
        (13, "12-fold venetian-blinds (standard i in fold i mod 12) over 13 standards"),
    ):
        sel = select_transfer(
            c["X_src"][:n], c["X_tgt"][:n], coef=c["coef"], intercept=c["intercept"]
        )
        assert sel.scheme == scheme
        assert {r["n_folds"] for r in sel.cv_table} == {12}


@pytest.mark.parametrize(
    "candidates",
    [
        [("pds", {"window": 5, "rcond": 0.01})],
        [("ds", {"rcond": 0.01, "anchor": "identity"})],
        [("ds", {"rcond": 0.03, "anchor": "zero"})],
        None,
    ],
)
def test_held_out_spectra_equal_each_fold_refitted(
    candidates: Any, campaign: dict[str, Any]
) -> None:
    c = campaign
    kwargs: dict[str, Any] = {
        "coef": c["coef"],
        "intercept": c["intercept"],
        "y_ref": c["y_ref"],
        "cv": 6,
    }
    sel = select_transfer(
        c["X_src"], c["X_tgt"], candidates=candidates, held_out_spectra=True, **kwargs
    )
    assert (
        select_transfer(c["X_src"], c["X_tgt"], candidates=candidates, **kwargs).cv_spectra is None
    )
    n = c["X_src"].shape[0]
    fold_of = np.arange(n) % 6
    expected = np.zeros_like(c["X_tgt"])
    for member in sel.weights:
        for f in range(6):
            test = fold_of == f
            fold = fit_transfer(
                member["method"],
                c["X_src"][~test],
                c["X_tgt"][~test],
                coef=c["coef"],
                intercept=c["intercept"],
                y_ref=c["y_ref"][~test],
                **member["params"],
            )
            spectra = (
                fold.transform(c["X_tgt"][test])
                if isinstance(fold, SpectralTransfer)
                else c["X_tgt"][test]
            )
            expected[test] += member["weight"] * spectra
    assert sel.cv_spectra is not None
    np.testing.assert_allclose(sel.cv_spectra, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_cv_weights_give_nothing_to_a_candidate_that_blew_up() -> None:
    from app.core.transfer import _cv_weights

    w = _cv_weights(np.array([1.0, np.nan, np.inf, 1.0]), 8)
    np.testing.assert_allclose(w, [0.5, 0.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="finite"):
        _cv_weights(np.array([np.nan, np.inf]), 8)
