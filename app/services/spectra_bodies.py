"""Request bodies of the prediction route -> one C-contiguous, finite float64 array.

Pure: no database, no HTTP. Each parser takes the body's bytes and what the model expects
(its channel count, axis and spectral prefix, the row limit) and returns a
:class:`SpectraInput`, or raises :class:`~app.errors.InvalidInput` with a message that names
the row, channel or column at fault (rows and channels count from 0).

Bodies
------
JSON
    ``{"spectra": [[...], ...], "axis": [...]?, "purpose": "..."?, "sample_ids": [...]?}``.
Arrow IPC stream, channel columns
    One row per spectrum, one numeric column ``<prefix><position>`` per channel (e.g.
    ``wn_400`` ... ``wn_1800``); the column names are the axis. A string column
    ``sample_id`` is read as the sample ids; other columns are ignored.
Arrow IPC stream, list column
    One row per spectrum, one column ``spectra`` of type ``FixedSizeList<float64>`` whose size
    is the channel count; the schema metadata carry the axis under ``axis`` (a JSON list of
    numbers) and optionally the spectral prefix under ``prefix``. The schema then has one
    field however many channels there are. A string column ``sample_id`` is read as the
    sample ids.

Sample ids, when sent, are one text of 1 to :data:`MAX_SAMPLE_ID` characters (no NUL) per
spectrum, all different; they are kept in the prediction log with the results.
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import simdjson
from flatbuffers import number_types
from flatbuffers.table import Table

from app.core.spectra import FloatArray, check_same_axis
from app.enums import PredictionPurpose
from app.errors import InvalidInput
from app.schemas.predict import MAX_SAMPLE_ID
from app.services import strict_json

_JSON_FIELDS = frozenset({"spectra", "axis", "purpose", "sample_ids"})
SPECTRA_COLUMN = "spectra"
SAMPLE_ID_COLUMN = "sample_id"
AXIS_KEY = b"axis"
PREFIX_KEY = b"prefix"


@dataclass(frozen=True)
class SpectraInput:
    """A parsed request: C-contiguous, finite float64 spectra on the model's channels."""

    spectra: FloatArray
    axis: FloatArray | None
    purpose: PredictionPurpose | None
    sample_ids: list[str] | None = None


def _check_row_count(n: int, max_rows: int) -> None:
    if n < 1:
        raise InvalidInput("no spectra: send at least one row")
    if n > max_rows:
        raise InvalidInput(f"{n} spectra in one call; the limit is {max_rows} (split the request)")


def _channel_label(j: int, axis: FloatArray, prefix: str) -> str:
    return f"channel {j} ({prefix}{np.format_float_positional(axis[j], trim='-')})"


def _check_finite(X: FloatArray, axis: FloatArray, prefix: str) -> None:
    finite = np.isfinite(X)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        value = "NaN or null" if np.isnan(X[i, j]) else f"{X[i, j]}"
        raise InvalidInput(
            f"row {i}, {_channel_label(j, axis, prefix)} is {value}: spectra must be finite "
            "numbers (rows and channels count from 0)"
        )


_PURPOSES = ", ".join(p.value for p in PredictionPurpose)


def check_purpose(purpose: Any) -> PredictionPurpose | None:
    """The purpose as given (None when absent), or 422 naming the allowed ones."""
    if purpose is None or isinstance(purpose, PredictionPurpose):
        return purpose
    try:
        return PredictionPurpose(purpose)
    except ValueError:
        shown = json.dumps(purpose)[:80] if isinstance(purpose, str) else type(purpose).__name__
        raise InvalidInput(f"purpose {shown} is not one of: {_PURPOSES}") from None


def check_sample_ids(values: Any, n_spectra: int) -> list[str] | None:
    """Sample ids as given (None when absent), or 422: one text of 1 to MAX_SAMPLE_ID
    characters per spectrum, all different."""
    if values is None:
        return None
    if not isinstance(values, list):
        raise InvalidInput("sample_ids must be a list of texts, one per spectrum")
    if len(values) != n_spectra:
        raise InvalidInput(
            f"{len(values)} sample ids for {n_spectra} spectra: send one per spectrum, in "
            "the same order"
        )
    for i, value in enumerate(values):
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_SAMPLE_ID:
            raise InvalidInput(
                f"sample id {i} must be a text of 1 to {MAX_SAMPLE_ID} characters "
                "(ids count from 0)"
            )
        if "\x00" in value:
            raise InvalidInput(
                f"sample id {i} must not contain the NUL character (U+0000) (ids count from 0)"
            )
    if len(set(values)) != len(values):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise InvalidInput(f"sample id {value!r} is sent twice: sample ids must be unique")
            seen.add(value)
    return list(values)


