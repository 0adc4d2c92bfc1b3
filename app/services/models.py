"""Soft-sensor models and their server-trained, immutable versions."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import __version__
from app.core.metrics import regression_metrics
from app.core.pls import LinearSoftSensor, PLSSoftSensor
from app.db.models import Dataset, Domain, ModelVersion, SoftSensorModel, Transfer, User
from app.enums import HoldoutScheme, VersionStatus
from app.errors import Conflict, InvalidInput, NotFound
from app.schemas.models import ModelVersionCreate, SoftSensorModelCreate
from app.services import audit
from app.services.artifacts import dump_npz, put_artifact
from app.services.datasets import load_dataset_arrays
from app.store import ArtifactStore

HOLDOUT_SEED = 20261127  # fixed: the same request on the same data gives the same split


def create_model(session: Session, *, data: SoftSensorModelCreate, actor: User) -> SoftSensorModel:
    if session.scalars(select(SoftSensorModel).where(SoftSensorModel.name == data.name)).first():
        raise Conflict(f"model {data.name!r} already exists")
    model = SoftSensorModel(
        name=data.name,
        analyte=data.analyte,
        units=data.units,
        description=data.description,
        created_by_id=actor.id,
    )
    session.add(model)
    session.flush()  # ids now; the caller commits
    audit.record(
        session,
        actor=actor,
        action="model.create",
        entity_type="model",
        entity_id=model.id,
        reason=data.reason,
        after=data.model_dump(exclude={"reason"}),
    )
    return model


def get_model(session: Session, name: str, *, for_update: bool = False) -> SoftSensorModel:
    stmt = select(SoftSensorModel).where(SoftSensorModel.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    model = session.scalars(stmt).one_or_none()
    if model is None:
        raise NotFound(f"model {name!r} does not exist")
    return model


def get_version(session: Session, name: str, version: int) -> ModelVersion:
    model = get_model(session, name)
    row = session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == version
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"model {name!r} has no version {version}")
    return row


def next_version_number(session: Session, model: SoftSensorModel) -> int:
    """The number of the model's next version: max + 1 (1 for the first).

    Race-free only while the caller holds the model row lock (``get_model(...,
    for_update=True)``) until its transaction ends: every writer of versions takes that lock
    first, so no two transactions can read the same maximum.
    """
    number = session.scalar(
        select(func.coalesce(func.max(ModelVersion.version), 0) + 1).where(
            ModelVersion.model_id == model.id
        )
    )
    return int(number or 1)


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    description: dict[str, Any]


def split_rows(n: int, scheme: HoldoutScheme, fraction: float) -> Split:
    """Rows for fitting and rows held out from the fit (never seen by it)."""
    if scheme is HoldoutScheme.none:
        return Split(np.arange(n), np.arange(0), {"scheme": "none", "n_train": n, "n_holdout": 0})
    n_test = round(n * fraction)
    if n_test < 2 or n - n_test < 3:
        raise InvalidInput(
            f"{n} samples are too few for a {fraction:.0%} hold-out: need >= 2 held out and "
            ">= 3 to fit; use holdout_scheme 'none' (CV only) or a larger dataset"
        )
    if scheme is HoldoutScheme.last_block:
        test = np.arange(n - n_test, n)
        desc = {"scheme": "last_block", "first_holdout_row": n - n_test}
    else:
        test = np.sort(np.random.default_rng(HOLDOUT_SEED).choice(n, n_test, replace=False))
        desc = {"scheme": "random", "seed": HOLDOUT_SEED}
    train = np.setdiff1d(np.arange(n), test)
    desc |= {"fraction": fraction, "n_train": int(train.size), "n_holdout": int(test.size)}
    return Split(train, test, desc)


def metrics_record(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Figures of merit as they are kept on a record: plain JSON (NaN -> null)."""
    return audit.jsonable(dict(regression_metrics(y_true, y_pred)))  # type: ignore[no-any-return]


