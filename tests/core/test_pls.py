import dataclasses
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold

from app.core.pls import CVScheme, LinearSoftSensor, PLSSoftSensor, _q_limit, fit_pls


def low_rank_data(
    rng: np.random.Generator, n: int, p: int = 120, *, k: int = 3, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra of k Gaussian bands with random amplitudes on a baseline; y linear in them."""
    axis = np.linspace(400.0, 1800.0, p)
    centres = np.linspace(600.0, 1600.0, k)
    bands = np.exp(-0.5 * ((axis[None, :] - centres[:, None]) / 40.0) ** 2)
    amplitudes = rng.normal(size=(n, k)) * np.linspace(3.0, 1.0, k)
    X = 5.0 + amplitudes @ bands + rng.normal(0.0, noise, size=(n, p))
    y = amplitudes @ np.linspace(1.0, -0.6, k) + rng.normal(0.0, noise, size=n)
    return X, y, axis


def manual_oof(X: np.ndarray, y: np.ndarray, a: int, splitter: KFold) -> np.ndarray:
    """Out-of-fold predictions from a fresh a-component fit per fold."""
    out = np.empty_like(y)
    for train, test in splitter.split(X):
        pls = PLSRegression(n_components=a, scale=False).fit(X[train], y[train])
        out[test] = pls.predict(X[test]).ravel()
    return out


def splitter_for(scheme: CVScheme, cv: int, random_state: int = 0) -> KFold:
    if scheme == "kfold":
        return KFold(n_splits=cv, shuffle=True, random_state=random_state)
    return KFold(n_splits=cv, shuffle=False)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(8, 40),
    p=st.integers(2, 60),
    a_request=st.integers(1, 6),
)
def test_exported_linear_form_equals_sklearn_predict(
    seed: int, n: int, p: int, a_request: int
) -> None:
    rng = np.random.default_rng(seed)
    X = 10.0 + rng.normal(size=(n, p))
    y = X[:, 0] - 0.5 * X[:, -1] + rng.normal(0.0, 0.1, size=n)
    a = min(a_request, p, n // 2 - 1)  # cv=2: the smallest training fold has n // 2 samples
    model = fit_pls(X, y, n_components=a, cv=2)
    reference = PLSRegression(n_components=a, scale=False).fit(X, y)
    X_new = 10.0 + rng.normal(size=(7, p))
    for data in (X, X_new):
        expected = reference.predict(data).ravel()
        np.testing.assert_allclose(data @ model.coef + model.intercept, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.predict(data), expected, rtol=0, atol=1e-9)


def test_truncated_rotations_equal_fresh_fit_coefficients() -> None:
    rng = np.random.default_rng(1)
    X, y, _ = low_rank_data(rng, 50, k=6, noise=0.05)
    full = PLSRegression(n_components=10, scale=False).fit(X, y)
    for a in range(1, 11):
        fresh = PLSRegression(n_components=a, scale=False).fit(X, y)
        truncated = full.x_rotations_[:, :a] @ full.y_loadings_[:, :a].T
        np.testing.assert_allclose(truncated.ravel(), fresh.coef_.ravel(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("scheme", ["kfold", "blocks"])
def test_cv_table_and_predictions_equal_fresh_fits_per_fold(scheme: CVScheme) -> None:
    rng = np.random.default_rng(2)
    X, y, axis = low_rank_data(rng, 40, k=5, noise=0.05)
    est = PLSSoftSensor(max_components=8, cv=4, cv_scheme=scheme, random_state=7).fit(X, y, axis)
    splitter = splitter_for(scheme, 4, random_state=7)
    assert est.cv_table_ is not None
    for row in est.cv_table_:
        oof = manual_oof(X, y, int(row["n_components"]), splitter)
        assert row["rmsecv"] == pytest.approx(np.sqrt(np.mean((oof - y) ** 2)), rel=1e-9)
    expected = manual_oof(X, y, est.n_components_, splitter)
    np.testing.assert_allclose(est.cv_predictions_, expected, rtol=0, atol=1e-9)


def test_fixed_components_gives_out_of_fold_predictions_and_no_table() -> None:
    rng = np.random.default_rng(3)
    X, y, axis = low_rank_data(rng, 30)
    est = PLSSoftSensor(2, cv=5).fit(X, y, axis)
    assert est.n_components_ == 2
    assert est.cv_table_ is None
    expected = manual_oof(X, y, 2, splitter_for("kfold", 5))
    np.testing.assert_allclose(est.cv_predictions_, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scheme", ["kfold", "blocks"])
def test_cross_validation_picks_the_true_rank(scheme: CVScheme) -> None:
    X, y, axis = low_rank_data(np.random.default_rng(4), 80, k=3, noise=0.01)
    est = PLSSoftSensor(cv_scheme=scheme).fit(X, y, axis)
    assert est.n_components_ == 3
    assert est.model_.n_components == 3


def test_component_selection_is_deterministic_given_random_state() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(5), 60, k=4, noise=0.05)
    first = PLSSoftSensor(random_state=11).fit(X, y, axis)
    second = PLSSoftSensor(random_state=11).fit(X, y, axis)
    assert first.cv_table_ == second.cv_table_
    np.testing.assert_array_equal(first.cv_predictions_, second.cv_predictions_)


def test_selection_follows_the_one_standard_error_rule() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(6), 60, k=5, noise=0.2)
    est = PLSSoftSensor(max_components=10).fit(X, y, axis)
    assert est.cv_table_ is not None
    rmsecv = np.array([row["rmsecv"] for row in est.cv_table_])
    se = np.array([row["se"] for row in est.cv_table_])
    best = int(np.argmin(rmsecv))
    eligible = np.flatnonzero(rmsecv <= rmsecv[best] + se[best])
    assert est.n_components_ == eligible[0] + 1
    assert [row["n_components"] for row in est.cv_table_] == list(range(1, 11))


def test_component_search_is_capped_by_the_smallest_training_fold() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(7), 12, k=3)
    est = PLSSoftSensor(max_components=15, cv=3).fit(X, y, axis)  # training folds of 8
    assert est.cv_table_ is not None
    assert len(est.cv_table_) == 7


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 60), a=st.integers(1, 4))
def test_mean_training_t2_is_exactly_a_times_n_minus_1_over_n(seed: int, n: int, a: int) -> None:
    # Training scores have zero mean and score_var = sum(t**2) / (n - 1), so the T² values sum
    # to a * (n - 1) exactly, whatever the data.
    X, y, _ = low_rank_data(np.random.default_rng(seed), n, p=30, k=4, noise=0.1)
    model = fit_pls(X, y, n_components=a)
    assert model.hotelling_t2(X).mean() == pytest.approx(a * (n - 1) / n, rel=1e-9)


def test_q_of_training_spectra_equals_the_hand_computed_residual() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(8), 30, k=4, noise=0.1)
    model = fit_pls(X, y, n_components=2)
    pls = PLSRegression(n_components=2, scale=False).fit(X, y)
    residual = (X - X.mean(axis=0)) - pls.x_scores_ @ pls.x_loadings_.T
    np.testing.assert_allclose(model.q_residuals(X), np.sum(residual**2, axis=1), rtol=1e-9)


def test_diagnose_returns_t2_and_q() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(9), 30)
    model = fit_pls(X, y, n_components=3)
    t2, q = model.diagnose(X[:5])
    np.testing.assert_array_equal(t2, model.hotelling_t2(X[:5]))
    np.testing.assert_array_equal(q, model.q_residuals(X[:5]))
    scores = model.scores(X[:5])
    np.testing.assert_allclose(t2, np.sum(scores**2 / model.score_var, axis=1), rtol=1e-12)


def test_limits_are_positive_and_99_exceeds_95() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(10), 50)
    model = fit_pls(X, y, n_components=3)
    assert 0 < model.t2_limit_95 < model.t2_limit_99
    assert 0 < model.q_limit_95 < model.q_limit_99


def test_t2_limit_follows_the_f_distribution_for_new_observations() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(11), 40)
    model = fit_pls(X, y, n_components=3)
    n, a = 40, 3
    scale = a * (n - 1) * (n + 1) / (n * (n - a))
    assert model.t2_limit_95 == pytest.approx(scale * stats.f.ppf(0.95, a, n - a), rel=1e-12)
    assert model.t2_limit_99 == pytest.approx(scale * stats.f.ppf(0.99, a, n - a), rel=1e-12)


def test_about_five_percent_of_fresh_samples_exceed_the_95_percent_limits() -> None:
    rng = np.random.default_rng(12)
    X, y, axis = low_rank_data(rng, 200, k=3, noise=0.05)
    model = fit_pls(X, y, axis, n_components=3)
    X_new, _, _ = low_rank_data(rng, 2000, k=3, noise=0.05)
    t2, q = model.diagnose(X_new)
    assert 0.01 < np.mean(t2 > model.t2_limit_95) < 0.12
    assert 0.01 < np.mean(q > model.q_limit_95) < 0.12


def test_jackson_mudholkar_matches_scaled_chi2_for_equal_eigenvalues() -> None:
    # k equal eigenvalues λ: Q is exactly λ·χ²(k); Jackson–Mudholkar approximates it closely.
    lam = np.full(20, 0.3)
    for confidence in (0.95, 0.99):
        exact = 0.3 * stats.chi2.ppf(confidence, 20)
        assert _q_limit(lam, confidence) == pytest.approx(exact, rel=0.01)


def test_q_limit_falls_back_to_box_when_h0_is_not_positive() -> None:
    lam = np.concatenate([[1.0], np.full(1000, 0.01)])  # one dominant eigenvalue: h0 < 0
    t1, t2, t3 = (float(np.sum(lam**k)) for k in (1, 2, 3))
    assert 1 - 2 * t1 * t3 / (3 * t2**2) <= 0
    expected = (t2 / t1) * stats.chi2.ppf(0.95, t1**2 / t2)
    assert _q_limit(lam, 0.95) == pytest.approx(expected, rel=1e-12)


def test_arrays_round_trip_through_npz_without_pickle() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(13), 40)
    model = fit_pls(X, y, axis, n_components=3)
    buf = io.BytesIO()
    np.savez(buf, **model.to_arrays(), note=np.array("extra keys are ignored"))  # type: ignore[arg-type]
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        loaded = LinearSoftSensor.from_arrays(npz)
    for name, value in model.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[name], value)
    assert loaded.n_components == 3
    assert isinstance(loaded.n_components, int)
    assert isinstance(loaded.intercept, float)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_to_arrays_holds_only_numeric_arrays_with_scalars_as_0d() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(14), 30)
    arrays = fit_pls(X, y, n_components=2).to_arrays()
    assert {a.dtype.kind for a in arrays.values()} <= {"f", "i"}
    assert arrays["intercept"].shape == ()
    assert arrays["n_components"].dtype == np.int64


def test_from_arrays_rejects_missing_and_misshapen_fields() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(15), 30)
    arrays = fit_pls(X, y, n_components=2).to_arrays()
    with pytest.raises(ValueError, match="missing loadings"):
        LinearSoftSensor.from_arrays({k: v for k, v in arrays.items() if k != "loadings"})
    with pytest.raises(ValueError, match=r"rotations must have shape \(120, 2\)"):
        LinearSoftSensor.from_arrays(arrays | {"rotations": arrays["rotations"][:, :1]})
    with pytest.raises(ValueError, match="'n_train' has dtype float64"):
        LinearSoftSensor.from_arrays(arrays | {"n_train": np.array(30.0)})
    with pytest.raises(ValueError, match="strictly increasing"):
        LinearSoftSensor.from_arrays(arrays | {"axis": arrays["axis"][::-1]})


def test_model_is_immutable() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(16), 30)
    model = fit_pls(X, y, n_components=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.intercept = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        model.coef[0] = 1.0


def test_estimator_predict_delegates_to_model_and_clones() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(17), 30)
    est = PLSSoftSensor(2).fit(X, y, axis)
    np.testing.assert_array_equal(est.predict(X), est.model_.predict(X))
    np.testing.assert_array_equal(est.model_.axis, axis)
    assert clone(est).get_params() == est.get_params()


def test_axis_defaults_to_channel_index() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(18), 20, p=15)
    np.testing.assert_array_equal(fit_pls(X, y, n_components=1).axis, np.arange(15.0))


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        PLSSoftSensor().predict(np.ones((2, 3)))


def test_nan_in_spectra_or_reference_is_rejected() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(19), 20)
    X_bad = X.copy()
    X_bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="sample 3, channel 7"):
        PLSSoftSensor(2).fit(X_bad, y)
    y_bad = y.copy()
    y_bad[4] = np.inf
    with pytest.raises(ValueError, match="non-finite value at sample 4"):
        PLSSoftSensor(2).fit(X, y_bad)


def test_wrong_channel_count_in_predict_is_rejected() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(20), 20)
    est = PLSSoftSensor(2).fit(X, y)
    with pytest.raises(ValueError, match=r"119 channels \(shape \(20, 119\)\) .* expects 120"):
        est.predict(X[:, :-1])
    with pytest.raises(ValueError, match="expects 120"):
        est.model_.hotelling_t2(X[:, 1:])


def test_decreasing_axis_is_rejected() -> None:
    X, y, axis = low_rank_data(np.random.default_rng(21), 20)
    with pytest.raises(ValueError, match="strictly increasing"):
        PLSSoftSensor(2).fit(X, y, axis[::-1])


def test_mismatched_x_and_y_are_rejected_naming_shapes() -> None:
    X, y, _ = low_rank_data(np.random.default_rng(22), 20)
    with pytest.raises(ValueError, match=r"shape \(20, 120\) but y has shape \(19,\)"):
        PLSSoftSensor(2).fit(X, y[:-1])


@pytest.mark.parametrize(("n", "cv"), [(2, 2), (4, 5)])
def test_too_few_samples_are_rejected(n: int, cv: int) -> None:
    X, y, _ = low_rank_data(np.random.default_rng(23), n)
    with pytest.raises(ValueError, match=rf"need at least {max(3, cv)} samples .*\({n}, 120\)"):
        PLSSoftSensor(1, cv=cv).fit(X, y)


@pytest.mark.parametrize("a", [0, 9])
def test_n_components_out_of_range_is_rejected(a: int) -> None:
    X, y, _ = low_rank_data(np.random.default_rng(24), 12)
    with pytest.raises(ValueError, match="n_components"):
        PLSSoftSensor(a, cv=3).fit(X, y)  # training folds of 8: at most 7 components


def test_component_count_is_capped_by_the_rank_of_x() -> None:
    rng = np.random.default_rng(25)
    X = np.outer(rng.normal(size=20), rng.normal(size=10)) + 1.0  # centred rank 1
    y = X[:, 0] + rng.normal(0.0, 0.01, size=20)
    with pytest.raises(ValueError, match="numerical rank 1"):
        PLSSoftSensor(2).fit(X, y)
    est = PLSSoftSensor().fit(X, y)
    assert est.cv_table_ is not None
    assert len(est.cv_table_) == 1


def test_constant_reference_is_rejected() -> None:
    X, _, _ = low_rank_data(np.random.default_rng(26), 20)
    with pytest.raises(ValueError, match="y is constant"):
        PLSSoftSensor(2).fit(X, np.full(20, 1.5))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cv_scheme": "loo"}, "cv_scheme"),
        ({"cv": 1}, "cv must be"),
        ({"max_components": 0}, "max_components"),
        ({"n_components": 1.5}, "n_components"),
    ],
)
def test_invalid_parameters_are_rejected(params: dict[str, object], message: str) -> None:
    X, y, _ = low_rank_data(np.random.default_rng(27), 20)
    with pytest.raises(ValueError, match=message):
        PLSSoftSensor(**params).fit(X, y)  # type: ignore[arg-type]