def _json_document(body: bytes) -> Any:
    # Python's parser also reads NaN and Infinity, so such a value gets named below (row and
    # channel) rather than reported as a syntax error; a key twice in one object is refused.
    return strict_json.loads(body, allow_non_finite=True)


def _number_list(values: Any, what: str) -> list[Any]:
    if not isinstance(values, list):
        raise InvalidInput(f"{what} must be a list of numbers")
    if not set(map(type, values)) <= {float, int}:
        j, bad = next((j, v) for j, v in enumerate(values) if type(v) not in (float, int))
        raise InvalidInput(f"{what}, position {j}: {json.dumps(bad)} is not a number")
    return values


class _ParserPool:
    """A few reusable simdjson parsers (one parses one document at a time, and a parser that
    has grown for a large body is faster the next time than a new one)."""

    def __init__(self, size: int = 2, max_body: int = 32 * 2**20) -> None:
        self.size, self.max_body = size, max_body
        self._free: list[simdjson.Parser] = []
        self._lock = threading.Lock()

    def acquire(self) -> simdjson.Parser:
        with self._lock:
            return self._free.pop() if self._free else simdjson.Parser()

    def release(self, parser: simdjson.Parser, body_size: int) -> None:
        if body_size <= self.max_body:  # don't keep the memory of a huge body around
            with self._lock:
                if len(self._free) < self.size:
                    self._free.append(parser)


_parsers = _ParserPool()


def _parse_json_fast(body: bytes, *, n_channels: int, max_rows: int) -> SpectraInput | None:
    """Parse a well-formed body without making a Python float per value, or return None.

    simdjson copies the numbers of ``spectra`` straight into one float64 buffer, where the
    strict path makes a Python float per value before numpy copies them again. Its
    ``as_buffer`` flattens nested lists, so the body must have exactly one ``[`` per list we
    expect (spectra, each row, the axis, the sample ids): any other list, or a ``[`` inside a
    text, sends the body to the strict path. So does anything that path must explain (a syntax
    error, NaN, a value that is not a number, a short row, an unknown field).
    """
    parser = _parsers.acquire()
    try:
        result = _read_fast(parser, body, n_channels=n_channels, max_rows=max_rows)
    except (ValueError, TypeError, RuntimeError, KeyError):
        result = None
    # Not reached when a refusal propagates: its traceback may still hold views into the
    # document, and a parser must not parse again while any exist (it is simply dropped).
    _parsers.release(parser, len(body))
    return result


def _read_fast(
    parser: simdjson.Parser, body: bytes, *, n_channels: int, max_rows: int
) -> SpectraInput | None:
    doc = parser.parse(body)
    if not isinstance(doc, simdjson.Object):
        return None
    names = list(doc.keys())
    repeated = strict_json.repeated_name(names)
    if repeated is not None:  # simdjson would read the first, the strict path the last
        raise InvalidInput(strict_json.duplicate_detail(repeated))
    keys = set(names)
    if "spectra" not in keys or not keys <= _JSON_FIELDS:
        return None
    rows, axis, purpose = doc["spectra"], doc.get("axis"), doc.get("purpose")
    sample_ids = doc.get("sample_ids")
    if not isinstance(rows, simdjson.Array):
        return None
    _check_row_count(len(rows), max_rows)
    if (
        not (axis is None or isinstance(axis, simdjson.Array))
        or not (purpose is None or isinstance(purpose, str))
        or not (sample_ids is None or isinstance(sample_ids, simdjson.Array))
    ):
        return None
    n = len(rows)
    if body.count(b"[") != 1 + n + (axis is not None) + (sample_ids is not None):
        return None
    if any(not isinstance(row, simdjson.Array) or len(row) != n_channels for row in rows):
        return None
    X = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64)
    if X.size != n * n_channels:
        return None
    axis_arr = None if axis is None else np.frombuffer(axis.as_buffer(of_type="d"), np.float64)
    ids = None if sample_ids is None else sample_ids.as_list()
    return SpectraInput(X.reshape(n, n_channels), axis_arr, purpose, ids)  # type: ignore[arg-type]


