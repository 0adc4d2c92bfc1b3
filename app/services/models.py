"""Soft-sensor models and their server-trained, immutable versions."""

from __future__ import annotations

import math
import platform
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sqlalchemy.orm import Session

from app import __version__
from app.core.metrics import regression_metrics
from app.core.pls import LinearSoftSensor, PLSSoftSensor
from app.db.models import Dataset, ModelVersion, SoftSensorModel, User
from app.db.repositories import aliases as alias_rows
from app.db.repositories import datasets as dataset_rows
from app.db.repositories import domains as domain_rows
from app.db.repositories import models as model_rows
from app.db.repositories import signatures as signature_rows
from app.db.repositories import transfers as transfer_rows
from app.db.repositories import users as user_rows
from app.enums import HoldoutScheme, VersionStatus
from app.errors import Conflict, InvalidInput, NotFound
from app.schemas.common import read_from
from app.schemas.models import (
    LineageEdge,
    LineageNode,
    LineageRead,
    ModelVersionCreate,
    SoftSensorModelCreate,
    SoftSensorModelRead,
    TrainedVersionRead,
    TransferredVersionRead,
)
from app.services import approval, audit
from app.services.artifacts import dump_npz, put_artifact
from app.services.datasets import load_dataset_arrays
from app.services.paging import decode_name_cursor, encode_name_cursor, next_page
from app.services.qualification import is_qualified
from app.store import ArtifactStore

HOLDOUT_SEED = 20261127  # fixed: the same request on the same data gives the same split
# Small-data lines. A PLS model with k components fits k + 1 parameters' worth of structure
# (k latent directions and the intercept) to the calibration rows: with fewer than 2(k + 1) rows
# the fit describes its own noise and its figures describe the fit, not the sensor, so training
# is refused. Below 6(k + 1) rows, ASTM E1655's minimum calibration set for a mean-centred
# model, the card carries a warning. An RMSE from n rows has a relative standard error of about
# 1/sqrt(2n): below 10 held-out rows (22 %) the held-out figures get a warning too.
MIN_ROWS_PER_PARAMETER = 2
ASTM_E1655_ROWS_PER_PARAMETER = 6
MIN_RELIABLE_HOLDOUT = 10


def max_components_for(n_train: int) -> int:
    """The most components a calibration on ``n_train`` rows may have (see above)."""
    return n_train // MIN_ROWS_PER_PARAMETER - 1


def small_data_warnings(n_train: int, n_holdout: int, n_components: int) -> list[str]:
    """What a reviewer must know about the size of a calibration, in words (empty if none)."""
    warnings = []
    needed = ASTM_E1655_ROWS_PER_PARAMETER * (n_components + 1)
    if n_train < needed:
        warnings.append(
            f"calibrated on {n_train} rows for {n_components} components; ASTM E1655 asks for "
            f"at least 6(k+1) = {needed}: the figures may be optimistic"
        )
    if 0 < n_holdout < MIN_RELIABLE_HOLDOUT:
        warnings.append(
            f"the held-out figures come from {n_holdout} rows: an RMSE from so few rows has a "
            f"relative standard error of about {1 / math.sqrt(2 * n_holdout):.0%}"
        )
    return warnings


def create_model(session: Session, *, data: SoftSensorModelCreate, actor: User) -> SoftSensorModel:
    if model_rows.model_by_name(session, data.name) is not None:
        raise Conflict(f"model {data.name!r} already exists")
    model = SoftSensorModel(**data.model_dump(exclude={"reason"}), created_by_id=actor.id)
    return audit.record_created(
        session,
        model,
        actor=actor,
        action="model.create",
        entity_type="model",
        reason=data.reason,
        after=data.model_dump(exclude={"reason"}),
    )


def get_model(session: Session, name: str, *, for_update: bool = False) -> SoftSensorModel:
    model = model_rows.model_by_name(session, name, for_update=for_update)
    if model is None:
        raise NotFound(f"model {name!r} does not exist")
    return model


