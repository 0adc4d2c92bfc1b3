"""Calibration-transfer records: the API contract.

A transfer is opened with its plan (:class:`TransferCreate`), completed once by the service when
the target probe's standards arrive (multipart form, :class:`StandardsForm`), and read back as
the audit-ready record (:class:`TransferRead`): source, target, transfer and governance blocks.
Metrics that are undefined (e.g. R² on constant references) are null.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.enums import IntendedUse, TransferMethod, TransferStatus, VersionStatus
from app.schemas.common import INT32_MAX, Name, NoNul, Reason, Schema
from app.schemas.datasets import AxisUnit, ColumnName, SpectralPrefix
from app.schemas.models import OperatingRange
from app.schemas.signatures import SignatureRead

# PDS windows wider than this cost O(p * w^3) to fit and are never what a user means.
MAX_PDS_WINDOW = 51
# Methods whose fit or choice is cross-validated over the standards need at least this many.
MIN_CV_STANDARDS = 3
# Kennard–Stone holds an n x n distance matrix: 5,000 candidates are 200 MB.
MAX_CANDIDATES = 5_000
# Always-on acceptance criterion max_flag_rate: the larger of the T² and Q flag rates at 99 %
# (nominal 1 % each) of the in-control validation spectra, cross-fitted, at most 5 %. Five times
# nominal: the target is <= 3 %; target-domain limits flag about 2 % on the demo and
# <= 1.5 % on the tablet shoot-out, the source version's limits 55 % and 100 %; with n = 100
# validation spectra and a true rate of 1 %, P(rate > 5 %) < 0.1 % (binomial). With the
# standards alone (no validation set, ~24 values) it is coarse: 2 of 24 flagged fail it.
MAX_FLAG_RATE_99 = 0.05

ChangeControl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="change-control reference the transfer is made under",
        examples=["CC-2026-0042"],
    ),
    NoNul,
]


Param = float | int | str
"""A transfer parameter: PDS ``window`` (int), ``rcond`` (float), DS ``anchor`` (text)."""


class TransferParams(Schema):
    """Fixed parameters of a PDS (window, rcond) or DS (rcond, anchor) transfer."""

    window: Annotated[
        int | None,
        Field(ge=3, le=MAX_PDS_WINDOW, description="PDS window in channels, odd (2k + 1)"),
    ] = None
    rcond: Annotated[
        float | None,
        Field(gt=0.0, lt=1.0, description="relative singular-value cut-off per fit, in (0, 1)"),
    ] = None
    anchor: Literal["identity", "zero"] | None = Field(
        default=None,
        description="DS only: identity (default; directions the standards do not span pass "
        "through unchanged) or zero (textbook DS)",
    )

    @model_validator(mode="after")
    def _odd_window(self) -> TransferParams:
        if self.window is not None and self.window % 2 == 0:
            raise ValueError(f"the PDS window must be odd (2k + 1 channels), got {self.window}")
        return self


class AcceptanceCriteria(Schema):
    """Limits on the post-transfer RMSE; at least one is required."""

    max_rmse: Annotated[
        float | None, Field(gt=0.0, description="largest post-transfer RMSE, analyte units")
    ] = None
    max_rmse_ratio: Annotated[
        float | None,
        Field(
            gt=0.0,
            description="largest ratio of the post-transfer RMSE to the source version's "
            "in-domain held-out RMSE (its cross-validated RMSE without a hold-out)",
        ),
    ] = None

    @model_validator(mode="after")
    def _at_least_one(self) -> AcceptanceCriteria:
        if self.max_rmse is None and self.max_rmse_ratio is None:
            raise ValueError("give at least one acceptance criterion: max_rmse, max_rmse_ratio")
        return self


class TransferCreate(Schema):
    """The plan of a transfer, fixed before any target-probe data is seen."""

    source_model: Name
    source_version: Annotated[int, Field(ge=1, le=INT32_MAX)]
    target_domain: Name
    method: TransferMethod = Field(
        default=TransferMethod.auto,
        description="auto: method and parameters chosen by cross-validation over the standards",
    )
    n_standards: Annotated[
        int,
        Field(
            ge=2,
            le=MAX_CANDIDATES,
            description="standards the transfer uses; Kennard–Stone picks them on the target "
            "spectra when more candidates are uploaded",
        ),
    ]
    params: TransferParams | None = Field(
        default=None,
        description="fixed parameters; only with method pds (window, rcond) or ds (rcond, anchor)",
    )
    change_control: ChangeControl
    intended_use: IntendedUse
    operating_range: OperatingRange = Field(
        description="analyte range the transferred version is for; within the source version's"
    )
    acceptance: AcceptanceCriteria
    reason: Reason

    @model_validator(mode="after")
    def _consistent(self) -> TransferCreate:
        method = self.method
        if self.params is not None:
            if method in (TransferMethod.auto, TransferMethod.sbc, TransferMethod.bias):
                raise ValueError(
                    f"method {method.value!r} takes no fixed parameters (window/rcond apply to "
                    "pds, rcond to ds)"
                )
            if method is TransferMethod.ds and self.params.window is not None:
                raise ValueError("a window applies to pds only; ds takes rcond and anchor")
            if method is TransferMethod.pds and self.params.anchor is not None:
                raise ValueError("an anchor applies to ds only; pds takes window and rcond")
        if method in (TransferMethod.auto, TransferMethod.pds) and (
            self.n_standards < MIN_CV_STANDARDS
        ):
            what = "cross-validation over the standards" if method is TransferMethod.auto else "PDS"
            raise ValueError(
                f"{what} needs at least {MIN_CV_STANDARDS} standards, got n_standards="
                f"{self.n_standards}"
            )
        return self


class StandardsForm(Schema):
    """The form fields of a standards upload (the files travel beside them)."""

    reference_column: ColumnName | None = Field(
        default=None, description="default: the source version's training dataset's"
    )
    sample_id_column: ColumnName = "sample_id"
    spectral_prefix: SpectralPrefix | None = Field(
        default=None, description="default: the source version's training dataset's"
    )
    axis_unit: AxisUnit | None = Field(
        default=None, description="default: the source training dataset's (or by the prefix)"
    )
    reason: Reason


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


class MetricsRead(Schema):
    """Figures of merit in the analyte's units (see app.core.metrics); null if undefined."""

    n: int
    r2: float | None
    rmse: float | None
    bias: float | None
    sep: float | None
    slope: float | None
    rpd: float | None


