"""Measurement domains and spectral datasets: the API contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.schemas.common import Name, NoNul, Reason, Schema

AxisUnit = Literal["cm-1", "nm"]

# Shared by the JSON schemas below and by the multipart form of POST /datasets.
DatasetName = Annotated[
    str, Field(min_length=1, max_length=200, examples=["ambr250 runs 1-12"]), NoNul
]
ColumnName = Annotated[str, Field(min_length=1, max_length=200), NoNul]
Units = Annotated[str, Field(min_length=1, max_length=50, examples=["g/L"]), NoNul]
SpectralPrefix = Annotated[str, Field(min_length=1, max_length=50, examples=["wn_", "nm_"]), NoNul]
OptionalReason = Annotated[
    str | None, Field(max_length=2000, description="why (optional for a registration)"), NoNul
]


class DomainCreate(Schema):
    name: Name
    instrument: Annotated[str, Field(min_length=1, max_length=200, examples=["Kaiser RXN2"]), NoNul]
    probe_serial: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    scale: Annotated[str, Field(min_length=1, max_length=100, examples=["250 mL"]), NoNul]
    site: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    description: Annotated[str | None, Field(max_length=2000), NoNul] = None
    reason: Reason


class DomainRead(Schema):
    id: uuid.UUID
    name: str
    instrument: str
    probe_serial: str
    scale: str
    site: str
    description: str | None
    created_at: datetime
    created_by: str


class DatasetCreate(Schema):
    """The form fields of a dataset upload (the file travels beside them)."""

    name: DatasetName
    domain: Name
    reference_column: ColumnName
    units: Units
    sample_id_column: ColumnName | None = None
    spectral_prefix: SpectralPrefix = "wn_"
    axis_unit: AxisUnit | None = Field(
        default=None, description="default: cm-1 for prefix wn_, nm for prefix nm_"
    )
    reason: OptionalReason = None


class DatasetRead(Schema):
    id: uuid.UUID
    sha256: str
    name: str
    domain: str
    file_format: Literal["parquet", "csv"]
    size_bytes: int
    reference_column: str
    units: str
    sample_id_column: str | None
    spectral_prefix: str
    axis_unit: str
    n_samples: int
    n_channels: int
    axis_min: float
    axis_max: float
    reference_min: float
    reference_max: float
    created_at: datetime
    created_by: str
