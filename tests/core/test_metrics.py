import math

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error, r2_score

from app.core.metrics import regression_metrics


def test_metrics_equal_scikit_learn_where_it_has_them() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(5, 2, size=40)
    yp = y * 0.9 + 0.3 + rng.normal(0, 0.2, size=40)
    m = regression_metrics(y, yp)
    assert m["n"] == 40
    assert m["r2"] == pytest.approx(r2_score(y, yp), abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, yp)), abs=1e-12)


def test_bias_sep_slope_rpd_by_definition() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    yp = np.array([1.5, 2.5, 3.5, 4.5])  # pure offset of +0.5
    m = regression_metrics(y, yp)
    assert m["bias"] == pytest.approx(0.5)
    assert m["sep"] == pytest.approx(0.0, abs=1e-12)
    assert m["slope"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(0.5)
    assert math.isnan(m["rpd"])  # SEP is zero: RPD undefined


def test_rpd_is_sd_over_sep() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    yp = y + np.array([0.1, -0.1, 0.2, -0.2, 0.0])
    m = regression_metrics(y, yp)
    assert m["rpd"] == pytest.approx(np.std(y, ddof=1) / m["sep"])


def test_metrics_reject_mismatched_lengths_and_nan() -> None:
    with pytest.raises(ValueError, match="3 values but X has 2"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        regression_metrics([1.0, np.nan], [1.0, 2.0])
