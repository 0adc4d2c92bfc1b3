"""Calibration transfers run by the service: plan, standards, record, target version.

A transfer moves a trained soft-sensor version from its (source) measurement domain to a target
domain. It is opened with its plan — method, number of standards, change control, intended use,
operating range, acceptance criteria — before any target-probe data is seen, and completed once,
in one transaction, when the target probe's standards arrive: the uploads are pinned as
datasets, the standards are chosen by Kennard–Stone on the target spectra and paired with
source-probe spectra of the same samples, the transfer is fitted (or chosen by cross-validation
over the standards), naive and post-transfer metrics are computed on data the fit did not see,
the acceptance criteria are evaluated, the collapsed transfer + PLS model is stored and a new
version of the model is created in status ``pending_requalification`` with its lineage (source
version -> transfer -> target version). A completed record is immutable (database trigger).

Locks are taken in the order every writer uses — the model row, then (here) the transfer row,
then the audit chain head — and the numerical work runs before any of them is taken.
"""

from __future__ import annotations

import math
import platform
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sklearn
from sqlalchemy.orm import Session

from app import __version__
from app.core.kennard_stone import kennard_stone
from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.core.spectra import FloatArray, check_same_axis
from app.core.transfer import (
    DS,
    PDS,
    CalibrationTransfer,
    TransferSelection,
    fit_transfer,
    select_transfer,
)
from app.db.base import utcnow
from app.db.models import (
    Dataset,
    Domain,
    ModelVersion,
    SoftSensorModel,
    User,
)
from app.db.models import Transfer as TransferRow
from app.db.repositories import transfers as transfers_repo
from app.db.repositories import users as users_repo
from app.enums import TransferMethod, TransferStatus, VersionStatus
from app.errors import (
    Conflict,
    DomainError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from app.schemas.datasets import DatasetCreate
from app.schemas.transfers import (
    MAX_CANDIDATES,
    MIN_CV_STANDARDS,
    StandardsForm,
    TransferCreate,
)
from app.services import audit, datasets, domains, models
from app.services.artifacts import dump_npz, load_npz, put_artifact
from app.settings import get_settings
from app.store import ArtifactStore

SELECTION_METHOD = "Kennard–Stone on target spectra"
CV_BASIS = "cross-validated over the standards (no validation set)"
VALIDATION_BASIS = "validation set: target-probe samples that are not among the standards"
CV_FOLDS: Literal["loo"] = "loo"  # leave-one-out over the standards, as in app.core.demo
SOURCE_FROM_TRAINING = "source training dataset"
SOURCE_UPLOADED = "uploaded"
_SPECTRAL = frozenset({"pds", "ds"})
_MAX_IDS_SHOWN = 10


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its exact bytes and the client's file name."""

    blob: bytes
    filename: str | None


@dataclass(frozen=True)
class StandardsFiles:
    target_standards: Upload
    source_standards: Upload | None = None
    validation: Upload | None = None


# --------------------------------------------------------------------------------------------
# Look-ups
# --------------------------------------------------------------------------------------------


def get_transfer(session: Session, ref: str, *, for_update: bool = False) -> TransferRow:
    """A transfer by its number (``7``) or its UUID."""
    text = ref.strip()
    if text.isdigit():
        row = transfers_repo.get_by_number(session, int(text), for_update=for_update)
    else:
        try:
            transfer_id = uuid.UUID(text)
        except ValueError:
            raise NotFound(
                f"transfer {ref!r} does not exist: refer to a transfer by its number or UUID"
            ) from None
        row = transfers_repo.get_by_id(session, transfer_id, for_update=for_update)
    if row is None:
        raise NotFound(f"transfer {ref!r} does not exist")
    return row


def list_transfers(
    session: Session,
    *,
    status: TransferStatus | None = None,
    model: str | None = None,
    domain: str | None = None,
    change_control: str | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[TransferRow]:
    """Transfers in number order; ``domain`` matches the source or the target domain.

    ``after`` (a transfer number) and ``limit`` page through them: numbers never change, so
    a page once read stays the same and new transfers land at the end."""
    return transfers_repo.list_page(
        session,
        status=status,
        model_id=models.get_model(session, model).id if model is not None else None,
        domain_id=domains.get_domain(session, domain).id if domain is not None else None,
        change_control=change_control,
        after=after,
        limit=limit,
    )


def _source_version(session: Session, model: SoftSensorModel, version: int) -> ModelVersion:
    row = transfers_repo.source_version(session, model.id, version)
    if row is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    return row


# --------------------------------------------------------------------------------------------
# Open
# --------------------------------------------------------------------------------------------


def _fixed_params(data: TransferCreate) -> dict[str, float | int | str]:
    """The fixed method's parameters, the core's defaults filled in."""
    given = data.params.model_dump(exclude_none=True) if data.params else {}
    if data.method is TransferMethod.pds:
        return PDS().params() | given
    if data.method is TransferMethod.ds:
        return DS().params() | given
    return {}


def _lock_transfer_numbering(session: Session) -> None:
    # Transfer numbers are global, not per model, so the model row lock alone would let two
    # transfers of different models read the same max(number). Every write transaction ends by
    # appending to the audit chain under the audit-head row lock; taking that lock now, after
    # the model row (the order every writer uses), serializes the numbering across workers.
    # On SQLite, BEGIN IMMEDIATE already serializes writers.
    audit.lock_chain(session)


def open_transfer(session: Session, *, data: TransferCreate, actor: User) -> TransferRow:
    """Record the plan of a transfer (status ``awaiting_standards``), audited.

    Raises
    ------
    NotFound
        Unknown model, version or target domain.
    InvalidInput
        The target domain is the source version's; the source version is itself a transferred
        version; the operating range leaves the source version's; a PDS window wider than the
        spectrum.
    """
    model = models.get_model(session, data.source_model, for_update=True)  # lock order: 1st
    source = _source_version(session, model, data.source_version)
    if source.transfer_id is not None:
        raise InvalidInput(
            f"{model.name} v{source.version} is itself a transferred version; transfer from the "
            "trained version it comes from, so every record starts from a calibration"
        )
    target = domains.get_domain(session, data.target_domain)
    if target.id == source.domain_id:
        raise InvalidInput(
            f"the target domain {target.name!r} is the domain {model.name} v{source.version} "
            "already reads; a transfer needs another probe"
        )
    lo, hi = data.operating_range.min, data.operating_range.max
    src_lo, src_hi = source.operating_range_min, source.operating_range_max
    if lo < src_lo or hi > src_hi:
        raise InvalidInput(
            f"the operating range [{lo:g}, {hi:g}] {model.units} lies outside the operating "
            f"range of {model.name} v{source.version}, [{src_lo:g}, {src_hi:g}] {model.units}; "
            "a transfer cannot widen the range the source was calibrated for"
        )
    params = _fixed_params(data)
    n_channels = models.version_dataset(session, source).n_channels
    if "window" in params and int(params["window"]) > n_channels:
        raise InvalidInput(
            f"the PDS window ({params['window']} channels) is wider than the spectrum "
            f"({n_channels} channels)"
        )

    _lock_transfer_numbering(session)
    transfer = TransferRow(
        number=transfers_repo.next_number(session),
        status=TransferStatus.awaiting_standards,
        source_version_id=source.id,
        target_domain_id=target.id,
        method_requested=data.method,
        n_standards=data.n_standards,
        fixed_params=params,
        change_control=data.change_control,
        intended_use=data.intended_use.value,
        operating_range_min=lo,
        operating_range_max=hi,
        acceptance=data.acceptance.model_dump(),
        reason=data.reason,
        created_by_id=actor.id,
    )
    session.add(transfer)
    session.flush()  # ids now; the caller commits
    audit.record(
        session,
        actor=actor,
        action="transfer.open",
        entity_type="transfer",
        entity_id=transfer.id,
        reason=data.reason,
        after={
            "number": transfer.number,
            "status": transfer.status,
            "source_model": model.name,
            "source_version": source.version,
            "source_domain_id": source.domain_id,
            "target_domain": target.name,
            "method": data.method,
            "n_standards": data.n_standards,
            "fixed_params": params,
            "change_control": data.change_control,
            "intended_use": data.intended_use,
            "operating_range": [lo, hi],
            "acceptance": transfer.acceptance,
        },
    )
    return transfer


# --------------------------------------------------------------------------------------------
# Standards: parse and check (no writes)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A parsed upload with its label ("target standards", ...)."""

    label: str
    upload: Upload
    X: FloatArray
    y: FloatArray
    sample_ids: list[str]


def _parse(
    upload: Upload,
    label: str,
    *,
    reference_column: str,
    sample_id_column: str,
    spectral_prefix: str,
    axis: FloatArray,
) -> _Table:
    """Validate one uploaded file as registration would, and check its axis against the model's.

    The same checks run again in ``register_dataset``; doing them first keeps every refusal
    ahead of the first write, and the numerical work ahead of the locks.
    """
    settings = get_settings()
    try:
        if len(upload.blob) > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"the file is {len(upload.blob)} bytes; the upload limit is "
                f"{settings.max_upload_bytes} bytes"
            )
        parsed = datasets.parse_spectral_table(
            upload.blob,
            file_format=datasets.detect_format(upload.blob, upload.filename),
            reference_column=reference_column,
            sample_id_column=sample_id_column,
            spectral_prefix=spectral_prefix,
            max_rows=settings.max_dataset_rows,
            max_channels=settings.max_dataset_channels,
        )
    except DomainError as exc:
        raise type(exc)(f"{label} file: {exc.detail}") from None
    try:
        check_same_axis(axis, parsed.axis, what=f"the {label} file's spectral")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    assert parsed.sample_ids is not None  # sample_id_column was given
    return _Table(label, upload, parsed.X, parsed.y, parsed.sample_ids)


def _shown(ids: Sequence[str]) -> str:
    head = ", ".join(repr(s) for s in ids[:_MAX_IDS_SHOWN])
    more = f" and {len(ids) - _MAX_IDS_SHOWN} more" if len(ids) > _MAX_IDS_SHOWN else ""
    return head + more


def _load_source_model(store: ArtifactStore, version: ModelVersion) -> LinearSoftSensor:
    arrays, _ = load_npz(store.get(version.artifact_sha256))
    try:
        serving = ServingModel.from_arrays(arrays)
    except ValueError as exc:
        raise IntegrityFailure(
            f"artifact {version.artifact_sha256} of the source version does not load: {exc}"
        ) from exc
    return serving.source


def _source_in_domain(version: ModelVersion) -> tuple[dict[str, Any] | None, str | None]:
    """The source version's own figures: held-out rows if it had any, else cross-validation."""
    if version.metrics.get("holdout"):
        return version.metrics["holdout"], "held-out rows of the source training dataset"
    if version.metrics.get("cv"):
        return version.metrics["cv"], "cross-validation over the source training dataset"
    return None, None


def _acceptance(
    criteria: Mapping[str, Any], post: Mapping[str, Any], source: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], str]:
    """Each criterion with its limit, observed value and outcome; verdict pass only if all pass."""
    rmse = post.get("rmse")
    results: list[dict[str, Any]] = []
    if criteria.get("max_rmse") is not None:
        limit = float(criteria["max_rmse"])
        results.append(
            {
                "criterion": "max_rmse",
                "limit": limit,
                "observed": rmse,
                "passed": rmse is not None and rmse <= limit,
            }
        )
    if criteria.get("max_rmse_ratio") is not None:
        limit = float(criteria["max_rmse_ratio"])
        source_rmse = source.get("rmse") if source else None
        ratio = None
        if rmse is not None and source_rmse:
            value = rmse / source_rmse
            ratio = value if math.isfinite(value) else None
        results.append(
            {
                "criterion": "max_rmse_ratio",
                "limit": limit,
                "observed": ratio,
                "passed": ratio is not None and ratio <= limit,
            }
        )
    return results, "pass" if all(r["passed"] for r in results) else "fail"


