"""Contract of ``POST /models/{name}/versions/{v}/predict``.

The request comes as JSON (:class:`PredictRequest`) or as an Arrow IPC stream (one row per
spectrum: one float column ``<prefix><position>`` per channel, e.g. ``wn_400``, the column
names being the axis; or one ``FixedSizeList<float64>`` column ``spectra`` with the axis in
the schema metadata, see :mod:`app.services.spectra_bodies`). The service parses both bodies
itself, straight into one float64 array (validating a 1000 × 701 nested list with pydantic
would cost more than the prediction);
:class:`PredictRequest` documents the JSON form and the service applies the same rules.

The response is columnar: element ``i`` of ``predictions``, ``t2``, ``q`` and of each list in
``flags`` belongs to row ``i`` of the request (rows count from 0, in request order).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.enums import IntendedUse, PredictionPurpose, TransferStatus, VersionStatus
from app.schemas.common import NoNul, Schema
from app.schemas.models import OperatingRange

ARROW_STREAM = "application/vnd.apache.arrow.stream"
# Flags compare T² and Q with the model's 99% limits; see PredictionLimits.flag_confidence.
FLAG_CONFIDENCE = 0.99
NOT_FOR_GMP = "not for GMP use: purpose 'evaluation'"
MAX_SAMPLE_ID = 200
Purpose = Annotated[
    PredictionPurpose,
    Field(
        description="why the prediction is made (kept in the prediction log). 'evaluation' "
        "(the default) is served by any version that is not retired and marked not for GMP "
        "use; advisory, monitoring, control and release need a qualified version (approved "
        "or requalified, review date not passed) whose intended use covers the purpose "
        "(advisory < monitoring < control < release), else 409",
    ),
]
SampleId = Annotated[str, Field(min_length=1, max_length=MAX_SAMPLE_ID), NoNul]


class PredictRequest(Schema):
    """JSON body. At most ``max_predict_spectra`` rows (setting, default 100,000)."""

    spectra: Annotated[
        list[list[float]],
        Field(
            min_length=1,
            description="one row per spectrum; each row has exactly the model's channel count, "
            "in the order of its axis; finite numbers only",
        ),
    ]
    axis: Annotated[
        list[float] | None,
        Field(
            description="the spectral positions of the columns (e.g. Raman shifts in cm-1); "
            "when given, must equal the model's axis channel by channel"
        ),
    ] = None
    purpose: Purpose | None = None
    sample_ids: Annotated[
        list[SampleId] | None,
        Field(
            description="the client's sample ids, one per spectrum in the same order, all "
            "different; kept in the prediction log with the results and echoed back"
        ),
    ] = None


class TransferRecordRef(Schema):
    """The calibration-transfer record behind a transferred version."""

    id: uuid.UUID
    number: int
    status: TransferStatus
    verdict: Literal["pass", "fail"] | None = Field(
        description="the transfer's acceptance verdict: predictions of a failed transfer say so"
    )


class PredictionLimits(Schema):
    flag_confidence: Annotated[
        float,
        Field(
            description="confidence level of the limits the flags use: 0.99. The 99% limits "
            "are the action limits of multivariate SPC: at 95%, one in-control spectrum in "
            "twenty would be flagged per statistic, and flags that fire that often get "
            "ignored. T² and Q are returned, so a client can apply the 95% warning limits."
        ),
    ]
    t2_limit_95: float
    t2_limit_99: float
    q_limit_95: float
    q_limit_99: float
    operating_range: OperatingRange
    operating_range_source: str


class PredictionFlags(Schema):
    """One boolean per spectrum, aligned with ``predictions``."""

    outside_operating_range: Annotated[
        list[bool], Field(description="prediction below or above the version's operating range")
    ]
    t2_exceeded: Annotated[
        list[bool], Field(description="Hotelling T² above t2_limit_99: outside the calibration")
    ]
    q_exceeded: Annotated[
        list[bool], Field(description="Q above q_limit_99: structure the model does not explain")
    ]


class FlagCounts(Schema):
    outside_operating_range: int
    t2_exceeded: int
    q_exceeded: int
    any_flag: Annotated[int, Field(description="spectra with at least one flag")]


class PredictionRead(Schema):
    """Corrected predictions and the call's provenance (also written to the prediction log)."""

    model: str
    version: int
    alias: Annotated[
        str | None,
        Field(description="the alias the call went through (null for a call by version)"),
    ]
    status: VersionStatus
    qualified: Annotated[
        bool,
        Field(
            description="true when the version is approved or requalified and its periodic "
            "review date has not passed"
        ),
    ]
    intended_use: Annotated[
        IntendedUse, Field(description="what the version is qualified for (and below)")
    ]
    review_due_at: datetime | None
    purpose: Purpose
    for_gmp: Annotated[
        bool,
        Field(
            description="true when the call stated a purpose other than evaluation and the "
            "version was qualified for it; false for evaluation calls"
        ),
    ]
    notice: Annotated[
        str | None, Field(description="'not for GMP use: ...' on evaluation calls, else null")
    ]
    artifact_sha256: str
    units: str
    transfer_record: Annotated[
        TransferRecordRef | None,
        Field(description="the transfer record of a transferred version; null for a trained one"),
    ]
    prediction_log_id: uuid.UUID
    occurred_at: datetime
    input_sha256: Annotated[str, Field(description="sha256 of the exact request body bytes")]
    input_format: Literal["json", "arrow"]
    n_spectra: int
    limits: PredictionLimits
    predictions: Annotated[list[float], Field(description="in the model's units")]
    t2: Annotated[list[float], Field(description="Hotelling T² of each spectrum")]
    q: Annotated[list[float], Field(description="Q (squared prediction error) of each spectrum")]
    flags: PredictionFlags
    flag_counts: FlagCounts
    sample_ids: Annotated[
        list[str] | None, Field(description="the sample ids sent, in request order")
    ]
    warnings: Annotated[
        list[str],
        Field(
            description="monitoring alarms standing against the version (a rule breached on "
            "reference results; the version is requalification_due until requalified); empty "
            "otherwise"
        ),
    ]


