"""The prediction route's body parsers, without a database or HTTP."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from app.enums import PredictionPurpose
from app.errors import InvalidInput
from app.services.spectra_bodies import (
    MAX_SAMPLE_ID,
    SpectraInput,
    parse_arrow_body,
    parse_json_body,
)

N_CHANNELS = 5
AXIS = np.array([400.0, 500.0, 600.5, 700.0, 800.0])
PREFIX = "wn_"
X = np.arange(3 * N_CHANNELS, dtype=np.float64).reshape(3, N_CHANNELS) / 7.0


def _json(body: bytes, max_rows: int = 100) -> SpectraInput:
    return parse_json_body(body, n_channels=N_CHANNELS, axis=AXIS, prefix=PREFIX, max_rows=max_rows)


def _arrow(body: bytes, max_rows: int = 100) -> SpectraInput:
    return parse_arrow_body(
        body, n_channels=N_CHANNELS, axis=AXIS, prefix=PREFIX, max_rows=max_rows
    )


def _stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _columns_body(spectra: np.ndarray, axis: np.ndarray = AXIS, **extra: Any) -> bytes:
    columns: dict[str, Any] = dict(extra)
    for j, position in enumerate(axis):
        columns[f"{PREFIX}{position:g}"] = spectra[:, j]
    return _stream(pa.table(columns))


def _list_body(
    rows: Any,
    axis: Any = AXIS,
    *,
    list_size: int = N_CHANNELS,
    prefix: str | None = None,
    value_type: pa.DataType | None = None,
) -> bytes:
    kind = pa.list_(value_type or pa.float64(), list_size)
    metadata: dict[bytes, bytes] = {}
    if axis is not None:
        metadata[b"axis"] = json.dumps([float(a) for a in axis]).encode()
    if prefix is not None:
        metadata[b"prefix"] = prefix.encode()
    schema = pa.schema([pa.field("spectra", kind)], metadata=metadata)
    return _stream(pa.table({"spectra": pa.array(rows, type=kind)}, schema=schema))


def _refusal(parse: Any, body: bytes) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    return caught.value.detail


# JSON


def test_good_json_gives_the_spectra_axis_and_purpose() -> None:
    parsed = _json(
        orjson.dumps({"spectra": X.tolist(), "axis": AXIS.tolist(), "purpose": "monitoring"})
    )
    np.testing.assert_array_equal(parsed.spectra, X)
    assert parsed.spectra.dtype == np.float64
    assert parsed.spectra.flags.c_contiguous
    np.testing.assert_array_equal(parsed.axis, AXIS)
    assert parsed.purpose is PredictionPurpose.monitoring
    assert parsed.sample_ids is None


def test_json_integers_and_nested_layout_read_the_same_numbers() -> None:
    as_ints = [[1, 2, 3, 4, 5]]
    odd = b'{"sample_ids": ["x [y]"], "spectra": [[1, 2, 3, 4, 5]]}'  # a "[" in the text
    np.testing.assert_array_equal(_json(orjson.dumps({"spectra": as_ints})).spectra, as_ints)
    np.testing.assert_array_equal(_json(odd).spectra, as_ints)
    assert _json(odd).sample_ids == ["x [y]"]


def test_json_sample_ids_are_read_on_the_fast_path_too() -> None:
    ids = ["A-1", "A-2", "A-3"]
    parsed = _json(orjson.dumps({"spectra": X.tolist(), "sample_ids": ids}))
    assert parsed.sample_ids == ids
    np.testing.assert_array_equal(parsed.spectra, X)


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a", "b"], "2 sample ids for 3 spectra"),
        (["a", "b", "c", "d"], "4 sample ids for 3 spectra"),
        (["a", "a", "b"], "'a' is sent twice"),
        (["a", "", "b"], "sample id 1 must be a text of 1 to"),
        (["a", 2, "b"], "sample id 1 must be a text"),
        (["a", "b", "c" * (MAX_SAMPLE_ID + 1)], "sample id 2 must be a text"),
        ("abc", "must be a list of texts"),
    ],
)
def test_json_bad_sample_ids_are_refused(ids: Any, words: str) -> None:
    detail = _refusal(_json, orjson.dumps({"spectra": X.tolist(), "sample_ids": ids}))
    assert words in detail


def test_json_wrong_channel_count_names_the_row() -> None:
    rows = [*X.tolist(), [1.0, 2.0]]
    detail = _refusal(_json, orjson.dumps({"spectra": rows}))
    assert "row 3" in detail
    assert "2 values" in detail
    assert f"{N_CHANNELS} channels" in detail


@pytest.mark.parametrize(("value", "shown"), [("NaN", "NaN"), ("Infinity", "inf")])
def test_json_nan_or_inf_names_row_and_channel(value: str, shown: str) -> None:
    body = b'{"spectra": [[1, 2, 3, 4, 5], [1, 2, ' + value.encode() + b", 4, 5]]}"
    detail = _refusal(_json, body)
    assert "row 1, channel 2 (wn_600.5)" in detail
    assert shown in detail


def test_json_axis_mismatch_names_the_channel() -> None:
    axis = AXIS.copy()
    axis[3] += 1.0
    detail = _refusal(_json, orjson.dumps({"spectra": X.tolist(), "axis": axis.tolist()}))
    assert "channel 3" in detail
    assert "701" in detail


def test_json_unknown_field_is_named() -> None:
    detail = _refusal(_json, orjson.dumps({"spectra": X.tolist(), "sample": "a"}))
    assert "unknown field 'sample'" in detail


@pytest.mark.parametrize("purpose", ["batch 42 in-process control", "Monitoring", 3])
def test_json_unknown_purpose_is_refused_naming_the_allowed_ones(purpose: Any) -> None:
    body = orjson.dumps({"spectra": X.tolist(), "purpose": purpose})
    assert "is not one of: evaluation, advisory, monitoring, control, release" in _refusal(
        _json, body
    )


def test_json_value_that_is_not_a_number_names_its_position() -> None:
    detail = _refusal(_json, b'{"spectra": [[1, 2, "x", 4, 5]]}')
    assert "row 0 of spectra, position 2" in detail


def test_json_too_many_or_no_rows_are_refused() -> None:
    body = orjson.dumps({"spectra": X.tolist()})
    assert "limit is 2" in _refusal(lambda b: _json(b, max_rows=2), body)
    assert "no spectra" in _refusal(_json, b'{"spectra": []}')


def test_malformed_json_is_refused() -> None:
    assert "not valid JSON" in _refusal(_json, b'{"spectra": [[1, 2')
    assert "must be an object" in _refusal(_json, b"[1, 2]")


# Arrow, one column per channel


def test_arrow_with_wn_columns_gives_the_spectra_and_ignores_other_columns() -> None:
    parsed = _arrow(_columns_body(X, sample_id=["a", "b", "c"]))
    np.testing.assert_array_equal(parsed.spectra, X)
    assert parsed.spectra.flags.c_contiguous
    np.testing.assert_array_equal(parsed.axis, AXIS)


def test_arrow_sample_id_column_is_read_in_the_channel_layout() -> None:
    assert _arrow(_columns_body(X, sample_id=["a", "b", "c"])).sample_ids == ["a", "b", "c"]
    assert _arrow(_columns_body(X, batch=["x", "y", "z"])).sample_ids is None


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a", "b", "a"], "'a' is sent twice"),
        (["a", None, "c"], "row 1 of 'sample_id' is null"),
        ([1, 2, 3], "must hold texts"),
    ],
)
def test_arrow_bad_sample_id_column_is_refused(ids: Any, words: str) -> None:
    assert words in _refusal(_arrow, _columns_body(X, sample_id=ids))


def test_arrow_sample_id_column_is_read_in_the_list_layout() -> None:
    table = pa.ipc.open_stream(_list_body(X.tolist())).read_all()
    with_ids = table.append_column("sample_id", pa.array(["p", "q", "r"]))
    assert _arrow(_stream(with_ids)).sample_ids == ["p", "q", "r"]
    short = table.append_column("sample_id", pa.array(["p", "q", "q"]))
    assert "'q' is sent twice" in _refusal(_arrow, _stream(short))


def test_arrow_column_axis_mismatch_names_the_column() -> None:
    axis = AXIS.copy()
    axis[1] = 505.0
    detail = _refusal(_arrow, _columns_body(X, axis))
    assert "channel 1" in detail
    assert "'wn_505'" in detail


def test_arrow_column_null_names_row_and_channel() -> None:
    table = pa.table({f"{PREFIX}{a:g}": X[:, j] for j, a in enumerate(AXIS)})
    column = pa.array([1.0, None, 3.0])
    body = _stream(table.set_column(4, "wn_800", column))
    assert "row 1, channel 4 (wn_800)" in _refusal(_arrow, body)


def test_bad_arrow_is_refused() -> None:
    assert "not an Arrow IPC stream" in _refusal(_arrow, b"not arrow at all")
    assert "not an Arrow IPC stream" in _refusal(_arrow, _columns_body(X)[:-40])
    no_spectra = _stream(pa.table({"sample_id": ["a"]}))
    assert "no spectral columns" in _refusal(_arrow, no_spectra)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_arrow_stream_is_refused_before_it_is_decoded(codec: str) -> None:
    """~1.4 kB of zstd decompress to 17 MB here: the decoded size of compressed buffers cannot
    be bounded before decoding, so they are refused from the messages' metadata."""
    rows = np.zeros((3000, N_CHANNELS))
    table = pa.table({f"{PREFIX}{p:g}": rows[:, j] for j, p in enumerate(AXIS)})
    sink = io.BytesIO()
    options = ipc.IpcWriteOptions(compression=codec)
    with ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=1000)
    body = sink.getvalue()
    assert ipc.open_stream(body).read_all().num_rows == 3000  # a valid stream, only compressed
    assert "compressed" in _refusal(lambda b: _arrow(b, max_rows=10_000), body)


