"""The audit chain detects edits, deletions and insertions made behind the app's back."""

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.services import audit


def _seed(session: Session, n: int = 5) -> None:
    for i in range(n):
        audit.record(
            session,
            actor="tester",
            action="domain.create",
            entity_type="domain",
            entity_id=i,
            reason=f"create {i}",
            after={"value": i * 1.5},
        )


def _drop_guards(session: Session) -> None:
    """What a superuser could do: remove the append-only triggers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER audit_event_no_update"))
        session.execute(text("DROP TRIGGER audit_event_no_delete"))


def _seq_offset(session: Session) -> int:
    """Events already in the chain (fixture users) before this test's five."""
    return audit.verify_chain(session).events - 5


def test_fresh_chain_verifies(session: Session) -> None:
    _seed(session)
    report = audit.verify_chain(session)
    assert report.valid
    assert report.first_bad_seq is None


@pytest.mark.parametrize("sql", ["UPDATE audit_event SET reason = 'x'", "DELETE FROM audit_event"])
def test_database_refuses_update_and_delete(session: Session, sql: str) -> None:
    _seed(session)
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text(sql))


TAMPERS: dict[str, Callable[[Session, int], None]] = {
    "edit": lambda s, k: s.execute(
        text("UPDATE audit_event SET reason = 'nothing to see' WHERE seq = :k"), {"k": k}
    ),
    "delete": lambda s, k: s.execute(text("DELETE FROM audit_event WHERE seq = :k"), {"k": k}),
    "delete_tail": lambda s, k: s.execute(
        text("DELETE FROM audit_event WHERE seq = (SELECT max(seq) FROM audit_event)")
    ),
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_verify_catches_tampering(session: Session, how: str) -> None:
    _seed(session)
    offset = _seq_offset(session)
    victim = offset + 3
    _drop_guards(session)
    TAMPERS[how](session, victim)
    report = audit.verify_chain(session)
    assert not report.valid
    # A deleted tail is caught by the head pointer: the missing event is the first bad one.
    assert report.first_bad_seq == (offset + 5 if how == "delete_tail" else victim)


def test_verify_catches_an_inserted_event(session: Session) -> None:
    _seed(session)
    victim = _seq_offset(session) + 3
    _drop_guards(session)
    # Make room after the victim and insert a forged event with a plausible hash link.
    rows = session.execute(
        text("SELECT seq, hash FROM audit_event WHERE seq >= :k ORDER BY seq DESC"),
        {"k": victim + 1},
    ).all()
    for seq, _ in rows:
        session.execute(text("UPDATE audit_event SET seq = seq + 1 WHERE seq = :s"), {"s": seq})
    prev = session.execute(text("SELECT hash FROM audit_event WHERE seq = :k"), {"k": victim})
    session.execute(
        text(
            "INSERT INTO audit_event (seq, occurred_at, actor, action, entity_type, entity_id,"
            " prev_hash, hash) VALUES (:s, CURRENT_TIMESTAMP, 'mallory', 'thing.create',"
            " 'thing', 'x', :p, :h)"
        ),
        {"s": victim + 1, "p": prev.scalar_one(), "h": "f" * 64},
    )
    report = audit.verify_chain(session)
    assert not report.valid
    assert report.first_bad_seq == victim + 1