def train_version(
    session: Session,
    store: ArtifactStore,
    *,
    model_name: str,
    data: ModelVersionCreate,
    actor: User,
) -> ModelVersion:
    """Train version N+1 of a model on a pinned dataset and record its computed metrics.

    The fit runs before the model row is locked, so concurrent trainings only serialize on
    the numbering; the number is taken under ``SELECT ... FOR UPDATE`` of the model row.
    """
    model = get_model(session, model_name)
    ds = load_dataset_arrays(session, store, data.dataset_sha256)
    if ds.record.units != model.units:
        raise InvalidInput(
            f"dataset reference units {ds.record.units!r} differ from the model's {model.units!r}"
        )
    split = split_rows(ds.X.shape[0], data.holdout_scheme, data.holdout_fraction)
    X_train, y_train = ds.X[split.train], ds.y[split.train]
    n_components = None if data.n_components == "auto" else int(data.n_components)
    estimator = PLSSoftSensor(
        n_components,
        max_components=data.max_components,
        cv=data.cv_folds,
        cv_scheme=data.cv_scheme.value,
    )
    try:
        estimator.fit(X_train, y_train, axis=ds.axis)
    except ValueError as exc:
        raise InvalidInput(f"cannot train on dataset {data.dataset_sha256[:12]}…: {exc}") from exc
    fitted: LinearSoftSensor = estimator.model_
    metrics: dict[str, Any] = {"units": model.units}
    if estimator.cv_predictions_ is not None:
        metrics["cv"] = metrics_record(y_train, estimator.cv_predictions_)
    if split.test.size:
        metrics["holdout"] = metrics_record(ds.y[split.test], fitted.predict(ds.X[split.test]))
    metrics["calibration"] = metrics_record(y_train, fitted.predict(X_train))

    lo, hi = float(y_train.min()), float(y_train.max())
    if data.operating_range is None:
        op_lo, op_hi, op_source = lo, hi, "training_reference"
    else:
        op_lo, op_hi, op_source = data.operating_range.min, data.operating_range.max, "declared"
        if op_lo < lo or op_hi > hi:
            raise InvalidInput(
                f"declared operating range [{op_lo:g}, {op_hi:g}] {model.units} lies outside "
                f"the training reference range [{lo:g}, {hi:g}]"
            )

    selection = {
        "method": "fixed" if n_components else "cross-validation, one-standard-error rule",
        "cv_folds": data.cv_folds,
        "cv_scheme": data.cv_scheme.value,
        "max_components": data.max_components,
        "cv_table": estimator.cv_table_,
    }
    meta = {
        "kind": "pls_soft_sensor",
        "model": model.name,
        "units": model.units,
        "dataset_sha256": ds.record.sha256,
        "axis_unit": ds.record.axis_unit,
        "component_selection": selection,
        "split": split.description,
        "versions": {
            "softsensor_registry": __version__,
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
        },
    }
    arrays = fitted.to_arrays() | {"holdout_rows": split.test.astype(np.int64)}
    digest = put_artifact(session, store, dump_npz(arrays, audit.jsonable(meta)))

    model = get_model(session, model_name, for_update=True)  # row lock: numbering is race-free
    version = ModelVersion(
        model_id=model.id,
        version=next_version_number(session, model),
        status=VersionStatus.draft,
        domain_id=ds.record.domain_id,
        dataset_id=ds.record.id,
        artifact_sha256=digest,
        n_components=fitted.n_components,
        component_selection=audit.jsonable(selection),
        split=split.description,
        metrics=metrics,
        operating_range_min=op_lo,
        operating_range_max=op_hi,
        operating_range_source=op_source,
        t2_limit_95=fitted.t2_limit_95,
        t2_limit_99=fitted.t2_limit_99,
        q_limit_95=fitted.q_limit_95,
        q_limit_99=fitted.q_limit_99,
        intended_use=data.intended_use,
        reason=data.reason,
        created_by_id=actor.id,
    )
    return add_version(
        session,
        version,
        model=model,
        actor=actor,
        reason=data.reason,
        after={"dataset_sha256": ds.record.sha256},
    )


