"""``POST /models/{name}/versions/{v}/predict``: corrected predictions for plant systems."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from app.api.deps import (
    PREDICTOR_ROLES,
    Credentials,
    StoreDep,
    TransactionsDep,
    authorize_caller,
)
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

router = APIRouter(prefix="/models", tags=["predictions"])
VersionNumber = Annotated[int, Path(ge=1)]
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


_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        ARROW_STREAM: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "Arrow IPC stream: one row per spectrum, one float column "
                "<prefix><position> per channel (e.g. wn_400 ... wn_1800, the prefix of the "
                "version's dataset); the column names are the axis. Other columns are ignored.",
            }
        },
    },
}


def _payload(result: predict_service.Prediction) -> dict[str, Any]:
    t = result.target.meta
    transfer = (
        None
        if t.transfer_id is None
        else {
            "id": t.transfer_id,
            "number": t.transfer_number,
            "status": result.target.transfer_status,
        }
    )
    return {
        "model": t.model,
        "version": t.version,
        "status": result.target.status,
        "qualified": result.qualified,
        "artifact_sha256": t.artifact_sha256,
        "units": t.units,
        "transfer_record": transfer,
        "prediction_log_id": result.log_id,
        "occurred_at": result.occurred_at,
        "input_sha256": result.input_sha256,
        "input_format": result.input_format,
        "n_spectra": int(result.predictions.shape[0]),
        "limits": {
            "flag_confidence": FLAG_CONFIDENCE,
            "t2_limit_95": t.t2_limit_95,
            "t2_limit_99": t.t2_limit_99,
            "q_limit_95": t.q_limit_95,
            "q_limit_99": t.q_limit_99,
            "operating_range": {"min": t.operating_range_min, "max": t.operating_range_max},
            "operating_range_source": t.operating_range_source,
        },
        "predictions": result.predictions,
        "t2": result.t2,
        "q": result.q,
        "flags": result.flags,
        "flag_counts": result.flag_counts,
    }


@router.post(
    "/{name}/versions/{version}/predict",
    response_model=PredictionRead,
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "the version is retired"},
        413: {"model": ErrorBody, "description": "body larger than the upload limit"},
        415: {"model": ErrorBody, "description": "neither JSON nor an Arrow IPC stream"},
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def predict(
    request: Request,
    name: str,
    version: VersionNumber,
    transactions: TransactionsDep,
    store: StoreDep,
    credentials: Credentials,
    purpose: Annotated[
        Purpose | None, Query(description="for Arrow bodies (JSON bodies may carry it instead)")
    ] = None,
) -> Response:
    """Predict the analyte from spectra with the version's collapsed model (transfer + PLS).

    Returns, per spectrum and in request order, the prediction, Hotelling T², Q and flags
    (columnar: one list per quantity), and for the call the version, its status, artifact and
    transfer record, ``qualified`` (true only for an approved version) and the id of the
    prediction-log row written with it. Roles: plant, developer.
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
        purpose=purpose,
    )
    # Everything after the body - authentication and role, the version, parsing, the model,
    # the log row and its COMMIT - is one unit of work. A small call on the embedded SQLite
    # runs it right here on the event loop when nothing there would wait (write lock free,
    # model loaded): waking a worker thread and back costs 0.3 to 0.7 ms here, more than the
    # work, and SQLite serializes every write anyway. Otherwise it takes one thread-pool trip.
    if len(body) <= ON_LOOP_MAX_BODY:
        try:
            return _json_response(call(on_event_loop=True))
        except WouldBlock:
            pass
    return _json_response(await anyio.to_thread.run_sync(call))


# About 5 spectra of 701 channels as JSON: parsing and predicting them takes ~0.1 ms.
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
    version: int,
    purpose: str | None,
    on_event_loop: bool = False,
) -> bytes:
    """401/403, then 415, then the prediction and its log row; returns the response body.

    Reads first (on SQLite without the write lock), then parsing and the prediction, then the
    log row (the write lock, on SQLite, only for that). On the event loop, raises
    :class:`WouldBlock` (nothing written) instead of waiting for a lock or loading a model.
    The response is serialized before the COMMIT, so a logged call is one that was answered.
    """
    with transactions.open(on_event_loop=on_event_loop) as unit:
        connection = unit.connection
        caller = authorize_caller(connection, credentials, PREDICTOR_ROLES)
        result = predict_service.predict(
            connection,
            store,
            model_name=name,
            version=version,
            body=body,
            input_format=_input_format(request),
            purpose=purpose,
            actor=caller,
            may_load=not on_event_loop,
            start_write=unit.write,
        )
        # orjson writes the numpy arrays directly; validating thousands of floats through the
        # response model would cost more than the prediction (the model still documents it).
        # UTC as "Z", as pydantic writes it on every other route.
        return orjson.dumps(_payload(result), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z)