def parse_json_body(
    body: bytes, *, n_channels: int, axis: FloatArray, prefix: str, max_rows: int
) -> SpectraInput:
    """``{"spectra": [[...], ...], "axis": [...]?, "purpose": "..."?, "sample_ids": [...]?}``
    -> spectra.

    ``axis`` and ``prefix`` are the model's (``prefix`` only labels channels in messages); a
    body's axis, when given, must equal the model's.

    Raises
    ------
    InvalidInput
        Naming the row (and channel) at fault: a row without the model's channel count, a
        value that is not a number, a NaN or infinite value; an unknown field; an axis that
        departs from the model's (naming the channel); a purpose that is not one of
        :class:`~app.enums.PredictionPurpose`; sample ids that are not one unique text per
        spectrum; a key twice in one object (naming it); no rows or more than ``max_rows``.
    """
    fast = _parse_json_fast(body, n_channels=n_channels, max_rows=max_rows)
    parsed = fast or _parse_json_strict(body, n_channels=n_channels, max_rows=max_rows)
    _check_finite(parsed.spectra, axis, prefix)
    if parsed.axis is not None:
        check_axis(axis, parsed.axis)
    return SpectraInput(
        parsed.spectra,
        parsed.axis,
        check_purpose(parsed.purpose),
        check_sample_ids(parsed.sample_ids, parsed.spectra.shape[0]),
    )


def _parse_json_strict(body: bytes, *, n_channels: int, max_rows: int) -> SpectraInput:
    """The general path: any valid JSON (and NaN/Infinity, to name them), every rule checked
    value by value so that the error names the row and channel at fault."""
    doc = _json_document(body)
    if not isinstance(doc, dict):
        raise InvalidInput('the JSON body must be an object: {"spectra": [[...], ...]}')
    unknown = sorted(set(doc) - _JSON_FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}: the JSON body has spectra, and optionally axis, "
            "purpose and sample_ids"
        )
    rows = doc.get("spectra")
    if not isinstance(rows, list):
        raise InvalidInput("spectra is required: a list of spectra, each a list of numbers")
    _check_row_count(len(rows), max_rows)
    X = np.empty((len(rows), n_channels), dtype=np.float64)
    for i, row in enumerate(rows):
        values = _number_list(row, f"row {i} of spectra")
        if len(values) != n_channels:
            raise InvalidInput(
                f"row {i} of spectra has {len(values)} values but the model expects "
                f"{n_channels} channels"
            )
        try:
            X[i] = values
        except OverflowError:
            raise InvalidInput(f"row {i} of spectra holds a number too large for float64") from None
    given_axis = doc.get("axis")
    axis_arr = None
    if given_axis is not None:
        try:
            axis_arr = np.asarray(_number_list(given_axis, "axis"), dtype=np.float64)
        except OverflowError:
            raise InvalidInput("axis holds a number too large for float64") from None
    return SpectraInput(X, axis_arr, doc.get("purpose"), doc.get("sample_ids"))


def parse_arrow_body(
    body: bytes, *, n_channels: int, axis: FloatArray, prefix: str, max_rows: int
) -> SpectraInput:
    """An Arrow IPC stream, in either layout of the module docstring -> spectra.

    A stream with a column named ``spectra`` is read in the list layout, any other in the
    channel-column layout. Either way the request's axis (column names, or the ``axis``
    metadata) must equal the model's.

    Raises
    ------
    InvalidInput
        Not an Arrow IPC stream; no spectral column; a column name or axis that departs from
        the model's (naming the channel or column); a list size other than the channel
        count; a null, NaN or infinite value (naming row and channel); a non-numeric column;
        no rows or more than ``max_rows``.
    """
    buffer = pa.py_buffer(body)
    try:
        _check_row_count(_uncompressed_rows(buffer), max_rows)
        table = ipc.open_stream(buffer).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInput(f"the body is not an Arrow IPC stream: {exc}") from None
    # The schema's own lookup: building the list of column names costs more for 701 columns.
    if table.schema.get_field_index(SPECTRA_COLUMN) >= 0:
        parsed = _arrow_list_layout(
            table, n_channels=n_channels, axis=axis, prefix=prefix, max_rows=max_rows
        )
    else:
        parsed = _arrow_channel_columns(table, axis=axis, prefix=prefix, max_rows=max_rows)
    if table.schema.get_field_index(SAMPLE_ID_COLUMN) < 0:
        return parsed
    return SpectraInput(parsed.spectra, parsed.axis, None, _arrow_sample_ids(table))


