"""Stand-alone verifier of a softsensor-registry change-control export bundle.

Usage::

    python verify.py <bundle.zip | extracted directory>

Python 3.11 standard library only: this file is copied into every bundle as ``verify.py`` and
must run on an auditor's machine with nothing installed. It re-checks, offline:

1. every file of the bundle against ``manifest.json`` ({path: sha256}); a file missing from
   the bundle, a file the manifest does not list, or a file whose bytes hash differently fails;
2. the audit chain segment (``audit/chain_segment.json``): consecutive sequence numbers, each
   event's hash recomputed from its fields exactly as the registry computes it, each
   ``prev_hash`` equal to the previous event's hash; and that every event of
   ``audit/events.json`` is the segment's event of that number, field for field;
3. every record under ``records/``: its ``content_sha256`` recomputed from its ``content``;
4. every signature in ``signatures.json`` against the record it is bound to: valid when its
   ``content_sha256`` equals the record's recomputed content hash. An invalid signature is
   reported, not a failure of the bundle (a record altered after signing is exported as it
   is), unless the bundle itself states a different validity;

Exit status 0 when every check of the bundle passes, 1 when one fails (each failure is
printed, naming the file), 2 when the bundle cannot be read.

5. the signed checkpoints (``audit/checkpoints.json``): each one's Ed25519 signature with the
   bundle's public key (a pure-Python verify of RFC 8032, below: no package to install), and
   that the segment's event of its seq has the signed hash. The segment runs to the first
   checkpoint at or after the last event concerned, so its last hash is signed by the
   operator's key; the key id is printed: compare it with the one the operator publishes
   (``ssreg audit keygen`` printed it).

Exit status 0 when every check of the bundle passes, 1 when one fails (each failure is
printed, naming the file), 2 when the bundle cannot be read.

What it cannot detect alone: whoever rewrites a record and every hash after it, the manifest
included, and signs new checkpoints with a key of their own, produces a bundle that passes
with a *different key id*: compare the printed key id with the operator's. A bundle exported
without a signing key configured has no checkpoint: then a rewritten audit segment whose
hashes are all recomputed passes too, and the first event's ``prev_hash`` and the last hash
must be compared with the live chain (``GET /api/v1/audit``) or with an independently kept
copy of the manifest's sha256 (the ``X-Manifest-SHA256`` header of the export).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
CHAIN_SEGMENT = "audit/chain_segment.json"
AUDIT_EVENTS = "audit/events.json"
SIGNATURES = "signatures.json"
RECORDS = "records/"
CHECKPOINTS = "audit/checkpoints.json"
# The fields an audit event's hash covers (its own ``hash`` aside), as the registry hashes them.
AUDIT_FIELDS = (
    "seq",
    "occurred_at",
    "actor",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "reason",
    "before",
    "after",
    "prev_hash",
)
# Covered too on events that hold the state of the rows they wrote (absent on older ones).
STATE_FIELDS = ("state", "state_sha256")


def canonical_json(value: Any) -> bytes:
    """The registry's canonical JSON: sorted keys, no whitespace, UTF-8 (README)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def event_hash(event: dict[str, Any]) -> str:
    """An audit event's hash: sha256 of the JSON of :data:`AUDIT_FIELDS` (and
    :data:`STATE_FIELDS` when the event has them) with sorted keys, no whitespace, UTF-8
    (app/services/audit.py ``canonical_payload``)."""
    body = {name: event[name] for name in AUDIT_FIELDS}
    if event.get("state_sha256") is not None:
        body.update({name: event[name] for name in STATE_FIELDS})
    return sha256_hex(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


# --------------------------------------------------------------------------------------------
# Ed25519 signature verification (RFC 8032, section 5.1.7), after the RFC's reference code.
# Verification only: no secret is handled, so constant time does not matter here.
# --------------------------------------------------------------------------------------------

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)


