"""The form a soft sensor takes when it serves predictions: one linear product per spectrum.

A trained version serves its PLS model as is. A transferred version serves the transfer and
the PLS model collapsed into one linear model (``coef_t = F @ coef``,
``intercept_t = b @ coef + intercept``), so a prediction costs one dot product however the
transfer was built. Hotelling T² and Q are computed in the source basis, where the model's
latent space and limits live: target spectra are first mapped by the transfer (PDS/DS); a
slope/bias correction (SBC) or no correction leaves the spectra as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from app.core.pls import LinearSoftSensor
from app.core.spectra import FloatArray, as_spectra
from app.core.transfer import CalibrationTransfer, SpectralTransfer, transfer_from_arrays

_SOURCE = "source__"
_TRANSFER = "transfer__"


@dataclass(frozen=True, eq=False)
class ServingModel:
    """A soft sensor ready to serve: ``y = X @ coef + intercept`` plus T²/Q diagnostics.

    Attributes
    ----------
    coef : ndarray of shape (n_channels,)
        Collapsed regression vector for spectra of the serving domain.
    intercept : float
    source : LinearSoftSensor
        The PLS model in its own (source) basis; carries axis, latent space and limits.
    transfer : PDS | DS | SBC | NaiveTransfer | None
        The calibration transfer from the serving domain to the source, if any.
    """

    coef: FloatArray
    intercept: float
    source: LinearSoftSensor
    transfer: CalibrationTransfer | None = None

    @classmethod
    def trained(cls, model: LinearSoftSensor) -> ServingModel:
        return cls(model.coef, model.intercept, model, None)

    @classmethod
    def transferred(cls, model: LinearSoftSensor, transfer: CalibrationTransfer) -> ServingModel:
        coef_t, intercept_t = transfer.collapse(model.coef, model.intercept)
        return cls(np.ascontiguousarray(coef_t), float(intercept_t), model, transfer)

    @property
    def axis(self) -> FloatArray:
        return self.source.axis

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predictions, shape (n_samples,), in the analyte's units."""
        Xa = as_spectra(X, "X")
        if Xa.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"X has {Xa.shape[1]} channels but the model expects {self.coef.shape[0]}"
            )
        return Xa @ self.coef + self.intercept

    def diagnose(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Hotelling T² and Q (SPE) of each spectrum, in the source model's latent space."""
        # Spectral transfers map into the source basis; a prediction correction (SBC) does not.
        if isinstance(self.transfer, SpectralTransfer):
            return self.source.diagnose(self.transfer.transform(X))
        return self.source.diagnose(X)

    def evaluate(
        self, spectra: ArrayLike, *, block_rows: int = 256
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predictions, Hotelling T² and Q of each spectrum: :meth:`predict` and
        :meth:`diagnose` applied ``block_rows`` spectra at a time.

        The diagnostics make temporaries the size of a block; blocks of a few hundred rows
        keep them in cache and let the allocator reuse them, where one pass over a large
        batch maps and faults fresh pages for each. The numbers do not depend on the block
        size. Blocking, CPU-bound: call it from a worker thread for large batches.

        Parameters
        ----------
        spectra : array-like of shape (n_spectra, n_channels)
            Spectra of the serving domain, on the model's axis.
        block_rows : int, default=256

        Returns
        -------
        predictions, t2, q : ndarrays of shape (n_spectra,)
            In the analyte's units; T² and Q in the source model's latent space.
        """
        # predict and diagnose check each block (2-D, finite, channel count)
        X = np.ascontiguousarray(np.asarray(spectra, dtype=np.float64))
        n = X.shape[0] if X.ndim else 0
        if n <= block_rows:
            return self.predict(X), *self.diagnose(X)
        y, t2, q = np.empty(n), np.empty(n), np.empty(n)
        for start in range(0, n, block_rows):
            block = slice(start, start + block_rows)
            y[block] = self.predict(X[block])
            t2[block], q[block] = self.diagnose(X[block])
        return y, t2, q

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an ``.npz`` (no pickle). A trained model's are the PLS arrays."""
        if self.transfer is None:
            return self.source.to_arrays()
        arrays = {f"{_SOURCE}{k}": v for k, v in self.source.to_arrays().items()}
        arrays |= {f"{_TRANSFER}{k}": v for k, v in self.transfer.to_arrays().items()}
        arrays["coef"] = self.coef
        arrays["intercept"] = np.array(self.intercept)
        return arrays

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> ServingModel:
        """Inverse of :meth:`to_arrays`; also reads a trained version's plain PLS arrays."""
        keys = list(d.keys())
        if not any(k.startswith(_TRANSFER) for k in keys):
            return cls.trained(LinearSoftSensor.from_arrays(d))
        source = LinearSoftSensor.from_arrays(
            {k.removeprefix(_SOURCE): d[k] for k in keys if k.startswith(_SOURCE)}
        )
        transfer = transfer_from_arrays(
            {k.removeprefix(_TRANSFER): d[k] for k in keys if k.startswith(_TRANSFER)}
        )
        model = cls.transferred(source, transfer)
        stored = np.asarray(d["coef"], dtype=np.float64)
        if stored.shape != model.coef.shape or not np.allclose(
            stored, model.coef, rtol=1e-12, atol=1e-12 * float(np.abs(stored).max() or 1.0)
        ):
            raise ValueError("stored collapsed coefficients disagree with transfer @ model")
        return cls(np.ascontiguousarray(stored), float(d["intercept"]), source, transfer)
