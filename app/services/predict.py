"""Corrected predictions for plant systems, and their prediction log.

A call has two steps, both in the caller's unit of work:

:func:`evaluate`
    resolves ``name`` + ``version``, or ``name`` + ``alias`` (the alias's newest assignment),
    reading fresh what may change at any moment (the version's status and review date, the
    alias pointer; the caller's scope came with the caller's own query) while the rest of the
    version's record is immutable and cached by id; checks a plant caller's scope (403), then
    takes the serving model from an in-process cache keyed by the artifact's sha256 (the
    artifact is read, re-hashed and parsed without pickle once per process), parses the body
    (:mod:`app.services.spectra_bodies`), checks the purpose against the version (409) and
    applies :meth:`~app.core.serving.ServingModel.evaluate` and the flags. It writes nothing.
:func:`record`
    adds one :class:`~app.db.models.PredictionLog` row to the caller's transaction.

A version that is requalification_due because a monitoring rule breached
(:mod:`app.services.monitoring`) still serves evaluation calls; its answers carry the alarms'
messages in ``warnings`` (one indexed read, only for a due version).

Purpose rules: ``evaluation`` (the default) is served by any version that is not retired and
is marked not for GMP use; any other purpose needs a qualified version
(:func:`~app.services.qualification.is_qualified`) whose intended use covers it, else 409
naming both.

Predictions change no record, so they write no audit-chain event: the prediction log, which
the database keeps append-only, is their ALCOA+ record (who, when, which version, alias and
artifact, the sha256 of the exact input bytes, how many spectra, the flag counts, the purpose
and whether it was for GMP use) together with what was reported: ``results`` (predictions,
T², Q, flags and the client's sample ids) and their canonical sha256. The spectra themselves
are not kept.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.core.serving import ServingModel
from app.core.spectra import FloatArray
from app.db.base import utcnow
from app.db.repositories import monitoring as monitoring_repo
from app.db.repositories import predictions as predictions_repo
from app.db.repositories.predictions import VersionRecord, VersionStatusNow
from app.enums import QUALIFIED_STATUSES, PredictionPurpose, TransferStatus, VersionStatus
from app.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    UnvouchedRecord,
    WouldBlock,
)
from app.schemas.predict import FLAG_CONFIDENCE, NOT_FOR_GMP
from app.services import integrity, scopes
from app.services import models as models_service
from app.services.artifacts import load_npz
from app.services.auth import Caller
from app.services.canonical import sha256_hex
from app.services.qualification import is_qualified
from app.services.spectra_bodies import check_purpose, parse_arrow_body, parse_json_body
from app.settings import get_settings
from app.store import ArtifactStore

InputFormat = Literal["json", "arrow"]
FLAG_NAMES = ("outside_operating_range", "t2_exceeded", "q_exceeded")


# --------------------------------------------------------------------------------------------
# the serving-model cache
# --------------------------------------------------------------------------------------------


class ServingModelCache:
    """Bounded LRU of :class:`ServingModel` by artifact sha256, safe across threads.

    An artifact is immutable and named by its sha256, so a cached model never goes stale; the
    store re-hashes the bytes on the one read. Two threads missing at once may both load the
    same artifact; the second result simply replaces the first (same bytes, same model).
    """

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self._models: OrderedDict[str, ServingModel] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, digest: str) -> ServingModel | None:
        """The cached model, or None (never reads the store)."""
        with self._lock:
            model = self._models.get(digest)
            if model is not None:
                self._models.move_to_end(digest)
            return model

    def get(self, store: ArtifactStore, digest: str) -> ServingModel:
        with self._lock:
            model = self._models.get(digest)
            if model is not None:
                self._models.move_to_end(digest)
                return model
        model = _load_serving_model(store, digest)
        with self._lock:
            self._models[digest] = model
            self._models.move_to_end(digest)
            while len(self._models) > self.maxsize:
                self._models.popitem(last=False)
        return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def _load_serving_model(store: ArtifactStore, digest: str) -> ServingModel:
    """The version's model; UnvouchedRecord (409) when its bytes are not the audited ones or
    are no model: the plant's retry would meet the same bytes."""
    try:
        arrays, _meta = load_npz(store.get(digest))  # store.get re-hashes; no pickle
    except IntegrityFailure as exc:
        raise UnvouchedRecord(f"{exc.detail}: it is not served") from exc
    try:
        return ServingModel.from_arrays(arrays)
    except (ValueError, KeyError) as exc:
        raise UnvouchedRecord(f"artifact {digest} is not a servable model: {exc}") from exc


