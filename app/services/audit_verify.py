"""``GET /audit/verify`` and ``ssreg audit verify [--full]``: the chain, its signed
checkpoints, and the reconciliation of every record with its audited state.

Bounded (the default): the newest checkpoint of the database and the newest of the file are
checked (signature; the event at their seq still has the signed hash; the head is not behind
them) and the chain is walked from the newest good one to the head, so the chain part costs
the events appended since the last checkpoint, not the history. An event older than the
anchor edited *without* recomputing the later hashes is not seen by it (the signed hash of
a later event does not change): ``full`` walks the whole chain and checks every checkpoint
row and every line of the file, which finds that too.

Without a signing key the chain has no anchor outside the database: it is walked whole, and
the report says it is not anchored.

The reconciliation (:mod:`app.services.reconcile`) is ``full`` (every row and every audited
state), ``incremental`` (the default: the rows the events after the last *recorded* full
reconciliation wrote, when one is recorded and signed; else ``full``) or ``none``. A full run
is recorded by ``ssreg audit verify --full --record`` (:func:`app.services.audit_seal.
record_reconciliation`): an ``audit.reconcile`` event signed by a seal. The report says which
was run and what an incremental one does not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from app.db.repositories import audit as audit_rows
from app.enums import ReconcileMode
from app.schemas.audit import (
    ChainVerification,
    CheckpointRead,
    FieldDifference,
    ReconciliationRead,
    RecordDifference,
    RecordedReconciliationRead,
)
from app.services import audit, audit_seal, checkpoints, reconcile
from app.services.audit_seal import RecordedReconciliation
from app.services.checkpoints import Checkpoint, PublicKey
from app.settings import Settings, get_settings


@dataclass
class Verification:
    full: bool
    head_seq: int
    checked_from_seq: int  # the chain was walked from the event after this one
    events: int  # events read
    first_bad_seq: int | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchor: Checkpoint | None = None
    key_id: str | None = None
    checkpoints_checked: int = 0
    reconciliation: reconcile.Reconciliation | None = None
    last_full: RecordedReconciliation | None = None  # the newest recorded (and signed) one

    @property
    def chain_valid(self) -> bool:
        return not self.problems and self.first_bad_seq is None

    @property
    def records_valid(self) -> bool:
        """The reconciliation run found nothing, and, when it was incremental, the recorded
        full one it starts from found nothing either (a row it found stays found)."""
        rec = self.reconciliation
        if rec is None:
            return True
        if rec.since_seq is not None and self.last_full is not None and not self.last_full.valid:
            return False
        return rec.valid

    @property
    def valid(self) -> bool:
        return self.chain_valid and self.records_valid

    @property
    def anchored(self) -> bool:
        return self.anchor is not None


def _against_chain(session: Session, cp: Checkpoint, head_seq: int) -> str | None:
    if cp.seq > head_seq:
        return (
            f"the chain was rewound: its head is at seq {head_seq}, but seq {cp.seq} was "
            "signed (events deleted and the head moved back)"
        )
    found = audit_rows.event_hash_at(session, cp.seq)
    if found != cp.hash:
        return (
            f"event {cp.seq} no longer has the hash signed at {cp.signed_at} "
            f"({found or 'no such event'} instead of {cp.hash}): the chain was rewritten"
        )
    return None


def _verified(
    public: PublicKey, cp: Checkpoint | None, where: str, report: Verification
) -> Checkpoint | None:
    if cp is None:
        return None
    report.checkpoints_checked += 1
    if not public.verifies(cp):
        report.problems.append(
            f"checkpoint seq {cp.seq} ({cp.kind}) in {where}: its signature does not verify "
            f"with key {public.key_id}"
        )
        return None
    return cp


def verify(
    session: Session,
    *,
    full: bool = False,
    reconciliation: ReconcileMode = ReconcileMode.incremental,
    settings: Settings | None = None,
) -> Verification:
    """The chain (bounded, or ``full``) and the reconciliation of ``reconciliation``'s
    extent (``incremental`` is ``full`` when ``full`` is)."""
    settings = settings or get_settings()
    head = audit_rows.head(session)
    head_seq = head.seq if head else 0
    key = checkpoints.signing_key(settings)
    report = Verification(
        full=full, head_seq=head_seq, checked_from_seq=0, events=0, first_bad_seq=None
    )
    sealed: Checkpoint | None = None
    public: PublicKey | None = None
    expected: dict[int, list[tuple[str, Checkpoint]]] = {}
    if key is None:
        report.notes.append(
            "no signing key configured (REGISTRY_AUDIT_SIGNING_KEY): the chain has no anchor "
            "outside the database and was walked whole"
        )
    else:
        public = key.public
        report.key_id = public.key_id
        log = settings.checkpoint_log
        assert log is not None
        db_row = audit_rows.newest_checkpoint(session)
        db_newest = _verified(
            public, Checkpoint.from_row(db_row) if db_row else None, "the database", report
        )
        tail = checkpoints.read_newest(log)
        if tail is not None and tail.error is not None:
            report.problems.append(f"{log}: {tail.error}")
        file_newest = _verified(public, tail.checkpoint if tail else None, str(log), report)
        if db_row is not None and tail is None:
            report.problems.append(
                f"the checkpoint file {log} is missing or empty, but the database holds "
                f"checkpoints up to seq {db_row.seq}"
            )
        if db_newest and file_newest and file_newest.seq > db_newest.seq:
            report.problems.append(
                f"the database's newest checkpoint (seq {db_newest.seq}) is older than the "
                f"file's (seq {file_newest.seq}): checkpoint rows were deleted"
            )
        good: list[Checkpoint] = []
        for where, cp in (("database", db_newest), ("file", file_newest)):
            if cp is None:
                continue
            problem = _against_chain(session, cp, head_seq)
            if problem is None:
                good.append(cp)
            else:
                report.problems.append(f"{where} checkpoint: {problem}")
        if good and not report.problems:
            report.anchor = max(good, key=lambda c: c.seq)
        if db_row is None and tail is None:
            report.notes.append("no checkpoint signed yet: the chain was walked whole")
        sealed_row = audit_rows.newest_checkpoint(session, kind=checkpoints.SEAL)
        if sealed_row is not None:
            sealed = _verified(public, Checkpoint.from_row(sealed_row), "the database", report)
        if full:
            sealed = _every_checkpoint(session, public, log, report, expected, sealed)

    start = report.anchor if (report.anchor is not None and not full) else None
    report.checked_from_seq = start.seq if start else 0

    def seen(seq: int, event_hash: str) -> None:
        for where, cp in expected.get(seq, ()):
            if cp.hash != event_hash:
                report.problems.append(
                    f"checkpoint seq {seq} in {where}: the event's hash is {event_hash}, "
                    f"{cp.hash} was signed at {cp.signed_at} (the chain was rewritten)"
                )

    chain = audit.verify_chain(
        session,
        after_seq=start.seq if start else 0,
        after_hash=start.hash if start else audit.GENESIS,
        seen=seen if expected else None,
    )
    report.events = chain.events
    if not chain.valid:
        report.first_bad_seq = chain.first_bad_seq
        report.problems.insert(0, f"seq {chain.first_bad_seq}: {chain.problem}")
    if reconciliation is not ReconcileMode.none:
        counts = (sealed.seq, sealed.rows) if sealed and sealed.rows else None
        if public is not None:
            report.last_full = audit_seal.recorded_reconciliation(session, public, report.problems)
        if reconciliation is ReconcileMode.incremental and not full and report.last_full:
            report.reconciliation = reconcile.reconcile_since(
                session, after_seq=report.last_full.head_seq, sealed=counts
            )
        else:
            if reconciliation is ReconcileMode.incremental and not full:
                report.notes.append(
                    "no signed full reconciliation recorded (`ssreg audit verify --full "
                    "--record`, which needs a signing key): every record was reconciled"
                )
            report.reconciliation = reconcile.reconcile(session, sealed=counts)
    return report


def _every_checkpoint(
    session: Session,
    public: PublicKey,
    log: Path,
    report: Verification,
    expected: dict[int, list[tuple[str, Checkpoint]]],
    sealed: Checkpoint | None,
) -> Checkpoint | None:
    """Every checkpoint row and file line: signatures, and the hashes the walk must meet
    (into ``expected``); a line of the file missing from the table is a failure (rows
    deleted), a row missing from the file a note (the service stopped between its COMMIT
    and the write). Returns the newest verified seal."""
    rows = {
        (c.seq, c.kind): c
        for c in (Checkpoint.from_row(r) for r in audit_rows.all_checkpoints(session))
    }
    lines: dict[tuple[int, str], Checkpoint] = {}
    for line in checkpoints.read_all(log):
        if line.checkpoint is None:
            report.problems.append(f"{log}: {line.error}")
        else:
            lines[(line.checkpoint.seq, line.checkpoint.kind)] = line.checkpoint
    for where, items in (("the database", rows), (str(log), lines)):
        for cp in items.values():
            verified = _verified(public, cp, where, report)
            if verified is None:
                continue
            if verified.seq > report.head_seq:
                report.problems.append(
                    f"checkpoint seq {cp.seq} in {where}: beyond the head (seq "
                    f"{report.head_seq}): the chain was rewound"
                )
            expected.setdefault(cp.seq, []).append((where, cp))
            if cp.kind == checkpoints.SEAL and (sealed is None or cp.seq > sealed.seq):
                sealed = cp
    gone = sorted(set(lines) - set(rows))
    if gone:
        report.problems.append(
            f"{len(gone)} checkpoint(s) of {log} are missing from the database (seq "
            f"{', '.join(str(s) for s, _ in gone[:10])}{' ...' if len(gone) > 10 else ''})"
        )
    unwritten = sorted(set(rows) - set(lines))
    if unwritten:
        report.notes.append(
            f"{len(unwritten)} checkpoint row(s) have no line in {log} (the service stopped "
            "between a commit and the file write)"
        )
    return sealed


MAX_DIFFERENCES = 1000


def describe(report: Verification) -> ChainVerification:
    """The API view of a verification."""
    rec = report.reconciliation
    anchor = report.anchor
    return ChainVerification(
        valid=report.valid,
        events=report.events,
        first_bad_seq=report.first_bad_seq,
        problem=report.problems[0] if report.problems else None,
        problems=report.problems,
        notes=report.notes,
        head_seq=report.head_seq,
        checked_from_seq=report.checked_from_seq,
        anchored=report.anchored,
        anchor=(
            CheckpointRead(
                seq=anchor.seq,
                hash=anchor.hash,
                signed_at=datetime.fromisoformat(anchor.signed_at),
                key_id=anchor.key_id,
                kind=anchor.kind,
            )
            if anchor
            else None
        ),
        key_id=report.key_id,
        checkpoints_checked=report.checkpoints_checked,
        reconciliation=(
            ReconciliationRead(
                scope="all" if rec.since_seq is None else "since_full_reconciliation",
                since_seq=rec.since_seq,
                events=rec.events,
                not_checked=None if rec.since_seq is None else not_checked(rec.since_seq),
                valid=rec.valid,
                rows_checked=rec.rows_checked,
                tables=rec.tables,
                differences=[
                    RecordDifference(
                        kind=d.kind,
                        table=d.table,
                        entity_type=d.entity_type,
                        entity_id=d.entity_id,
                        audited_seq=d.audited_seq,
                        earlier_seq=d.earlier_seq,
                        fields=[
                            FieldDifference(field=f.field, audited=f.audited, current=f.current)
                            for f in d.fields
                        ],
                        detail=d.describe(),
                    )
                    for d in rec.differences[:MAX_DIFFERENCES]
                ],
                differences_total=len(rec.differences),
            )
            if rec is not None
            else None
        ),
        last_full_reconciliation=(
            RecordedReconciliationRead(**last.__dict__) if (last := report.last_full) else None
        ),
    )


def not_checked(since_seq: int) -> str:
    """What an incremental reconciliation from ``since_seq`` does not see."""
    return (
        f"rows that no event after seq {since_seq} wrote were not compared: a row changed, "
        "inserted or deleted behind the application's back since the full reconciliation that "
        f"read the chain up to seq {since_seq}, and a row altered behind the back before its first "
        "audited state after that seq took it in, are found by the next full one (GET "
        "/audit/verify?reconcile=full, ssreg audit verify --full)"
    )
