"""A Python client generated from the served OpenAPI document drives a real server.

As a new user would: ``ssreg``'s app under uvicorn on a free port (a fresh database of each
backend, a temporary store), ``openapi-python-client`` run on the ``/openapi.json`` it serves,
and the generated functions and models used for login, dataset uploads (Parquet and CSV),
training, a transfer with its standards, the record and a JSON prediction. Every response
must parse into the generated model the operation declares, with no field left over.
"""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from app.db.session import make_engine, unit_of_work
from app.enums import Role
from app.services import auth
from bench._serving import free_port, until_stopped
from tests.conftest import _drop_pg_database, fresh_database
from tests.factories import PLANT_DOMAIN, transfer_data
from tests.helpers import PASSWORD

PACKAGE = "ssreg_client"
GENERATOR_CONFIG = f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"


@pytest.fixture
def served(backend: str, tmp_path: Path, worker_id_safe: str) -> Iterator[dict[str, str]]:
    """A running server on a fresh database with a developer and a plant service account."""
    url, pg_name = fresh_database(backend, f"{worker_id_safe}_gen_{os.getpid()}", tmp_path)
    engine = make_engine(url)
    with unit_of_work(bind=engine) as session:
        for role in (Role.developer, Role.qa, Role.admin):
            auth.create_user(
                session,
                username=f"gen-{role.value}",
                full_name=role.value,
                role=role,
                password=PASSWORD,
                actor="pytest",
                reason="generated-client test",
            )
        plant = auth.create_user(
            session,
            username="gen-plant",
            full_name="plant",
            role=Role.plant,
            password=None,
            actor="pytest",
            reason="generated-client test",
        )
    engine.dispose()
    env = os.environ | {"REGISTRY_DATABASE_URL": url, "REGISTRY_STORE_ROOT": str(tmp_path)}
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            with until_stopped(
                proc, f"http://127.0.0.1:{port}", "ssreg serve", lambda: log.read_text()[-2000:]
            ) as base:
                assert plant.api_key is not None
                yield {"base": base, "api_key": plant.api_key}
        finally:
            if pg_name:
                _drop_pg_database(pg_name)