def _add(a: _Point, b: _Point) -> _Point:
    p = _P
    x = (a[1] - a[0]) * (b[1] - b[0]) % p
    y = (a[1] + a[0]) * (b[1] + b[0]) % p
    c = 2 * a[3] * b[3] * _D % p
    d = 2 * a[2] * b[2] % p
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _times(n: int, point: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    while n > 0:
        if n & 1:
            result = _add(result, point)
        point = _add(point, point)
        n >>= 1
    return result


def _same(a: _Point, b: _Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _x_of(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    return _P - x if (x & 1) != sign else x


def _point(blob: bytes) -> _Point | None:
    if len(blob) != 32:
        return None
    y = int.from_bytes(blob, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x_of(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _x_of(_GY, 0)
assert _GX is not None
_G: _Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (64 bytes) is ``public_key``'s (32 bytes) on ``message``."""
    if len(signature) != 64:
        return False
    a, r = _point(public_key), _point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    return _same(_times(s, _G), _add(r, _times(h % _Q, a)))


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every file of the bundle by its path inside it (``/``-separated)."""
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
    with zipfile.ZipFile(path) as archive:
        return {
            info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()
        }


def _load(files: dict[str, bytes], name: str, report: Report) -> Any:
    if name not in files:
        report.fail(f"{name}: missing from the bundle")
        return None
    try:
        return json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        report.fail(f"{name}: not valid UTF-8 JSON ({exc})")
        return None


def check_manifest(files: dict[str, bytes], report: Report) -> None:
    manifest = _load(files, MANIFEST, report)
    if not isinstance(manifest, dict):
        if manifest is not None:
            report.fail(f"{MANIFEST}: not an object of path -> sha256")
        return
    for name in sorted(set(files) - set(manifest) - {MANIFEST}):
        report.fail(f"{name}: in the bundle but not listed in {MANIFEST}")
    for name, digest in sorted(manifest.items()):
        if name not in files:
            report.fail(f"{name}: listed in {MANIFEST} but missing from the bundle")
        elif sha256_hex(files[name]) != digest:
            report.fail(f"{name}: its sha256 differs from {MANIFEST} (the file was altered)")
    report.note(f"manifest: {len(manifest)} files, manifest sha256 {sha256_hex(files[MANIFEST])}")


def check_records(files: dict[str, bytes], report: Report) -> dict[tuple[str, str], str]:
    """Recompute every record's content hash; returns {(kind, id): recomputed hash}."""
    hashes: dict[tuple[str, str], str] = {}
    for name in sorted(n for n in files if n.startswith(RECORDS) and n.endswith(".json")):
        record = _load(files, name, report)
        if not isinstance(record, dict) or not isinstance(record.get("content"), dict):
            report.fail(f"{name}: not a record (an object with 'content')")
            continue
        try:
            recomputed = sha256_hex(canonical_json(record["content"]))
        except ValueError as exc:  # NaN or infinity: never in a canonical record
            report.fail(f"{name}: content has no canonical JSON form ({exc})")
            continue
        if recomputed != record.get("content_sha256"):
            report.fail(
                f"{name}: content_sha256 {record.get('content_sha256')} but its content hashes "
                f"to {recomputed}"
            )
        hashes[(str(record.get("kind")), str(record["content"].get("id")))] = recomputed
    report.note(f"records: {len(hashes)} re-hashed")
    return hashes


def check_signatures(
    files: dict[str, bytes], records: dict[tuple[str, str], str], report: Report
) -> None:
    signatures = _load(files, SIGNATURES, report)
    if signatures is None:
        return
    if not isinstance(signatures, list):
        report.fail(f"{SIGNATURES}: not a list")
        return
    for item in signatures:
        row = item.get("row", {}) if isinstance(item, dict) else {}
        key = (str(row.get("entity_type")), str(row.get("entity_id")))
        who = (
            f"signature {row.get('id')} ({row.get('meaning')} by {row.get('signer_username')} "
            f"at {row.get('signed_at')}) on {key[0]} {key[1]}"
        )
        if key not in records:
            report.fail(f"{SIGNATURES}: {who}: its record is not in the bundle")
            continue
        valid = records[key] == row.get("content_sha256")
        report.note(f"{who}: {'valid' if valid else 'INVALID (the record changed after signing)'}")
        if item.get("valid") is not valid:
            report.fail(
                f"{SIGNATURES}: {who}: the bundle states valid={item.get('valid')}, "
                f"recomputed valid={valid}"
            )


def check_audit(files: dict[str, bytes], report: Report) -> None:
    segment = _load(files, CHAIN_SEGMENT, report)
    if segment is None:
        return
    events = segment.get("events") if isinstance(segment, dict) else None
    if not isinstance(events, list):
        report.fail(f"{CHAIN_SEGMENT}: no 'events' list")
        return
    by_seq: dict[int, dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    for event in events:
        if not isinstance(event, dict) or any(k not in event for k in (*AUDIT_FIELDS, "hash")):
            report.fail(f"{CHAIN_SEGMENT}: an event lacks fields: {event!r:.200}")
            return
        seq = event["seq"]
        if previous is not None:
            if seq != previous["seq"] + 1:
                report.fail(
                    f"{CHAIN_SEGMENT}: event {seq} follows {previous['seq']} (an event is "
                    "missing or inserted)"
                )
            if event["prev_hash"] != previous["hash"]:
                report.fail(f"{CHAIN_SEGMENT}: event {seq}: prev_hash does not link to {seq - 1}")
        if event_hash(event) != event["hash"]:
            report.fail(f"{CHAIN_SEGMENT}: event {seq}: its fields do not hash to its hash")
        if event.get("state_sha256") is not None and event["state_sha256"] != sha256_hex(
            canonical_json(event.get("state"))
        ):
            report.fail(f"{CHAIN_SEGMENT}: event {seq}: its state does not hash to state_sha256")
        by_seq[seq] = event
        previous = event
    if events:
        first, last = events[0], events[-1]
        if segment.get("first_seq") != first["seq"] or segment.get("last_seq") != last["seq"]:
            report.fail(f"{CHAIN_SEGMENT}: first_seq/last_seq do not match its events")
        report.note(
            f"audit chain segment: events {first['seq']}..{last['seq']}; the first links to "
            f"prev_hash {first['prev_hash']}, the last hashes to {last['hash']} (compare both "
            "with the registry's chain)"
        )
    concerned = _load(files, AUDIT_EVENTS, report)
    if concerned is None:
        return
    if not isinstance(concerned, list):
        report.fail(f"{AUDIT_EVENTS}: not a list")
        return
    for event in concerned:
        seq = event.get("seq") if isinstance(event, dict) else None
        if not isinstance(seq, int) or seq not in by_seq:
            report.fail(f"{AUDIT_EVENTS}: event {seq} is not in the chain segment")
        elif event != by_seq[seq]:
            report.fail(f"{AUDIT_EVENTS}: event {seq} differs from the chain segment's")
    report.note(f"audit events concerned: {len(concerned)}")
    check_checkpoints(files, by_seq, events[-1]["seq"] if events else None, report)


def _signed_payload(cp: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers (app/services/checkpoints.py)."""
    return canonical_json(
        {k: cp.get(k) for k in ("seq", "hash", "signed_at", "key_id", "kind", "rows")}
    )


def check_checkpoints(
    files: dict[str, bytes], by_seq: dict[int, dict[str, Any]], last: int | None, report: Report
) -> None:
    if CHECKPOINTS not in files:  # bundles of registries before signed checkpoints
        report.note(f"{CHECKPOINTS}: absent: the chain segment is not anchored by a signature")
        return
    signed = _load(files, CHECKPOINTS, report)
    if not isinstance(signed, dict) or not isinstance(signed.get("checkpoints"), list):
        report.fail(f"{CHECKPOINTS}: not an object with a 'checkpoints' list")
        return
    if not signed["checkpoints"]:
        report.note(
            f"{CHECKPOINTS}: no signed checkpoint (no signing key configured): the chain "
            "segment is not anchored; compare its hashes with the live chain"
        )
        return
    try:
        public = base64.b64decode(str(signed.get("public_key")), validate=True)
    except ValueError:
        report.fail(f"{CHECKPOINTS}: public_key is not base64")
        return
    key_id = hashlib.sha256(public).hexdigest()[:16]
    if key_id != signed.get("key_id"):
        report.fail(f"{CHECKPOINTS}: key_id {signed.get('key_id')} is not its public key's")
    anchored = None
    for cp in signed["checkpoints"]:
        seq = cp.get("seq") if isinstance(cp, dict) else None
        if not isinstance(seq, int):
            report.fail(f"{CHECKPOINTS}: a checkpoint without a seq: {cp!r:.200}")
            continue
        try:
            signature = base64.b64decode(str(cp.get("signature")), validate=True)
        except ValueError:
            signature = b""
        if cp.get("key_id") != key_id or not ed25519_verify(public, _signed_payload(cp), signature):
            report.fail(f"{CHECKPOINTS}: checkpoint {seq}: its signature does not verify")
            continue
        event = by_seq.get(seq)
        if event is None:
            report.fail(f"{CHECKPOINTS}: checkpoint {seq} is outside the chain segment")
        elif event["hash"] != cp.get("hash"):
            report.fail(
                f"{CHECKPOINTS}: checkpoint {seq}: the segment's event {seq} does not have the "
                "signed hash (the segment was rewritten)"
            )
        else:
            anchored = seq if anchored is None else max(anchored, seq)
    if anchored is None:
        report.note(f"{CHECKPOINTS}: no checkpoint verified: the chain segment is not anchored")
    else:
        tail = "" if anchored == last else f" (events after {anchored} are not signed)"
        report.note(
            f"signed checkpoints: the segment is anchored at event {anchored} by key id "
            f"{key_id}{tail}: compare that id with the one the registry's operator publishes"
        )


def verify(files: dict[str, bytes]) -> Report:
    report = Report()
    check_manifest(files, report)
    records = check_records(files, report)
    check_signatures(files, records, report)
    check_audit(files, report)
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python verify.py <bundle.zip | extracted directory>", file=sys.stderr)
        return 2
    try:
        files = read_bundle(Path(argv[1]))
    except (OSError, zipfile.BadZipFile) as exc:
        print(f"cannot read the bundle {argv[1]}: {exc}", file=sys.stderr)
        return 2
    report = verify(files)
    for line in report.notes:
        print(f"  {line}")
    for line in report.failures:
        print(f"FAIL {line}")
    if report.failures:
        print(f"bundle NOT verified: {len(report.failures)} check(s) failed")
        return 1
    print("bundle verified: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
