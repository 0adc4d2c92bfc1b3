import io
from pathlib import Path

import numpy as np
import pytest

from app.core.pls import fit_pls
from app.core.serving import ServingModel
from app.core.transfer import PDS, SBC


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axis = np.arange(60, dtype=float)
    y = rng.uniform(0, 5, 80)
    band = np.exp(-0.5 * ((axis - 30) / 5) ** 2)
    X = 1.0 + np.outer(y, band) + rng.normal(0, 0.01, (80, 60))
    return X, y, axis


def _roundtrip(model: ServingModel) -> ServingModel:
    buf = io.BytesIO()
    np.savez(buf, **model.to_arrays())
    with np.load(io.BytesIO(buf.getvalue()), allow_pickle=False) as npz:
        return ServingModel.from_arrays(npz)


@pytest.mark.parametrize("make", [lambda: PDS(window=5), SBC])
def test_transferred_model_equals_transform_then_predict(make: type) -> None:
    X, y, axis = _data()
    source = fit_pls(X, y, axis, n_components=2)
    X_tgt = 0.8 * X + 0.05
    transfer = make().fit(X_tgt[:20], X[:20], coef=source.coef, intercept=source.intercept)
    served = _roundtrip(ServingModel.transferred(source, transfer))
    if isinstance(transfer, SBC):  # corrects the predictions, not the spectra
        expected = transfer.correct(source.predict(X_tgt[20:]))
    else:
        expected = source.predict(transfer.transform(X_tgt[20:]))
    np.testing.assert_allclose(served.predict(X_tgt[20:]), expected, rtol=1e-10, atol=1e-10)


def test_pds_diagnostics_are_computed_in_the_source_basis() -> None:
    X, y, axis = _data()
    source = fit_pls(X, y, axis, n_components=2)
    X_tgt = 0.8 * X + 0.05
    transfer = PDS(window=5).fit(X_tgt[:20], X[:20])
    served = ServingModel.transferred(source, transfer)
    t2, q = served.diagnose(X_tgt[20:])
    t2_ref, q_ref = source.diagnose(transfer.transform(X_tgt[20:]))
    np.testing.assert_allclose(t2, t2_ref)
    np.testing.assert_allclose(q, q_ref)


def test_trained_model_round_trips_as_plain_pls_arrays() -> None:
    X, y, axis = _data()
    source = fit_pls(X, y, axis, n_components=2)
    served = _roundtrip(ServingModel.trained(source))
    assert served.transfer is None
    np.testing.assert_array_equal(served.predict(X), source.predict(X))


@pytest.mark.parametrize("method", ["pds", "ds", "sbc", "naive"])
def test_artifacts_of_the_previous_code_serve_identically(method: str) -> None:
    """Artifacts written before the transfers became estimators (tests/data) still serve."""
    path = Path(__file__).parents[1] / "data" / "serving_artifacts_format2.npz"
    with np.load(path, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}
    arrays = {k.removeprefix(f"{method}__"): v for k, v in d.items() if k.startswith(f"{method}__")}
    served = ServingModel.from_arrays(arrays)
    X_new = d["X_new"]
    np.testing.assert_array_equal(served.predict(X_new), d[f"expected_{method}__predictions"])
    t2, q = served.diagnose(X_new)
    np.testing.assert_allclose(t2, d[f"expected_{method}__t2"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(q, d[f"expected_{method}__q"], rtol=1e-12, atol=1e-15)
    rewritten = served.to_arrays()
    assert set(rewritten) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(rewritten[k], v)
