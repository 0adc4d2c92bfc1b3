"""``POST /models/{name}/versions/{v}/predict`` and ``POST /models/{name}/aliases/{alias}/
predict``: corrected predictions for plant systems."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from app.api.deps import (
    PREDICTOR_ROLES,
    Credentials,
    StoreDep,
    TransactionsDep,
    authorize_caller,
    checked_sender,
)
from app.api.params import AliasName, ModelName, VersionNumber
from app.db.session import Transactions
from app.errors import UnsupportedMediaType, WouldBlock
from app.schemas.common import ERRORS, NOT_FOUND, ErrorBody
from app.schemas.predict import (
    ARROW_STREAM,
    FLAG_CONFIDENCE,
    PredictionRead,
    PredictRequest,
    Purpose,
)
from app.services import predict as predict_service
from app.services.predict import InputFormat
from app.store import LocalStore
from app.telemetry import metrics

# No StrictJSONRoute: the route reads its body itself (spectra_bodies refuses repeated keys).
router = APIRouter(prefix="/models", tags=["predictions"])
_FORMATS: dict[str, InputFormat] = {"application/json": "json", ARROW_STREAM: "arrow"}


def _input_format(request: Request) -> InputFormat:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    input_format = _FORMATS.get(media_type)
    if input_format is None:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'!r} is not accepted: send application/json "
            f"or {ARROW_STREAM} (an Arrow IPC stream, one row per spectrum)"
        )
    return input_format


# The JSON body's schema with its references pointing at the document's components (the
# purpose enum is one: PredictionRead puts it there), not at a local "$defs".
_JSON_SCHEMA = {
    k: v
    for k, v in PredictRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    ).items()
    if k != "$defs"
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": _JSON_SCHEMA},
        ARROW_STREAM: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "Arrow IPC stream, one row per spectrum, in either layout: one "
                "float column <prefix><position> per channel (e.g. wn_400 ... wn_1800, the "
                "prefix of the version's dataset; the column names are the axis; other columns "
                "are ignored), or one column 'spectra' of type FixedSizeList<float64> (list "
                "size = channel count) with the axis in the schema metadata under 'axis' (a "
                "JSON list of numbers) and optionally the prefix under 'prefix'. In either "
                "layout an optional string column 'sample_id' carries the sample ids (one "
                "per row, unique). The purpose goes in the query parameter.",
            }
        },
    },
}


def _payload(logged: predict_service.Prediction) -> dict[str, Any]:
    result = logged.evaluation
    record = result.version.record
    transfer = (
        None
        if record.transfer_id is None
        else {
            "id": record.transfer_id,
            "number": record.transfer_number,
            "status": result.version.transfer_status,
            "verdict": record.transfer_verdict,
        }
    )
    return {
        "model": record.model,
        "version": record.version,
        "alias": result.version.alias,
        "status": result.version.status,
        "qualified": result.qualified,
        "intended_use": record.intended_use,
        "review_due_at": result.version.review_due_at,
        "purpose": result.purpose,
        "for_gmp": result.for_gmp,
        "notice": result.notice,
        "artifact_sha256": record.artifact_sha256,
        "units": record.units,
        "transfer_record": transfer,
        "prediction_log_id": logged.log_id,
        "occurred_at": logged.occurred_at,
        "input_sha256": result.input_sha256,
        "input_format": result.input_format,
        "n_spectra": result.n_spectra,
        "limits": {
            "flag_confidence": FLAG_CONFIDENCE,
            "t2_limit_95": record.t2_limit_95,
            "t2_limit_99": record.t2_limit_99,
            "q_limit_95": record.q_limit_95,
            "q_limit_99": record.q_limit_99,
            "operating_range": {
                "min": record.operating_range_min,
                "max": record.operating_range_max,
            },
            "operating_range_source": record.operating_range_source,
        },
        "predictions": result.predictions,
        "t2": result.t2,
        "q": result.q,
        "flags": result.flags,
        "flag_counts": result.flag_counts,
        "sample_ids": result.sample_ids,
        "warnings": result.warnings,
    }


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **NOT_FOUND,
    409: {
        "model": ErrorBody,
        "description": "the version is retired, or the purpose needs a qualified version "
        "whose intended use covers it; or `integrity_failure`: the version's record differs "
        "from its audited state (changed behind the application's back) or its artifact's "
        "bytes are not the audited ones, so it is not served. Do not retry an "
        "`integrity_failure`: it stays until QA acts (GET /api/v1/audit/verify names the "
        "changes).",
    },
    413: {"model": ErrorBody, "description": "body larger than the upload limit"},
    415: {"model": ErrorBody, "description": "neither JSON nor an Arrow IPC stream"},
}
PurposeQuery = Annotated[
    Purpose | None,
    Query(description="for Arrow bodies (JSON bodies may carry it instead); default evaluation"),
]


@router.post(
    "/{name}/versions/{version}/predict",
    response_model=PredictionRead,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def predict(
    request: Request,
    name: ModelName,
    version: VersionNumber,
    transactions: TransactionsDep,
    store: StoreDep,
    credentials: Credentials,
    purpose: PurposeQuery = None,
) -> Response:
    """Predict the analyte from spectra with the version's collapsed model (transfer + PLS).

    Returns, per spectrum and in request order, the prediction, Hotelling T², Q and flags
    (columnar: one list per quantity), the sample ids sent, and for the call the version, its
    status, intended use and review date, artifact and transfer record, ``qualified``
    (approved or requalified, review date not passed), the ``purpose``, ``for_gmp`` and the
    id of the prediction-log row written with it (which keeps these results and their
    sha256). Roles: plant (within its scope: the version's domain and model), developer.

    Purpose (``purpose``, in the JSON body or the query): ``evaluation`` (the default) is
    served by any version that is not retired, with ``for_gmp: false`` and a ``notice`` "not
    for GMP use". ``advisory``, ``monitoring``, ``control`` and ``release`` need a qualified
    version whose intended use covers the purpose (advisory < monitoring < control <
    release): otherwise 409 naming the version's state and intended use.

    Bodies (``Content-Type``):

    - ``application/json``: ``{"spectra": [[...], ...], "axis": [...], "purpose": "...",
      "sample_ids": [...]}``, all but ``spectra`` optional; each row has the model's channel
      count; ``sample_ids`` one unique text (1-200 characters) per spectrum.
    - ``application/vnd.apache.arrow.stream``, channel columns: one numeric column
      ``<prefix><position>`` per channel (e.g. ``wn_400`` ... ``wn_1800``, the prefix of the
      version's dataset); the column names are the axis and must equal the model's. A string
      column ``sample_id`` is read as the sample ids; other columns are ignored.
    - ``application/vnd.apache.arrow.stream``, list column: one column ``spectra`` of type
      ``FixedSizeList<float64>`` whose list size is the model's channel count, one list per
      spectrum, no nulls; the schema metadata hold the axis under ``axis`` (a JSON list of
      numbers, equal to the model's) and optionally the spectral prefix under ``prefix``. The
      schema has one field however many channels, so a single spectrum of 701 channels is a
      message of about 11 KB instead of 73 KB. An optional string column ``sample_id``.

    A refusal names the row, channel or column at fault (counted from 0).
    """
    body = await request.body()
    call = partial(
        _predict_and_commit,
        transactions,
        store,
        credentials,
        request,
        body,
        name=name,
        version=version,
        alias=None,
        purpose=purpose,
    )
    return await _run(call, body)


@router.post(
    "/{name}/aliases/{alias}/predict",
    response_model=PredictionRead,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def predict_by_alias(
    request: Request,
    name: ModelName,
    alias: AliasName,
    transactions: TransactionsDep,
    store: StoreDep,
    credentials: Credentials,
    purpose: PurposeQuery = None,
) -> Response:
    """Predict with the version the alias names now, resolved in the same transaction as the
    prediction and its log row; the response and the log row name the alias.

    Bodies, purposes, scope and response exactly as ``POST
    /models/{name}/versions/{v}/predict``. An alias whose version has since become
    unqualified still resolves: ``evaluation`` is served, any other purpose is a 409. A
    withdrawn or unknown alias is a 404. Roles: plant (within its scope), developer.
    """
    body = await request.body()
    call = partial(
        _predict_and_commit,
        transactions,
        store,
        credentials,
        request,
        body,
        name=name,
        version=None,
        alias=alias,
        purpose=purpose,
    )
    return await _run(call, body)


async def _run(call: partial[bytes], body: bytes) -> Response:
    # Everything after the body - authentication and role, the version, parsing, the model,
    # the log row and its COMMIT - is one unit of work. A small call on the embedded SQLite
    # runs it right here on the event loop when nothing there would wait (write lock free,
    # model loaded): a thread-pool round trip costs more than such a call's work, and SQLite
    # serializes every write anyway. Anything else (PostgreSQL, a large body, a model to
    # load, a held write lock: WouldBlock, nothing written) takes one thread-pool trip.
    if len(body) <= ON_LOOP_MAX_BODY:
        try:
            return _json_response(call(on_event_loop=True))
        except WouldBlock:
            pass
    return _json_response(await anyio.to_thread.run_sync(call))


# A few spectra of ~700 channels as JSON: small enough that parsing and predicting them
# delay the other requests on the loop less than a thread-pool trip would delay this one.
ON_LOOP_MAX_BODY = 64 * 1024


def _json_response(content: bytes) -> Response:
    return Response(content=content, media_type="application/json")


def _predict_and_commit(
    transactions: Transactions,
    store: LocalStore,
    credentials: HTTPAuthorizationCredentials | None,
    request: Request,
    body: bytes,
    *,
    name: str,
    version: int | None,
    alias: str | None,
    purpose: str | None,
    on_event_loop: bool = False,
) -> bytes:
    """authorize -> evaluate -> record; returns the response body.

    401/403, then 415, then the prediction (:func:`~app.services.predict.evaluate`: 404,
    the scope's 403, 409, 422) and its log row (:func:`~app.services.predict.record`).

    Reads first (on SQLite without the write lock), then parsing and the prediction, then the
    log row (the write lock, on SQLite, only for that). On the event loop, raises
    :class:`WouldBlock` (nothing written) instead of waiting for a lock or loading a model.
    The response is serialized before the COMMIT, so a logged call is one that was answered.
    """
    checked = checked_sender(request, credentials)  # by the body guard, before the body
    with transactions.open(on_event_loop=on_event_loop) as unit:
        connection = unit.connection
        caller = authorize_caller(connection, credentials, PREDICTOR_ROLES, checked=checked)
        evaluation = predict_service.evaluate(
            connection,
            store,
            caller=caller,
            model_name=name,
            version=version,
            alias=alias,
            body=body,
            input_format=_input_format(request),
            purpose=purpose,
            may_load=not on_event_loop,
        )
        unit.write()  # on SQLite the write lock, taken only now
        logged = predict_service.record(connection, evaluation, actor=caller)
        # orjson writes the numpy arrays directly; validating thousands of floats through the
        # response model would cost more than the prediction (the model still documents it).
        # UTC as "Z", as pydantic writes it on every other route.
        content = orjson.dumps(
            _payload(logged), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z
        )
    record = evaluation.version.record  # counted once committed
    metrics.count_prediction(
        model=record.model,
        version=record.version,
        purpose=evaluation.purpose.value,
        n_spectra=evaluation.n_spectra,
        flag_counts=evaluation.flag_counts,
    )
    return content
