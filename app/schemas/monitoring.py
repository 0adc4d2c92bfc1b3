"""Contract of monitoring: reference results for predicted samples, a version's monitoring
rules and their parameters, and what the service computes from them (series, limits, rule
states, alarms)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from app.enums import MonitoringRule, ResidualCentre, SettingsOrigin, VersionStatus
from app.schemas.common import INT32_MAX, NoNul, Reason, Schema

ALL_RULES = tuple(MonitoringRule)
Lambda = Annotated[
    float,
    Field(gt=0, le=1, description="EWMA weight λ of the newest standardized residual"),
]
EwmaL = Annotated[
    float,
    Field(gt=0, le=10, description="EWMA limit width L, in σ of the EWMA (asymptotic limits)"),
]
CusumK = Annotated[float, Field(ge=0, le=5, description="CUSUM allowance k, in SEP")]
CusumH = Annotated[float, Field(gt=0, le=50, description="CUSUM decision interval h, in SEP")]
Alpha = Annotated[
    float,
    Field(gt=0, lt=0.5, description="T²/Q exceedance alarm: binomial test p-value below this"),
]
RollingN = Annotated[
    int, Field(ge=2, le=1000, description="rolling bias and RMSE over the last N references")
]
RollingDays = Annotated[
    int, Field(ge=1, le=365, description="rolling bias and RMSE over the last T days")
]


class MonitoringParameters(Schema):
    """A version's monitoring rules and their parameters. The defaults: EWMA λ = 0.2, L = 3;
    CUSUM k = 0.5, h = 5; T² and Q exceedance at p < 0.01; rolling figures over the last 10
    references and the last 7 days; residuals centred on the validation mean residual."""

    rules: list[MonitoringRule] = Field(
        default_factory=lambda: list(ALL_RULES),
        description="the rules in force (each at most once); the others are shown, not enforced",
    )
    ewma_lambda: Lambda = 0.2
    ewma_L: EwmaL = 3.0  # noqa: N815 - the chart's usual symbol
    cusum_k: CusumK = 0.5
    cusum_h: CusumH = 5.0
    exceedance_alpha: Alpha = 0.01
    rolling_n: RollingN = 10
    rolling_days: RollingDays = 7
    centre: Annotated[
        ResidualCentre,
        Field(
            description="what standardized residuals are centred on: 'validation' (the "
            "version's validation mean residual, so the chart watches for change from the "
            "validated performance) or 'zero' (no bias at all)"
        ),
    ] = ResidualCentre.validation

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[MonitoringRule]) -> list[MonitoringRule]:
        if len(set(rules)) != len(rules):
            raise ValueError("each rule at most once")
        return sorted(rules, key=ALL_RULES.index)


class MonitoringSettingsChange(Schema):
    """QA changes a version's monitoring rules or parameters, with a reason. Fields left out
    keep their value in force; at least one must change."""

    rules: list[MonitoringRule] | None = None
    ewma_lambda: Lambda | None = None
    ewma_L: EwmaL | None = None  # noqa: N815 - the chart's usual symbol
    cusum_k: CusumK | None = None
    cusum_h: CusumH | None = None
    exceedance_alpha: Alpha | None = None
    rolling_n: RollingN | None = None
    rolling_days: RollingDays | None = None
    centre: ResidualCentre | None = None
    reason: Reason


class DesignFigures(Schema):
    """What the chart parameters promise, by Markov chain (in references): ARL₀ is the
    average number of in-control references between false alarms, ARL₁ the average number
    after a bias step of 1 SEP until the alarm."""

    ewma_limit: Annotated[float, Field(description="the EWMA's asymptotic limit, in SEP")]
    ewma_arl0: float
    ewma_arl1: float
    cusum_arl0: float
    cusum_arl1: float


class MonitoringSettingsRead(Schema):
    """Monitoring settings of a version. ``sequence`` null: nothing is recorded for the
    version (it was qualified before monitoring existed, or is not qualified yet): the
    defaults apply."""

    sequence: int | None
    parameters: MonitoringParameters
    validation_sep: Annotated[
        float | None,
        Field(description="the SEP residuals are divided by (null: the version has none)"),
    ]
    validation_mean_residual: Annotated[
        float | None, Field(description="validation mean of reference − prediction")
    ]
    centre_value: Annotated[
        float | None, Field(description="the centre in force, in the analyte's units")
    ]
    figures_basis: str
    window_start: Annotated[
        datetime | None,
        Field(
            description="predictions made from then on are monitored (the version's newest "
            "approval or requalification; null: all)"
        ),
    ]
    origin: SettingsOrigin | None
    set_at: datetime | None
    set_by: str | None
    reason: str | None
    design: DesignFigures


class ReferenceCreate(Schema):
    """The offline result for one predicted sample of a logged call, named by its sample id
    or its row (from 0, in request order): give exactly one."""

    sample_id: Annotated[str | None, Field(min_length=1, max_length=200), NoNul] = None
    row: Annotated[int | None, Field(ge=0, le=INT32_MAX)] = None
    value: Annotated[
        float,
        Field(allow_inf_nan=False, description="the reference result, in the model's units"),
    ]
    units: Annotated[
        str, Field(min_length=1, max_length=50, description="must be the model's units"), NoNul
    ]
    assay_method: Annotated[
        str, Field(min_length=1, max_length=200, examples=["Protein A HPLC"]), NoNul
    ]
    sample_time: Annotated[
        datetime,
        Field(description="when the sample was taken (with a time zone; not in the future)"),
    ]
    lab_reference: Annotated[
        str,
        Field(min_length=1, max_length=200, description="the laboratory's record, e.g. LIMS id"),
        NoNul,
    ]
    correction_reason: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2000,
            description="required to replace the reference in force for the sample (the old "
            "one stays visible); refused on a first reference",
        ),
        NoNul,
    ] = None

    @model_validator(mode="after")
    def _one_sample(self) -> ReferenceCreate:
        if (self.sample_id is None) == (self.row is None):
            raise ValueError("name the sample by sample_id or by row: exactly one of them")
        if self.sample_time.tzinfo is None:
            raise ValueError("sample_time needs a time zone, e.g. 2026-12-01T08:00:00Z")
        return self


class ReferenceRead(Schema):
    """A reference result as recorded, with the prediction it is compared with."""

    id: uuid.UUID
    prediction_log_id: uuid.UUID
    model: str
    version: int
    alias: Annotated[str | None, Field(description="the alias the call went through")]
    row: int
    sample_id: str | None
    revision: Annotated[int, Field(description="1: the first result; 2, 3 ...: corrections")]
    in_force: Annotated[bool, Field(description="the newest revision for its sample")]
    value: float
    units: str
    assay_method: str
    sample_time: datetime
    lab_reference: str
    predicted: Annotated[float, Field(description="what the call predicted for the sample")]
    predicted_at: datetime
    residual: Annotated[float, Field(description="value − predicted")]
    correction_reason: str | None
    corrects_id: uuid.UUID | None
    posted_at: datetime
    posted_by: str


class MonitoringAlarmRead(Schema):
    """A rule that breached: when, its figures and limit, the references behind it and
    whether it moved the version to requalification_due."""

    id: uuid.UUID
    rule: MonitoringRule
    raised_at: datetime
    window_start: datetime | None
    statistic: Annotated[
        float,
        Field(
            description="EWMA or CUSUM value at the first point beyond the limit (SEP); for "
            "the exceedance rules the exceedance rate"
        ),
    ]
    limit: Annotated[
        float,
        Field(description="the chart's limit (SEP), or the rate at which the test alarms"),
    ]
    message: str
    figures: dict[str, Any]
    reference_ids: list[uuid.UUID]
    trigger_reference_id: uuid.UUID | None
    lifecycle_event_id: Annotated[
        uuid.UUID | None,
        Field(description="the transition it caused (null: the version was due already)"),
    ]


class ReferenceCreated(ReferenceRead):
    """The recorded reference, the version's status after the rules were evaluated and any
    alarm this reference raised."""

    version_status: VersionStatus
    alarms_raised: list[MonitoringAlarmRead]


class MonitoringPoint(Schema):
    """One reference in force, in sample-time order, with the charts at that point."""

    reference_id: uuid.UUID
    prediction_log_id: uuid.UUID
    row: int
    sample_id: str | None
    alias: str | None
    sample_time: datetime
    predicted_at: datetime
    reference: float
    predicted: float
    residual: Annotated[float, Field(description="reference − predicted, in model units")]
    z: Annotated[float | None, Field(description="(residual − centre) / SEP")]
    rolling_bias: Annotated[float, Field(description="mean residual of the last N references")]
    rolling_rmse: Annotated[float, Field(description="RMS residual of the last N references")]
    ewma: float | None
    cusum_upper: float | None
    cusum_lower: float | None


class ExceedancePoint(Schema):
    """Cumulative T²/Q exceedances after each logged call of the version, in time order,
    with the rate at which the binomial test would alarm for that many spectra."""

    occurred_at: datetime
    n_spectra: int
    t2_exceeded: int
    q_exceeded: int
    t2_rate: float
    q_rate: float
    alarm_rate: Annotated[
        float, Field(description="the smallest rate with p < alpha for n_spectra spectra")
    ]


class RuleState(Schema):
    """A rule's state over the monitoring window."""

    rule: MonitoringRule
    enabled: bool
    state: Literal["in_control", "alarm", "no_data", "unavailable"]
    statistic: Annotated[
        float | None,
        Field(description="charts: the newest value (SEP); exceedance: the rate so far"),
    ]
    limit: Annotated[
        float | None, Field(description="charts: the limit (SEP); exceedance: alarm rate")
    ]
    p_value: Annotated[float | None, Field(description="exceedance rules only")] = None
    first_breach_at: Annotated[
        datetime | None,
        Field(description="sample time of the first reference beyond the limit (charts)"),
    ] = None
    detail: str
    alarm_id: Annotated[
        uuid.UUID | None, Field(description="the alarm recorded for it in this window")
    ] = None