def test_arrow_rows_are_counted_across_batches_before_decoding() -> None:
    table = pa.table({f"{PREFIX}{p:g}": X[:, j] for j, p in enumerate(AXIS)})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        for _ in range(4):
            writer.write_table(table)  # 4 batches of 3 rows
    assert _arrow(sink.getvalue(), max_rows=12).spectra.shape == (12, N_CHANNELS)
    refusal = _refusal(lambda b: _arrow(b, max_rows=11), sink.getvalue())
    assert "12 spectra in one call; the limit is 11" in refusal


# Arrow, one FixedSizeList column


def test_arrow_list_layout_gives_the_spectra_and_the_metadata_axis() -> None:
    parsed = _arrow(_list_body(X.tolist(), prefix=PREFIX))
    np.testing.assert_array_equal(parsed.spectra, X)
    assert parsed.spectra.dtype == np.float64
    assert parsed.spectra.flags.c_contiguous
    np.testing.assert_array_equal(parsed.axis, AXIS)


def test_arrow_list_layout_reads_float32_values_as_float64() -> None:
    parsed = _arrow(_list_body(X.tolist(), value_type=pa.float32()))
    np.testing.assert_array_equal(parsed.spectra, X.astype(np.float32).astype(np.float64))


def test_arrow_list_layout_is_smaller_than_one_column_per_channel() -> None:
    many = np.linspace(400.0, 1800.0, 701)
    single = np.ones((1, many.size))
    columns = _columns_body(single, many)
    lists = parse_arrow_body(
        _list_body(single.tolist(), many, list_size=many.size),
        n_channels=many.size,
        axis=many,
        prefix=PREFIX,
        max_rows=1,
    )
    np.testing.assert_array_equal(lists.spectra, single)
    assert len(_list_body(single.tolist(), many, list_size=many.size)) < len(columns) / 4