serving_models = ServingModelCache()


# --------------------------------------------------------------------------------------------
# the version being called
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalledVersion:
    """A version as a prediction sees it: its immutable record and its statuses right now
    (and the alias it was called through, if any)."""

    record: VersionRecord
    status: VersionStatus
    transfer_status: TransferStatus | None
    review_due_at: datetime | None
    alias: str | None = None

    @property
    def qualified(self) -> bool:
        """Approved or requalified and not past its review date."""
        return is_qualified(self.status, self.review_due_at)


@dataclass(frozen=True)
class _Cached:
    record: VersionRecord
    # The lifecycle columns in the version's last audited state.
    status: VersionStatus
    review_due_at: datetime | None

    def matches(self, now: VersionStatusNow) -> bool:
        return self.status == now.status and self.review_due_at == now.review_due_at


class _RecordCache:
    """Version id -> :class:`VersionRecord`. Version rows never change except their status,
    which is not cached; ids are random UUIDs, so entries cannot collide across databases.

    A version enters the cache only when its row equals its last audited state (the row
    changed behind the application's back is refused: :class:`~app.errors.UnvouchedRecord`,
    409), and a call whose fresh status or review date is not the audited one checks the row
    again: a legitimate transition is audited and passes, an UPDATE behind the application's
    back does not. So the check costs one comparison per call and two queries per change."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._items: dict[uuid.UUID, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, connection: Connection, now: VersionStatusNow) -> VersionRecord:
        cached = self._items.get(now.version_id)
        if cached is None or not cached.matches(now):
            cached = self._load(connection, now)
        return cached.record

    def _load(self, connection: Connection, now: VersionStatusNow) -> _Cached:
        record = predictions_repo.version_record(connection, now.version_id)
        audited = integrity.check_version(connection, record)
        due = audited["review_due_at"]
        cached = _Cached(
            record,
            VersionStatus(audited["status"]),
            datetime.fromisoformat(due) if due is not None else None,
        )
        if not cached.matches(now):
            # A transition committed between the two reads (PostgreSQL reads each statement
            # in its own snapshot): the status this call read is not the one checked.
            raise Conflict(
                f"{record.model} v{record.version}: its status changed during the call; call again"
            )
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._items.clear()
            self._items[now.version_id] = cached
        return cached

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


version_records = _RecordCache()


def resolve_version(connection: Connection, model_name: str, version: int) -> CalledVersion:
    """The version's record and its current statuses (404 naming what is unknown).

    The spectral prefix is that of the version's dataset: a transferred version reads spectra
    on its source model's axis.
    """
    now = predictions_repo.version_status(connection, model_name=model_name, version=version)
    if now is None:
        with Session(bind=connection) as session:  # joins the connection's transaction
            models_service.get_version(session, model_name, version)  # the precise 404
        raise AssertionError("unreachable: the version exists but the join found nothing")
    return _called(connection, now)


def _called(
    connection: Connection, now: VersionStatusNow, alias: str | None = None
) -> CalledVersion:
    record = version_records.get(connection, now)
    return CalledVersion(record, now.status, now.transfer_status, now.review_due_at, alias)


def resolve_alias(connection: Connection, model_name: str, alias: str) -> CalledVersion:
    """The version ``alias`` names now (its newest assignment, read in this transaction), or
    404: unknown model, unknown alias, or an alias that was withdrawn."""
    now = predictions_repo.alias_status(connection, model_name=model_name, alias=alias)
    if now is None:
        with Session(bind=connection) as session:  # joins the connection's transaction
            models_service.get_model(session, model_name)  # the precise 404
        raise NotFound(f"model {model_name!r} has no alias {alias!r}")
    if now is False:
        raise NotFound(f"alias {alias!r} of {model_name} was withdrawn: it names no version")
    assert isinstance(now, VersionStatusNow)
    return _called(connection, now, alias)


# --------------------------------------------------------------------------------------------
# the call
# --------------------------------------------------------------------------------------------


# sha256 releases the GIL: a large body is hashed on the other core while it is parsed and
# predicted; a small one is hashed inline (a thread hand-off would cost more than the hash).
_hashers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="input-sha256")
_HASH_INLINE_BELOW = 1 << 20


def _hash_in_background(body: bytes) -> Callable[[], str]:
    """Start hashing ``body``; the returned function waits for the hex digest."""
    if len(body) < _HASH_INLINE_BELOW:
        digest = hashlib.sha256(body).hexdigest()
        return lambda: digest
    return _hashers.submit(lambda: hashlib.sha256(body).hexdigest()).result


@dataclass(frozen=True)
class Evaluation:
    """A call's results before it is logged; arrays are aligned with the request rows."""

    version: CalledVersion
    input_sha256: str
    input_format: InputFormat
    purpose: PredictionPurpose
    predictions: FloatArray
    t2: FloatArray
    q: FloatArray
    flags: dict[str, np.ndarray]
    flag_counts: dict[str, int]
    sample_ids: list[str] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def qualified(self) -> bool:
        """The version is approved or requalified and not past its review date."""
        return self.version.qualified

    @property
    def for_gmp(self) -> bool:
        """Fit for a GMP decision: a purpose other than evaluation, which passed its check."""
        return self.purpose is not PredictionPurpose.evaluation

    @property
    def notice(self) -> str | None:
        return None if self.for_gmp else NOT_FOR_GMP

    def results(self) -> dict[str, Any]:
        """What was reported, per row, as the prediction log keeps it."""
        return {
            "predictions": self.predictions.tolist(),
            "t2": self.t2.tolist(),
            "q": self.q.tolist(),
            "flags": {name: self.flags[name].tolist() for name in FLAG_NAMES},
            "sample_ids": self.sample_ids,
        }

    @property
    def n_spectra(self) -> int:
        return int(self.predictions.shape[0])


