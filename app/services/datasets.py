"""Spectral datasets: parse and validate an upload, store its exact bytes, pin it by sha256.

A dataset file is a table with one row per sample: spectral columns ``<prefix><position>``
(e.g. ``wn_400.5``) on a strictly increasing axis, a numeric reference column and, optionally,
a column of unique sample ids. Other columns are carried along in the stored bytes but not used.
The same parser serves the upload and :func:`load_dataset_arrays`, so a model is always trained
on exactly what was validated at registration.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PureWindowsPath
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.spectra import FloatArray, as_axis
from app.db.models import Dataset, Domain, User
from app.db.repositories import datasets as dataset_rows
from app.db.repositories import domains as domain_rows
from app.db.repositories import users as user_rows
from app.db.session import on_rollback
from app.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.schemas.common import read_from
from app.schemas.datasets import DatasetCreate, DatasetRead
from app.services import audit
from app.services.domains import get_domain
from app.services.paging import decode_cursor, encode_cursor
from app.settings import get_settings
from app.store import ArtifactStore
from app.store.local import sha256_hex

FileFormat = Literal["parquet", "csv"]
PARQUET_MAGIC = b"PAR1"
MEDIA_TYPES: dict[str, str] = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
EXTENSIONS: dict[str, str] = {"parquet": "parquet", "csv": "csv"}
DEFAULT_AXIS_UNITS = {"wn_": "cm-1", "nm_": "nm"}
MIN_SAMPLES = 2
MIN_CHANNELS = 2

# Files scientists upload by mistake, recognised by their first bytes.
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (e.g. an Excel .xls workbook)"),
)
# A plain decimal number: float() alone would also accept "4_00", "nan" and "infinity".
_AXIS_POSITION = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class ParsedTable:
    """The validated numbers of a dataset file.

    X : ndarray of shape (n_samples, n_channels), float64, C-contiguous, finite
    y : ndarray of shape (n_samples,), float64, finite reference values
    axis : ndarray of shape (n_channels,), strictly increasing positions from the column names
    sample_ids : unique, non-blank ids in row order, or None without a sample id column
    columns : the spectral column names, in file order
    """

    file_format: FileFormat
    X: FloatArray
    y: FloatArray
    axis: FloatArray
    sample_ids: list[str] | None
    columns: tuple[str, ...]

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.X.shape[1])


@dataclass(frozen=True)
class DatasetArrays:
    """A registered dataset re-read from the store (hash-verified) and re-parsed.

    ``record.domain`` is loaded, so ``record.domain.name`` is available. ``X``, ``y`` and
    ``axis`` are read-only: later loads of the same bytes share them.
    """

    X: FloatArray
    y: FloatArray
    axis: FloatArray
    sample_ids: list[str] | None
    record: Dataset


# --------------------------------------------------------------------------------------------
# Parsing (pure: no database, no store)
# --------------------------------------------------------------------------------------------


def detect_format(blob: bytes, filename: str | None) -> FileFormat:
    """Parquet by its magic bytes, CSV by its extension; anything else is refused (415)."""
    if not blob:
        raise InvalidInput("the uploaded file is empty")
    suffix = PureWindowsPath(filename or "").suffix.lower()  # also splits on "/"
    if blob.startswith(PARQUET_MAGIC):
        return "parquet"
    if suffix == ".parquet":
        raise InvalidInput(
            "the file is named .parquet but is not a Parquet file (it does not start with PAR1)"
        )
    for signature, what in _SIGNATURES:
        if blob.startswith(signature):
            raise UnsupportedMediaType(
                f"the uploaded file is {what}; upload the spectra as .parquet or .csv"
            )
    if suffix == ".csv":
        if b"\x00" in blob[:65536]:
            raise UnsupportedMediaType(
                "the .csv file contains binary data (or UTF-16 text); save it as UTF-8 CSV"
            )
        return "csv"
    shown = suffix or "(no extension)"
    raise UnsupportedMediaType(
        f"unsupported file type {shown}: upload the spectra as .parquet or .csv"
    )


def parse_spectral_table(
    blob: bytes,
    *,
    file_format: str,
    reference_column: str,
    sample_id_column: str | None,
    spectral_prefix: str,
    max_rows: int | None = None,
    max_channels: int | None = None,
    max_decoded_bytes: int | None = None,
) -> ParsedTable:
    """Parse and validate a dataset file; every problem is an InvalidInput naming its place.

    Rows are numbered from 1 over the data rows (the CSV header is not counted). Parquet page
    checksums, where the writer stored them, are verified.

    Raises
    ------
    PayloadTooLarge
        The table would take more than ``max_decoded_bytes`` in memory: for Parquet, as its
        footer says, before anything is decompressed (:func:`decoded_size`); for CSV, as its
        rows and columns say once read, before the spectra are copied out.
    InvalidInput
        Unreadable file; fewer than 2 rows or channels, or more than ``max_rows`` /
        ``max_channels``; a spectral column name that is not ``<prefix><number>``; an axis that
        does not strictly increase in column order; a missing, non-numeric or non-finite
        spectral or reference value; a missing, blank or duplicated sample id.
    """
    if file_format not in MEDIA_TYPES:
        raise InvalidInput(f"unknown file format {file_format!r}: expected parquet or csv")
    fmt: FileFormat = "parquet" if file_format == "parquet" else "csv"
    if not blob:
        raise InvalidInput("the uploaded file is empty")
    if reference_column.startswith(spectral_prefix):
        raise InvalidInput(
            f"the reference column {reference_column!r} starts with the spectral prefix "
            f"{spectral_prefix!r}; rename it or choose another spectral prefix"
        )
    if sample_id_column is not None and sample_id_column == reference_column:
        raise InvalidInput("the sample id column and the reference column must differ")

    table = _read_table(
        blob,
        fmt,
        sample_id_column=sample_id_column,
        spectral_prefix=spectral_prefix,
        max_rows=max_rows,
        max_channels=max_channels,
        max_decoded_bytes=max_decoded_bytes,
    )
    names = list(table.column_names)
    if fmt == "csv" and len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        raise InvalidInput(
            "the CSV header was read as a single column: is the file separated by ';' or "
            "tabs? Only comma-separated CSV is accepted"
        )
    _check_unique_names(names)
    n_rows = table.num_rows
    if n_rows < MIN_SAMPLES:
        raise InvalidInput(f"the file has {n_rows} data row(s); at least {MIN_SAMPLES} are needed")
    if max_rows is not None and n_rows > max_rows:
        raise InvalidInput(f"the file has {n_rows} data rows; the limit is {max_rows}")

    columns, axis = _spectral_axis(names, spectral_prefix, max_channels=max_channels)
    if reference_column not in names:
        raise InvalidInput(
            f"reference column {reference_column!r} is not in the file "
            f"({_other_columns(names, spectral_prefix)})"
        )
    sample_ids = None
    if sample_id_column is not None:
        if sample_id_column not in names:
            raise InvalidInput(
                f"sample id column {sample_id_column!r} is not in the file "
                f"({_other_columns(names, spectral_prefix)})"
            )
        sample_ids = _sample_ids(table.column(sample_id_column), sample_id_column)

    # Each column is written to a contiguous row of X.T and transposed once: writing columns
    # of a C-ordered X directly strides across the whole matrix for every channel.
    X_T = np.empty((len(columns), n_rows), dtype=np.float64)
    for j, name in enumerate(columns):
        X_T[j] = _as_float(table.column(name), f"spectral column {name!r}")
    X = np.ascontiguousarray(X_T.T)
    bad = ~np.isfinite(X)
    if bad.any():
        row, j = divmod(int(np.flatnonzero(bad)[0]), X.shape[1])
        raise InvalidInput(
            f"spectrum at {_where(row, sample_ids)}, column {columns[j]!r}: "
            f"{_what_is_wrong(X[row, j])}; spectra must be complete and finite"
        )
    y = _as_float(table.column(reference_column), f"reference column {reference_column!r}")
    bad_y = ~np.isfinite(y)
    if bad_y.any():
        row = int(np.argmax(bad_y))
        raise InvalidInput(
            f"reference column {reference_column!r} at {_where(row, sample_ids)}: "
            f"{_what_is_wrong(y[row])}; every sample needs a finite reference value"
        )
    return ParsedTable(
        file_format=fmt,
        X=X,
        y=np.ascontiguousarray(y),
        axis=axis,
        sample_ids=sample_ids,
        columns=tuple(columns),
    )


def _read_table(
    blob: bytes,
    file_format: FileFormat,
    *,
    sample_id_column: str | None,
    spectral_prefix: str,
    max_rows: int | None,
    max_channels: int | None,
    max_decoded_bytes: int | None,
) -> pa.Table:
    if file_format == "parquet":
        try:
            # A page whose CRC does not match its bytes is an error, not silent garbage.
            parquet = pq.ParquetFile(io.BytesIO(blob), page_checksum_verification=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidInput(f"the Parquet file could not be read: {exc}") from None
        # Refuse from the footer, before decompressing every column.
        n_rows = parquet.metadata.num_rows
        if max_rows is not None and n_rows > max_rows:
            raise InvalidInput(f"the file has {n_rows} data rows; the limit is {max_rows}")
        n_channels = sum(1 for n in parquet.schema_arrow.names if n.startswith(spectral_prefix))
        if max_channels is not None and n_channels > max_channels:
            raise InvalidInput(
                f"the file has {n_channels} spectral channels; the limit is {max_channels}"
            )
        if max_decoded_bytes is not None:
            _check_decoded_size(decoded_size(parquet.metadata), max_decoded_bytes, len(blob))
        try:
            return parquet.read()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidInput(f"the Parquet file could not be read: {exc}") from None
    # Sample ids stay text ("007" is not 7); blank cells are reported, not turned into nulls.
    types = {sample_id_column: pa.string()} if sample_id_column else None
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)
    try:
        table = pacsv.read_csv(io.BytesIO(blob), convert_options=convert)
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidInput(f"the CSV file could not be read: {exc}") from None
    if max_decoded_bytes is not None:
        rows, columns = table.num_rows, table.num_columns
        size = DecodedSize(rows, columns, rows * columns * FLOAT_BYTES, int(table.nbytes))
        _check_decoded_size(size, max_decoded_bytes, len(blob))
    return table


FLOAT_BYTES = 8


@dataclass(frozen=True)
class DecodedSize:
    """How much memory a table takes decoded: ``rows`` x ``columns`` as float64 (what the
    parser makes of every column, ``as_float64``) and the bytes of its pages or columns as
    stored, uncompressed (``uncompressed``; text columns can take more than 8 bytes a value)."""

    rows: int
    columns: int
    as_float64: int
    uncompressed: int

    @property
    def bytes(self) -> int:
        return max(self.as_float64, self.uncompressed)


def decoded_size(metadata: pq.FileMetaData) -> DecodedSize:
    """A Parquet file's decoded size from its footer alone: the row count times the leaf
    column count times 8, and the sum of every column chunk's ``total_uncompressed_size``."""
    uncompressed = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        for j in range(group.num_columns):
            uncompressed += max(group.column(j).total_uncompressed_size, 0)
    rows, columns = metadata.num_rows, metadata.num_columns
    return DecodedSize(rows, columns, rows * columns * FLOAT_BYTES, uncompressed)


