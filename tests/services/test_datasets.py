import hashlib
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, Dataset
from app.enums import Role
from app.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    UnsupportedMediaType,
)
from app.schemas.datasets import DatasetCreate, DomainCreate
from app.services import datasets
from app.services.datasets import (
    StoredTables,
    detect_format,
    load_dataset_arrays,
    parse_spectral_table,
    register_dataset,
)
from app.services.domains import create_domain
from app.store import LocalStore
from tests.factories import (
    REFERENCE,
    SAMPLE_ID,
    make_spectral_table,
    simulate_spectra,
    spectral_table,
    table_bytes,
)
from tests.helpers import Actor


def _parse(blob: bytes, file_format: str = "parquet", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "file_format": file_format,
        "reference_column": REFERENCE,
        "sample_id_column": SAMPLE_ID,
        "spectral_prefix": "wn_",
    }
    return parse_spectral_table(blob, **(args | kw))


# ---- the pure parser ------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_parser_returns_c_contiguous_float64_arrays(file_format: Literal["parquet", "csv"]) -> None:
    X, y, axis = simulate_spectra(20, 30)
    parsed = _parse(make_spectral_table(file_format=file_format), file_format)
    assert parsed.file_format == file_format
    assert parsed.X.shape == (20, 30)
    assert parsed.X.dtype == np.float64
    assert parsed.X.flags["C_CONTIGUOUS"]
    assert parsed.y.shape == (20,)
    np.testing.assert_allclose(parsed.X, X, rtol=1e-12)
    np.testing.assert_allclose(parsed.y, y, rtol=1e-12)
    np.testing.assert_array_equal(parsed.axis, axis)
    assert parsed.sample_ids == [f"S{i:03d}" for i in range(1, 21)]
    assert parsed.columns[0] == "wn_400"
    assert (parsed.n_samples, parsed.n_channels) == (20, 30)


def test_csv_sample_ids_stay_text() -> None:
    blob = b"sample_id,wn_400,wn_401.5,titer_g_L\n007,1,2,0.5\n010,3,4,0.7\n"
    parsed = _parse(blob, "csv")
    assert parsed.sample_ids == ["007", "010"]
    np.testing.assert_array_equal(parsed.axis, [400.0, 401.5])
    assert parsed.X.dtype == np.float64  # integer cells become float64


def test_parser_ignores_other_columns_and_needs_no_sample_ids() -> None:
    X, y, axis = simulate_spectra(5, 4)
    table = spectral_table(X, y, axis).append_column("batch", pa.array(["B1"] * 5))
    parsed = _parse(table_bytes(table), sample_id_column=None)
    assert parsed.sample_ids is None
    assert parsed.n_channels == 4