class CvRowRead(Schema):
    method: str
    params: dict[str, Param]
    rmsecv: float | None
    se: float | None
    n_folds: int
    weight: float | None = Field(
        default=None,
        description="share of this candidate in the transfer (weighted rule; 1 for the one "
        "chosen by the older one-SE rule, 0 otherwise); null on records written before weights",
    )


class MemberRead(Schema):
    """One candidate of a weighted transfer, refitted on all standards, and its weight."""

    method: str
    params: dict[str, Param]
    weight: float


class SkippedCandidateRead(Schema):
    method: str
    params: dict[str, Param]
    reason: str


class CriterionResult(Schema):
    """One acceptance criterion. Evaluated for every transfer: ``not_worse_than_naive`` (limit:
    the naive RMSE on the same rows) and ``max_flag_rate`` (observed: the larger of the T² and Q
    flag rates at 99 % of the in-control validation spectra, cross-fitted — of the standards
    without a validation set; limit 0.05, nominal 0.01; records completed before it lack it);
    the others when the plan asked for them."""

    criterion: Literal["not_worse_than_naive", "max_flag_rate", "max_rmse", "max_rmse_ratio"]
    limit: float | None
    observed: float | None
    passed: bool


class AcceptanceRead(Schema):
    criteria: AcceptanceCriteria
    results: list[CriterionResult] | None = Field(description="null until completed")
    verdict: Literal["pass", "fail"] | None


class ControlLimitsRead(Schema):
    """Hotelling T² (dimensionless) and Q (squared spectral units) limits at 95 % and 99 %."""

    t2_95: float
    t2_99: float
    q_95: float
    q_99: float


class FlagRateRead(Schema):
    """Shares of the spectra above the limits at one confidence level."""

    nominal: float = Field(description="the share a calibrated limit flags: 0.05 or 0.01")
    t2: float
    q: float
    either: float = Field(description="T² or Q above its limit")


class FlagRatesRead(Schema):
    spectra: Literal["validation", "standards"] = Field(
        description="the validation spectra, or without a validation set every calibration "
        "value (the standards' held-out values and the other offered standards)"
    )
    n: int
    method: str = Field(description="how each spectrum's limits were obtained")
    at_95: FlagRateRead
    at_99: FlagRateRead


class LimitsCalibrationRead(Schema):
    """What the target version's limits were calibrated on: target-probe values only, each
    from a spectrum the transfer mapping it did not see."""

    method: str
    n_values: int
    n_standards: int = Field(description="held-out values of the chosen standards")
    standards: str = Field(description="how the standards' values were held out")
    n_other_candidates: int = Field(
        description="offered target standards Kennard–Stone did not choose"
    )
    n_validation: int


