from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.enums import CvScheme, HoldoutScheme, VersionStatus
from app.schemas.common import Name, Reason, Schema, Sha256Hex


class SoftSensorModelCreate(Schema):
    name: Name
    analyte: Annotated[str, Field(min_length=1, max_length=100, examples=["titer"])]
    units: Annotated[str, Field(min_length=1, max_length=50, examples=["g/L"])]
    description: Annotated[str | None, Field(max_length=2000)] = None
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
        int | Literal["auto"], Field(description="fixed number of PLS components, or auto (CV)")
    ] = "auto"
    max_components: Annotated[int, Field(ge=1, le=50)] = 15
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    cv_scheme: CvScheme = CvScheme.kfold
    holdout_scheme: HoldoutScheme = HoldoutScheme.random
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.2
    operating_range: OperatingRange | None = Field(
        default=None, description="narrower than the training reference range; default min-max"
    )
    intended_use: Annotated[str, Field(min_length=1, max_length=2000)]
    reason: Reason

    @model_validator(mode="after")
    def _components(self) -> ModelVersionCreate:
        if isinstance(self.n_components, int) and not 1 <= self.n_components <= 50:
            raise ValueError("n_components must be between 1 and 50, or 'auto'")
        return self


class ModelVersionRead(Schema):
    id: uuid.UUID
    model_name: str
    version: int
    status: VersionStatus
    dataset_sha256: str
    domain: str
    artifact_sha256: str
    n_components: int
    component_selection: dict[str, Any]
    split: dict[str, Any]
    metrics: dict[str, Any]
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
    intended_use: str
    reason: str
    created_by: str
    created_at: datetime
    source_version: int | None = Field(
        default=None, description="transferred versions: the version of this model transferred"
    )
    transfer_id: uuid.UUID | None = Field(
        default=None, description="transferred versions: the transfer record that made it"
    )
    transfer_number: int | None = None
