from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.enums import CvScheme, HoldoutScheme, IntendedUse, VersionStatus
from app.schemas.common import Name, NoNul, Reason, Schema, Sha256Hex
from app.schemas.signatures import SignatureRead

# PLS components a version may have (fixed, or the most ``auto`` tries).
MAX_COMPONENTS = 50


class SoftSensorModelCreate(Schema):
    name: Name
    analyte: Annotated[str, Field(min_length=1, max_length=100, examples=["titer"]), NoNul]
    units: Annotated[str, Field(min_length=1, max_length=50, examples=["g/L"]), NoNul]
    description: Annotated[str | None, Field(max_length=2000), NoNul] = None
    reason: Reason


class SoftSensorModelRead(Schema):
    id: uuid.UUID
    name: str
    analyte: str
    units: str
    description: str | None
    created_at: datetime
    created_by: str
    latest_version: int | None


class OperatingRange(Schema):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> OperatingRange:
        if not self.min < self.max:
            raise ValueError(f"operating range min ({self.min}) must be below max ({self.max})")
        return self


class ModelVersionCreate(Schema):
    dataset_sha256: Sha256Hex
    n_components: Annotated[
        Annotated[int, Field(ge=1, le=MAX_COMPONENTS)] | Literal["auto"],
        Field(description="fixed number of PLS components, or auto (CV)"),
    ] = "auto"
    max_components: Annotated[int, Field(ge=1, le=MAX_COMPONENTS)] = 15
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    cv_scheme: CvScheme = CvScheme.kfold
    holdout_scheme: HoldoutScheme = HoldoutScheme.random
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.2
    operating_range: OperatingRange | None = Field(
        default=None, description="narrower than the training reference range; default min-max"
    )
    intended_use: Annotated[
        IntendedUse,
        Field(
            description="what the version may be used for once approved: advisory < monitoring "
            "< control < release (each covers the ones before it); a prediction whose purpose "
            "it does not cover is refused"
        ),
    ]
    intended_use_statement: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2000,
            description="the intended-use statement in words, e.g. 'monitoring titer in Ambr "
            "250 development runs'",
        ),
        NoNul,
    ] = None
    reason: Reason


class RegressionMetricsRead(Schema):
    """Figures of merit of predictions against reference values, in the model's units
    (null where undefined, e.g. R² of constant references)."""

    n: int
    r2: float | None
    rmse: float | None
    bias: float | None = Field(description="mean of prediction - reference")
    sep: float | None = Field(description="standard error of prediction (bias-corrected)")
    slope: float | None = Field(description="slope of predictions regressed on references")
    rpd: float | None = Field(description="ratio of performance to deviation: SD(reference)/SEP")


class TrainedMetricsRead(Schema):
    """A trained version's figures: cross-validated over the training rows, on the held-out
    rows (not seen by the fit) and on the calibration rows themselves."""

    units: str
    cv: RegressionMetricsRead | None = None
    holdout: RegressionMetricsRead | None = None
    calibration: RegressionMetricsRead
    cv_basis: str | None = Field(description="what ``cv`` was computed on, in words")
    holdout_basis: str | None = Field(description="what ``holdout`` was computed on")
    calibration_basis: str = Field(description="what ``calibration`` was computed on")


class TransferredMetricsRead(Schema):
    """A transferred version's figures on target-probe data: the source model applied
    untouched (naive) and with the transfer (post_transfer); ``basis`` says on which rows."""

    units: str
    basis: str
    post_transfer: RegressionMetricsRead
    naive: RegressionMetricsRead


class CvTableRow(Schema):
    n_components: int
    rmsecv: float | None
    se: float | None


class ComponentSelectionRead(Schema):
    method: str
    cv_folds: int
    cv_scheme: CvScheme
    max_components: int
    cv_table: list[CvTableRow] | None


class SplitRead(Schema):
    """Which training-dataset rows the fit saw and which were held out."""

    scheme: HoldoutScheme
    n_train: int
    n_holdout: int
    fraction: float | None = None
    seed: int | None = None
    first_holdout_row: int | None = None