class ApplicabilityRead(Schema):
    """The transferred version's T² and Q limits, calibrated for the target domain, and how
    often they flag in-control target spectra (the source version's beside them)."""

    calibrated: bool = Field(
        description="false when too few target values were available: the source version's "
        "limits are kept"
    )
    summary: str
    limits: ControlLimitsRead = Field(description="the target version's limits")
    calibration: LimitsCalibrationRead
    flag_rates: FlagRatesRead = Field(description="cross-fitted: no value sets its own limit")
    source_limits: ControlLimitsRead
    source_limits_flag_rates: FlagRatesRead


class SourceBlock(Schema):
    model: str
    units: str
    version: int
    version_id: uuid.UUID
    domain: str
    instrument: str
    probe_serial: str
    scale: str
    site: str
    training_dataset_sha256: str
    artifact_sha256: str
    in_domain_metrics: MetricsRead | None
    in_domain_basis: str | None


class TargetBlock(Schema):
    domain: str
    instrument: str
    probe_serial: str
    scale: str
    site: str
    naive_metrics: MetricsRead | None = Field(
        description="the source version, unchanged, on the target probe's spectra"
    )
    naive_basis: str | None


class TransferBlock(Schema):
    method_requested: TransferMethod
    method_chosen: str | None
    parameters: dict[str, Param] | None
    fixed_params: dict[str, Param]
    n_standards: int
    n_candidates: int | None
    standard_sample_ids: list[str] | None
    selection_method: str | None
    reference_column: str | None
    target_standards_dataset_sha256: str | None
    source_standards_dataset_sha256: str | None
    source_standards_origin: Literal["uploaded", "source training dataset"] | None
    validation_dataset_sha256: str | None
    cv_table: list[CvRowRead] | None
    selection_rule: Literal["weighted", "one_se", "min"] | None = Field(
        default=None,
        description="weighted: every candidate weighs (MSE_k / MSE_min)^(-n/8) of its "
        "leave-one-out MSE over the n standards, shares below 1 % dropped, the rest "
        "renormalized: the transfer is their weighted mean (one linear model); one_se: the "
        "simplest candidate within one standard error of the best (records before weights)",
    )
    members: list[MemberRead] | None = Field(
        default=None, description="what the transfer is made of, with weights summing to 1"
    )
    cv_skipped: list[SkippedCandidateRead] | None
    scheme: str | None
    post_transfer_metrics: MetricsRead | None
    metrics_basis: str | None
    acceptance: AcceptanceRead
    diagnostics: str | None
    applicability: ApplicabilityRead | None = Field(
        description="the target version's T²/Q limits; null until completed and for records "
        "completed before limits were calibrated for the target domain (their versions carry "
        "the source version's limits)"
    )
    conclusion: str | None = Field(
        description="what the record means, in words: the verdict and the criteria that "
        "failed, and when auto found that no correction beats naive"
    )


class VersionRef(Schema):
    model: str
    version: int
    id: uuid.UUID


class TransferRef(Schema):
    number: int
    id: uuid.UUID


class Lineage(Schema):
    source_version: VersionRef
    transfer: TransferRef
    target_version: VersionRef | None


class GovernanceBlock(Schema):
    requalification_status: VersionStatus | None = Field(
        description="status of the target version (ICH Q14: a new procedure until requalified)"
    )
    operating_range: OperatingRange
    intended_use: IntendedUse
    change_control: str
    reason: str
    lineage: Lineage
    created_by: str
    created_at: datetime
    completed_by: str | None
    completed_at: datetime | None
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = Field(
        default=None, description="why a transfer awaiting its standards was cancelled"
    )
    signatures: list[SignatureRead] = Field(
        default_factory=list,
        description="Part 11 signatures on the record, oldest first; valid: the record still "
        "hashes to what was signed",
    )
    approvable: bool = Field(
        default=False, description="QA may approve the record now (see approval_blockers)"
    )
    approval_blockers: list[str] = Field(
        default_factory=list, description="why the record cannot be approved now, in words"
    )


class TransferCancel(Schema):
    """Cancel a transfer still awaiting its standards (e.g. opened by mistake)."""

    reason: Reason


class TransferRead(Schema):
    id: uuid.UUID
    number: int
    status: TransferStatus
    source: SourceBlock
    target: TargetBlock
    transfer: TransferBlock
    governance: GovernanceBlock
    artifact_sha256: str | None