# Arrow's Message.fbs: Message.header (field 2) is a RecordBatch (field 0 its length, field 3
# its BodyCompression) or a DictionaryBatch (field 1 its RecordBatch).
_BATCH_TYPES = frozenset({"record batch", "dictionary batch"})


def _field(table: Table, index: int) -> int:
    return int(table.Offset(4 + 2 * index))


def _uncompressed_rows(stream: pa.Buffer) -> int:
    """The rows of the stream's record batches, read from the messages' metadata alone.

    Nothing is decoded: a compressed buffer (zstd or LZ4) announces the size it decompresses
    to, and a few kilobytes can announce gigabytes, so a stream with a compressed batch is
    refused here. Uncompressed, every buffer is a slice of the body, and decoding needs no more
    memory than the body already holds.
    """
    rows = 0
    for message in ipc.MessageReader.open_stream(stream):
        if message.type not in _BATCH_TYPES:
            continue
        try:
            meta = message.metadata.to_pybytes()
            root = Table(meta, flatbuffers.encode.Get(flatbuffers.packer.uoffset, meta, 0))
            batch = Table(meta, 0)
            root.Union(batch, _field(root, 2))
            if message.type == "dictionary batch":
                batch = Table(meta, batch.Indirect(_field(batch, 1) + batch.Pos))
            compressed = bool(_field(batch, 3))
            length_at = _field(batch, 0)
            length = batch.Get(number_types.Int64Flags, length_at + batch.Pos) if length_at else 0
        except (struct.error, IndexError, TypeError, ValueError):
            raise InvalidInput("the body is not an Arrow IPC stream: unreadable message") from None
        if compressed:
            raise InvalidInput(
                "the Arrow IPC stream's buffers are compressed (zstd or LZ4): their decoded "
                "size cannot be checked before decoding, so compressed streams are not "
                "accepted; send the stream uncompressed"
            )
        if message.type == "record batch":
            rows += int(length)
    return rows


def _arrow_sample_ids(table: pa.Table) -> list[str]:
    column = table.column(SAMPLE_ID_COLUMN)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InvalidInput(
            f"column {SAMPLE_ID_COLUMN!r} must hold texts (its type is {column.type})"
        )
    if column.null_count:
        i = int(np.argmax(np.asarray(column.combine_chunks().is_null())))
        raise InvalidInput(f"row {i} of {SAMPLE_ID_COLUMN!r} is null: send one id per spectrum")
    ids = check_sample_ids(column.to_pylist(), table.num_rows)
    assert ids is not None
    return ids


def _arrow_channel_columns(
    table: pa.Table, *, axis: FloatArray, prefix: str, max_rows: int
) -> SpectraInput:
    all_names = table.column_names
    columns = [i for i, name in enumerate(all_names) if name.startswith(prefix)]
    names = [all_names[i] for i in columns]
    if not names:
        shown = ", ".join(repr(n) for n in all_names[:10]) or "none"
        raise InvalidInput(
            f"no spectral columns: no column name starts with {prefix!r} and there is no "
            f"{SPECTRA_COLUMN!r} list column (columns: {shown})"
        )
    positions = np.empty(len(names), dtype=np.float64)
    for j, name in enumerate(names):
        suffix = name[len(prefix) :]
        try:
            positions[j] = float(suffix)
        except ValueError:
            raise InvalidInput(
                f"spectral column {name!r}: {suffix!r} after the prefix {prefix!r} is not a "
                f"number; name spectral columns {prefix}<position>, e.g. {prefix}1000.5"
            ) from None
    check_axis(axis, positions, names)
    _check_row_count(table.num_rows, max_rows)
    # Arrow writes a column-major tensor (a copy per column) and numpy transposes it into the
    # row-major (n_spectra, n_channels) array: faster than Arrow's row-major tensor or filling
    # column by column from Python. A stream read as one record batch is used as is
    # (combining chunks would copy it once more). Nulls become NaN, refused just below.
    selected = table.select(columns)
    batches = selected.to_batches()
    batch = batches[0] if len(batches) == 1 else selected.combine_chunks().to_batches()[0]
    try:
        tensor = batch.to_tensor(null_to_nan=True, row_major=False)
    except (pa.ArrowTypeError, pa.ArrowNotImplementedError):
        for name, kind in zip(batch.schema.names, batch.schema.types, strict=True):
            if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
                raise InvalidInput(
                    f"spectral column {name!r} is not numeric (its type is {kind})"
                ) from None
        raise
    X = np.ascontiguousarray(np.asarray(tensor), dtype=np.float64)
    _check_finite(X, axis, prefix)
    return SpectraInput(X, positions, None)