def test_arrow_list_size_other_than_the_channel_count_is_refused() -> None:
    body = _list_body([[1.0, 2.0, 3.0]], AXIS[:3], list_size=3)
    detail = _refusal(_arrow, body)
    assert "lists of 3 values" in detail
    assert f"{N_CHANNELS} channels" in detail


def test_arrow_list_axis_mismatch_names_the_first_channel() -> None:
    axis = AXIS.copy()
    axis[2] = 610.0
    axis[4] = 900.0
    detail = _refusal(_arrow, _list_body(X.tolist(), axis))
    assert "channel 2" in detail
    assert "610" in detail


def test_arrow_list_without_an_axis_is_refused() -> None:
    assert "axis in the schema metadata" in _refusal(_arrow, _list_body(X.tolist(), None))


def test_arrow_list_with_another_prefix_is_refused() -> None:
    detail = _refusal(_arrow, _list_body(X.tolist(), prefix="nm_"))
    assert "'nm_'" in detail
    assert "'wn_'" in detail


def test_arrow_list_nulls_are_refused_naming_the_row() -> None:
    rows: list[Any] = X.tolist()
    rows[1] = None
    assert "row 1 of 'spectra' is null" in _refusal(_arrow, _list_body(rows))
    rows = X.tolist()
    rows[2][3] = None
    assert "row 2, channel 3 (wn_700) is null" in _refusal(_arrow, _list_body(rows))


def test_arrow_list_nan_names_row_and_channel() -> None:
    rows = X.tolist()
    rows[0][4] = float("nan")
    assert "row 0, channel 4 (wn_800)" in _refusal(_arrow, _list_body(rows))


def test_arrow_spectra_column_of_another_type_is_refused() -> None:
    body = _stream(pa.table({"spectra": pa.array([[1.0, 2.0]])}))  # a variable-size list
    assert "FixedSizeList" in _refusal(_arrow, body)
