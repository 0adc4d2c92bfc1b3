"""Signed checkpoints of the audit chain: an anchor outside the database.

A checkpoint is ``(seq, hash)`` of the chain head, the server time and the id of the key,
signed with the operator's Ed25519 private key (a PEM file the database never holds; the
public key verifies). Each one is stored twice: as an ``audit_checkpoint`` row and as one
line of an append-only file outside the database (``audit_checkpoint_log``). So

- a rewound chain (newest events deleted, ``audit_head`` moved back) is behind the newest
  checkpoint of the file, even when the newest checkpoint rows were deleted too;
- a rewritten chain (an event edited and every later hash recomputed with the app's own
  function) no longer has, at a checkpoint's seq, the hash that was signed, and nobody
  without the private key can sign the new one.

A *seal* (``ssreg audit checkpoint``, and ``ssreg migrate``) also signs the row count of every
record table: rows deleted or truncated from a table whose rows are not audited one by one
(the prediction log) show as a count below the sealed one.

The service signs when a transaction that appended events commits (``before_commit``: the
head is still locked by it) and writes the file line after the COMMIT: a line never names an
event that was rolled back; a crash between the two leaves a row without its line, which
verification reports as a note, not a failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditCheckpoint
from app.db.repositories import audit as audit_rows
from app.errors import InvalidInput
from app.services.canonical import canonical_json
from app.settings import Settings, get_settings

CHAIN, SEAL = "chain", "seal"
_DUE = "audit_checkpoint_due"
_LINES = "audit_checkpoint_lines"
_TAIL_BYTES = 64 * 1024
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint as signed (a row of the table or a line of the file)."""

    seq: int
    hash: str
    signed_at: str  # canonical UTC time
    key_id: str
    kind: str
    rows: dict[str, int] | None
    signature: str

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return canonical_json(
            {
                "seq": self.seq,
                "hash": self.hash,
                "signed_at": self.signed_at,
                "key_id": self.key_id,
                "kind": self.kind,
                "rows": self.rows,
            }
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "kind": self.kind,
            "rows": self.rows,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict):
            raise ValueError("a checkpoint is an object")
        seq, rows = value.get("seq"), value.get("rows")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("a checkpoint's seq is an integer")
        if rows is not None and not isinstance(rows, dict):
            raise ValueError("a checkpoint's rows is an object")
        fields = {k: value.get(k) for k in ("hash", "signed_at", "key_id", "kind", "signature")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("a checkpoint's hash, signed_at, key_id, kind and signature are text")
        return cls(seq=seq, rows=rows, **fields)  # type: ignore[arg-type]

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> Checkpoint:
        return cls(
            seq=row.seq,
            hash=row.hash,
            signed_at=row.signed_at.isoformat(timespec="microseconds"),
            key_id=row.key_id,
            kind=row.kind,
            rows=row.rows,
            signature=row.signature,
        )

    def to_row(self) -> AuditCheckpoint:
        return AuditCheckpoint(
            seq=self.seq,
            hash=self.hash,
            signed_at=datetime.fromisoformat(self.signed_at),
            key_id=self.key_id,
            kind=self.kind,
            rows=self.rows,
            signature=self.signature,
        )


def public_key_id(public_raw: bytes) -> str:
    """The key's id: the first 16 hex digits of the sha256 of its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def key_id(self) -> str:
        return public_key_id(self.raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    def verifies(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.key_id != self.key_id:
            return False
        try:
            signature = base64.b64decode(checkpoint.signature, validate=True)
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, checkpoint.payload())
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw)

    def sign(
        self, *, seq: int, hash: str, kind: str = CHAIN, rows: dict[str, int] | None = None
    ) -> Checkpoint:
        unsigned = Checkpoint(
            seq=seq,
            hash=hash,
            signed_at=utcnow().isoformat(timespec="microseconds"),
            key_id=self.public.key_id,
            kind=kind,
            rows=rows,
            signature="",
        )
        signature = base64.b64encode(self.private.sign(unsigned.payload())).decode()
        return Checkpoint(**{**unsigned.__dict__, "signature": signature})


def keygen(path: Path) -> PublicKey:
    """Write a new Ed25519 private key to ``path`` (PEM, mode 0600; never overwrites)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists: a signing key is never overwritten") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return SigningKey(private).public


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> SigningKey:
    blob = Path(path).read_bytes()
    private = serialization.load_pem_private_key(blob, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 private key")
    return SigningKey(private)


def signing_key(settings: Settings | None = None) -> SigningKey | None:
    """The configured signing key, or None when checkpoints are not configured."""
    path = (settings or get_settings()).audit_signing_key
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise RuntimeError(
            f"the audit signing key {path} (REGISTRY_AUDIT_SIGNING_KEY) does not exist: "
            "create it with `ssreg audit keygen` or unset the setting"
        ) from None
    return _load(str(path), mtime)


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def append(path: Path, checkpoints: list[Checkpoint]) -> None:
    """Append checkpoints to the file, one canonical JSON line each, and fsync. One
    ``write`` on an O_APPEND descriptor: lines from several workers never interleave."""
    if not checkpoints:
        return
    blob = b"".join(canonical_json(c.as_json()) + b"\n" for c in checkpoints)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, blob)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileLine:
    number: int  # 1-based; 0 when read from the tail
    checkpoint: Checkpoint | None
    error: str | None


def _parse(number: int, line: bytes) -> FileLine:
    try:
        return FileLine(number, Checkpoint.from_json(json.loads(line)), None)
    except ValueError as exc:
        return FileLine(number, None, f"line {number or 'at the end'}: not a checkpoint ({exc})")


def read_all(path: Path) -> list[FileLine]:
    if not path.exists():
        return []
    with path.open("rb") as f:
        return [_parse(n, line) for n, line in enumerate(f, start=1) if line.strip()]


def read_newest(path: Path) -> FileLine | None:
    """The checkpoint of the highest seq among the file's last lines (reads the last 64 KiB
    only: the cost does not grow with the file). Lines of several workers may land out of
    order by a few; the highest seq near the end is the newest."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    lines = tail.split(b"\n")
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    parsed = [_parse(0, line) for line in lines if line.strip()]
    if not parsed:
        return None
    broken = [p for p in parsed if p.checkpoint is None]
    if broken:
        return broken[-1]
    return max(parsed, key=lambda p: p.checkpoint.seq if p.checkpoint else -1)


# --------------------------------------------------------------------------------------------
# Signing as transactions commit
# --------------------------------------------------------------------------------------------


def mark_due(session: Session, seq: int) -> None:
    """An event of ``seq`` was appended in this transaction: sign the head at commit when
    checkpoints are configured and ``seq`` reaches a multiple of ``audit_checkpoint_every``."""
    settings = get_settings()
    if settings.audit_signing_key is not None and seq % settings.audit_checkpoint_every == 0:
        session.info[_DUE] = True


def sign_head(
    session: Session, key: SigningKey, *, kind: str = CHAIN, rows: dict[str, int] | None = None
) -> Checkpoint | None:
    """Sign the current head (the caller holds its lock), add the row, and queue the file
    line for after the commit. None when the chain is empty or the head already has a
    checkpoint of this kind."""
    head = audit_rows.head(session)
    if head is None or head.seq == 0:
        return None
    newest = audit_rows.newest_checkpoint(session, kind=kind)
    if newest is not None and newest.seq == head.seq:
        return None
    checkpoint = key.sign(seq=head.seq, hash=head.hash, kind=kind, rows=rows)
    audit_rows.add_checkpoint(session, checkpoint.to_row())
    session.flush()
    session.info.setdefault(_LINES, []).append(checkpoint)
    return checkpoint


@event.listens_for(Session, "before_commit")
def _sign_before_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.pop(_DUE, False):
        return
    key = signing_key()
    if key is not None:
        sign_head(session, key)


@event.listens_for(Session, "after_commit")
def _write_lines_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint was released; the transaction goes on
        return
    lines: list[Checkpoint] = session.info.pop(_LINES, [])
    path = get_settings().checkpoint_log
    if lines and path is not None:
        try:
            append(path, lines)
        except OSError:
            # The transaction is committed: its checkpoint rows stand, and verification
            # notes rows without their line; the caller is not told of a failure that is not.
            _log.exception("checkpoint file %s: %d line(s) not written", path, len(lines))


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint rolled back
        return
    session.info.pop(_DUE, None)
    session.info.pop(_LINES, None)