def _metadata_axis(table: pa.Table) -> FloatArray:
    metadata = table.schema.metadata or {}
    raw = metadata.get(AXIS_KEY)
    if raw is None:
        raise InvalidInput(
            f"the {SPECTRA_COLUMN!r} list column needs the axis in the schema metadata: key "
            f"{AXIS_KEY.decode()!r}, a JSON list of the spectral positions"
        )
    try:
        values = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            f"schema metadata {AXIS_KEY.decode()!r} is not JSON: send a list of numbers"
        ) from None
    try:
        return np.asarray(_number_list(values, "the axis in the schema metadata"), np.float64)
    except OverflowError:
        raise InvalidInput("the axis in the schema metadata holds a number too large") from None


def _arrow_list_layout(
    table: pa.Table, *, n_channels: int, axis: FloatArray, prefix: str, max_rows: int
) -> SpectraInput:
    kind = table.schema.field(SPECTRA_COLUMN).type
    if not pa.types.is_fixed_size_list(kind) or not (
        pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)
    ):
        raise InvalidInput(
            f"column {SPECTRA_COLUMN!r} must be a FixedSizeList of float64, one list per "
            f"spectrum (its type is {kind})"
        )
    if kind.list_size != n_channels:
        raise InvalidInput(
            f"column {SPECTRA_COLUMN!r} holds lists of {kind.list_size} values but the model "
            f"expects {n_channels} channels"
        )
    given_prefix = (table.schema.metadata or {}).get(PREFIX_KEY)
    if given_prefix is not None and given_prefix.decode("utf-8", "replace") != prefix:
        raise InvalidInput(
            f"schema metadata {PREFIX_KEY.decode()!r} is "
            f"{given_prefix.decode('utf-8', 'replace')!r} but the model reads {prefix!r} spectra"
        )
    positions = _metadata_axis(table)
    check_axis(axis, positions)
    _check_row_count(table.num_rows, max_rows)
    column = table.column(SPECTRA_COLUMN).combine_chunks()
    if column.null_count:
        i = int(np.argmax(np.asarray(column.is_null())))
        raise InvalidInput(f"row {i} of {SPECTRA_COLUMN!r} is null: send one list per spectrum")
    values = column.flatten()  # honours the array's offset; no copy for one chunk
    if values.null_count:
        k = int(np.argmax(np.asarray(values.is_null())))
        i, j = divmod(k, n_channels)
        raise InvalidInput(
            f"row {i}, {_channel_label(j, axis, prefix)} is null: spectra must be finite "
            "numbers (rows and channels count from 0)"
        )
    flat = values.to_numpy(zero_copy_only=False)
    X = np.ascontiguousarray(flat, dtype=np.float64).reshape(table.num_rows, n_channels)
    _check_finite(X, axis, prefix)
    return SpectraInput(X, positions, None)


def check_axis(expected: FloatArray, given: FloatArray, names: list[str] | None = None) -> None:
    """422 naming the first channel where the request's axis departs from the model's (and
    its column, when ``names`` gives the request's column names)."""
    try:
        check_same_axis(expected, given, what="the request's")
    except ValueError as exc:
        detail = str(exc)
        if names is not None and given.shape == expected.shape:
            j = int(np.argmax(~np.isclose(expected, given, rtol=0.0, atol=1e-6)))
            detail += f" (column {names[j]!r})"
        raise InvalidInput(detail) from None
