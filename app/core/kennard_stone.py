"""Kennard–Stone selection of representative samples (transfer standards).

Kennard, R. W. & Stone, L. A. "Computer aided design of experiments."
Technometrics 11 (1969) 137–148.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from app.core.spectra import IntArray, as_spectra


def kennard_stone(X: ArrayLike, k: int) -> IntArray:
    """Select ``k`` rows of ``X`` that span its space, in the order they are chosen.

    The classic algorithm on Euclidean distances: start with the two most distant samples,
    then repeatedly add the sample whose distance to its nearest selected sample is largest.
    Ties go to the lowest row index (the first pair in row-major order), so the selection is
    deterministic.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_channels)
        Candidate spectra.
    k : int
        Number of samples to select, 2 <= k <= n_samples (the method starts from a pair).

    Returns
    -------
    ndarray of shape (k,)
        Row indices into ``X`` in selection order.
    """
    Xa = as_spectra(X, "X")
    n = Xa.shape[0]
    if not 2 <= k <= n:
        raise ValueError(f"Kennard-Stone needs 2 <= k <= n_samples, got k={k}, n_samples={n}")
    sq = np.einsum("ij,ij->i", Xa, Xa)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (Xa @ Xa.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    first, second = np.unravel_index(int(np.argmax(d2)), d2.shape)
    selected = [int(first), int(second)]
    nearest = np.minimum(d2[first], d2[second])
    nearest[selected] = -1.0
    for _ in range(k - 2):
        nxt = int(np.argmax(nearest))  # argmax returns the first (lowest) index on ties
        selected.append(nxt)
        np.minimum(nearest, d2[nxt], out=nearest)
        nearest[selected] = -1.0
    return np.asarray(selected, dtype=np.intp)