def _check_decoded_size(size: DecodedSize, budget: int, file_bytes: int) -> None:
    if size.bytes > budget:
        raise PayloadTooLarge(
            f"the file ({file_bytes} bytes) would take {size.bytes} bytes decoded "
            f"({size.rows} rows x {size.columns} columns x {FLOAT_BYTES} bytes = "
            f"{size.as_float64}; {size.uncompressed} bytes uncompressed as stored); the limit "
            f"is {budget} bytes (setting max_decoded_bytes): split the data into smaller files"
        )


def _check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"column {name!r} appears more than once in the header")
        seen.add(name)


def _other_columns(names: list[str], prefix: str) -> str:
    others = [n for n in names if not n.startswith(prefix)]
    if not others:
        return "it has only spectral columns"
    shown = ", ".join(repr(n) for n in others[:20])
    more = f" and {len(others) - 20} more" if len(others) > 20 else ""
    return f"non-spectral columns: {shown}{more}"


def _spectral_axis(
    names: list[str], prefix: str, *, max_channels: int | None
) -> tuple[list[str], FloatArray]:
    columns = [n for n in names if n.startswith(prefix)]
    if not columns:
        shown = ", ".join(repr(n) for n in names[:10])
        raise InvalidInput(
            f"no spectral columns: no column name starts with {prefix!r} (columns: {shown}"
            f"{' ...' if len(names) > 10 else ''})"
        )
    if len(columns) < MIN_CHANNELS:
        raise InvalidInput(
            f"only {len(columns)} spectral column ({columns[0]!r}); a spectrum needs at least "
            f"{MIN_CHANNELS} channels"
        )
    if max_channels is not None and len(columns) > max_channels:
        raise InvalidInput(
            f"the file has {len(columns)} spectral channels; the limit is {max_channels}"
        )
    positions = []
    for name in columns:
        suffix = name[len(prefix) :]
        if not _AXIS_POSITION.match(suffix) or not math.isfinite(float(suffix)):
            raise InvalidInput(
                f"spectral column {name!r}: {suffix!r} after the prefix {prefix!r} is not a "
                f"number; name spectral columns {prefix}<position>, e.g. {prefix}1000.5"
            )
        positions.append(float(suffix))
    try:
        axis = as_axis(positions, name="spectral axis")
    except ValueError:
        steps = np.diff(positions)
        i = int(np.argmax(steps <= 0))
        raise InvalidInput(
            f"the spectral axis must strictly increase in column order: column "
            f"{columns[i + 1]!r} ({positions[i + 1]:g}) follows column {columns[i]!r} "
            f"({positions[i]:g})"
        ) from None
    return columns, axis


