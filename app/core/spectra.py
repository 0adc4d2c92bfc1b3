"""Validation at the numerical boundary: spectra, reference values and spectral axes.

Every public function of ``app.core`` passes its inputs through these helpers once, so the
rest of the core can assume C-contiguous, finite float64 arrays of the documented shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def as_spectra(X: ArrayLike, name: str = "X") -> FloatArray:
    """Return ``X`` as a finite, C-contiguous float64 array of shape (n_samples, n_channels).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, is empty, or holds a NaN or infinite value (the message names
        the first offending sample and channel).
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_channels), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} has a non-finite value ({arr[row, col]}) at sample {row}, channel {col}"
        )
    return arr


def as_target(y: ArrayLike, n_samples: int | None = None, name: str = "y") -> FloatArray:
    """Return ``y`` as a finite float64 vector of shape (n_samples,).

    A column vector of shape (n, 1) is accepted and flattened.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} values but X has {n_samples} samples")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} has a non-finite value at sample {int(np.argmax(bad))}")
    return np.ascontiguousarray(arr)


def as_axis(axis: ArrayLike, n_channels: int | None = None, name: str = "axis") -> FloatArray:
    """Return a strictly increasing, finite float64 spectral axis of shape (n_channels,).

    Raises
    ------
    ValueError
        If the axis is not 1-D, does not match ``n_channels``, is not finite or is not
        strictly increasing (the message names the first offending channel).
    """
    arr = np.ascontiguousarray(np.asarray(axis, dtype=np.float64))
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if n_channels is not None and arr.shape[0] != n_channels:
        raise ValueError(f"{name} has {arr.shape[0]} channels but the spectra have {n_channels}")
    if not np.isfinite(arr).all():
        first = int(np.argmax(~np.isfinite(arr)))
        raise ValueError(f"{name} has a non-finite value at channel {first}")
    steps = np.diff(arr)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise ValueError(
            f"{name} must be strictly increasing: channel {i + 1} ({arr[i + 1]:g}) "
            f"does not exceed channel {i} ({arr[i]:g})"
        )
    return arr


def check_same_axis(
    expected: ArrayLike, actual: ArrayLike, *, atol: float = 1e-6, what: str = "spectra"
) -> None:
    """Raise ``ValueError`` naming the first channel where ``actual`` departs from ``expected``."""
    a = np.asarray(expected, dtype=np.float64)
    b = np.asarray(actual, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"{what} axis has {b.shape[0] if b.ndim else 0} channels, expected {a.shape[0]}"
        )
    off = ~np.isclose(a, b, rtol=0.0, atol=atol)
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(
            f"{what} axis differs from the model's at channel {i}: got {b[i]:g}, expected {a[i]:g}"
        )


def describe(arr: Any) -> str:
    """Short shape description for error messages."""
    return f"shape {np.shape(arr)}"