def _diagnostics_note(method: str) -> str:
    if method in _SPECTRAL:
        return (
            "Hotelling T² and Q are computed in the source model's latent space after the "
            f"{method.upper()} transfer maps target-probe spectra to the source basis; the limits "
            "are the source version's, not re-estimated on target-probe data"
        )
    what = "slope/bias correction" if method == "sbc" else "no correction"
    return (
        f"{what} leaves the spectra unmapped: Hotelling T² and Q compare raw target-probe "
        "spectra with the source version's limits, so they also reflect the probe difference"
    )


@dataclass(frozen=True)
class _Computed:
    """Everything the standards step computes before it writes anything."""

    target: _Table
    source: _Table | None
    validation: _Table | None
    reference_column: str
    sample_id_column: str
    spectral_prefix: str
    axis_unit: str
    serving: ServingModel
    result: dict[str, Any]
    metrics: dict[str, Any]
    method: str
    verdict: str


def _compute(
    session: Session,
    store: ArtifactStore,
    *,
    transfer: TransferRow,
    source: ModelVersion,
    model: SoftSensorModel,
    files: StandardsFiles,
    form: StandardsForm,
) -> _Computed:
    """Parse, check, select standards, fit, and compute metrics and verdict. Writes nothing."""
    src_record = models.version_dataset(session, source)
    linear = _load_source_model(store, source)
    reference_column = form.reference_column or src_record.reference_column
    prefix = form.spectral_prefix or src_record.spectral_prefix
    axis_unit: str
    if form.axis_unit is not None:
        axis_unit = form.axis_unit
    elif form.spectral_prefix is None:
        axis_unit = src_record.axis_unit
    else:
        axis_unit = datasets.resolve_axis_unit(prefix, None)
    if axis_unit != src_record.axis_unit:
        raise InvalidInput(
            f"the axis unit {axis_unit!r} differs from the source model's {src_record.axis_unit!r}"
        )

    def parse(upload: Upload | None, label: str) -> _Table | None:
        if upload is None:
            return None
        return _parse(
            upload,
            label,
            reference_column=reference_column,
            sample_id_column=form.sample_id_column,
            spectral_prefix=prefix,
            axis=linear.axis,
        )

    tgt = parse(files.target_standards, "target standards")
    assert tgt is not None
    src_up = parse(files.source_standards, "source standards")
    val = parse(files.validation, "validation")

    # Pairing: every target standard needs the same sample on the source probe.
    if src_up is not None:
        src_ids, src_X, src_y = src_up.sample_ids, src_up.X, src_up.y
        origin, where = SOURCE_UPLOADED, "the source standards file"
    else:
        train = datasets.load_dataset_arrays(session, store, src_record.sha256)
        if train.sample_ids is None:
            raise InvalidInput(
                f"the training dataset of {model.name} v{source.version} has no sample ids, so "
                "target standards cannot be paired with it; upload source_standards (the same "
                "samples measured on the source probe)"
            )
        src_ids, src_X, src_y = train.sample_ids, train.X, train.y
        origin = SOURCE_FROM_TRAINING
        where = f"the training dataset of {model.name} v{source.version}"
    row_of = {sid: i for i, sid in enumerate(src_ids)}
    unpaired = [sid for sid in tgt.sample_ids if sid not in row_of]
    if unpaired:
        raise InvalidInput(
            f"{len(unpaired)} target standard(s) have no source-probe row with the same sample "
            f"id in {where}: {_shown(unpaired)}"
        )
    if val is not None:
        in_val = set(val.sample_ids)
        shared = [sid for sid in tgt.sample_ids if sid in in_val]
        if shared:
            raise InvalidInput(
                f"{len(shared)} standard(s) are also in the validation set: {_shown(shared)}; "
                "post-transfer metrics must be computed on samples the transfer did not use"
            )
    n_std, n_offered = transfer.n_standards, len(tgt.sample_ids)
    if n_offered > MAX_CANDIDATES:
        raise InvalidInput(
            f"{n_offered} candidate standards offered; Kennard–Stone selection takes at most "
            f"{MAX_CANDIDATES}"
        )
    if n_offered < n_std:
        raise InvalidInput(
            f"the transfer plans {n_std} standards: need {n_std} target standards, got {n_offered}"
        )
    method = transfer.method_requested
    if val is None and n_std < MIN_CV_STANDARDS:
        raise InvalidInput(
            f"without a validation set the metrics are cross-validated over the standards, "
            f"which needs at least {MIN_CV_STANDARDS}; the plan has {n_std}"
        )
    params = dict(transfer.fixed_params)
    p = int(linear.axis.shape[0])
    if "window" in params and int(params["window"]) > p:
        raise InvalidInput(
            f"the PDS window ({params['window']} channels) is wider than the spectrum "
            f"({p} channels)"
        )

    # Standards: Kennard–Stone on the target spectra (all of them, in KS order, when the
    # number offered is the number planned).
    chosen = kennard_stone(tgt.X, n_std)
    Xt = tgt.X[chosen]
    paired = np.asarray([row_of[tgt.sample_ids[i]] for i in chosen], dtype=np.intp)
    Xs, y_src = src_X[paired], src_y[paired]
    y = tgt.y[chosen]
    standard_ids = [tgt.sample_ids[i] for i in chosen]

    selection: TransferSelection | None = None
    try:
        if method is TransferMethod.auto or val is None:
            candidates = None if method is TransferMethod.auto else [(method.value, params)]
            selection = select_transfer(
                Xs,
                Xt,
                coef=linear.coef,
                intercept=linear.intercept,
                y_ref=y,
                candidates=candidates,
                cv=CV_FOLDS,
            )
            fitted: CalibrationTransfer = selection.transfer
        else:
            fitted = fit_transfer(
                method.value,
                Xs,
                Xt,
                coef=linear.coef,
                intercept=linear.intercept,
                y_ref=y,
                **params,
            )
    except ValueError as exc:
        raise InvalidInput(f"the transfer could not be fitted on these standards: {exc}") from None
    serving = ServingModel.transferred(linear, fitted)
    method_chosen = fitted.method

    if val is not None:
        naive = models.metrics_record(val.y, linear.predict(val.X))
        post = models.metrics_record(val.y, serving.predict(val.X))
        basis = VALIDATION_BASIS
    else:
        assert selection is not None
        naive = models.metrics_record(y, linear.predict(Xt))
        post = models.metrics_record(selection.cv_reference, selection.cv_predictions)
        basis = CV_BASIS
    source_metrics, source_basis = _source_in_domain(source)
    results, verdict = _acceptance(transfer.acceptance, post, source_metrics)

    result = audit.jsonable(
        {
            "units": model.units,
            "source_metrics": source_metrics,
            "source_metrics_basis": source_basis,
            "naive_metrics": naive,
            "post_transfer_metrics": post,
            "metrics_basis": basis,
            "method_chosen": method_chosen,
            "parameters": fitted.params(),
            "n_candidates": n_offered,
            "standard_sample_ids": standard_ids,
            "selection_method": SELECTION_METHOD,
            "reference_column": reference_column,
            "source_standards_origin": origin,
            "reference_agreement_max_abs": float(np.max(np.abs(y - y_src))),
            "n_validation": len(val.sample_ids) if val is not None else None,
            "cv_table": selection.cv_table if selection is not None else None,
            "cv_skipped": selection.skipped if selection is not None else None,
            "scheme": selection.scheme if selection is not None else None,
            "cv_reference": selection.reference if selection is not None else None,
            "acceptance_results": results,
            "verdict": verdict,
            "diagnostics": _diagnostics_note(method_chosen),
        }
    )
    version_metrics = {
        "units": model.units,
        "basis": basis,
        "post_transfer": post,
        "naive": naive,
    }
    return _Computed(
        target=tgt,
        source=src_up,
        validation=val,
        reference_column=reference_column,
        sample_id_column=form.sample_id_column,
        spectral_prefix=prefix,
        axis_unit=axis_unit,
        serving=serving,
        result=result,
        metrics=audit.jsonable(version_metrics),
        method=method_chosen,
        verdict=verdict,
    )