def _generate(base: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Generate the client from the served document and import it."""
    where.mkdir(parents=True, exist_ok=True)
    spec = where / "openapi.json"
    spec.write_bytes(httpx.get(f"{base}/openapi.json").content)
    config = where / "generator.yaml"
    config.write_text(GENERATOR_CONFIG + "post_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(where / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(where))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        monkeypatch.delitem(sys.modules, name)  # a generation from another backend's run
    return importlib.import_module(PACKAGE)


def _parsed(response: Any, model: type) -> Any:
    """The response's parsed body: of ``model``, and every field known to it."""
    assert response.parsed is not None, response.content[:500]
    assert isinstance(response.parsed, model), (type(response.parsed), response.content[:500])
    left_over = getattr(response.parsed, "additional_properties", {})
    assert not left_over, left_over
    return response.parsed


def _csv(parquet: bytes) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(pq.read_table(pa.BufferReader(parquet)), out)
    return out.getvalue()


def test_a_generated_client_runs_the_whole_arc(
    served: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_pkg = _generate(served["base"], tmp_path / "generated", monkeypatch)
    api = importlib.import_module(f"{PACKAGE}.api")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    for group in ("auth", "datasets", "domains", "models", "predictions", "transfers"):
        importlib.import_module(f"{PACKAGE}.api.{group}")
    ops = {
        name: importlib.import_module(f"{PACKAGE}.api.{group}.{name}")
        for group, names in {
            "auth": ["issue_token", "me"],
            "domains": ["create_domain"],
            "datasets": ["register_dataset"],
            "models": ["create_model", "train_version", "get_version"],
            "transfers": ["open_transfer", "upload_standards", "get_transfer"],
            "predictions": ["predict", "list_prediction_log"],
        }.items()
        for name in names
    }
    assert api is not None
    base = served["base"]

    anonymous = client_pkg.Client(base_url=base)
    token = _parsed(
        ops["issue_token"].sync_detailed(
            client=anonymous,
            body=models.BodyIssueToken(username="gen-developer", password=PASSWORD),
        ),
        models.TokenRead,
    )
    dev = client_pkg.AuthenticatedClient(base_url=base, token=token.access_token)
    assert _parsed(ops["me"].sync_detailed(client=dev), models.UserRead).role.value == "developer"

    for name, probe, scale in (
        ("dev-raman-ambr250", "DEV-1", "250 mL"),
        (PLANT_DOMAIN, "PLANT-1", "2000 L"),
    ):
        _parsed(
            ops["create_domain"].sync_detailed(
                client=dev,
                body=models.DomainCreate(
                    name=name,
                    instrument="Raman",
                    probe_serial=probe,
                    scale=scale,
                    site="site",
                    reason="generated client",
                ),
            ),
            models.DomainRead,
        )

    data = transfer_data()
    uploaded = {}
    for label, blob, file_name in (
        ("parquet", data.source_bytes(), "source.parquet"),
        ("csv", _csv(data.validation_bytes()), "other_batch.csv"),
    ):
        record = _parsed(
            ops["register_dataset"].sync_detailed(
                client=dev,
                body=models.BodyRegisterDataset(
                    file=types.File(payload=io.BytesIO(blob), file_name=file_name),
                    name=f"generated client {label}",
                    domain="dev-raman-ambr250",
                    reference_column="titer_g_L",
                    units="g/L",
                    sample_id_column="sample_id",
                ),
            ),
            models.DatasetRead,
        )
        assert record.file_format.value == label
        uploaded[label] = record

    _parsed(
        ops["create_model"].sync_detailed(
            client=dev,
            body=models.SoftSensorModelCreate(
                name="titer_pls", analyte="titer", units="g/L", reason="generated client"
            ),
        ),
        models.SoftSensorModelRead,
    )
    v1 = _parsed(
        ops["train_version"].sync_detailed(
            "titer_pls",
            client=dev,
            body=models.ModelVersionCreate(
                dataset_sha256=uploaded["parquet"].sha256,
                n_components=5,
                intended_use=models.IntendedUse.MONITORING,
                reason="generated client",
            ),
        ),
        models.TrainedVersionRead,
    )
    assert v1.metrics.holdout.r2 > 0.9

    opened = _parsed(
        ops["open_transfer"].sync_detailed(
            client=dev,
            body=models.TransferCreate(
                source_model="titer_pls",
                source_version=v1.version,
                target_domain=PLANT_DOMAIN,
                method=models.TransferMethod.AUTO,
                n_standards=12,
                change_control="CC-GEN-1",
                intended_use=models.IntendedUse.MONITORING,
                operating_range=models.OperatingRange(
                    min_=v1.operating_range.min_, max_=v1.operating_range.max_
                ),
                acceptance=models.AcceptanceCriteria(max_rmse_ratio=3.0),
                reason="generated client",
            ),
        ),
        models.TransferRead,
    )
    completed = _parsed(
        ops["upload_standards"].sync_detailed(
            str(opened.number),
            client=dev,
            body=models.BodyUploadStandards(
                target_standards=types.File(
                    payload=io.BytesIO(data.target_bytes()), file_name="standards.parquet"
                ),
                validation=types.File(
                    payload=io.BytesIO(data.validation_bytes()), file_name="validation.parquet"
                ),
                reason="generated client",
            ),
        ),
        models.TransferRead,
    )
    assert completed.status.value == "completed"
    record = _parsed(
        ops["get_transfer"].sync_detailed(str(opened.number), client=dev), models.TransferRead
    )
    assert record.id == completed.id
    target = record.governance.lineage.target_version
    card = _parsed(
        ops["get_version"].sync_detailed("titer_pls", target.version, client=dev),
        models.TransferredVersionRead,
    )
    assert card.transfer_number == opened.number

    # an administrator binds the plant key to the target version's domain
    admin_token = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": "gen-admin", "password": PASSWORD}
    ).json()["access_token"]
    scoped = httpx.post(
        f"{base}/api/v1/users/gen-plant/scopes",
        json={"domains": [card.domain], "reason": "generated-client test"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert scoped.status_code == 201, scoped.text
    plant = client_pkg.AuthenticatedClient(base_url=base, token=served["api_key"])
    prediction = _parsed(
        ops["predict"].sync_detailed(
            "titer_pls",
            target.version,
            client=plant,
            body=models.PredictJsonPredictRequest(spectra=data.validation_x[:3].tolist()),
        ),
        models.PredictionRead,
    )
    assert len(prediction.predictions) == 3

    qa_token = _parsed(
        ops["issue_token"].sync_detailed(
            client=anonymous, body=models.BodyIssueToken(username="gen-qa", password=PASSWORD)
        ),
        models.TokenRead,
    )
    qa = client_pkg.AuthenticatedClient(base_url=base, token=qa_token.access_token)
    log = _parsed(
        ops["list_prediction_log"].sync_detailed(client=qa, transfer=str(opened.number)),
        models.PredictionLogPage,
    )
    assert [entry.version for entry in log.entries] == [target.version]


def test_operation_ids_are_the_route_names_and_unique(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert {"register_dataset", "train_version", "upload_standards", "predict"} <= set(ids)


def test_file_fields_are_binary_strings(client: Any) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    upload = schemas["Body_upload_standards"]["properties"]
    assert upload["target_standards"]["format"] == "binary"
    assert {s.get("format") for s in upload["validation"]["anyOf"]} == {"binary", None}
    assert schemas["Body_register_dataset"]["properties"]["file"]["format"] == "binary"