def add_version(
    session: Session,
    version: ModelVersion,
    *,
    model: SoftSensorModel,
    actor: User,
    reason: str,
    after: dict[str, Any],
) -> ModelVersion:
    """Insert a new version row and its ``model_version.create`` audit event (never commits).

    The caller numbered it under the model row lock; ``after`` adds to the standard snapshot.
    """
    session.add(version)
    session.flush()  # ids now; the caller commits
    audit.record(
        session,
        actor=actor,
        action="model_version.create",
        entity_type="model_version",
        entity_id=version.id,
        reason=reason,
        after={
            "model": model.name,
            "version": version.version,
            "status": version.status,
            "artifact_sha256": version.artifact_sha256,
            "n_components": version.n_components,
            "metrics": version.metrics,
            "operating_range": [version.operating_range_min, version.operating_range_max],
        }
        | after,
    )
    return version


def version_dataset(session: Session, version: ModelVersion) -> Dataset:
    ds = session.get(Dataset, version.dataset_id)
    assert ds is not None  # foreign key
    return ds


def _username(session: Session, user_id: Any) -> str:
    return session.scalar(select(User.username).where(User.id == user_id)) or "?"


def describe_model(session: Session, model: SoftSensorModel) -> dict[str, Any]:
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
    )
    return {
        "id": model.id,
        "name": model.name,
        "analyte": model.analyte,
        "units": model.units,
        "description": model.description,
        "created_at": model.created_at,
        "created_by": _username(session, model.created_by_id),
        "latest_version": latest,
    }


def list_models(session: Session) -> list[SoftSensorModel]:
    return list(session.scalars(select(SoftSensorModel).order_by(SoftSensorModel.name)))


def list_versions(session: Session, name: str) -> list[ModelVersion]:
    model = get_model(session, name)
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.version)
        )
    )


def describe_version(session: Session, version: ModelVersion) -> dict[str, Any]:
    """The version card: everything a reviewer needs, computed by the service."""
    model = session.get(SoftSensorModel, version.model_id)
    ds = version_dataset(session, version)
    assert model is not None
    axis = ds.axis
    return {
        "id": version.id,
        "model_name": model.name,
        "version": version.version,
        "status": version.status,
        "dataset_sha256": ds.sha256,
        "domain": session.scalar(select(Domain.name).where(Domain.id == version.domain_id)),
        "artifact_sha256": version.artifact_sha256,
        "n_components": version.n_components,
        "component_selection": version.component_selection,
        "split": version.split,
        "metrics": version.metrics,
        "operating_range": {"min": version.operating_range_min, "max": version.operating_range_max},
        "operating_range_source": version.operating_range_source,
        "t2_limit_95": version.t2_limit_95,
        "t2_limit_99": version.t2_limit_99,
        "q_limit_95": version.q_limit_95,
        "q_limit_99": version.q_limit_99,
        "axis_unit": ds.axis_unit,
        "n_channels": ds.n_channels,
        "axis_min": float(axis[0]),
        "axis_max": float(axis[-1]),
        "intended_use": version.intended_use,
        "reason": version.reason,
        "created_by": _username(session, version.created_by_id),
        "created_at": version.created_at,
        **_lineage(session, version),
    }


def _lineage(session: Session, version: ModelVersion) -> dict[str, Any]:
    """Where a transferred version comes from: source version -> transfer -> this version."""
    source = None
    if version.source_version_id is not None:
        source = session.scalar(
            select(ModelVersion.version).where(ModelVersion.id == version.source_version_id)
        )
    number = None
    if version.transfer_id is not None:
        number = session.scalar(select(Transfer.number).where(Transfer.id == version.transfer_id))
    return {
        "source_version": source,
        "transfer_id": version.transfer_id,
        "transfer_number": number,
    }