@dataclass(frozen=True)
class Prediction:
    """A logged call: its evaluation and the prediction-log row written for it."""

    evaluation: Evaluation
    log_id: uuid.UUID
    occurred_at: datetime


def check_purpose_allowed(called: CalledVersion, purpose: PredictionPurpose) -> None:
    """409 unless ``purpose`` may be served by the version: evaluation by any version that
    is not retired, any other purpose only by a qualified version whose intended use covers
    it. The message names the version's state and intended use, and what the purpose needs."""
    needed = purpose.intended_use
    if needed is None:
        return
    record = called.record
    qualified = called.qualified
    if qualified and record.intended_use.covers(needed):
        return
    if qualified:
        state = f"{called.status.value} (qualified)"
    elif called.status in QUALIFIED_STATUSES:
        assert called.review_due_at is not None
        due = called.review_due_at.strftime("%Y-%m-%d %H:%M UTC")
        state = f"{called.status.value} but its periodic review was due on {due} (not qualified)"
    else:
        state = f"{called.status.value} (not qualified)"
    through = f" (alias {called.alias!r})" if called.alias else ""
    raise Conflict(
        f"{record.model} v{record.version}{through} is {state}; purpose {purpose.value!r} "
        f"needs a qualified version whose intended use covers {needed.value} (this one: "
        f"{record.intended_use.value}). Purpose 'evaluation' is served, not for GMP use."
    )


