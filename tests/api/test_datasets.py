import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.formparsers import MultiPartParser

from app.api.limits import IN_MEMORY_PART_BYTES
from app.db.models import AuditEvent
from app.enums import Role
from app.settings import get_settings
from app.store import LocalStore
from tests.factories import (
    REFERENCE,
    create_domain,
    make_spectral_table,
    simulate_spectra,
    upload_dataset,
)
from tests.helpers import Actor, assert_error, nothing_written


@pytest.fixture
def dev(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.developer].headers


@pytest.fixture
def domain(client: TestClient, dev: dict[str, str]) -> str:
    return str(create_domain(client, dev)["name"])


# ---- registration ---------------------------------------------------------------------------


def test_parquet_upload_registers_a_dataset_pinned_by_sha256(
    client: TestClient, session: Session, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table(n_samples=20, n_channels=30)
    _, y, _ = simulate_spectra(20, 30)
    r = upload_dataset(client, dev, blob, domain=domain, reason="ambr runs for titer model")
    assert r.status_code == 201, r.text
    body = r.json()
    digest = hashlib.sha256(blob).hexdigest()
    assert body["sha256"] == digest
    assert body["domain"] == domain
    assert body["file_format"] == "parquet"
    assert body["size_bytes"] == len(blob)
    assert (body["n_samples"], body["n_channels"]) == (20, 30)
    assert (body["axis_min"], body["axis_max"]) == (400.0, 458.0)
    assert body["axis_unit"] == "cm-1"
    assert body["spectral_prefix"] == "wn_"
    assert body["reference_column"] == REFERENCE
    assert body["units"] == "g/L"
    assert body["sample_id_column"] == "sample_id"
    assert body["reference_min"] == pytest.approx(y.min())
    assert body["reference_max"] == pytest.approx(y.max())
    assert body["created_by"] == "test-developer"
    assert list(store.digests()) == [digest]
    assert store.get(digest) == blob


def test_registration_is_audited_with_a_summary_snapshot(
    client: TestClient, session: Session, dev: dict[str, str], domain: str
) -> None:
    r = upload_dataset(client, dev, domain=domain, reason="ambr runs for titer model")
    body = r.json()
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.register")).one()
    assert event.entity_type == "dataset"
    assert event.entity_id == body["id"]
    assert event.actor == "test-developer"
    assert event.reason == "ambr runs for titer model"
    after = event.after
    assert after is not None
    assert after["sha256"] == body["sha256"]
    assert (after["n_samples"], after["n_channels"]) == (20, 30)
    assert (after["axis_min"], after["axis_max"]) == (400.0, 458.0)
    assert after["domain"] == domain
    assert after["uploaded_filename"] == "spectra.parquet"
    assert "axis" not in after  # a summary, not the full axis


def test_reason_is_optional_for_a_registration(
    client: TestClient, session: Session, dev: dict[str, str], domain: str
) -> None:
    assert upload_dataset(client, dev, domain=domain).status_code == 201
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.register")).one()
    assert event.reason is None


def test_same_bytes_again_return_the_existing_record(
    client: TestClient, session: Session, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table()
    first = upload_dataset(client, dev, blob, domain=domain)
    assert first.status_code == 201
    with nothing_written(session, store):
        again = upload_dataset(client, dev, blob, domain=domain, name="another name, same bytes")
        assert again.status_code == 200, again.text
        assert again.json() == first.json()


def test_same_bytes_with_another_interpretation_is_409(
    client: TestClient, session: Session, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table()
    assert upload_dataset(client, dev, blob, domain=domain).status_code == 201
    with nothing_written(session, store):
        r = upload_dataset(client, dev, blob, domain=domain, units="mg/mL")
        assert_error(r, 409, "already registered", "units", code="conflict")


def test_csv_upload_registers_a_dataset(
    client: TestClient, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table(file_format="csv", n_samples=12, n_channels=8)
    r = upload_dataset(client, dev, blob, domain=domain, filename="runs.CSV")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["file_format"] == "csv"
    assert body["sha256"] == hashlib.sha256(blob).hexdigest()
    assert (body["n_samples"], body["n_channels"]) == (12, 8)
    assert list(store.digests()) == [body["sha256"]]


def test_nm_axis_defaults_to_nanometres(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table(prefix="nm_", axis_start=1100.0, axis_step=2.5)
    r = upload_dataset(client, dev, blob, domain=domain, spectral_prefix="nm_")
    assert r.status_code == 201, r.text
    assert r.json()["axis_unit"] == "nm"
    assert r.json()["axis_min"] == 1100.0


def test_dataset_without_sample_ids(client: TestClient, dev: dict[str, str], domain: str) -> None:
    blob = make_spectral_table(sample_id_column=None)
    r = upload_dataset(client, dev, blob, domain=domain, sample_id_column=None)
    assert r.status_code == 201, r.text
    assert r.json()["sample_id_column"] is None


# ---- bad input: a 4xx in the envelope and nothing written -----------------------------------


def _nan_spectrum() -> bytes:
    X, y, axis = simulate_spectra()
    X[3, 5] = np.nan
    return make_spectral_table(X=X, y=y, axis=axis)


def _decreasing_axis() -> bytes:
    X, y, axis = simulate_spectra()
    axis = axis.copy()
    axis[10], axis[11] = axis[11], axis[10]
    return make_spectral_table(X=X, y=y, axis=axis)


def _duplicate_ids() -> bytes:
    ids = [f"S{i:03d}" for i in range(20)]
    ids[9] = "S002"
    return make_spectral_table(sample_ids=ids)


def _missing_reference_value() -> bytes:
    X, y, axis = simulate_spectra()
    reference: list[float | None] = list(y)
    reference[6] = None
    return make_spectral_table(X=X, y=reference, axis=axis)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

BAD_UPLOADS = {
    "nan-in-spectrum": (
        _nan_spectrum,
        {},
        422,
        "invalid_input",
        ["data row 4", "sample 'S004'", "'wn_410'"],
    ),
    "decreasing-axis": (
        _decreasing_axis,
        {},
        422,
        "invalid_input",
        ["strictly increase", "'wn_420'", "'wn_422'"],
    ),
    "missing-reference-column": (
        make_spectral_table,
        {"reference_column": "titer_mg_L"},
        422,
        "invalid_input",
        ["'titer_mg_L'", "not in the file", "'titer_g_L'"],
    ),
    "missing-reference-value": (
        _missing_reference_value,
        {},
        422,
        "invalid_input",
        ["reference column 'titer_g_L'", "data row 7"],
    ),
    "png-as-txt": (lambda: PNG, {"filename": "plot.txt"}, 415, "unsupported_media_type", ["PNG"]),
    "text-as-txt": (
        lambda: b"hello, this is a note\n",
        {"filename": "notes.txt"},
        415,
        "unsupported_media_type",
        [".txt", ".parquet or .csv"],
    ),
    "png-named-csv": (lambda: PNG, {"filename": "x.csv"}, 415, "unsupported_media_type", ["PNG"]),
    "empty-file": (lambda: b"", {}, 422, "invalid_input", ["empty"]),
    "header-only-csv": (
        lambda: b"sample_id,wn_400,wn_402,titer_g_L\n",
        {},
        422,
        "invalid_input",
        ["0 data row"],
    ),
    "duplicate-sample-ids": (
        _duplicate_ids,
        {},
        422,
        "invalid_input",
        ["'S002'", "data rows 3 and 10"],
    ),
    "missing-sample-id-column": (
        lambda: make_spectral_table(sample_id_column=None),
        {},
        422,
        "invalid_input",
        ["sample id column 'sample_id'"],
    ),
    "one-channel": (
        lambda: make_spectral_table(n_channels=1),
        {},
        422,
        "invalid_input",
        ["at least 2 channels"],
    ),
    "one-row": (
        lambda: make_spectral_table(n_samples=1),
        {},
        422,
        "invalid_input",
        ["at least 2"],
    ),
    "corrupt-parquet": (
        lambda: make_spectral_table()[:-40],
        {},
        422,
        "invalid_input",
        ["Parquet"],
    ),
    "unknown-domain": (
        make_spectral_table,
        {"domain": "nowhere"},
        404,
        "not_found",
        ["domain 'nowhere'"],
    ),
    "unknown-axis-unit": (make_spectral_table, {"axis_unit": "THz"}, 422, "invalid_input", []),
}


@pytest.mark.parametrize(
    ("make", "form", "status", "code", "needles"),
    list(BAD_UPLOADS.values()),
    ids=list(BAD_UPLOADS),
)
def test_bad_upload_is_refused_and_leaves_nothing_behind(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    make: Any,
    form: dict[str, Any],
    status: int,
    code: str,
    needles: list[str],
) -> None:
    with nothing_written(session, store):
        r = upload_dataset(client, dev, make(), **({"domain": domain} | form))
        assert_error(r, status, *needles, code=code)


@pytest.fixture
def small_upload_limit(monkeypatch: pytest.MonkeyPatch, settings_env: None) -> Iterator[int]:
    monkeypatch.setenv("REGISTRY_MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    yield 4096
    get_settings.cache_clear()


def test_oversized_upload_is_413_before_it_is_read(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    small_upload_limit: int,
) -> None:
    blob = make_spectral_table(n_samples=200, n_channels=100)
    assert len(blob) > small_upload_limit + 64 * 1024  # beyond the multipart allowance
    with nothing_written(session, store):
        r = upload_dataset(client, dev, blob, domain=domain)
        assert_error(r, 413, "larger than the limit", "4096 bytes", code="payload_too_large")


def test_oversized_chunked_upload_is_413_while_streaming(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    small_upload_limit: int,
) -> None:
    blob = make_spectral_table(n_samples=200, n_channels=100)
    request = client.build_request(
        "POST",
        "/api/v1/datasets",
        data={"name": "big", "domain": domain, "reference_column": REFERENCE, "units": "g/L"},
        files={"file": ("big.parquet", blob)},
        headers=dev,
    )
    body = request.read()

    def chunks() -> Iterator[bytes]:  # a generator body is sent without Content-Length
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    with nothing_written(session, store):
        r = client.post(
            "/api/v1/datasets",
            content=chunks(),
            headers={**dev, "Content-Type": request.headers["Content-Type"]},
        )
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413, "larger than the limit", code="payload_too_large")


def test_file_just_over_the_limit_is_413_from_the_service(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    small_upload_limit: int,
) -> None:
    blob = make_spectral_table()
    assert small_upload_limit < len(blob) < small_upload_limit + 64 * 1024  # within allowance
    with nothing_written(session, store):
        r = upload_dataset(client, dev, blob, domain=domain)
        assert_error(
            r, 413, f"the file is {len(blob)} bytes", "4096 bytes", code="payload_too_large"
        )


def test_a_failure_after_storing_the_file_removes_it_again(
    client: TestClient,
    session: Session,
    store: LocalStore,
    dev: dict[str, str],
    domain: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _audit_down(*_: Any, **__: Any) -> None:
        raise RuntimeError("audit trail unavailable")

    with nothing_written(session, store):
        monkeypatch.setattr("app.services.datasets.audit.record", _audit_down)
        r = upload_dataset(client, dev, domain=domain)
        assert_error(r, 500, code="internal_error")


@pytest.mark.parametrize("role", [Role.qa, Role.plant, Role.auditor, Role.admin])
def test_only_developers_register_datasets(
    client: TestClient,
    session: Session,
    store: LocalStore,
    actors: dict[Role, Actor],
    domain: str,
    role: Role,
) -> None:
    with nothing_written(session, store):
        r = upload_dataset(client, actors[role].headers, domain=domain)
        assert_error(r, 403, code="forbidden")


def test_registering_needs_authentication(client: TestClient, domain: str) -> None:
    assert_error(upload_dataset(client, {}, domain=domain), 401, code="not_authenticated")


# ---- reads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_person_reads_records_and_content_and_plant_keys_do_not(
    client: TestClient, actors: dict[Role, Actor], dev: dict[str, str], domain: str, role: Role
) -> None:
    blob = make_spectral_table()
    digest = upload_dataset(client, dev, blob, domain=domain).json()["sha256"]
    headers = actors[role].headers
    if role is Role.plant:  # service accounts download only what predicting needs
        assert client.get(f"/api/v1/datasets/{digest}", headers=headers).status_code == 403
        r = client.get(f"/api/v1/datasets/{digest}/content", headers=headers)
        assert r.status_code == 403
        return
    record = client.get(f"/api/v1/datasets/{digest}", headers=headers)
    assert record.status_code == 200
    assert record.json()["sha256"] == digest
    content = client.get(f"/api/v1/datasets/{digest}/content", headers=headers)
    assert content.status_code == 200
    assert content.content == blob


def test_content_is_the_exact_stored_bytes_with_their_hash(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table()
    record = upload_dataset(client, dev, blob, domain=domain, name="ambr250 runs 1/4").json()
    r = client.get(f"/api/v1/datasets/{record['sha256']}/content", headers=dev)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == record["sha256"]
    assert r.headers["x-content-sha256"] == record["sha256"]
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.headers["content-disposition"] == 'attachment; filename="ambr250_runs_1_4.parquet"'


def test_csv_content_is_served_as_text_csv(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    blob = make_spectral_table(file_format="csv")
    digest = upload_dataset(client, dev, blob, domain=domain).json()["sha256"]
    r = client.get(f"/api/v1/datasets/{digest}/content", headers=dev)
    assert r.content == blob
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].endswith('.csv"')


def test_corrupted_store_bytes_are_never_served(
    client: TestClient, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    digest = upload_dataset(client, dev, domain=domain).json()["sha256"]
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    r = client.get(f"/api/v1/datasets/{digest}/content", headers=dev)
    assert_error(r, 500, digest, code="integrity_failure")


def test_list_datasets_filters_by_domain(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    other = create_domain(client, dev, "plant-raman-2000L")["name"]
    a = upload_dataset(client, dev, make_spectral_table(seed=1), domain=domain).json()
    b = upload_dataset(client, dev, make_spectral_table(seed=2), domain=other).json()
    everything = client.get("/api/v1/datasets", headers=dev)
    assert everything.status_code == 200
    assert {d["sha256"] for d in everything.json()} == {a["sha256"], b["sha256"]}
    only = client.get("/api/v1/datasets", params={"domain": other}, headers=dev)
    assert [d["sha256"] for d in only.json()] == [b["sha256"]]
    unknown = client.get("/api/v1/datasets", params={"domain": "nowhere"}, headers=dev)
    assert_error(unknown, 404, "nowhere", code="not_found")


def test_the_list_pages_in_registration_order_with_a_link_to_the_next_page(
    client: TestClient, dev: dict[str, str], domain: str
) -> None:
    uploaded = [
        upload_dataset(client, dev, make_spectral_table(seed=seed), name=f"run {seed}").json()
        for seed in (11, 12, 13)
    ]
    seen: list[str] = []
    url: str | None = "/api/v1/datasets?limit=2"
    pages = 0
    while url is not None:
        r = client.get(url, headers=dev)
        assert r.status_code == 200, r.text
        seen += [d["sha256"] for d in r.json()]
        url = r.links.get("next", {}).get("url")
        pages += 1
    assert seen == [d["sha256"] for d in uploaded]
    assert pages == 2
    assert_error(
        client.get("/api/v1/datasets", params={"cursor": "garbage"}, headers=dev),
        422,
        "cursor",
        code="invalid_input",
    )


def test_unknown_dataset_is_404_and_a_malformed_hash_422(
    client: TestClient, dev: dict[str, str]
) -> None:
    missing = "0" * 64
    assert_error(
        client.get(f"/api/v1/datasets/{missing}", headers=dev), 404, missing, code="not_found"
    )
    assert_error(
        client.get(f"/api/v1/datasets/{missing}/content", headers=dev), 404, code="not_found"
    )
    assert_error(client.get("/api/v1/datasets/not-a-hash", headers=dev), 422, code="invalid_input")


def test_reading_datasets_needs_authentication(client: TestClient) -> None:
    assert_error(client.get("/api/v1/datasets"), 401, code="not_authenticated")


def test_a_multi_mib_upload_is_parsed_in_memory_and_registered_byte_for_byte(
    client: TestClient, store: LocalStore, dev: dict[str, str], domain: str
) -> None:
    assert MultiPartParser.spool_max_size == IN_MEMORY_PART_BYTES  # set by create_app
    blob = make_spectral_table(n_samples=400, n_channels=701)
    assert 2**20 < len(blob) < IN_MEMORY_PART_BYTES  # above Starlette's 1 MiB default
    r = upload_dataset(client, dev, blob, domain=domain, reason="a larger batch")
    assert r.status_code == 201, r.text
    assert store.get(r.json()["sha256"]) == blob
