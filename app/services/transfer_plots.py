"""What the plots of a transfer record show, recomputed from the record's pinned data.

Everything comes from the stored, hash-verified bytes the record names: the target version's
artifact (the source model and the transfer, collapsed), the target standards, the source
standards (uploaded, or the rows of the source training dataset with the same sample ids) and
the validation set. Nothing here is fitted: the plots show the record's own models on its own
data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.core.serving import ServingModel
from app.core.spectra import FloatArray
from app.core.transfer import SpectralTransfer
from app.db.models import TransferRecord
from app.enums import TransferStatus
from app.errors import Conflict, IntegrityFailure
from app.services import datasets as datasets_service
from app.services.artifacts import load_npz
from app.services.canonical import record_sha256
from app.store import ArtifactStore


@dataclass(frozen=True)
class Validation:
    """The validation set as the record's models see it."""

    sample_ids: list[str] | None
    reference: FloatArray
    naive: FloatArray  # the source model, unchanged, on the target spectra
    corrected: FloatArray  # the target version
    t2: FloatArray
    q: FloatArray


@dataclass(frozen=True)
class Spectra:
    """Mean spectra of the chosen standards on each side, and of the corrected target."""

    axis: FloatArray
    axis_unit: str
    source_mean: FloatArray
    target_mean: FloatArray
    corrected_mean: FloatArray | None  # None for a correction of predictions only
    target_low: FloatArray
    target_high: FloatArray
    n_standards: int


@dataclass(frozen=True)
class PlotData:
    number: int
    content_sha256: str
    units: str
    validation: Validation | None
    spectra: Spectra | None
    t2_limit_95: float
    t2_limit_99: float
    q_limit_95: float
    q_limit_99: float


def _serving_model(store: ArtifactStore, digest: str) -> ServingModel:
    arrays, _ = load_npz(store.get(digest))
    try:
        return ServingModel.from_arrays(arrays)
    except (ValueError, KeyError) as exc:
        raise IntegrityFailure(f"artifact {digest} does not load: {exc}") from exc


def plot_data(
    session: Session,
    store: ArtifactStore,
    transfer: TransferRecord,
    *,
    units: str,
    source_dataset_sha256: str,
    dataset_shas: dict[str, str | None],
    limits: tuple[float, float, float, float],
) -> PlotData:
    """The data behind the plots of a completed transfer record.

    ``dataset_shas``: the record's ``target_standards``, ``source_standards`` and
    ``validation`` dataset sha256 (None where absent); ``source_dataset_sha256``: the source
    version's training dataset; ``limits``: the target version's T² 95/99 % and Q 95/99 %."""
    if transfer.status is not TransferStatus.completed or transfer.artifact_sha256 is None:
        raise Conflict(f"transfer #{transfer.number} is {transfer.status.value}: no plots yet")
    model = _serving_model(store, transfer.artifact_sha256)
    result = transfer.result or {}

    validation = None
    validation_sha = dataset_shas.get("validation")
    if validation_sha:
        val = datasets_service.load_dataset_arrays(session, store, validation_sha)
        y, t2, q = model.evaluate(val.X)
        validation = Validation(
            sample_ids=val.sample_ids,
            reference=np.asarray(val.y),
            naive=model.source.predict(val.X),
            corrected=y,
            t2=t2,
            q=q,
        )

    spectra = None
    target_sha = dataset_shas.get("target_standards")
    chosen = result.get("standard_sample_ids") or []
    if target_sha and chosen:
        tgt = datasets_service.load_dataset_arrays(session, store, target_sha)
        src_sha = dataset_shas.get("source_standards") or source_dataset_sha256
        src = datasets_service.load_dataset_arrays(session, store, src_sha)
        X_tgt = _rows(tgt.X, tgt.sample_ids, chosen)
        X_src = _rows(src.X, src.sample_ids, chosen)
        if X_tgt is not None and X_src is not None:
            corrected = (
                model.transfer.transform(X_tgt).mean(axis=0)
                if isinstance(model.transfer, SpectralTransfer)
                else None
            )
            spectra = Spectra(
                axis=np.asarray(tgt.axis),
                axis_unit=tgt.record.axis_unit,
                source_mean=X_src.mean(axis=0),
                target_mean=X_tgt.mean(axis=0),
                corrected_mean=corrected,
                target_low=X_tgt.min(axis=0),
                target_high=X_tgt.max(axis=0),
                n_standards=X_tgt.shape[0],
            )
    return PlotData(
        number=transfer.number,
        content_sha256=record_sha256(transfer),
        units=units,
        validation=validation,
        spectra=spectra,
        t2_limit_95=limits[0],
        t2_limit_99=limits[1],
        q_limit_95=limits[2],
        q_limit_99=limits[3],
    )


def _rows(X: FloatArray, ids: list[str] | None, wanted: list[str]) -> FloatArray | None:
    if ids is None:
        return None
    where = {sid: i for i, sid in enumerate(ids)}
    rows = [where[s] for s in wanted if s in where]
    return X[rows] if len(rows) == len(wanted) else None
