"""Dataset files that decode to far more than they weigh, and Parquet pages whose checksum does
not match: refused in the envelope before they are decoded, leaving nothing written."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.enums import Role
from app.errors import PayloadTooLarge
from app.services import datasets as datasets_service
from app.settings import get_settings
from app.store import LocalStore
from tests.factories import (
    REFERENCE,
    SAMPLE_ID,
    create_domain,
    make_spectral_table,
    simulate_spectra,
    spectral_table,
    upload_dataset,
)
from tests.helpers import Actor, assert_error, nothing_written


@pytest.fixture
def dev(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.developer].headers


@pytest.fixture
def domain(client: TestClient, dev: dict[str, str]) -> str:
    return str(create_domain(client, dev)["name"])


def _constant_file(path: Path, *, rows: int, channels: int) -> bytes:
    """``rows`` x ``channels`` spectra of one constant value and a constant reference, written
    row group by row group from one shared column (the test never holds the decoded table)."""
    group_rows = 10_000
    column = pa.array(np.full(group_rows, 1.0))
    names = [f"wn_{400 + j}" for j in range(channels)] + [REFERENCE]
    group = pa.table([column] * len(names), names=names)
    with pq.ParquetWriter(path, group.schema) as writer:
        for _ in range(rows // group_rows):
            writer.write_table(group)
    return path.read_bytes()


def test_a_small_file_of_constants_that_decodes_to_gigabytes_is_413_before_decoding(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = _constant_file(tmp_path / "constants.parquet", rows=100_000, channels=1_000)
    assert len(blob) < get_settings().max_upload_bytes  # within the upload limit

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was decoded")

    monkeypatch.setattr(pq.ParquetFile, "read", no_decoding)
    with nothing_written(session, store):
        r = upload_dataset(client, dev, blob, domain=domain, sample_id_column=None)
    budget = get_settings().max_decoded_bytes
    assert_error(
        r,
        413,
        f"({len(blob)} bytes)",
        "100000 rows x 1001 columns x 8 bytes = 800800000",
        f"the limit is {budget} bytes (setting max_decoded_bytes)",
        code="payload_too_large",
    )


def test_the_footer_figures_count_rows_columns_and_uncompressed_pages(tmp_path: Path) -> None:
    blob = _constant_file(tmp_path / "c.parquet", rows=20_000, channels=3)
    size = datasets_service.decoded_size(pq.ParquetFile(tmp_path / "c.parquet").metadata)
    assert (size.rows, size.columns, size.as_float64) == (20_000, 4, 20_000 * 4 * 8)
    assert 0 < size.uncompressed < size.as_float64  # dictionary-encoded constants
    assert size.bytes == size.as_float64
    assert len(blob) < size.bytes // 10


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch, settings_env: None) -> Iterator[int]:
    monkeypatch.setenv("REGISTRY_MAX_DECODED_BYTES", str(2**20))
    get_settings.cache_clear()
    yield 2**20
    get_settings.cache_clear()


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_the_decoded_budget_is_a_setting_for_both_formats(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    small_budget: int,
    file_format: str,
) -> None:
    # 400 x 400 channels: 1.28 MB as float64, over a 1 MiB budget; 200 x 400 fits.
    big = make_spectral_table(n_samples=400, n_channels=400, file_format=file_format)  # type: ignore[arg-type]
    with nothing_written(session, store):
        r = upload_dataset(client, dev, big, domain=domain)
    assert_error(r, 413, "400 rows x 402 columns", "setting max_decoded_bytes")
    fits = make_spectral_table(n_samples=200, n_channels=400, file_format=file_format)  # type: ignore[arg-type]
    r = upload_dataset(client, dev, fits, domain=domain)
    assert r.status_code == 201, r.text


def test_the_budget_applies_to_transfer_standards_too(small_budget: int) -> None:
    big = make_spectral_table(n_samples=400, n_channels=400)
    with pytest.raises(PayloadTooLarge, match="max_decoded_bytes"):
        datasets_service.parse_upload(
            big,
            "standards.parquet",
            reference_column=REFERENCE,
            sample_id_column=SAMPLE_ID,
            spectral_prefix="wn_",
        )


# ---- page checksums -------------------------------------------------------------------------

MARK = 1234.5678  # one cell's value, found again in the file's bytes


def _checksummed_file(*, write_page_checksum: bool = True) -> bytes:
    X, y, axis = simulate_spectra(20, 30, seed=4)
    X[5, 3] = MARK
    table = spectral_table(X, y, axis, sample_ids=[f"S{i:03d}" for i in range(20)])
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="NONE",
        use_dictionary=False,
        write_statistics=False,  # the value only in its data page
        write_page_checksum=write_page_checksum,
    )
    return sink.getvalue().to_pybytes()


def _flip_a_bit_of_the_mark(blob: bytes) -> bytes:
    packed = struct.pack("<d", MARK)
    assert blob.count(packed) == 1
    at = blob.index(packed)
    corrupted = bytearray(blob)
    corrupted[at] ^= 0x01  # the lowest bit of the mantissa: still a finite number
    return bytes(corrupted)


def test_a_parquet_page_that_fails_its_checksum_is_422(
    client: TestClient, session: Session, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    blob = _flip_a_bit_of_the_mark(_checksummed_file())
    # Unverified, the file reads as if nothing happened: another number in one cell.
    unverified = pq.read_table(pa.py_buffer(blob)).column("wn_406").to_pylist()
    assert unverified[5] != MARK
    assert np.isfinite(unverified[5])
    with nothing_written(session, store):
        r = upload_dataset(client, dev, blob, domain=domain)
    assert_error(r, 422, "the Parquet file could not be read", "CRC", code="invalid_input")


def test_an_intact_checksummed_file_and_one_without_checksums_register(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    r = upload_dataset(client, dev, _checksummed_file(), domain=domain, name="with crc")
    assert r.status_code == 201, r.text
    plain = _flip_a_bit_of_the_mark(_checksummed_file(write_page_checksum=False))
    r = upload_dataset(client, dev, plain, domain=domain, name="no crc")
    assert r.status_code == 201, r.text  # nothing to verify against
