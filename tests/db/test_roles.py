"""PostgreSQL: the schema owner migrates, the service runs as a runtime role that cannot
disable a trigger, truncate, delete, or change what audited transitions do not (issue 14)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from app.cli import app as ssreg_app
from app.db.roles import create_roles, grant_runtime, prepare_schema
from app.db.session import dispose_engines, make_engine, unit_of_work
from app.enums import Role
from app.main import create_app
from app.services import audit_verify
from app.services.seed import DEMO_USERS, seed_demo
from app.settings import get_settings
from app.store import LocalStore, get_store
from tests.conftest import PG_ADMIN_URL, alembic_config

pytestmark = pytest.mark.postgres

ATTACKS = [
    "ALTER TABLE model_version DISABLE TRIGGER USER",
    "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_update",
    "DROP TRIGGER model_version_guard_update ON model_version",
    "TRUNCATE prediction_log",
    "TRUNCATE transfer, model_version, dataset CASCADE",
    "DELETE FROM audit_event WHERE seq = (SELECT max(seq) FROM audit_event)",
    "DELETE FROM model_version",
    "UPDATE audit_head SET seq = seq - 1",
    "UPDATE audit_event SET reason = 'edited'",
    "UPDATE model_version SET status = 'approved', t2_limit_99 = 1e12, q_limit_99 = 1e12, "
    "operating_range_min = -1e9, operating_range_max = 1e9",
    "UPDATE model_version SET artifact_sha256 = 'x'",
    "UPDATE app_user SET username = 'mallory'",
    "CREATE TABLE mine (id int)",
]


@dataclass(frozen=True)
class Roles:
    owner_url: str
    runtime_url: str
    runtime: str


def _url(user: str, database: str) -> str:
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{user}@{host}/{database}"


@pytest.fixture
def roles(worker_id_safe: str) -> Iterator[Roles]:
    tag = worker_id_safe.lower()
    owner, runtime, database = f"reg_owner_{tag}", f"reg_app_{tag}", f"registry_roles_{tag}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (runtime, owner):
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')

    drop()
    engine = make_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            done = create_roles(
                conn,
                owner=owner,
                owner_password="owner secret",
                runtime=runtime,
                runtime_password="runtime secret",
                database=database,
            )
        assert len(done) == 3
        registry = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database)
        with registry.begin() as conn:
            prepare_schema(conn, owner=owner)
        registry.dispose()
        yield Roles(_url(owner, database), _url(runtime, database), runtime)
    finally:
        engine.dispose()
        drop()
        admin.close()


def test_the_runtime_role_serves_and_cannot_tamper(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command.upgrade(alembic_config(roles.owner_url), "head")
    owner = make_engine(roles.owner_url)
    with owner.begin() as conn:
        grant_runtime(conn, roles.runtime)
    owner.dispose()

    runtime = make_engine(roles.runtime_url)
    try:
        # The service's own writes (numbering under row locks, transitions, logins) work.
        with unit_of_work(bind=runtime) as session:
            seeded = seed_demo(session, LocalStore(tmp_path / "store"))
        with unit_of_work(bind=runtime, read_only=True) as session:
            report = audit_verify.verify(session)
        assert report.valid, (report.problems, report.reconciliation)

        for statement in ATTACKS:
            with runtime.connect() as conn, pytest.raises(DBAPIError) as caught:
                conn.execute(text(statement))
            # Refused by a grant, by ownership, or by a trigger: SQLSTATE 42501 in each case.
            assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege), statement
    finally:
        runtime.dispose()

    # The API as the runtime role: a login and a change through the request's transaction.
    monkeypatch.setenv("REGISTRY_DATABASE_URL", roles.runtime_url)
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(tmp_path / "store"))
    dispose_engines()
    get_settings.cache_clear()
    get_store.cache_clear()
    try:
        with TestClient(create_app()) as client:
            admin = DEMO_USERS[Role.admin]
            r = client.post(
                "/api/v1/auth/token",
                data={"username": admin, "password": seeded.credentials[admin]},
            )
            assert r.status_code == 200, r.text
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            body = {"role": "qa", "reason": "runtime role test"}
            r = client.post("/api/v1/users/demo-auditor/role", json=body, headers=headers)
            assert r.status_code == 200, r.text
            r = client.get("/api/v1/audit/verify", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["valid"] is True, r.json()
    finally:
        dispose_engines()
        get_settings.cache_clear()
        get_store.cache_clear()


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier (pg_authid.rolpassword) is of ``password``
    (RFC 5802: StoredKey = H(HMAC(PBKDF2(password, salt, i), "Client Key")))."""
    scheme, rest = verifier.split("$", 1)
    assert scheme == "SCRAM-SHA-256", verifier
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def test_db_roles_sets_the_passwords_of_the_secret_files(
    worker_id_safe: str, tmp_path: Path
) -> None:
    """As docker-compose.yml's `roles` runs it: every password a file (a compose secret)."""
    tag = worker_id_safe.lower()
    owner, runtime, database = f"cli_owner_{tag}", f"cli_app_{tag}", f"registry_cli_{tag}"
    files = {name: tmp_path / name for name in ("admin", "owner", "runtime")}
    files["admin"].write_text("not checked by trust authentication\n")
    files["owner"].write_text("owner pw from a file\n")
    files["runtime"].write_text("  runtime pw \n")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (runtime, owner):
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')

    drop()
    try:
        result = CliRunner().invoke(
            ssreg_app,
            [
                *("db", "roles", "--admin-url", PG_ADMIN_URL, "--database", database),
                *("--admin-password-file", str(files["admin"])),
                *("--owner", owner, "--owner-password-file", str(files["owner"])),
                *("--runtime", runtime, "--runtime-password-file", str(files["runtime"])),
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"roles ready: {owner} owns {database}" in result.output
        verifiers = dict(
            admin.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (%s, %s)",
                (owner, runtime),
            ).fetchall()
        )
        # Stripped as the service strips its secret files (pydantic-settings).
        assert _scram_matches(verifiers[owner], "owner pw from a file")
        assert _scram_matches(verifiers[runtime], "runtime pw")
        assert not _scram_matches(verifiers[runtime], "  runtime pw \n")
    finally:
        drop()
        admin.close()