class RollingFigures(Schema):
    """Bias (mean of reference − prediction) and RMSE over a set of references, model units."""

    n: int
    bias: float | None
    rmse: float | None


class AliasFigures(Schema):
    """The window's references of predictions made through one alias (null: by version)."""

    alias: str | None
    n: int
    bias: float | None
    rmse: float | None


class MonitoringRead(Schema):
    """A version's monitoring: its settings, the series, the limits and the rule states."""

    model: str
    version: int
    units: str
    status: VersionStatus
    qualified: bool
    deployed: Annotated[
        bool,
        Field(
            description="approved, requalified or requalification_due: rules are evaluated "
            "when a reference is posted"
        ),
    ]
    warnings: Annotated[
        list[str],
        Field(description="the alarms standing until the version is requalified"),
    ]
    settings: MonitoringSettingsRead
    settings_history: list[MonitoringSettingsRead]
    aliases_naming_it: list[str]
    n_spectra: Annotated[int, Field(description="spectra predicted in the window")]
    last_n: RollingFigures
    last_days: RollingFigures
    by_alias: list[AliasFigures]
    series: list[MonitoringPoint]
    exceedance: list[ExceedancePoint]
    rules: list[RuleState]
    alarms: Annotated[
        list[MonitoringAlarmRead], Field(description="every alarm of the version, oldest first")
    ]
    references: Annotated[
        list[ReferenceRead],
        Field(description="every reference of the window, corrected ones included"),
    ]