def get_version(session: Session, name: str, version: int) -> ModelVersion:
    model = get_model(session, name)
    row = model_rows.version(session, model.id, version)
    if row is None:
        raise NotFound(f"model {name!r} has no version {version}")
    return row


def next_version_number(session: Session, model: SoftSensorModel) -> int:
    """The number of the model's next version: max + 1 (1 for the first).

    Race-free only while the caller holds the model row lock (``get_model(...,
    for_update=True)``) until its transaction ends: every writer of versions takes that lock
    first, so no two transactions can read the same maximum.
    """
    return model_rows.next_version_number(session, model.id)


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
    n_train, cap = int(split.train.size), max_components_for(int(split.train.size))
    if (n_components or 1) > cap:
        asked = f"{n_components} components" if n_components else "a PLS calibration"
        raise InvalidInput(
            f"{n_train} calibration rows are too few for {asked}: k components need at least "
            f"2(k+1) rows (here at most {max(cap, 0)} components); below that the figures "
            "describe the fit, not the sensor. Use fewer components or more data"
        )
    max_components = min(data.max_components, cap)
    estimator = PLSSoftSensor(
        n_components,
        max_components=max_components,
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
        "max_components": max_components,
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
        intended_use_statement=data.intended_use_statement,
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
    return audit.record_created(
        session,
        version,
        actor=actor,
        action="model_version.create",
        entity_type="model_version",
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


def version_dataset(session: Session, version: ModelVersion) -> Dataset:
    ds = dataset_rows.by_id(session, version.dataset_id)
    assert ds is not None  # foreign key
    return ds


def describe_models(
    session: Session, models: Sequence[SoftSensorModel]
) -> list[SoftSensorModelRead]:
    """API views of ``models`` with creator names and latest version numbers (two queries)."""
    latest = model_rows.latest_version_numbers(session, (m.id for m in models))
    users = user_rows.usernames(session, (m.created_by_id for m in models))
    return [
        read_from(
            SoftSensorModelRead,
            m,
            created_by=users.get(m.created_by_id, "?"),
            latest_version=latest.get(m.id),
        )
        for m in models
    ]


def describe_model(session: Session, model: SoftSensorModel) -> SoftSensorModelRead:
    return describe_models(session, [model])[0]


def list_models(
    session: Session,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    model_ids: Iterable[uuid.UUID] | None = None,
    version_domain_ids: Iterable[uuid.UUID] | None = None,
) -> tuple[list[SoftSensorModel], str | None]:
    """Models in name order, ``limit`` at a time (None: all), and the next page's cursor;
    ``model_ids`` and ``version_domain_ids`` narrow the list (a service account's scope)."""
    after = decode_name_cursor(cursor) if cursor is not None else None
    rows = model_rows.models_by_name(
        session,
        after=after,
        limit=None if limit is None else limit + 1,
        model_ids=model_ids,
        version_domain_ids=version_domain_ids,
    )
    page, last = next_page(rows, limit)
    return page, None if last is None else encode_name_cursor(last.name)


def list_versions(
    session: Session,
    name: str,
    *,
    after: int | None = None,
    limit: int | None = None,
    domain_ids: Iterable[uuid.UUID] | None = None,
) -> list[ModelVersion]:
    """The model's versions in number order, those numbered above ``after``, at most
    ``limit``; ``domain_ids``: only those reading one of these domains (a scope)."""
    model = get_model(session, name)
    return model_rows.versions_of(
        session, model.id, after=after, limit=limit, domain_ids=domain_ids
    )


def versions_in_status(
    session: Session, statuses: Sequence[VersionStatus], *, limit: int = 200
) -> list[VersionCard]:
    """The cards of the newest ``limit`` versions (of any model) in one of ``statuses``."""
    return describe_versions(session, model_rows.versions_in_status(session, statuses, limit=limit))


VersionCard = TrainedVersionRead | TransferredVersionRead
SOURCE_LIMITS_BASIS = (
    "the source version's limits (the transfer was recorded before limits were calibrated for "
    "the target domain)"
)


def in_domain_figures(version: ModelVersion) -> tuple[dict[str, Any] | None, str | None]:
    """A trained version's own figures: held-out rows if it had any, else cross-validation."""
    if version.metrics.get("holdout"):
        return version.metrics["holdout"], "held-out rows of the source training dataset"
    if version.metrics.get("cv"):
        return version.metrics["cv"], "cross-validation over the source training dataset"
    return None, None


def metric_bases(version: ModelVersion) -> dict[str, str | None]:
    """What each of a trained version's figures was computed on, in words."""
    split, selection = version.split, version.component_selection
    n_train, n_holdout = int(split["n_train"]), int(split["n_holdout"])
    folds, scheme = selection.get("cv_folds"), selection.get("cv_scheme")
    return {
        "cv_basis": (
            f"cross-validated: {folds}-fold ({scheme}) out-of-fold predictions over the "
            f"{n_train} training rows"
            if version.metrics.get("cv")
            else None
        ),
        "holdout_basis": (
            f"held out: {n_holdout} rows of the training dataset the fit never saw"
            if version.metrics.get("holdout")
            else None
        ),
        "calibration_basis": (
            f"in-sample: the {n_train} training rows the fit saw (optimistic, not a test)"
        ),
    }


def describe_versions(session: Session, versions: Sequence[ModelVersion]) -> list[VersionCard]:
    """Cards of ``versions``; the related rows are read once for all of them."""
    models = model_rows.models_by_ids(session, (v.model_id for v in versions))
    domains = domain_rows.by_ids(session, (v.domain_id for v in versions))
    users = user_rows.usernames(session, (v.created_by_id for v in versions))
    sources = model_rows.versions_by_ids(session, (v.source_version_id for v in versions))
    transfers = model_rows.transfers_by_ids(session, (v.transfer_id for v in versions))
    aliases = alias_rows.current_by_version(session, (v.id for v in versions))
    datasets = dataset_rows.by_ids(
        session,
        [v.dataset_id for v in versions]
        + [
            dataset_id
            for t in transfers.values()
            for dataset_id in (
                t.target_standards_dataset_id,
                t.source_standards_dataset_id,
                t.validation_dataset_id,
            )
        ],
    )

    signed = signature_rows.of_entities(session, [v.id for v in versions] + list(transfers.keys()))
    signatures = approval.signed_views([*versions, *transfers.values()], signed)

    def sha(dataset_id: uuid.UUID | None) -> str | None:
        return datasets[dataset_id].sha256 if dataset_id is not None else None

    cards: list[VersionCard] = []
    for v in versions:
        ds = datasets[v.dataset_id]
        label = f"{models[v.model_id].name} v{v.version}"
        transfer_of_v = transfers.get(v.transfer_id) if v.transfer_id is not None else None
        blockers = approval.version_blockers(
            v,
            label,
            signatures[v.id],
            transfer=transfer_of_v,
            transfer_signatures=signatures[transfer_of_v.id] if transfer_of_v else [],
        )
        common: dict[str, Any] = {
            "model_name": models[v.model_id].name,
            "domain": domains[v.domain_id].name,
            "operating_range": {"min": v.operating_range_min, "max": v.operating_range_max},
            "axis_unit": ds.axis_unit,
            "n_channels": ds.n_channels,
            "axis_min": float(ds.axis[0]),
            "axis_max": float(ds.axis[-1]),
            "created_by": users.get(v.created_by_id, "?"),
            "qualified": is_qualified(v.status, v.review_due_at),
            "signatures": signatures[v.id],
            "approvable": not blockers,
            "approval_blockers": [b.detail for b in blockers],
            "aliases": aliases.get(v.id, []),
            "warnings": small_data_warnings(
                int(v.split["n_train"]), int(v.split["n_holdout"]), v.n_components
            ),
        }
        if v.transfer_id is None or v.source_version_id is None:
            cards.append(
                read_from(
                    TrainedVersionRead,
                    v,
                    kind="trained",
                    dataset_sha256=ds.sha256,
                    metrics={**v.metrics, **metric_bases(v)},
                    **common,
                )
            )
            continue
        transfer = transfers[v.transfer_id]
        applicability = (transfer.result or {}).get("applicability")
        source_figures, source_basis = in_domain_figures(sources[v.source_version_id])
        cards.append(
            read_from(
                TransferredVersionRead,
                v,
                kind="transferred",
                source_version=sources[v.source_version_id].version,
                transfer_number=transfer.number,
                transfer_verdict=transfer.verdict,
                source_training_dataset_sha256=ds.sha256,
                source_component_selection=v.component_selection,
                source_split=v.split,
                source_in_domain_metrics=source_figures,
                source_in_domain_basis=source_basis,
                target_standards_dataset_sha256=sha(transfer.target_standards_dataset_id),
                source_standards_dataset_sha256=sha(transfer.source_standards_dataset_id),
                validation_dataset_sha256=sha(transfer.validation_dataset_id),
                limits_basis=applicability["summary"] if applicability else SOURCE_LIMITS_BASIS,
                **common,
            )
        )
    return cards


def describe_version(session: Session, version: ModelVersion) -> VersionCard:
    return describe_versions(session, [version])[0]


def lineage(session: Session, name: str, version: int) -> LineageRead:
    """A version's lineage: its model's versions, their transfers and datasets as a graph, with
    the nodes the version descends from (ancestors) and those made from it (descendants).

    Transfers only ever create versions of the same model, so the graph is read from the
    model's versions and the transfers that start at them: a fixed number of statements.
    """
    start = get_version(session, name, version)
    model = get_model(session, name)
    versions = model_rows.versions_of(session, model.id)
    transfers = transfer_rows.from_versions(session, (v.id for v in versions))
    domains = domain_rows.by_ids(
        session, {v.domain_id for v in versions} | {t.target_domain_id for t in transfers}
    )
    dataset_ids = {v.dataset_id for v in versions} | {d for t in transfers for d in t.dataset_ids}
    datasets = dataset_rows.by_ids(session, dataset_ids)

    nodes: dict[uuid.UUID, LineageNode] = {}
    edges: list[LineageEdge] = []
    for d in datasets.values():
        nodes[d.id] = LineageNode(
            kind="dataset",
            id=d.id,
            label=d.name,
            sha256=d.sha256,
            domain=domains[d.domain_id].name if d.domain_id in domains else None,
        )
    for v in versions:
        nodes[v.id] = LineageNode(
            kind="version",
            id=v.id,
            label=f"{model.name} v{v.version}",
            status=v.status.value,
            domain=domains[v.domain_id].name,
        )
        if v.transfer_id is None:  # a transferred version carries its source's dataset id
            edges.append(LineageEdge(source=v.dataset_id, target=v.id, relation="training_dataset"))
    for t in transfers:
        nodes[t.id] = LineageNode(
            kind="transfer",
            id=t.id,
            label=f"transfer #{t.number}",
            status=t.status.value,
            domain=domains[t.target_domain_id].name,
        )
        edges.append(
            LineageEdge(source=t.source_version_id, target=t.id, relation="source_version")
        )
        for dataset_id, relation in (
            (t.target_standards_dataset_id, "target_standards"),
            (t.source_standards_dataset_id, "source_standards"),
            (t.validation_dataset_id, "validation"),
        ):
            if dataset_id is not None:
                edges.append(LineageEdge(source=dataset_id, target=t.id, relation=relation))
    for v in versions:
        if v.transfer_id is not None:
            edges.append(LineageEdge(source=v.transfer_id, target=v.id, relation="created"))

    def reach(forward: bool) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        frontier = [start.id]
        while frontier:
            node = frontier.pop()
            for e in edges:
                nxt = e.target if forward and e.source == node else None
                if not forward and e.target == node:
                    nxt = e.source
                if nxt is not None and nxt not in seen:
                    seen.append(nxt)
                    frontier.append(nxt)
        return seen

    descendants = reach(forward=True)
    ancestors = reach(forward=False)
    keep = {start.id, *ancestors, *descendants}
    return LineageRead(
        version=nodes[start.id],
        nodes=[n for n in nodes.values() if n.id in keep],
        edges=[e for e in edges if e.source in keep and e.target in keep],
        ancestors=ancestors,
        descendants=descendants,
    )