def _as_float(column: pa.ChunkedArray, label: str) -> FloatArray:
    """The column as float64, nulls as NaN; refuses text, dates, booleans and nested types."""
    kind = column.type
    if pa.types.is_float64(kind):  # the usual spectral column: no cast needed
        return np.asarray(column.to_numpy(), dtype=np.float64)
    if pa.types.is_null(kind):  # a CSV column with no value at all
        return np.full(len(column), np.nan)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        as_float = pc.cast(column, pa.float64(), safe=False)
        return np.asarray(as_float.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for row, value in enumerate(column.to_pylist()):
            if value is not None and not _is_number(value):
                raise InvalidInput(f"{label} is not numeric: data row {row + 1} holds {value!r}")
        raise InvalidInput(f"{label} holds numbers stored as text; store them as numbers")
    raise InvalidInput(f"{label} is not numeric (its type is {kind})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sample_ids(column: pa.ChunkedArray, name: str) -> list[str]:
    ids: list[str] = []
    first_row: dict[str, int] = {}
    for row, value in enumerate(column.to_pylist()):
        text = "" if value is None else str(value).strip()
        if not text:
            raise InvalidInput(f"sample id column {name!r} is empty at data row {row + 1}")
        if text in first_row:
            raise InvalidInput(
                f"sample id {text!r} appears more than once (data rows {first_row[text] + 1} "
                f"and {row + 1}); sample ids must be unique"
            )
        first_row[text] = row
        ids.append(text)
    return ids


def _where(row: int, sample_ids: list[str] | None) -> str:
    return f"data row {row + 1}" + (f" (sample {sample_ids[row]!r})" if sample_ids else "")


def _what_is_wrong(value: float) -> str:
    return "the value is missing or NaN" if math.isnan(value) else f"the value is {value}"


# --------------------------------------------------------------------------------------------
# Use cases
# --------------------------------------------------------------------------------------------


def resolve_axis_unit(spectral_prefix: str, axis_unit: str | None) -> str:
    if axis_unit:
        return axis_unit
    if spectral_prefix in DEFAULT_AXIS_UNITS:
        return DEFAULT_AXIS_UNITS[spectral_prefix]
    raise InvalidInput(
        f"axis_unit is needed (cm-1 or nm): it cannot be inferred from the spectral prefix "
        f"{spectral_prefix!r}"
    )


def check_upload_size(blob: bytes) -> None:
    """Refuse an upload above the configured byte limit."""
    max_bytes = get_settings().max_upload_bytes
    if len(blob) > max_bytes:
        raise PayloadTooLarge(
            f"the file is {len(blob)} bytes; the upload limit is {max_bytes} bytes"
        )


def _parse_with_limits(
    blob: bytes,
    file_format: FileFormat,
    *,
    reference_column: str,
    sample_id_column: str | None,
    spectral_prefix: str,
) -> ParsedTable:
    settings = get_settings()
    return parse_spectral_table(
        blob,
        file_format=file_format,
        reference_column=reference_column,
        sample_id_column=sample_id_column,
        spectral_prefix=spectral_prefix,
        max_rows=settings.max_dataset_rows,
        max_channels=settings.max_dataset_channels,
        max_decoded_bytes=settings.max_decoded_bytes,
    )


def parse_upload(
    blob: bytes,
    filename: str | None,
    *,
    reference_column: str,
    sample_id_column: str | None,
    spectral_prefix: str,
) -> ParsedTable:
    """Size-check, detect the format of and parse one upload with the configured limits.

    No database, no store: the result can be registered later, without parsing again, by
    :func:`register_parsed_dataset`.
    """
    check_upload_size(blob)
    return _parse_with_limits(
        blob,
        detect_format(blob, filename),
        reference_column=reference_column,
        sample_id_column=sample_id_column,
        spectral_prefix=spectral_prefix,
    )


def register_dataset(
    session: Session,
    store: ArtifactStore,
    *,
    blob: bytes,
    filename: str | None,
    data: DatasetCreate,
    actor: User,
) -> tuple[Dataset, bool]:
    """Validate ``blob``, store it and pin a record by its sha256, audited.

    Returns the record and whether this call created it. The same bytes registered again with
    the same interpretation give the existing record (no new row, no audit event); the same
    bytes claimed for another domain, reference column, units, sample id column, prefix or
    axis unit are a Conflict. Never commits; if the caller's transaction rolls back, a file
    this call added to the store is removed again.
    """
    check_upload_size(blob)
    file_format = detect_format(blob, filename)
    return _register(
        session,
        store,
        blob=blob,
        filename=filename,
        file_format=file_format,
        data=data,
        actor=actor,
        # Parsed only when the bytes are new: a known file is answered from its record.
        parse=lambda: _parse_with_limits(
            blob,
            file_format,
            reference_column=data.reference_column,
            sample_id_column=data.sample_id_column,
            spectral_prefix=data.spectral_prefix,
        ),
    )


def register_parsed_dataset(
    session: Session,
    store: ArtifactStore,
    *,
    parsed: ParsedTable,
    blob: bytes,
    filename: str | None,
    data: DatasetCreate,
    actor: User,
    domain: Domain | None = None,
    registered_for: dict[str, Any] | None = None,
) -> tuple[Dataset, bool]:
    """:func:`register_dataset` for bytes already parsed by :func:`parse_upload`.

    ``parsed`` must be ``blob`` read with ``data``'s reference column, sample id column and
    spectral prefix; the bytes are neither size-checked nor parsed again. ``domain``, if the
    caller holds it, is the row named ``data.domain`` (then it is not looked up again).
    ``registered_for`` names the record the upload belongs to (e.g. a transfer) in the
    registration's audit event.
    """
    if domain is not None and domain.name != data.domain:
        raise ValueError(f"domain row {domain.name!r} is not the domain {data.domain!r}")
    return _register(
        session,
        store,
        blob=blob,
        filename=filename,
        file_format=parsed.file_format,
        data=data,
        actor=actor,
        parse=lambda: parsed,
        domain=domain,
        registered_for=registered_for,
    )


def _register(
    session: Session,
    store: ArtifactStore,
    *,
    blob: bytes,
    filename: str | None,
    file_format: FileFormat,
    data: DatasetCreate,
    actor: User,
    parse: Callable[[], ParsedTable],
    domain: Domain | None = None,
    registered_for: dict[str, Any] | None = None,
) -> tuple[Dataset, bool]:
    if domain is None:
        domain = get_domain(session, data.domain)
    axis_unit = resolve_axis_unit(data.spectral_prefix, data.axis_unit)
    digest = sha256_hex(blob)

    existing = _find(session, digest)
    if existing is not None:
        _check_same_interpretation(existing, domain, data, axis_unit)
        return existing, False

    parsed = parse()
    dataset = Dataset(
        sha256=digest,
        name=data.name,
        domain_id=domain.id,
        file_format=file_format,
        size_bytes=len(blob),
        reference_column=data.reference_column,
        units=data.units,
        sample_id_column=data.sample_id_column,
        spectral_prefix=data.spectral_prefix,
        axis_unit=axis_unit,
        n_samples=parsed.n_samples,
        n_channels=parsed.n_channels,
        axis=parsed.axis.tolist(),
        reference_min=float(parsed.y.min()),
        reference_max=float(parsed.y.max()),
        created_by_id=actor.id,
    )
    try:
        # Insert before writing the file: on PostgreSQL a concurrent upload of the same bytes
        # waits here on the unique sha256 and then finds the committed record.
        with session.begin_nested():
            session.add(dataset)
            session.flush()  # ids now; the caller commits
    except IntegrityError:
        existing = _find(session, digest)
        if existing is None:
            raise
        _check_same_interpretation(existing, domain, data, axis_unit)
        return existing, False

    stored, created = store.put(blob)
    if stored != digest:  # the store hashes independently; they must agree
        raise IntegrityFailure(f"the store filed the upload as {stored}, expected {digest}")
    if created:
        on_rollback(session, lambda: store.discard(digest))

    audit.record(
        session,
        actor=actor,
        action="dataset.register",
        entity_type="dataset",
        entity_id=dataset.id,
        reason=data.reason,
        after={
            "sha256": digest,
            "name": dataset.name,
            "domain": domain.name,
            "uploaded_filename": filename,
            "file_format": file_format,
            "size_bytes": dataset.size_bytes,
            "reference_column": dataset.reference_column,
            "units": dataset.units,
            "sample_id_column": dataset.sample_id_column,
            "spectral_prefix": dataset.spectral_prefix,
            "axis_unit": axis_unit,
            "n_samples": dataset.n_samples,
            "n_channels": dataset.n_channels,
            "axis_min": float(parsed.axis[0]),
            "axis_max": float(parsed.axis[-1]),
            "reference_min": dataset.reference_min,
            "reference_max": dataset.reference_max,
            **({"registered_for": registered_for} if registered_for else {}),
        },
    )
    return dataset, True


def _find(session: Session, digest: str) -> Dataset | None:
    return dataset_rows.by_sha256(session, digest)


def _check_same_interpretation(
    existing: Dataset, domain: Domain, data: DatasetCreate, axis_unit: str
) -> None:
    claimed = {
        "domain": (existing.domain_id, domain.id),
        "reference_column": (existing.reference_column, data.reference_column),
        "units": (existing.units, data.units),
        "sample_id_column": (existing.sample_id_column, data.sample_id_column),
        "spectral_prefix": (existing.spectral_prefix, data.spectral_prefix),
        "axis_unit": (existing.axis_unit, axis_unit),
    }
    differ = [field for field, (pinned, asked) in claimed.items() if pinned != asked]
    if differ:
        raise Conflict(
            f"these exact bytes are already registered as dataset {existing.sha256} "
            f"({existing.name!r}) with a different {', '.join(differ)}; a file is pinned "
            "with one interpretation"
        )


def get_dataset(session: Session, sha256: str) -> Dataset:
    dataset = _find(session, sha256)
    if dataset is None:
        raise NotFound(f"dataset {sha256} does not exist")
    return dataset


def list_datasets(
    session: Session,
    *,
    domain: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> tuple[list[Dataset], str | None]:
    """Datasets in registration order, ``limit`` at a time, and the next page's cursor."""
    domain_id = get_domain(session, domain).id if domain is not None else None
    after = decode_cursor(cursor) if cursor is not None else None
    rows = dataset_rows.in_registration_order(
        session, domain_id=domain_id, after=after, limit=None if limit is None else limit + 1
    )
    if limit is not None and len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
    return rows, None


def describe_datasets(session: Session, datasets: list[Dataset]) -> list[DatasetRead]:
    """API views of ``datasets`` with domain and creator names (two queries in all)."""
    domains = domain_rows.by_ids(session, (d.domain_id for d in datasets))
    users = user_rows.usernames(session, (d.created_by_id for d in datasets))
    return [
        read_from(
            DatasetRead,
            d,
            domain=domains[d.domain_id].name,
            axis_min=float(d.axis[0]),
            axis_max=float(d.axis[-1]),
            created_by=users.get(d.created_by_id, "?"),
        )
        for d in datasets
    ]


def describe_dataset(session: Session, dataset: Dataset) -> DatasetRead:
    return describe_datasets(session, [dataset])[0]


def read_content(session: Session, store: ArtifactStore, sha256: str) -> tuple[Dataset, bytes]:
    """The record and its exact stored bytes (re-hashed by the store on read)."""
    dataset = get_dataset(session, sha256)
    return dataset, store.get(dataset.sha256)


_TableKey = tuple[str, str, str, str | None, str]


class StoredTables:
    """Parsed tables of stored datasets: a bounded LRU, safe across threads.

    Keyed by the sha256 of the bytes and how they are read (format, reference column, sample
    id column, spectral prefix). Stored bytes never change under their sha256 and parsing is a
    pure function of the bytes and those options, so a table parsed once stays right; the
    caller still reads and re-hashes the bytes on every load, so a missing or altered file is
    refused as before, and only the parse is saved. The arrays are read-only, so no caller
    changes what the next one gets. Two threads missing at once both parse; the second
    result replaces the first (same bytes, same table).
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[_TableKey, ParsedTable] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(table: ParsedTable) -> int:
        return int(table.X.nbytes + table.y.nbytes + table.axis.nbytes)

    def get(self, key: _TableKey) -> ParsedTable | None:
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
            return table

    def put(self, key: _TableKey, table: ParsedTable) -> None:
        for array in (table.X, table.y, table.axis):
            array.flags.writeable = False
        size = self._size(table)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._tables.pop(key, None)
            if old is not None:
                self._bytes -= self._size(old)
            self._tables[key] = table
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._tables.popitem(last=False)
                self._bytes -= self._size(evicted)

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._bytes = 0


stored_tables = StoredTables()


def load_dataset_arrays(session: Session, store: ArtifactStore, sha256: str) -> DatasetArrays:
    """Re-read a registered dataset from the store and re-parse it with the upload's parser
    (:func:`stored_table`).

    Raises
    ------
    NotFound
        No dataset has this sha256, or its bytes are missing from the store.
    IntegrityFailure
        The stored bytes hash differently, or no longer parse to what was registered.
    """
    record = dataset_rows.by_sha256(session, sha256, with_domain=True)
    if record is None:
        raise NotFound(f"dataset {sha256} does not exist")
    parsed = stored_table(store, record)
    return DatasetArrays(
        X=parsed.X, y=parsed.y, axis=parsed.axis, sample_ids=parsed.sample_ids, record=record
    )


def stored_table(store: ArtifactStore, record: Dataset) -> ParsedTable:
    """The table of a registered dataset: its bytes read and re-hashed by the store, parsed
    with the upload's parser, and checked against the record.

    The parse of bytes already parsed in this process is taken from :data:`stored_tables`:
    ``X``, ``y`` and ``axis`` are read-only, shared with later loads of the same bytes;
    ``sample_ids`` is the caller's own list.

    Raises
    ------
    NotFound
        The bytes are missing from the store.
    IntegrityFailure
        The stored bytes hash differently, or no longer parse to what was registered.
    """
    sha256 = record.sha256
    blob = store.get(sha256)  # read and re-hashed every time
    key: _TableKey = (
        sha256,
        record.file_format,
        record.reference_column,
        record.sample_id_column,
        record.spectral_prefix,
    )
    parsed = stored_tables.get(key)
    if parsed is None:
        try:
            parsed = parse_spectral_table(
                blob,
                file_format=record.file_format,
                reference_column=record.reference_column,
                sample_id_column=record.sample_id_column,
                spectral_prefix=record.spectral_prefix,
            )
        except InvalidInput as exc:
            raise IntegrityFailure(
                f"stored dataset {sha256} no longer parses as registered: {exc.detail}"
            ) from exc
        stored_tables.put(key, parsed)
    if parsed.n_samples != record.n_samples or not np.array_equal(
        parsed.axis, np.asarray(record.axis, dtype=np.float64)
    ):
        raise IntegrityFailure(
            f"stored dataset {sha256} parses to {parsed.n_samples} samples x "
            f"{parsed.n_channels} channels, not the registered {record.n_samples} x "
            f"{record.n_channels}"
        )
    if parsed.sample_ids is None:
        return parsed
    return replace(parsed, sample_ids=list(parsed.sample_ids))
