"""Shared test helpers (importable as ``tests.helpers``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.db.models import (
    AuditEvent,
    Dataset,
    Domain,
    ModelVersion,
    PredictionLog,
    SoftSensorModel,
    TransferRecord,
    User,
)
from app.store import LocalStore

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Actor:
    user: User
    credential: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}


def from_address(client: Any, host: str) -> Any:
    """A client of the same app (same test transaction) whose requests come from ``host``."""
    from fastapi.testclient import TestClient

    return TestClient(client.app, raise_server_exceptions=False, client=(host, 50000))


_lockout_addresses = itertools.count()


def lock_out(client: Any, username: str) -> None:
    """Lock ``username`` out with wrong passwords, as it takes now: the lockout threshold's
    worth of failed logins, from as many fresh addresses (198.18.0.0/15, never used twice in
    a run) as the per-address limit requires."""
    from app.settings import get_settings

    settings = get_settings()
    address = ""
    for i in range(settings.lockout_threshold):
        if i % settings.login_address_limit == 0:
            n = next(_lockout_addresses)
            address = f"198.18.{n // 256 % 256}.{n % 256}"
        r = from_address(client, address).post(
            "/api/v1/auth/token", data={"username": username, "password": "wrong-wrong-wrong"}
        )
        assert r.status_code == 401, r.text


def assert_error(response: Any, status: int, *fragments: str, code: str | None = None) -> None:
    """A refusal in the error envelope: ``status``, only ``error`` and ``detail``, the
    ``code`` if given, and every fragment somewhere in the detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    if code is not None:
        assert body["error"] == code
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]


RECORD_TABLES = (
    Domain,
    Dataset,
    SoftSensorModel,
    ModelVersion,
    TransferRecord,
    PredictionLog,
    AuditEvent,
)


def record_counts(session: Session) -> dict[str, int]:
    return {
        table.__name__: int(session.scalar(select(func.count()).select_from(table)) or 0)
        for table in RECORD_TABLES
    }


@contextmanager
def nothing_written(session: Session, store: LocalStore) -> Iterator[None]:
    """The block adds no row to any record table, no audit event and no file to the store."""
    rows, digests = record_counts(session), sorted(store.digests())
    yield
    session.expire_all()
    assert record_counts(session) == rows
    assert sorted(store.digests()) == digests


@contextmanager
def counted_statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements run on ``session``'s connection inside the block, in order."""
    from sqlalchemy import event

    statements: list[str] = []
    connection = session.connection()

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", _count)


def grant_scope(
    client: Any,
    admin: dict[str, str],
    domains: list[str],
    *,
    username: str = "test-plant",
    models: list[str] | None = None,
) -> Any:
    """POST /users/{username}/scopes as an administrator (201 asserted); returns the body."""
    body: dict[str, Any] = {"domains": domains, "reason": "test scope"}
    if models is not None:
        body["models"] = models
    r = client.post(f"/api/v1/users/{username}/scopes", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def set_lifecycle(
    session: Session,
    model: str,
    version: int,
    status: str,
    *,
    review_due_at: Any = None,
) -> None:
    """Put a version into ``status`` (and ``review_due_at``) directly through the test session.

    BYPASSES THE LIFECYCLE: no signature, no lifecycle event; only an audit event of the
    transition (so the row still matches its audited state: predict refuses a version
    changed behind the application's back). A stand-in until these tests sign approvals.
    """
    from datetime import timedelta

    from app.db.base import utcnow
    from app.enums import AuditAction, AuditEntityType, VersionStatus
    from app.services import audit

    row = session.scalars(
        select(ModelVersion)
        .join(SoftSensorModel, SoftSensorModel.id == ModelVersion.model_id)
        .where(SoftSensorModel.name == model, ModelVersion.version == version)
    ).one()
    row.status = VersionStatus(status)
    row.review_due_at = utcnow() + timedelta(days=365) if review_due_at is None else review_due_at
    audit.record(
        session,
        actor="pytest",
        action=AuditAction.model_version_transition,
        entity_type=AuditEntityType.model_version,
        entity_id=row.id,
        reason="test: lifecycle set directly",
        after={"status": row.status, "review_due_at": row.review_due_at},
    )


def without_guards(session: Session, *tables: str) -> None:
    """What the schema owner can do: remove the triggers that guard ``tables``, inside the
    test's transaction (DDL is transactional on both backends: rolled back with the test)."""
    if session.get_bind().dialect.name == "postgresql":
        for table in tables:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        return
    for table in tables:
        names = session.scalars(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": table},
        ).all()
        for name in names:
            session.execute(text(f"DROP TRIGGER {name}"))
