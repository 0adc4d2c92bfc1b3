"""Figures of merit for a soft sensor's predictions against reference values.

Definitions follow ISO 12099 / Bellon-Maurel et al., TrAC 29 (2010) 1073:

- ``rmse``  = sqrt(mean((y_pred - y_true)^2))                      (RMSEP when held out)
- ``bias``  = mean(y_pred - y_true)
- ``sep``   = sqrt(sum((e - bias)^2) / (n - 1)), e = y_pred - y_true  (bias-corrected SD)
- ``r2``    = 1 - SS_res / SS_tot   (coefficient of determination, as scikit-learn's r2_score)
- ``slope`` = least-squares slope of y_pred on y_true
- ``rpd``   = SD(y_true) / SEP       (ratio of performance to deviation)
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
from numpy.typing import ArrayLike

from app.core.spectra import as_target


class Metrics(TypedDict):
    n: int
    r2: float
    rmse: float
    bias: float
    sep: float
    slope: float
    rpd: float


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> Metrics:
    """Compute n, R², RMSE, bias, SEP, slope and RPD of predictions, in the units of ``y``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Reference values and predictions. At least 2 samples.

    Returns
    -------
    Metrics
        Undefined figures (R², slope and RPD on constant references, SEP-based figures of a
        perfect fit) are ``nan``; callers serialising to JSON map them to null.
    """
    yt = as_target(y_true, name="y_true")
    yp = as_target(y_pred, n_samples=yt.shape[0], name="y_pred")
    n = yt.shape[0]
    if n < 2:
        raise ValueError(f"metrics need at least 2 samples, got {n}")
    err = yp - yt
    bias = float(err.mean())
    rmse = float(math.sqrt(float(np.mean(err**2))))
    sep = float(math.sqrt(float(np.sum((err - bias) ** 2)) / (n - 1)))
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    ss_res = float(np.sum(err**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    slope = float(np.sum((yt - yt.mean()) * (yp - yp.mean())) / ss_tot) if ss_tot > 0 else math.nan
    sd_ref = float(np.std(yt, ddof=1))
    rpd = sd_ref / sep if sep > 0 and ss_tot > 0 else math.nan
    return Metrics(n=n, r2=r2, rmse=rmse, bias=bias, sep=sep, slope=slope, rpd=rpd)
