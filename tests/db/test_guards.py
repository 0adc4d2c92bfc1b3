"""At the head revision the database refuses what app/db/guards.py says (issue 14): DELETE on
every table, TRUNCATE on every table (PostgreSQL), UPDATE of every column audited actions do
not change; and the demo, written through the services, reconciles clean."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db.base import Base, utcnow
from app.db.guards import READ_ONLY, UPDATABLE
from app.db.repositories import domains as domain_rows
from app.db.repositories import users as user_rows
from app.enums import DomainEventKind, Role
from app.services import audit_verify, auth, checkpoints, lifecycle
from app.services.seed import DEMO_USERS, seed_demo
from app.settings import get_settings
from app.store import LocalStore

# An UPDATE that changes a column no audited action changes, per table.
IMMUTABLE_CHANGE = {
    "app_user": "username = username || 'x'",
    "access_token": "token_hash = 'forged'",
    "audit_event": "reason = 'x'",
    "audit_head": "seq = seq - 1",
    "audit_checkpoint": "hash = 'x'",
    "domain": "site = 'elsewhere'",
    "dataset": "name = 'x'",
    "soft_sensor_model": "units = 'x'",
    "model_version": "t2_limit_99 = t2_limit_99 + 1",
    "transfer": "reason = 'x'",
    "prediction_log": "qualified = NOT qualified",
    "signature": "comment = 'x'",
    "domain_event": "description = 'x'",
    "lifecycle_event": "reason = 'x'",
    "alias_assignment": "reason = 'x'",
    "account_scope": "reason = 'x'",
    "login_failure": "client_address = 'x'",
    "monitoring_settings": "figures_basis = 'x'",
    "reference_result": "alias = 'x'",
    "monitoring_alarm": "message = 'x'",
}
# UPDATEs audited actions make, per table (on a row whose guards allow them).
ALLOWED_CHANGE = {
    "app_user": "failed_login_count = failed_login_count + 1, role = 'qa'",
    "access_token": "expires_at = expires_at",
    "audit_head": "seq = seq + 1, hash = 'next'",
    "model_version": "status = 'retired', review_due_at = NULL",
}


def test_every_table_is_listed_in_the_guards() -> None:
    assert set(Base.metadata.tables) | {"alembic_version"} == set(UPDATABLE) | set(READ_ONLY)
    assert set(IMMUTABLE_CHANGE) == set(UPDATABLE)


@pytest.fixture
def demo(session: Session, store: LocalStore, tmp_path: Path) -> Iterator[Session]:
    """The demo through the services, plus a domain event, a prediction-log row and a signed
    checkpoint: a row in every table."""
    key = tmp_path / "audit.key"
    checkpoints.keygen(key)
    mp = pytest.MonkeyPatch()
    mp.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(key))
    get_settings.cache_clear()
    seeded = seed_demo(session, store)
    qa = DEMO_USERS[Role.qa]
    assert (
        auth.login(session, username=qa, password=seeded.credentials[qa], client_host="192.0.2.1")
        is not None
    )
    assert auth.login(session, username=qa, password="wrong", client_host="192.0.2.1") is None
    admin = user_rows.by_username(session, DEMO_USERS[Role.admin])
    assert admin is not None
    domain = domain_rows.by_name_page(session, limit=1)[0]
    lifecycle.record_domain_event(
        session,
        domain,
        kind=DomainEventKind.other,
        occurred_at=None,
        description="guard test",
        change_control=None,
        actor=admin,
    )
    session.execute(
        text(
            "INSERT INTO prediction_log (id, occurred_at, caller_id, caller, model_version_id, "
            "artifact_sha256, qualified, n_spectra, input_sha256, input_format, flag_counts) "
            "SELECT :id, :at, created_by_id, 'x', id, artifact_sha256, false, 1, 'x', 'json', "
            "'{}' FROM model_version WHERE version = 1"
        ),
        {"id": "0" * 31 + "2", "at": utcnow()},
    )
    session.commit()  # signs the head (a savepoint of the test's transaction)
    yield session
    mp.undo()
    get_settings.cache_clear()


def _refused(session: Session, statement: str) -> str:
    with pytest.raises(DBAPIError) as caught, session.begin_nested():
        session.execute(text(statement))
    return str(caught.value)


def test_the_database_refuses_what_the_guards_refuse(demo: Session, backend: str) -> None:
    session = demo
    for table in UPDATABLE:
        count = session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        assert count > 0, f"{table} has no row to test on"
        assert "append-only" in _refused(session, f"DELETE FROM {table}"), table
        assert "append-only" in _refused(session, f"UPDATE {table} SET {IMMUTABLE_CHANGE[table]}")
        if backend == "postgresql":
            assert "append-only" in _refused(session, f"TRUNCATE {table} CASCADE"), table
    if backend == "postgresql":
        # The issue's attack: refused by the references' key, and with them by the guard.
        assert "foreign key" in _refused(session, "TRUNCATE prediction_log")
        assert "append-only" in _refused(
            session, "TRUNCATE prediction_log, reference_result, monitoring_alarm"
        )
        assert "append-only" in _refused(
            session, "TRUNCATE transfer, model_version, dataset CASCADE"
        )


def test_the_database_lets_audited_updates_through(demo: Session) -> None:
    for table, change in ALLOWED_CHANGE.items():
        with demo.begin_nested() as savepoint:
            demo.execute(text(f"UPDATE {table} SET {change}"))
            savepoint.rollback()


def test_the_demo_reconciles_clean_and_is_anchored(demo: Session) -> None:
    report = audit_verify.verify(demo)
    assert report.valid, (report.problems, report.reconciliation)
    assert report.anchored
    assert report.reconciliation is not None
    tables = report.reconciliation.tables
    assert all(tables[t] > 0 for t in ("model_version", "transfer", "signature", "dataset"))