# --------------------------------------------------------------------------------------------
# Standards: write
# --------------------------------------------------------------------------------------------


def _register(
    session: Session,
    store: ArtifactStore,
    table: _Table,
    *,
    transfer: TransferRow,
    domain: Domain,
    computed: _Computed,
    units: str,
    reason: str,
    actor: User,
) -> Dataset:
    name = f"transfer #{transfer.number} {table.label}"
    if table.upload.filename:
        name = f"{name} ({table.upload.filename})"
    dataset, _ = datasets.register_dataset(
        session,
        store,
        blob=table.upload.blob,
        filename=table.upload.filename,
        data=DatasetCreate(
            name=name[:200],
            domain=domain.name,
            reference_column=computed.reference_column,
            units=units,
            sample_id_column=computed.sample_id_column,
            spectral_prefix=computed.spectral_prefix,
            axis_unit=computed.axis_unit,
            reason=reason,
        ),
        actor=actor,
    )
    return dataset


def upload_standards(
    session: Session,
    store: ArtifactStore,
    *,
    ref: str,
    files: StandardsFiles,
    form: StandardsForm,
    actor: User,
) -> TransferRow:
    """Run the transfer on the uploaded standards and complete its record, in one transaction.

    Raises
    ------
    NotFound
        Unknown transfer.
    Conflict
        The transfer is already completed, or an uploaded file is already pinned with another
        interpretation.
    InvalidInput
        An unreadable or invalid file; a spectral axis other than the source model's; a target
        standard without a source-probe row of the same sample id; a standard that is also in
        the validation set; fewer standards than planned or than the method needs; a transfer
        that cannot be fitted.
    """
    transfer = get_transfer(session, ref)
    if transfer.status != TransferStatus.awaiting_standards:
        raise Conflict(
            f"transfer #{transfer.number} is already completed; a completed record is "
            "immutable — open a new transfer to run it again"
        )
    source = session.get(ModelVersion, transfer.source_version_id)
    assert source is not None  # foreign key
    model = session.get(SoftSensorModel, source.model_id)
    assert model is not None
    computed = _compute(
        session, store, transfer=transfer, source=source, model=model, files=files, form=form
    )

    # Writes, under the locks, in the order every writer takes them.
    models.get_model(session, model.name, for_update=True)
    transfer = get_transfer(session, str(transfer.id), for_update=True)
    if transfer.status != TransferStatus.awaiting_standards:
        raise Conflict(f"transfer #{transfer.number} was completed by another request")
    target_domain = session.get(Domain, transfer.target_domain_id)
    source_domain = session.get(Domain, source.domain_id)
    assert target_domain is not None
    assert source_domain is not None

    def register(table: _Table | None, domain: Domain) -> Dataset | None:
        if table is None:
            return None
        return _register(
            session,
            store,
            table,
            transfer=transfer,
            domain=domain,
            computed=computed,
            units=model.units,
            reason=form.reason,
            actor=actor,
        )

    tgt_ds = register(computed.target, target_domain)
    assert tgt_ds is not None
    src_ds = register(computed.source, source_domain)
    val_ds = register(computed.validation, target_domain)

    source_dataset = models.version_dataset(session, source)
    meta = {
        "kind": "transferred_pls_soft_sensor",
        "model": model.name,
        "units": model.units,
        "transfer": {
            "id": transfer.id,
            "number": transfer.number,
            "method": computed.method,
            "parameters": computed.result["parameters"],
            "change_control": transfer.change_control,
        },
        "source_version": {
            "version": source.version,
            "id": source.id,
            "artifact_sha256": source.artifact_sha256,
            "dataset_sha256": source_dataset.sha256,
        },
        "target_domain": target_domain.name,
        "target_standards_sha256": tgt_ds.sha256,
        "source_standards_sha256": src_ds.sha256 if src_ds else None,
        "validation_sha256": val_ds.sha256 if val_ds else None,
        "diagnostics": computed.result["diagnostics"],
        "axis_unit": computed.axis_unit,
        "versions": {
            "softsensor_registry": __version__,
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
        },
    }
    digest = put_artifact(
        session, store, dump_npz(computed.serving.to_arrays(), audit.jsonable(meta))
    )

    version = ModelVersion(
        model_id=model.id,
        version=models.next_version_number(session, model),  # under the model row lock
        status=VersionStatus.pending_requalification,
        domain_id=target_domain.id,
        dataset_id=source.dataset_id,
        source_version_id=source.id,
        transfer_id=transfer.id,
        artifact_sha256=digest,
        n_components=source.n_components,
        component_selection=source.component_selection,
        split=source.split,
        metrics=computed.metrics,
        operating_range_min=transfer.operating_range_min,
        operating_range_max=transfer.operating_range_max,
        operating_range_source="declared",
        # Diagnostics live in the source basis (see app.core.serving): the source's limits.
        t2_limit_95=source.t2_limit_95,
        t2_limit_99=source.t2_limit_99,
        q_limit_95=source.q_limit_95,
        q_limit_99=source.q_limit_99,
        intended_use=transfer.intended_use,
        reason=transfer.reason,
        created_by_id=actor.id,
    )
    models.add_version(
        session,
        version,
        model=model,
        actor=actor,
        reason=form.reason,
        after={
            "source_version": source.version,
            "transfer_number": transfer.number,
            "transfer_id": transfer.id,
            "domain": target_domain.name,
            "dataset_sha256": source_dataset.sha256,
        },
    )

    before = {"status": transfer.status}
    result = computed.result | {"target_version_id": str(version.id)}
    # One UPDATE: once the row says completed, the database refuses any further change.
    transfer.status = TransferStatus.completed
    transfer.completed_at = utcnow()
    transfer.completed_by_id = actor.id
    transfer.target_standards_dataset_id = tgt_ds.id
    transfer.source_standards_dataset_id = src_ds.id if src_ds else None
    transfer.validation_dataset_id = val_ds.id if val_ds else None
    transfer.method_chosen = computed.method
    transfer.artifact_sha256 = digest
    transfer.verdict = computed.verdict
    transfer.result = result
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="transfer.complete",
        entity_type="transfer",
        entity_id=transfer.id,
        reason=form.reason,
        before=before,
        after={
            "number": transfer.number,
            "status": transfer.status,
            "method_chosen": computed.method,
            "parameters": result["parameters"],
            "standard_sample_ids": result["standard_sample_ids"],
            "target_standards_sha256": tgt_ds.sha256,
            "source_standards_sha256": src_ds.sha256 if src_ds else None,
            "validation_sha256": val_ds.sha256 if val_ds else None,
            "naive_metrics": result["naive_metrics"],
            "post_transfer_metrics": result["post_transfer_metrics"],
            "metrics_basis": result["metrics_basis"],
            "acceptance_results": result["acceptance_results"],
            "verdict": computed.verdict,
            "artifact_sha256": digest,
            "target_version": version.version,
            "target_version_id": version.id,
        },
    )
    return transfer


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


