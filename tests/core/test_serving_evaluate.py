"""ServingModel.evaluate: predictions and diagnostics, block by block."""

import numpy as np
import pytest

from app.core.pls import fit_pls
from app.core.serving import ServingModel
from app.core.transfer import PDS


def _served() -> tuple[ServingModel, np.ndarray]:
    rng = np.random.default_rng(4)
    axis = np.arange(30, dtype=float)
    y = rng.uniform(0, 5, 90)
    X = 1.0 + np.outer(y, np.exp(-0.5 * ((axis - 15) / 4) ** 2)) + rng.normal(0, 0.01, (90, 30))
    source = fit_pls(X, y, axis, n_components=2)
    X_tgt = 0.9 * X + 0.02
    return ServingModel.transferred(source, PDS(window=3).fit(X[:20], X_tgt[:20])), X_tgt


@pytest.mark.parametrize("block_rows", [1, 7, 256])
def test_evaluate_equals_predict_and_diagnose_whatever_the_block_size(block_rows: int) -> None:
    served, X = _served()
    y, t2, q = served.evaluate(X, block_rows=block_rows)
    t2_ref, q_ref = served.diagnose(X)
    np.testing.assert_allclose(y, served.predict(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t2, t2_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q, q_ref, rtol=1e-12, atol=1e-12)
    assert y.shape == t2.shape == q.shape == (X.shape[0],)


def test_evaluate_refuses_a_wrong_channel_count() -> None:
    served, X = _served()
    with pytest.raises(ValueError, match="channels"):
        served.evaluate(X[:, :-1])