def test_parser_reads_integer_float32_and_float64_columns_alike() -> None:
    X, y, axis = simulate_spectra(6, 3)
    table = spectral_table(X, y, axis)
    ints = pa.array(np.round(X[:, 0] * 100).astype(np.int64))
    singles = pa.array(X[:, 1].astype(np.float32))
    table = table.set_column(0, "wn_400", ints).set_column(1, "wn_402", singles)
    parsed = _parse(table_bytes(table), sample_id_column=None)
    assert parsed.X.dtype == np.float64
    assert parsed.X.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(parsed.X[:, 0], np.round(X[:, 0] * 100))
    np.testing.assert_array_equal(parsed.X[:, 1], X[:, 1].astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(parsed.X[:, 2], X[:, 2])


def test_parser_reports_a_null_in_a_float64_spectral_column() -> None:
    X, y, axis = simulate_spectra(4, 3)
    column = pa.array([1.0, None, 3.0, 4.0], pa.float64())
    table = spectral_table(X, y, axis).set_column(2, "wn_404", column)
    with pytest.raises(InvalidInput) as info:
        _parse(table_bytes(table), sample_id_column=None)
    assert "data row 2, column 'wn_404'" in info.value.detail
    assert "missing or NaN" in info.value.detail


def test_parser_reads_nanometre_columns() -> None:
    blob = make_spectral_table(prefix="nm_", axis_start=1100.0, axis_step=0.5)
    parsed = _parse(blob, spectral_prefix="nm_")
    assert parsed.axis[0] == 1100.0
    assert parsed.axis[1] == 1100.5


def _with(**changes: Any) -> bytes:
    X, y_sim, axis_sim = simulate_spectra(6, 5)
    y: list[Any] = list(y_sim)
    axis: list[float] = list(axis_sim)
    ids: list[Any] = [f"S{i}" for i in range(1, 7)]
    if "x" in changes:
        row, col, value = changes["x"]
        X[row, col] = value
    if "y" in changes:
        row, value = changes["y"]
        y[row] = value
    if "axis" in changes:
        axis = changes["axis"]
    if "ids" in changes:
        ids = changes["ids"]
    return make_spectral_table(X=X, y=y, axis=axis, sample_ids=ids)


PARSE_ERRORS = {
    "nan": (_with(x=(2, 1, np.nan)), {}, ["data row 3", "sample 'S3'", "'wn_402'", "NaN"]),
    "inf": (_with(x=(0, 4, np.inf)), {}, ["data row 1", "'wn_408'", "inf"]),
    "decreasing-axis": (
        _with(axis=[400, 402, 401, 403, 404]),
        {},
        ["strictly increase", "'wn_401' (401) follows column 'wn_402' (402)"],
    ),
    "repeated-axis": (
        b"wn_400,wn_402,wn_402.0,titer_g_L\n1,2,3,4\n5,6,7,8\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["strictly increase", "'wn_402.0' (402) follows column 'wn_402' (402)"],
    ),
    "non-numeric-suffix": (
        b"wn_400,wn_abc,titer_g_L\n1,2,3\n4,5,6\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["'wn_abc'", "'abc'", "not a number"],
    ),
    "underscore-suffix": (
        b"wn_400,wn_4_01,titer_g_L\n1,2,3\n4,5,6\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["'wn_4_01'"],
    ),
    "no-spectral-columns": (_with(), {"spectral_prefix": "nir_"}, ["no column name starts"]),
    "missing-reference": (
        _with(),
        {"reference_column": "titer"},
        ["'titer' is not in the file", "'titer_g_L'"],
    ),
    "reference-has-prefix": (
        _with(),
        {"reference_column": "wn_titer"},
        ["starts with the spectral prefix"],
    ),
    "reference-nan": (_with(y=(4, None)), {}, ["reference column 'titer_g_L'", "data row 5"]),
    "reference-text": (
        b"sample_id,wn_400,wn_401,titer_g_L\nA,1,2,0.5\nB,3,4,high\n",
        {"file_format": "csv"},
        ["'titer_g_L' is not numeric", "data row 2", "'high'"],
    ),
    "spectrum-text": (
        b"sample_id,wn_400,wn_401,titer_g_L\nA,1,2,0.5\nB,3,n/a?,1\n",
        {"file_format": "csv"},
        ["spectral column 'wn_401' is not numeric", "'n/a?'"],
    ),
    "duplicate-id": (
        _with(ids=["a", "b", "c", "b", "e", "f"]),
        {},
        ["'b' appears more than once", "data rows 2 and 4"],
    ),
    "blank-id": (
        _with(ids=["a", "b", " ", "d", "e", "f"]),
        {},
        ["sample id column 'sample_id' is empty at data row 3"],
    ),
    "missing-id-column": (_with(), {"sample_id_column": "run"}, ["'run' is not in the file"]),
    "same-id-and-reference": (_with(), {"sample_id_column": REFERENCE}, ["must differ"]),
    "duplicate-header": (
        b"wn_400,wn_401,wn_401,titer_g_L\n1,2,3,4\n5,6,7,8\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["'wn_401' appears more than once"],
    ),
    "ragged-csv": (
        b"wn_400,wn_401,titer_g_L\n1,2,3\n4,5,6,7\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["CSV file could not be read"],
    ),
    "semicolon-csv": (
        b"wn_400;wn_401;titer_g_L\n1;2;3\n4;5;6\n",
        {"sample_id_column": None, "file_format": "csv"},
        ["separated by ';'"],
    ),
    "too-many-rows": (_with(), {"max_rows": 5}, ["6 data rows; the limit is 5"]),
    "too-many-channels": (_with(), {"max_channels": 4}, ["5 spectral channels; the limit is 4"]),
    "empty": (b"", {}, ["empty"]),
    "not-parquet": (b"PAR1 but nothing else", {}, ["Parquet file could not be read"]),
}


@pytest.mark.parametrize(
    ("blob", "kw", "needles"), list(PARSE_ERRORS.values()), ids=list(PARSE_ERRORS)
)
def test_parser_names_what_is_wrong(blob: bytes, kw: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        _parse(blob, **kw)
    for needle in needles:
        assert needle in info.value.detail, info.value.detail


def test_csv_row_limit_is_checked_after_parsing() -> None:
    blob = make_spectral_table(file_format="csv", n_samples=8)
    with pytest.raises(InvalidInput, match="8 data rows; the limit is 7"):
        _parse(blob, "csv", max_rows=7)


@pytest.mark.parametrize(
    ("blob", "filename", "expected"),
    [
        (b"PAR1....PAR1", "spectra.parquet", "parquet"),
        (b"PAR1....PAR1", None, "parquet"),
        (b"a,b\n1,2\n", "spectra.csv", "csv"),
        (b"a,b\n1,2\n", "C:\\Users\\lab\\RUNS.CSV", "csv"),
    ],
)
def test_detect_format(blob: bytes, filename: str | None, expected: str) -> None:
    assert detect_format(blob, filename) == expected


@pytest.mark.parametrize(
    ("blob", "filename", "error", "needle"),
    [
        (b"", "a.csv", InvalidInput, "empty"),
        (b"a,b\n", "a.parquet", InvalidInput, "not a Parquet file"),
        (b"a,b\n", "a.txt", UnsupportedMediaType, ".txt"),
        (b"a,b\n", None, UnsupportedMediaType, "no extension"),
        (b"PK\x03\x04rest", "runs.xlsx", UnsupportedMediaType, "Excel"),
        (b"\x89PNG\r\n", "a.csv", UnsupportedMediaType, "PNG"),
        ("a,b\n".encode("utf-16"), "a.csv", UnsupportedMediaType, "UTF-8"),
    ],
)
def test_detect_format_refuses(
    blob: bytes, filename: str | None, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        detect_format(blob, filename)


# ---- registration and the loader (database + store) -----------------------------------------


def _register(
    session: Session, store: LocalStore, actor: Actor, blob: bytes, **kw: Any
) -> tuple[Dataset, bool]:
    fields: dict[str, Any] = {
        "name": "runs",
        "domain": "dev-raman-ambr250",
        "reference_column": REFERENCE,
        "units": "g/L",
        "sample_id_column": SAMPLE_ID,
    }
    return register_dataset(
        session,
        store,
        blob=blob,
        filename=kw.pop("filename", "runs.parquet"),
        data=DatasetCreate(**(fields | kw)),
        actor=actor.user,
    )


@pytest.fixture
def developer(session: Session, actors: dict[Role, Actor]) -> Actor:
    dev = actors[Role.developer]
    create_domain(
        session,
        data=DomainCreate(
            name="dev-raman-ambr250",
            instrument="Raman",
            probe_serial="P-1",
            scale="250 mL",
            site="lab",
            reason="test",
        ),
        actor=dev.user,
    )
    return dev


def test_register_pins_the_bytes_and_loader_returns_the_arrays(
    session: Session, store: LocalStore, developer: Actor
) -> None:
    blob = make_spectral_table(n_samples=20, n_channels=30)
    record, created = _register(session, store, developer, blob)
    assert created
    assert record.sha256 == hashlib.sha256(blob).hexdigest()
    assert record.axis == [400.0 + 2 * i for i in range(30)]

    X, y, axis = simulate_spectra(20, 30)
    loaded = load_dataset_arrays(session, store, record.sha256)
    assert loaded.record.id == record.id
    assert loaded.record.domain.name == "dev-raman-ambr250"  # eager-loaded
    assert loaded.X.flags["C_CONTIGUOUS"]
    assert loaded.X.dtype == np.float64
    np.testing.assert_allclose(loaded.X, X, rtol=1e-12)
    np.testing.assert_allclose(loaded.y, y, rtol=1e-12)
    np.testing.assert_array_equal(loaded.axis, axis)
    assert loaded.sample_ids is not None
    assert loaded.sample_ids[:2] == ["S001", "S002"]


def test_register_same_bytes_twice_returns_the_first_record(
    session: Session, store: LocalStore, developer: Actor
) -> None:
    blob = make_spectral_table()
    first, _ = _register(session, store, developer, blob)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    again, created = _register(session, store, developer, blob, name="renamed")
    assert (again.id, created) == (first.id, False)
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_register_same_bytes_for_another_reference_is_a_conflict(
    session: Session, store: LocalStore, developer: Actor
) -> None:
    blob = make_spectral_table()
    _register(session, store, developer, blob)
    with pytest.raises(Conflict, match="reference_column"):
        _register(session, store, developer, blob, reference_column="wn_400")


def test_loader_refuses_an_unknown_dataset(session: Session, store: LocalStore) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        load_dataset_arrays(session, store, "ab" * 32)


def test_loader_refuses_tampered_bytes(
    session: Session, store: LocalStore, developer: Actor
) -> None:
    record, _ = _register(session, store, developer, make_spectral_table())
    path = store.path(record.sha256)
    path.chmod(0o644)
    path.write_bytes(make_spectral_table(seed=9))
    with pytest.raises(IntegrityFailure, match="hash differently"):
        load_dataset_arrays(session, store, record.sha256)


def test_loader_reports_bytes_missing_from_the_store(
    session: Session, store: LocalStore, developer: Actor
) -> None:
    record, _ = _register(session, store, developer, make_spectral_table())
    store.path(record.sha256).unlink()  # lost behind the service's back
    with pytest.raises(NotFound, match="missing from the store"):
        load_dataset_arrays(session, store, record.sha256)


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = datasets.parse_spectral_table

    def counting(blob: bytes, **kwargs: Any) -> Any:
        parsed.append(hashlib.sha256(blob).hexdigest())
        return real(blob, **kwargs)

    monkeypatch.setattr(datasets, "parse_spectral_table", counting)
    monkeypatch.setattr(datasets, "stored_tables", StoredTables())
    return parsed


def test_loader_parses_the_same_stored_bytes_once_and_shares_read_only_arrays(
    session: Session, store: LocalStore, developer: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, _ = _register(session, store, developer, make_spectral_table())
    parsed = _counting_parses(monkeypatch)
    first = load_dataset_arrays(session, store, record.sha256)
    second = load_dataset_arrays(session, store, record.sha256)
    assert parsed == [record.sha256]
    assert second.X is first.X
    assert not second.X.flags.writeable
    assert not second.y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        second.X[0, 0] = 0.0
    assert second.sample_ids == first.sample_ids
    assert second.sample_ids is not first.sample_ids


def test_loader_still_refuses_tampered_bytes_after_a_cached_parse(
    session: Session, store: LocalStore, developer: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, _ = _register(session, store, developer, make_spectral_table())
    _counting_parses(monkeypatch)
    load_dataset_arrays(session, store, record.sha256)
    path = store.path(record.sha256)
    path.chmod(0o644)
    path.write_bytes(make_spectral_table(seed=9))
    with pytest.raises(IntegrityFailure, match="hash differently"):
        load_dataset_arrays(session, store, record.sha256)
    path.unlink()
    with pytest.raises(NotFound, match="missing from the store"):
        load_dataset_arrays(session, store, record.sha256)


def test_stored_tables_drop_the_least_recently_used_beyond_their_byte_bound() -> None:
    tables = [_parse(make_spectral_table(n_samples=10, n_channels=10, seed=k)) for k in range(3)]
    size = tables[0].X.nbytes + tables[0].y.nbytes + tables[0].axis.nbytes
    cache = StoredTables(max_bytes=2 * size)
    keys = [(f"{k}" * 64, "parquet", REFERENCE, SAMPLE_ID, "wn_") for k in range(3)]
    cache.put(keys[0], tables[0])
    cache.put(keys[1], tables[1])
    assert cache.get(keys[0]) is tables[0]  # now the most recently used
    cache.put(keys[2], tables[2])
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is tables[0]
    assert cache.get(keys[2]) is tables[2]
    too_big = StoredTables(max_bytes=size - 1)
    too_big.put(keys[0], tables[0])
    assert too_big.get(keys[0]) is None
