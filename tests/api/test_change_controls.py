"""Change controls through HTTP: the list, everything under a reference, and the export bundle
checked by its own verifier (a subprocess, standard library only). Both databases."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, Domain
from app.enums import Role, SignatureMeaning, VersionStatus
from app.services import audit, bundle_verifier, checkpoints
from app.services.canonical import record_sha256, sha256_hex
from app.settings import get_settings
from app.store import LocalStore
from tests.change_control_factories import (
    add_alias_move,
    add_domain_event,
    add_lifecycle_event,
    add_signature,
    small_transfer,
    transfer_row,
    version_row,
)
from tests.helpers import Actor, assert_error

REF = "CC-2026-0042"


@pytest.fixture
def under_cc(client: TestClient, session: Session, actors: dict[Role, Actor]) -> dict[str, Any]:
    """Transfer #1 under REF (v1 -> v2), reviewed and approved by QA, v2 requalified, alias
    plant-2000L -> v2, a probe replacement on the plant domain; an unrelated reference."""
    dev, qa = actors[Role.developer].user, actors[Role.qa].user
    made = small_transfer(client, actors[Role.developer].headers, change_control=REF)
    transfer = transfer_row(session, made["transfer"]["number"])
    v1, v2 = version_row(session, made["v1"]["id"]), version_row(session, made["v2"]["id"])
    authored = add_signature(session, dev, transfer, meaning=SignatureMeaning.authored)
    reviewed = add_signature(session, qa, transfer, change_control=REF)
    approved = add_signature(session, qa, v2, meaning=SignatureMeaning.approved, change_control=REF)
    lifecycle = add_lifecycle_event(
        session,
        qa,
        v2,
        to_status=VersionStatus.requalified,
        change_control=REF,
        signature=approved,
    )
    move = add_alias_move(session, qa, v2, alias="plant-2000L", change_control=REF)
    plant = session.scalars(select(Domain).where(Domain.name == "cc-plant")).one()
    probe = add_domain_event(session, qa, plant.id, change_control=REF)
    add_domain_event(session, qa, plant.id, change_control="CC-OTHER")
    session.flush()
    return {
        **made,
        "transfer_row": transfer,
        "v1_row": v1,
        "v2_row": v2,
        "signatures": [authored, reviewed, approved],
        "lifecycle": lifecycle,
        "move": move,
        "probe": probe,
    }


def _qa(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.qa].headers


# --------------------------------------------------------------------------------------------
# The list
# --------------------------------------------------------------------------------------------


def test_the_list_counts_every_kind_per_reference_newest_activity_first(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    r = client.get("/api/v1/change-controls", headers=_qa(actors))
    assert r.status_code == 200, r.text
    rows = {row["ref"]: row for row in r.json()}
    assert set(rows) == {REF, "CC-OTHER"}
    assert rows[REF]["counts"] == {
        "transfers": 1,
        "signatures": 2,  # the authored signature carries no reference
        "lifecycle_events": 1,
        "alias_moves": 1,
        "domain_events": 1,
    }
    assert rows["CC-OTHER"]["counts"]["domain_events"] == 1
    assert rows["CC-OTHER"]["counts"]["transfers"] == 0
    # CC-OTHER's domain event was recorded last.
    assert [row["ref"] for row in r.json()] == ["CC-OTHER", REF]
    assert rows[REF]["first_at"] == under_cc["transfer"]["governance"]["created_at"]
    assert rows[REF]["first_at"] < rows[REF]["last_at"]


def test_the_list_pages_with_a_link_header(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    first = client.get("/api/v1/change-controls?limit=1", headers=_qa(actors))
    assert [row["ref"] for row in first.json()] == ["CC-OTHER"]
    link = first.headers["Link"]
    assert link.endswith('; rel="next"')
    url = link[1 : link.index(">")]
    second = client.get(url, headers=_qa(actors))
    assert second.status_code == 200, second.text
    assert [row["ref"] for row in second.json()] == [REF]
    assert "Link" not in second.headers


def test_the_link_header_does_not_echo_the_request_host(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    headers = {**_qa(actors), "Host": "evil.example"}
    first = client.get("/api/v1/change-controls?limit=1", headers=headers)
    assert first.status_code == 200, first.text
    assert "evil.example" not in first.headers["Link"]
    assert first.headers["Link"].startswith("<http://127.0.0.1:8000/api/v1/change-controls?")


def test_the_list_refuses_an_unknown_query_parameter_and_a_forged_cursor(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert_error(
        client.get("/api/v1/change-controls?ref=CC-1", headers=_qa(actors)),
        422,
        "'ref'",
        "cursor, limit",
    )
    assert_error(
        client.get("/api/v1/change-controls?cursor=bm9wZQ", headers=_qa(actors)),
        422,
        "cursor",
    )


# --------------------------------------------------------------------------------------------
# Everything under a reference
# --------------------------------------------------------------------------------------------


def test_the_detail_holds_every_record_signature_event_and_their_audit_events(
    client: TestClient, session: Session, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    r = client.get(f"/api/v1/change-controls/{REF}", headers=_qa(actors))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ref"] == REF
    assert [t["number"] for t in body["transfers"]] == [under_cc["transfer"]["number"]]
    now = client.get(f"/api/v1/transfers/{under_cc['transfer']['number']}", headers=_qa(actors))
    assert body["transfers"][0] == now.json()  # the record, as GET /transfers shows it now
    assert [(v["model_name"], v["version"]) for v in body["versions"]] == [
        ("cc_pls", 1),
        ("cc_pls", 2),
    ]
    assert body["versions"][1]["kind"] == "transferred"
    # All three signatures: two carry the reference, the authored one is on the transfer.
    assert [s["id"] for s in body["signatures"]] == [str(s.id) for s in under_cc["signatures"]]
    assert all(s["valid"] for s in body["signatures"])
    assert body["signatures"][0]["record"] == "transfer #1"
    assert body["signatures"][2]["record"] == "cc_pls v2"
    assert [e["id"] for e in body["lifecycle_events"]] == [str(under_cc["lifecycle"].id)]
    assert body["lifecycle_events"][0]["version"] == "cc_pls v2"
    assert body["alias_moves"][0]["alias"] == "plant-2000L"
    assert body["alias_moves"][0]["version"] == 2
    assert [e["id"] for e in body["domain_events"]] == [str(under_cc["probe"].id)]
    assert body["domain_events"][0]["domain"] == "cc-plant"

    seqs = [e["seq"] for e in body["audit_events"]]
    assert seqs == sorted(seqs)
    about = {(e["entity_type"], e["entity_id"], e["action"]) for e in body["audit_events"]}
    transfer_id = under_cc["transfer"]["id"]
    assert ("transfer", transfer_id, "transfer.open") in about
    assert ("transfer", transfer_id, "transfer.complete") in about
    assert ("model_version", under_cc["v2"]["id"], "model_version.transition") in about
    assert ("model_version", under_cc["v1"]["id"], "model_version.create") in about
    assert ("alias", str(under_cc["move"].id), "alias.move") in about
    assert ("domain_event", str(under_cc["probe"].id), "domain.event") in about
    assert {("signature", str(s.id), "signature.sign") for s in under_cc["signatures"]} <= about
    assert any(a == "dataset.register" for _, _, a in about)  # the datasets the records pin
    # Nothing of the other reference.
    other = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "domain.event").order_by(AuditEvent.seq)
    ).all()[-1]
    assert other.seq not in seqs


def test_an_audit_event_naming_the_reference_is_included_a_lookalike_is_not(
    client: TestClient, session: Session, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    qa = actors[Role.qa].user
    named = audit.record(
        session,
        actor=qa,
        action="user.scope",
        entity_type="user",
        entity_id=qa.id,
        reason=f"scope widened under {REF}.",
        after={"note": "x"},
    )
    valued = audit.record(
        session,
        actor=qa,
        action="user.scope",
        entity_type="user",
        entity_id=qa.id,
        reason="r",
        after={"refs": [REF]},
    )
    lookalike = audit.record(
        session,
        actor=qa,
        action="user.scope",
        entity_type="user",
        entity_id=qa.id,
        reason=f"see {REF}1",
        after={"ref": f"{REF}-b"},
    )
    session.flush()
    body = client.get(f"/api/v1/change-controls/{REF}", headers=_qa(actors)).json()
    seqs = {e["seq"] for e in body["audit_events"]}
    assert named.seq in seqs
    assert valued.seq in seqs
    assert lookalike.seq not in seqs


def test_a_signature_on_a_record_altered_since_is_shown_invalid(
    client: TestClient, session: Session, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    stale = add_signature(
        session,
        actors[Role.qa].user,
        under_cc["v2_row"],
        content_sha256="0" * 64,
        change_control=REF,
    )
    session.flush()
    body = client.get(f"/api/v1/change-controls/{REF}", headers=_qa(actors)).json()
    validity = {s["id"]: s["valid"] for s in body["signatures"]}
    assert validity[str(stale.id)] is False
    assert sum(validity.values()) == 3


def test_an_unused_reference_is_a_404(client: TestClient, actors: dict[Role, Actor]) -> None:
    assert_error(
        client.get("/api/v1/change-controls/CC-NONE", headers=_qa(actors)), 404, "'CC-NONE'"
    )
    assert_error(
        client.get("/api/v1/change-controls/CC-NONE/export", headers=_qa(actors)), 404, "CC-NONE"
    )


def test_a_reference_with_a_slash_is_reachable(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    small_transfer(client, actors[Role.developer].headers, change_control="QA/CC 7")
    r = client.get("/api/v1/change-controls/QA%2FCC%207", headers=_qa(actors))
    assert r.status_code == 200, r.text
    assert r.json()["ref"] == "QA/CC 7"
    export = client.get("/api/v1/change-controls/QA%2FCC%207/export", headers=_qa(actors))
    assert export.status_code == 200, export.text
    assert 'filename="change-control-QA_CC_7.zip"' in export.headers["Content-Disposition"]


@pytest.mark.parametrize("role", [Role.developer, Role.plant])
def test_developers_and_plant_keys_may_not_read_change_controls(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], role: Role
) -> None:
    headers = actors[role].headers
    for path in ("", f"/{REF}", f"/{REF}/export"):
        assert_error(client.get(f"/api/v1/change-controls{path}", headers=headers), 403)


# --------------------------------------------------------------------------------------------
# The export bundle and its verifier
# --------------------------------------------------------------------------------------------


def _export(client: TestClient, actors: dict[Role, Actor], ref: str = REF) -> Any:
    r = client.get(f"/api/v1/change-controls/{ref}/export", headers=_qa(actors))
    assert r.status_code == 200, r.text
    return r


def _files(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _run_verifier(bundle: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The bundle's own verify.py, run in isolated mode (no app on the path)."""
    verifier = cwd / "verify.py"
    if not verifier.exists():  # a zip's own copy; an extracted bundle: the auditor's copy
        source = (
            Path(bundle_verifier.__file__).read_bytes()
            if bundle.is_dir()
            else _files(bundle.read_bytes())["verify.py"]
        )
        verifier.write_bytes(source)
    return subprocess.run(
        [sys.executable, "-I", str(verifier), str(bundle)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _extract(blob: bytes, where: Path) -> Path:
    where.mkdir()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        archive.extractall(where)
    return where


def _write_manifest(bundle: Path) -> None:
    """What a forger does: recompute the manifest over the altered files."""
    manifest = {
        p.relative_to(bundle).as_posix(): sha256_hex_bytes(p.read_bytes())
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (bundle / "manifest.json").write_bytes(bundle_verifier.canonical_json(manifest))


def sha256_hex_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def test_the_export_is_a_deterministic_zip_with_every_part(
    client: TestClient, session: Session, actors: dict[Role, Actor], under_cc: dict[str, Any]
) -> None:
    r = _export(client, actors)
    assert r.headers["content-type"] == "application/zip"
    assert (
        r.headers["Content-Disposition"] == 'attachment; filename="change-control-CC-2026-0042.zip"'
    )
    files = _files(r.content)
    assert sorted(files) == sorted(
        [
            "alias_moves.json",
            "audit/chain_segment.json",
            "audit/checkpoints.json",
            "audit/events.json",
            "domain_events.json",
            "hashes.json",
            "lifecycle_events.json",
            "manifest.json",
            "records/transfers/1.json",
            "records/versions/cc_pls-v1.json",
            "records/versions/cc_pls-v2.json",
            "report.html",
            "signatures.json",
            "verify.py",
        ]
    )
    assert r.headers["X-Manifest-SHA256"] == sha256_hex_bytes(files["manifest.json"])
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(files) - {"manifest.json"}
    assert files["verify.py"] == Path(bundle_verifier.__file__).read_bytes()

    transfer = json.loads(files["records/transfers/1.json"])
    assert transfer["content_sha256"] == record_sha256(under_cc["transfer_row"])
    assert transfer["content"]["change_control"] == REF
    v2 = json.loads(files["records/versions/cc_pls-v2.json"])
    assert v2["content_sha256"] == record_sha256(under_cc["v2_row"])
    assert "status" not in v2["content"]
    assert v2["lifecycle"]["status"] == "pending_requalification"

    hashes = json.loads(files["hashes.json"])
    shas = {d["sha256"] for d in hashes["datasets"]}
    assert under_cc["transfer"]["transfer"]["target_standards_dataset_sha256"] in shas
    assert len(shas) == 2  # training data and target standards
    assert {a["sha256"] for a in hashes["artifacts"]} >= {
        under_cc["v1"]["artifact_sha256"],
        under_cc["v2"]["artifact_sha256"],
    }
    segment = json.loads(files["audit/chain_segment.json"])
    events = json.loads(files["audit/events.json"])
    assert segment["first_seq"] == events[0]["seq"]
    assert segment["last_seq"] == events[-1]["seq"]
    assert [e["seq"] for e in segment["events"]] == list(
        range(segment["first_seq"], segment["last_seq"] + 1)
    )
    report = files["report.html"].decode()
    assert "Change control CC-2026-0042" in report
    assert "transfer #1" in report

    again = _export(client, actors)
    assert again.content == r.content  # the same state, the same bytes


def test_the_bundle_passes_its_own_verifier(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(_export(client, actors).content)
    done = _run_verifier(bundle, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundle verified" in done.stdout
    assert done.stdout.count(": valid") == 3
    # Extracted, too.
    extracted = _extract(bundle.read_bytes(), tmp_path / "x")
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_signature_invalid_at_export_is_reported_not_a_bundle_failure(
    client: TestClient,
    session: Session,
    actors: dict[Role, Actor],
    under_cc: dict[str, Any],
    tmp_path: Path,
) -> None:
    add_signature(session, actors[Role.qa].user, under_cc["v2_row"], content_sha256="0" * 64)
    session.flush()
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(_export(client, actors).content)
    done = _run_verifier(bundle, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INVALID (the record changed after signing)" in done.stdout
    assert done.stdout.count(": valid") == 3
    report = _files(bundle.read_bytes())["report.html"].decode()
    assert report.count("INVALID: the record changed after signing") == 1


@pytest.mark.parametrize(
    "name", ["records/transfers/1.json", "signatures.json", "report.html", "verify.py"]
)
def test_one_changed_byte_fails_the_bundle_naming_the_file(
    client: TestClient,
    actors: dict[Role, Actor],
    under_cc: dict[str, Any],
    tmp_path: Path,
    name: str,
) -> None:
    extracted = _extract(_export(client, actors).content, tmp_path / "bundle")
    target = extracted / name
    blob = bytearray(target.read_bytes())
    position = len(blob) // 2
    blob[position] = ord("0") if blob[position] != ord("0") else ord("1")
    target.write_bytes(bytes(blob))
    verifier = tmp_path / "verify.py"
    verifier.write_bytes(Path(bundle_verifier.__file__).read_bytes())  # the auditor's own copy
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"FAIL {name}: its sha256 differs from manifest.json" in done.stdout


def test_a_changed_zip_byte_fails(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], tmp_path: Path
) -> None:
    blob = _export(client, actors).content
    files = _files(blob)
    original = files["records/versions/cc_pls-v2.json"]
    forged = original.replace(b'"monitoring"', b'"release"', 1)
    assert forged != original
    files["records/versions/cc_pls-v2.json"] = forged
    bundle = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    done = _run_verifier(bundle, tmp_path)
    assert done.returncode == 1
    assert "FAIL records/versions/cc_pls-v2.json: its sha256 differs" in done.stdout
    assert "content_sha256" in done.stdout  # and the record no longer hashes to its own hash


def test_an_edited_chain_event_fails_even_with_a_recomputed_manifest(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], tmp_path: Path
) -> None:
    extracted = _extract(_export(client, actors).content, tmp_path / "bundle")
    path = extracted / "audit" / "chain_segment.json"
    segment = json.loads(path.read_bytes())
    segment["events"][1]["reason"] = "nothing to see here"
    path.write_bytes(bundle_verifier.canonical_json(segment))
    _write_manifest(extracted)
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 1, done.stdout
    seq = segment["events"][1]["seq"]
    assert f"FAIL audit/chain_segment.json: event {seq}: its fields do not hash" in done.stdout


def test_a_consistent_forgery_of_a_record_passes_but_its_signatures_turn_invalid(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], tmp_path: Path
) -> None:
    """What the verifier cannot detect without a key outside the bundle: a record rewritten
    with its content hash and the manifest recomputed. The signatures still bind the old
    hash, so a forger must rewrite them too (and then the bundle passes: README)."""
    extracted = _extract(_export(client, actors).content, tmp_path / "bundle")
    path = extracted / "records" / "transfers" / "1.json"
    record = json.loads(path.read_bytes())
    record["content"]["reason"] = "rewritten"
    record["content_sha256"] = sha256_hex(record["content"])
    path.write_bytes(bundle_verifier.canonical_json(record))
    _write_manifest(extracted)
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 1, done.stdout
    assert "the bundle states valid=True, recomputed valid=False" in done.stdout
    # ... and once the signatures' validity is rewritten as well, nothing is left to catch it.
    sigs_path = extracted / "signatures.json"
    signatures = json.loads(sigs_path.read_bytes())
    for item in signatures:
        if item["record_file"] == "records/transfers/1.json":
            item["valid"] = False
    sigs_path.write_bytes(bundle_verifier.canonical_json(signatures))
    _write_manifest(extracted)
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "INVALID" in done.stdout


def test_a_corrupt_stored_artifact_refuses_the_export(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], store: LocalStore
) -> None:
    path = store.path(under_cc["v2"]["artifact_sha256"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"x")
    r = client.get(f"/api/v1/change-controls/{REF}/export", headers=_qa(actors))
    assert_error(r, 500, "corrupt", under_cc["v2"]["artifact_sha256"], code="integrity_failure")


def test_a_reference_carried_by_a_domain_event_alone_exports_and_verifies(
    client: TestClient, actors: dict[Role, Actor], under_cc: dict[str, Any], tmp_path: Path
) -> None:
    body = client.get("/api/v1/change-controls/CC-OTHER", headers=_qa(actors)).json()
    assert body["transfers"] == []
    assert body["versions"] == []
    assert [e["kind"] for e in body["domain_events"]] == ["probe_replaced"]
    assert [e["action"] for e in body["audit_events"]] == ["domain.event"]
    bundle = tmp_path / "other.zip"
    bundle.write_bytes(_export(client, actors, "CC-OTHER").content)
    files = _files(bundle.read_bytes())
    assert not any(name.startswith("records/") for name in files)
    assert json.loads(files["hashes.json"]) == {"datasets": [], "artifacts": []}
    done = _run_verifier(bundle, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "audit.key"
    checkpoints.keygen(path)
    monkeypatch.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_a_signed_bundle_is_anchored_and_a_recomputed_segment_fails_its_signature(
    signing_key: Path,
    client: TestClient,
    actors: dict[Role, Actor],
    under_cc: dict[str, Any],
    tmp_path: Path,
    session: Session,
) -> None:
    session.commit()  # the fixture's last events (written by factories) commit: signed
    extracted = _extract(_export(client, actors).content, tmp_path / "bundle")
    signed = json.loads((extracted / "audit" / "checkpoints.json").read_bytes())
    key = checkpoints.signing_key()
    assert key is not None
    assert signed["key_id"] == key.public.key_id
    segment_path = extracted / "audit" / "chain_segment.json"
    segment = json.loads(segment_path.read_bytes())
    assert segment["last_seq"] == signed["checkpoints"][-1]["seq"]  # the segment ends signed
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 0, done.stdout
    assert f"anchored at event {segment['last_seq']} by key id {key.public.key_id}" in done.stdout

    # The forger edits an event and recomputes every later hash and the manifest.
    events = segment["events"]
    events[1]["reason"] = "nothing to see here"
    for i in range(1, len(events)):
        events[i]["prev_hash"] = events[i - 1]["hash"]
        events[i]["hash"] = bundle_verifier.event_hash(events[i])
    segment_path.write_bytes(bundle_verifier.canonical_json(segment))
    concerned_path = extracted / "audit" / "events.json"
    by_seq = {e["seq"]: e for e in events}
    concerned = [by_seq[e["seq"]] for e in json.loads(concerned_path.read_bytes())]
    concerned_path.write_bytes(bundle_verifier.canonical_json(concerned))
    _write_manifest(extracted)
    done = _run_verifier(extracted, tmp_path)
    assert done.returncode == 1, done.stdout
    assert "does not have the signed hash (the segment was rewritten)" in done.stdout


def test_the_verifiers_ed25519_agrees_with_the_rfc_and_cryptography() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    # RFC 8032, section 7.1, TEST 1 (empty message).
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
        "39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert bundle_verifier.ed25519_verify(public, b"", signature)
    assert not bundle_verifier.ed25519_verify(public, b"x", signature)
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for n in (0, 1, 64, 1000):
        message = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        good = private.sign(message)
        assert bundle_verifier.ed25519_verify(raw, message, good)
        for i in (0, 31, 32, 63):
            bad = bytearray(good)
            bad[i] ^= 0x01
            assert not bundle_verifier.ed25519_verify(raw, message, bytes(bad))