def _domain_fields(domain: Domain) -> dict[str, Any]:
    return {
        "domain": domain.name,
        "instrument": domain.instrument,
        "probe_serial": domain.probe_serial,
        "scale": domain.scale,
        "site": domain.site,
    }


@dataclass(frozen=True)
class RecordRows:
    """The rows a page of transfer records shows, each kind loaded once for the whole page."""

    versions: dict[uuid.UUID, ModelVersion]
    models: dict[uuid.UUID, SoftSensorModel]
    domains: dict[uuid.UUID, Domain]
    dataset_shas: dict[uuid.UUID, str]
    target_versions: dict[uuid.UUID, ModelVersion]
    usernames: dict[uuid.UUID, str]

    @classmethod
    def load(cls, session: Session, transfers: Sequence[TransferRow]) -> RecordRows:
        """Six statements whatever the number of transfers (none for an empty page)."""
        versions = transfers_repo.versions_by_id(session, (t.source_version_id for t in transfers))
        domain_ids = {t.target_domain_id for t in transfers} | {
            v.domain_id for v in versions.values()
        }
        dataset_ids = {v.dataset_id for v in versions.values()} | {
            d
            for t in transfers
            for d in (
                t.target_standards_dataset_id,
                t.source_standards_dataset_id,
                t.validation_dataset_id,
            )
            if d is not None
        }
        return cls(
            versions=versions,
            models=transfers_repo.models_by_id(session, (v.model_id for v in versions.values())),
            domains=transfers_repo.domains_by_id(session, domain_ids),
            dataset_shas=transfers_repo.dataset_shas(session, dataset_ids),
            target_versions=transfers_repo.target_versions(session, (t.id for t in transfers)),
            usernames=users_repo.usernames(
                session, {u for t in transfers for u in (t.created_by_id, t.completed_by_id)}
            ),
        )


