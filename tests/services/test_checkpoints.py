"""Signed checkpoints anchor the chain outside the database (issue 14): a rewound chain and a
rewritten one fail verification, even with the newest checkpoint rows deleted too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db.models import AuditEvent
from app.enums import ReconcileMode
from app.errors import InvalidInput
from app.services import audit, audit_verify, checkpoints
from app.settings import get_settings
from tests.helpers import without_guards


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "audit.key"
    checkpoints.keygen(path)
    monkeypatch.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _events(session: Session, n: int) -> None:
    """``n`` committed transactions of one event each (each signs the head at its commit)."""
    for i in range(n):
        audit.record(
            session,
            actor="tester",
            action="domain.create",
            entity_type="domain",
            entity_id=f"d{i}",
            reason=f"event {i}",
        )
        session.commit()


def _log(key: Path) -> list[dict[str, object]]:
    path = get_settings().checkpoint_log
    assert path is not None
    assert path.parent == key.parent
    return [json.loads(line) for line in path.read_text().splitlines()]


def _head_seq(session: Session) -> int:
    return int(session.execute(text("SELECT seq FROM audit_head")).scalar_one())


def test_each_committing_transaction_signs_the_head(session: Session, key: Path) -> None:
    _events(session, 3)
    head = _head_seq(session)
    lines = _log(key)
    assert [line["seq"] for line in lines] == [head - 2, head - 1, head]
    public = checkpoints.signing_key()
    assert public is not None
    assert all(public.public.verifies(checkpoints.Checkpoint.from_json(x)) for x in lines)
    report = audit_verify.verify(session, reconciliation=ReconcileMode.none)
    assert report.valid, report.problems
    assert report.anchored
    assert report.anchor is not None
    assert report.anchor.seq == head
    assert report.events == 0  # nothing after the anchor: the cost does not grow with history
    assert report.checked_from_seq == head


def test_a_rolled_back_transaction_writes_no_checkpoint(session: Session, key: Path) -> None:
    _events(session, 1)
    before = _log(key)
    with session.begin_nested():
        audit.record(
            session, actor="tester", action="domain.create", entity_type="domain", entity_id="x"
        )
        session.rollback()
    assert _log(key) == before


def test_a_forged_checkpoint_signature_fails(session: Session, key: Path) -> None:
    _events(session, 2)
    path = get_settings().checkpoint_log
    assert path is not None
    lines = _log(key)
    lines[-1]["hash"] = "f" * 64  # a line not signed by the key
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = audit_verify.verify(session, reconciliation=ReconcileMode.none)
    assert not report.valid
    assert any("signature does not verify" in p for p in report.problems)


@pytest.mark.parametrize("also_checkpoint_rows", [False, True])
def test_a_rewound_chain_fails_against_the_checkpoint_file(
    session: Session, key: Path, also_checkpoint_rows: bool
) -> None:
    _events(session, 3)
    head = _head_seq(session)
    without_guards(session, "audit_event", "audit_head", "audit_checkpoint")
    session.execute(text("DELETE FROM audit_event WHERE seq = :s"), {"s": head})
    previous = session.get(AuditEvent, head - 1)
    assert previous is not None
    session.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": head - 1, "h": previous.hash}
    )
    if also_checkpoint_rows:
        session.execute(text("DELETE FROM audit_checkpoint WHERE seq = :s"), {"s": head})
    # The plain chain walk is fooled: it has no anchor.
    assert audit.verify_chain(session).valid
    for full in (False, True):
        report = audit_verify.verify(session, full=full, reconciliation=ReconcileMode.none)
        assert not report.valid
        assert any("rewound" in p for p in report.problems), report.problems


@pytest.mark.parametrize("full", [False, True])
def test_an_edited_chain_with_recomputed_hashes_fails_against_the_signature(
    session: Session, key: Path, full: bool
) -> None:
    _events(session, 4)
    head = _head_seq(session)
    without_guards(session, "audit_event", "audit_head")
    victim = head - 2
    session.execute(
        text("UPDATE audit_event SET reason = 'nothing to see' WHERE seq = :s"), {"s": victim}
    )
    # Recompute this and every later hash with the application's own function.
    prev = session.get(AuditEvent, victim - 1)
    assert prev is not None
    prev_hash = prev.hash
    for seq in range(victim, head + 1):
        session.expire_all()
        event = session.get(AuditEvent, seq)
        assert event is not None
        event.prev_hash = prev_hash
        event.hash = audit.event_hash(event)
        prev_hash = event.hash
        session.flush()
    session.execute(text("UPDATE audit_head SET hash = :h"), {"h": prev_hash})
    session.expire_all()
    assert audit.verify_chain(session).valid  # the unanchored walk is fooled
    report = audit_verify.verify(session, full=full, reconciliation=ReconcileMode.none)
    assert not report.valid
    assert any("rewritten" in p for p in report.problems), report.problems


def test_an_old_event_edited_in_place_is_found_by_the_full_check(
    session: Session, key: Path
) -> None:
    """The bounded check starts at the newest checkpoint: an older event edited without
    recomputing the later hashes leaves the signed hashes intact; --full walks it all."""
    _events(session, 3)
    without_guards(session, "audit_event")
    victim = _head_seq(session) - 1
    session.execute(text("UPDATE audit_event SET reason = 'x' WHERE seq = :s"), {"s": victim})
    assert audit_verify.verify(session, reconciliation=ReconcileMode.none).valid
    report = audit_verify.verify(session, full=True, reconciliation=ReconcileMode.none)
    assert not report.valid
    assert report.first_bad_seq == victim


def test_checkpoint_rows_deleted_are_found_by_the_full_check(session: Session, key: Path) -> None:
    _events(session, 3)
    without_guards(session, "audit_checkpoint")
    session.execute(text("DELETE FROM audit_checkpoint WHERE seq < :s"), {"s": _head_seq(session)})
    report = audit_verify.verify(session, full=True, reconciliation=ReconcileMode.none)
    assert not report.valid
    assert any("missing from the database" in p for p in report.problems), report.problems


def test_without_a_key_the_chain_is_walked_whole_and_not_anchored(session: Session) -> None:
    _events(session, 2)
    report = audit_verify.verify(session, reconciliation=ReconcileMode.none)
    assert report.valid
    assert not report.anchored
    assert report.events == _head_seq(session)
    assert "no anchor" in report.notes[0]


def test_keygen_never_overwrites_and_writes_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    public = checkpoints.keygen(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(public.raw) == 32
    assert len(public.key_id) == 16
    with pytest.raises(InvalidInput, match="never overwritten"):
        checkpoints.keygen(path)