def evaluate(
    connection: Connection,
    store: ArtifactStore,
    *,
    caller: Caller,
    model_name: str,
    version: int | None = None,
    alias: str | None = None,
    body: bytes,
    input_format: InputFormat,
    purpose: str | None,
    may_load: bool = True,
) -> Evaluation:
    """Read the version (by number, or the one ``alias`` names now), check the caller's
    scope, parse ``body``, check the purpose and predict, with flags; writes nothing.

    ``purpose`` is the query parameter; a JSON body may carry it instead (not both); absent,
    it is ``evaluation``. With ``may_load=False`` (on the event loop) a model not yet in the
    cache raises :class:`~app.errors.WouldBlock` rather than reading its artifact.

    Raises
    ------
    NotFound
        Unknown model, version or alias; a withdrawn alias.
    Forbidden
        A plant caller whose scope does not cover the version's domain or model.
    Conflict
        The version is retired; or the purpose needs a qualified version whose intended use
        covers it, and this one is not.
    InvalidInput
        A malformed body, a wrong axis or channel count, a non-finite value, too many rows,
        an unknown purpose, sample ids that are not one unique text per spectrum.
    """
    input_sha256 = _hash_in_background(body)
    if alias is not None:
        called = resolve_alias(connection, model_name, alias)
    else:
        assert version is not None
        called = resolve_version(connection, model_name, version)
    record = called.record
    scopes.check_call(
        caller,
        model_id=record.model_id,
        model=record.model,
        domain_id=record.domain_id,
        domain=record.domain,
    )
    if called.status is VersionStatus.retired:
        raise Conflict(
            f"{record.model} version {record.version} is retired; predict with a current version"
        )
    if may_load:
        model = serving_models.get(store, record.artifact_sha256)
    else:
        cached = serving_models.peek(record.artifact_sha256)
        if cached is None:
            raise WouldBlock(f"artifact {record.artifact_sha256} is not loaded yet")
        model = cached
    parse = parse_json_body if input_format == "json" else parse_arrow_body
    parsed = parse(
        body,
        n_channels=model.coef.shape[0],
        axis=model.axis,
        prefix=record.spectral_prefix,
        max_rows=get_settings().max_predict_spectra,
    )
    if purpose is not None and parsed.purpose is not None:
        raise InvalidInput("give purpose once: in the JSON body or as a query parameter")
    purpose_now = (
        check_purpose(purpose) if purpose is not None else parsed.purpose
    ) or PredictionPurpose.evaluation
    check_purpose_allowed(called, purpose_now)

    y, t2, q = model.evaluate(parsed.spectra)
    # The monitoring alarms standing against the version (only a due version can have any:
    # an alarm makes a qualified version due, and requalifying it closes them).
    warnings = (
        tuple(monitoring_repo.open_alarm_messages(connection, record.id))
        if called.status is VersionStatus.requalification_due
        else ()
    )
    flags = {
        "outside_operating_range": (y < record.operating_range_min)
        | (y > record.operating_range_max),
        "t2_exceeded": t2 > record.t2_limit_99,
        "q_exceeded": q > record.q_limit_99,
    }
    counts = {name: int(np.count_nonzero(flags[name])) for name in FLAG_NAMES}
    any_flag = flags["outside_operating_range"] | flags["t2_exceeded"] | flags["q_exceeded"]
    counts["any_flag"] = int(np.count_nonzero(any_flag))
    return Evaluation(
        version=called,
        input_sha256=input_sha256(),
        input_format=input_format,
        purpose=purpose_now,
        predictions=y,
        t2=t2,
        q=q,
        flags=flags,
        flag_counts=counts,
        sample_ids=parsed.sample_ids,
        warnings=warnings,
    )


def record(connection: Connection, evaluation: Evaluation, *, actor: Caller) -> Prediction:
    """Add the call's prediction-log row to ``connection``'s transaction (executed now)."""
    version = evaluation.version.record
    results = evaluation.results()
    log: dict[str, Any] = {
        "id": uuid.uuid4(),
        "occurred_at": utcnow(),
        "caller_id": actor.id,
        "caller": actor.username,
        "model_version_id": version.id,
        "artifact_sha256": version.artifact_sha256,
        "transfer_id": version.transfer_id,
        "qualified": evaluation.qualified,
        "n_spectra": evaluation.n_spectra,
        "input_sha256": evaluation.input_sha256,
        "input_format": evaluation.input_format,
        "flag_counts": {**evaluation.flag_counts, "flag_confidence": FLAG_CONFIDENCE},
        "purpose": evaluation.purpose.value,
        "alias": evaluation.version.alias,
        "for_gmp": evaluation.for_gmp,
        "results": results,
        "results_sha256": sha256_hex(results),
    }
    predictions_repo.insert_prediction_log(connection, log)
    return Prediction(evaluation, log["id"], log["occurred_at"])