class PredictionLogEntry(Schema):
    """One prediction call as the log keeps it (the spectra themselves are not kept)."""

    id: uuid.UUID
    occurred_at: datetime
    caller: str
    caller_id: uuid.UUID
    model: str
    version: int
    artifact_sha256: str
    transfer_id: uuid.UUID | None
    transfer_number: int | None
    alias: Annotated[str | None, Field(description="the alias called through, if any")] = None
    qualified: Annotated[
        bool,
        Field(
            description="the version was qualified (approved or requalified, review "
            "date not passed) at the call"
        ),
    ]
    n_spectra: int
    input_sha256: Annotated[str, Field(description="sha256 of the exact request body bytes")]
    input_format: Literal["json", "arrow"]
    flag_counts: FlagCounts
    flag_confidence: float
    purpose: str | None
    for_gmp: Annotated[
        bool | None,
        Field(description="the call was for GMP use (null for calls logged before this field)"),
    ] = None


class PredictionResults(Schema):
    """What a call reported, per spectrum in request order."""

    predictions: list[float]
    t2: list[float]
    q: list[float]
    flags: PredictionFlags
    sample_ids: list[str] | None


class PredictionLogRead(PredictionLogEntry):
    """One call with what it reported, as the log keeps it."""

    results: Annotated[
        PredictionResults | None,
        Field(description="null for calls logged before results were kept"),
    ]
    results_sha256: Annotated[
        str | None,
        Field(description="sha256 of the canonical JSON of results (see the README)"),
    ]
    results_valid: Annotated[
        bool | None,
        Field(description="results recomputed to results_sha256 (null when none were kept)"),
    ]


class PredictionLogPage(Schema):
    entries: list[PredictionLogEntry]
    next_cursor: Annotated[
        str | None, Field(description="pass as cursor for the next page; null on the last page")
    ]