class _VersionCard(Schema):
    id: uuid.UUID
    model_name: str
    version: int
    status: VersionStatus
    domain: str = Field(description="the measurement domain whose spectra this version reads")
    artifact_sha256: str
    n_components: int
    operating_range: OperatingRange
    operating_range_source: str
    t2_limit_95: float
    t2_limit_99: float
    q_limit_95: float
    q_limit_99: float
    axis_unit: str
    n_channels: int
    axis_min: float
    axis_max: float
    intended_use: IntendedUse
    intended_use_statement: str | None
    review_due_at: datetime | None = Field(
        description="the periodic-review date set at approval or requalification: past it the "
        "version is not served as qualified"
    )
    qualified: bool = Field(
        description="approved or requalified and not past its review date: may serve GMP "
        "purposes its intended use covers"
    )
    signatures: list[SignatureRead] = Field(
        description="Part 11 signatures on the version, oldest first (a transferred version's "
        "requalification is signed on its transfer record)"
    )
    approvable: bool = Field(
        description="QA may approve (or requalify) the version by a signature on it now"
    )
    approval_blockers: list[str] = Field(description="why it cannot be approved now, in words")
    reason: str
    created_by: str
    created_at: datetime
    aliases: list[str] = Field(
        default_factory=list, description="the model's aliases that name this version now"
    )
    warnings: list[str] = Field(
        description="what a reviewer must know about the calibration's size, in words"
    )


class TrainedVersionRead(_VersionCard):
    """A version trained by the service on ``dataset_sha256``."""

    kind: Literal["trained"]
    dataset_sha256: str = Field(description="the training dataset")
    component_selection: ComponentSelectionRead
    split: SplitRead
    metrics: TrainedMetricsRead


class TransferredVersionRead(_VersionCard):
    """A version made by a calibration transfer. Fields named ``source_*`` are the source
    version's (the PLS model it carries was trained there); the transfer's standards and
    validation set are this version's own data."""

    kind: Literal["transferred"]
    source_version: int = Field(description="the version of this model transferred")
    transfer_id: uuid.UUID = Field(description="the transfer record that made it")
    transfer_number: int
    transfer_verdict: Literal["pass", "fail"] | None = Field(
        description="the transfer's acceptance verdict: a failed transfer's version says so"
    )
    source_training_dataset_sha256: str
    source_component_selection: ComponentSelectionRead
    source_split: SplitRead
    source_in_domain_metrics: RegressionMetricsRead | None = Field(
        description="the source version's own figures on source-probe data"
    )
    source_in_domain_basis: str | None = Field(
        description="whether those are on held-out rows or cross-validated"
    )
    target_standards_dataset_sha256: str | None
    source_standards_dataset_sha256: str | None = Field(
        description="uploaded source-probe spectra of the standards; null when they were "
        "taken from the source training dataset by sample id"
    )
    validation_dataset_sha256: str | None = Field(
        description="target-probe validation set; null when the figures are cross-validated "
        "over the standards"
    )
    limits_basis: str = Field(
        description="what the T²/Q limits were calibrated on: target-probe data (the transfer "
        "record's applicability block), or the source version's for transfers recorded before"
    )
    metrics: TransferredMetricsRead


ModelVersionRead = Annotated[
    TrainedVersionRead | TransferredVersionRead, Field(discriminator="kind")
]


class LineageNode(Schema):
    """A dataset, a version or a transfer in a version's lineage."""

    kind: Literal["dataset", "version", "transfer"]
    id: uuid.UUID
    label: str = Field(description="what a reviewer reads: 'titer_pls v2', 'transfer #1', …")
    sha256: str | None = Field(default=None, description="datasets: the content's sha256")
    status: str | None = Field(default=None, description="versions and transfers: status")
    domain: str | None = None


class LineageEdge(Schema):
    """``source`` went into ``target`` as ``relation``."""

    source: uuid.UUID
    target: uuid.UUID
    relation: Literal[
        "training_dataset",
        "source_version",
        "target_standards",
        "source_standards",
        "validation",
        "created",
    ]


class LineageRead(Schema):
    """The version's lineage graph: every node it descends from and every node made from it."""

    version: LineageNode
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    ancestors: list[uuid.UUID] = Field(description="nodes this version was made from")
    descendants: list[uuid.UUID] = Field(description="transfers and versions made from it")