def describe_transfer(session: Session, transfer: TransferRow) -> dict[str, Any]:
    """The transfer record: source, target, transfer and governance blocks."""
    return _record(transfer, RecordRows.load(session, [transfer]))


def describe_transfers(session: Session, transfers: Sequence[TransferRow]) -> list[dict[str, Any]]:
    """The records of a page of transfers, with a number of statements independent of its size."""
    rows = RecordRows.load(session, transfers)
    return [_record(t, rows) for t in transfers]


def _record(transfer: TransferRow, rows: RecordRows) -> dict[str, Any]:
    source = rows.versions[transfer.source_version_id]  # foreign keys, here and below
    model = rows.models[source.model_id]
    src_domain = rows.domains[source.domain_id]
    tgt_domain = rows.domains[transfer.target_domain_id]
    target_version = rows.target_versions.get(transfer.id)
    shas = rows.dataset_shas
    users = rows.usernames
    r: dict[str, Any] = transfer.result or {}
    if transfer.result is None:
        in_domain, in_domain_basis = _source_in_domain(source)
    else:
        in_domain, in_domain_basis = r.get("source_metrics"), r.get("source_metrics_basis")

    def sha(dataset_id: uuid.UUID | None) -> str | None:
        return shas.get(dataset_id) if dataset_id is not None else None

    return {
        "id": transfer.id,
        "number": transfer.number,
        "status": transfer.status,
        "source": {
            "model": model.name,
            "units": model.units,
            "version": source.version,
            "version_id": source.id,
            **_domain_fields(src_domain),
            "training_dataset_sha256": shas[source.dataset_id],
            "artifact_sha256": source.artifact_sha256,
            "in_domain_metrics": in_domain,
            "in_domain_basis": in_domain_basis,
        },
        "target": {
            **_domain_fields(tgt_domain),
            "naive_metrics": r.get("naive_metrics"),
            "naive_basis": r.get("metrics_basis"),
        },
        "transfer": {
            "method_requested": transfer.method_requested,
            "method_chosen": transfer.method_chosen,
            "parameters": r.get("parameters"),
            "fixed_params": transfer.fixed_params,
            "n_standards": transfer.n_standards,
            "n_candidates": r.get("n_candidates"),
            "standard_sample_ids": r.get("standard_sample_ids"),
            "selection_method": r.get("selection_method"),
            "reference_column": r.get("reference_column"),
            "target_standards_dataset_sha256": sha(transfer.target_standards_dataset_id),
            "source_standards_dataset_sha256": sha(transfer.source_standards_dataset_id),
            "source_standards_origin": r.get("source_standards_origin"),
            "validation_dataset_sha256": sha(transfer.validation_dataset_id),
            "cv_table": r.get("cv_table"),
            "cv_skipped": r.get("cv_skipped"),
            "scheme": r.get("scheme"),
            "post_transfer_metrics": r.get("post_transfer_metrics"),
            "metrics_basis": r.get("metrics_basis"),
            "acceptance": {
                "criteria": transfer.acceptance,
                "results": r.get("acceptance_results"),
                "verdict": transfer.verdict,
            },
            "diagnostics": r.get("diagnostics"),
        },
        "governance": {
            "requalification_status": target_version.status if target_version else None,
            "operating_range": {
                "min": transfer.operating_range_min,
                "max": transfer.operating_range_max,
            },
            "intended_use": transfer.intended_use,
            "change_control": transfer.change_control,
            "reason": transfer.reason,
            "lineage": {
                "source_version": {"model": model.name, "version": source.version, "id": source.id},
                "transfer": {"number": transfer.number, "id": transfer.id},
                "target_version": (
                    {
                        "model": model.name,
                        "version": target_version.version,
                        "id": target_version.id,
                    }
                    if target_version
                    else None
                ),
            },
            "created_by": users.get(transfer.created_by_id, "?"),
            "created_at": transfer.created_at,
            "completed_by": (
                users.get(transfer.completed_by_id, "?") if transfer.completed_by_id else None
            ),
            "completed_at": transfer.completed_at,
        },
        "artifact_sha256": transfer.artifact_sha256,
    }
