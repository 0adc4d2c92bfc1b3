"""The ssreg command against an embedded SQLite file."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import app
from app.db.session import dispose_engines, get_engine
from app.enums import Role
from app.settings import get_settings
from app.store import get_store

runner = CliRunner()
CACHES = (get_settings, get_store)


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(tmp_path / "store"))
    dispose_engines()
    for cached in CACHES:
        cached.cache_clear()
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    yield tmp_path
    dispose_engines()
    for cached in CACHES:
        cached.cache_clear()


def test_bootstrap_admin_then_verify_the_chain(embedded: Path) -> None:
    result = runner.invoke(
        app,
        [
            "user",
            "create",
            "--username",
            "alice",
            "--role",
            "admin",
            "--full-name",
            "Alice Admin",
            "--password",
            "a long admin password",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "created admin 'alice'" in result.output
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0
    assert "audit chain valid: 1 events" in result.output


def test_service_account_key_is_printed_once(embedded: Path) -> None:
    result = runner.invoke(
        app, ["user", "create", "--username", "opc", "--role", "plant", "--full-name", "OPC"]
    )
    assert result.exit_code == 0, result.output
    assert "API key (shown once" in result.output


def test_audit_verify_fails_on_a_tampered_chain(embedded: Path) -> None:
    runner.invoke(
        app,
        [
            "user",
            "create",
            "--username",
            "bob",
            "--role",
            "qa",
            "--full-name",
            "Bob",
            "--password",
            "another long password",
        ],
    )
    with get_engine().begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET actor = 'mallory'"))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "BROKEN at seq 1" in result.output


def test_store_fsck_reports_unreferenced_and_missing(embedded: Path) -> None:
    store = get_store()
    stray, _ = store.put(b"left behind")
    result = runner.invoke(app, ["store", "fsck"])
    assert result.exit_code == 0, result.output
    assert "unreferenced: 1" in result.output
    assert stray in result.output


def test_seed_prints_where_the_demo_logins_are_and_not_the_secrets(embedded: Path) -> None:
    where = embedded / "private" / "creds.txt"
    first = runner.invoke(app, ["seed", "--credentials-file", str(where)])
    assert first.exit_code == 0, first.output
    assert where.stat().st_mode & 0o777 == 0o600
    logins = dict(line.split("\t") for line in where.read_text().splitlines())
    assert set(logins) >= {"demo-admin", "demo-qa", "demo-developer", "demo-plant"}
    again = runner.invoke(app, ["seed", "--credentials-file", str(where)])
    assert again.exit_code == 0, again.output
    assert "already seeded" in again.output
    for output in (first.output, again.output):
        assert f"are in {where} (mode 600)" in output
        for secret in logins.values():
            assert secret not in output
    assert "demo-qa" in first.output  # the user names are shown


def test_store_fsck_reports_a_write_killed_by_sigkill_and_collect_removes_it(
    embedded: Path,
) -> None:
    """kill -9 during a store write leaves its temporary file: fsck lists it (and what the
    killed writer finished, unreferenced), ``--collect`` keeps both within the grace period,
    removes them with ``--grace 0``, says what it removed and audits it."""
    from tests.store.test_collect import _kill_mid_write

    store = get_store()
    left = _kill_mid_write(store.root)
    finished = list(store.digests())
    result = runner.invoke(app, ["store", "fsck"])
    assert result.exit_code == 0, result.output
    assert f"temporary: {len(left)}" in result.output
    for tmp in left:
        assert str(tmp.relative_to(store.root)) in result.output
    assert f"unreferenced: {len(finished)}" in result.output

    result = runner.invoke(app, ["store", "fsck", "--collect"])  # default grace: an hour
    assert result.exit_code == 0, result.output
    assert "removed 0 temporary file(s) and 0 unreferenced artifact(s)" in result.output
    assert all(tmp.exists() for tmp in left)

    result = runner.invoke(app, ["store", "fsck", "--collect", "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert (
        f"removed {len(left)} temporary file(s) and {len(finished)} unreferenced" in result.output
    )
    for tmp in left:
        assert f"removed temporary {tmp.relative_to(store.root)}" in result.output
    for digest in finished:
        assert f"removed unreferenced {digest}" in result.output
    assert "audited: store.collect" in result.output
    assert not any(tmp.exists() for tmp in left)
    after = runner.invoke(app, ["store", "fsck"])
    assert "temporary: 0" in after.output
    assert "unreferenced: 0" in after.output
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0


def test_store_fsck_does_not_collect_when_an_artifact_is_missing(embedded: Path) -> None:
    from tests.committed import committed_registry

    store = get_store()
    _, sha = committed_registry(get_engine(), store)
    store.path(sha).unlink()
    stray, _ = store.put(b"left behind")
    result = runner.invoke(app, ["store", "fsck", "--collect", "--grace", "0"])
    assert result.exit_code == 1
    assert "missing: 1" in result.output
    assert "not collecting" in result.output
    assert store.exists(stray)


def test_a_failing_seed_commits_nothing_and_leaves_no_artifact(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's unit of work rolls back like a request's: rows and stored files both go."""
    import app.services.seed as seed_module

    def fail_at_the_end(*args: object, **kwargs: object) -> str:
        raise RuntimeError("simulated failure after the datasets and v1 were stored")

    monkeypatch.setattr(seed_module, "_seed_transfer", fail_at_the_end)
    result = runner.invoke(app, ["seed", "--credentials-file", str(embedded / "creds.txt")])
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    assert list(get_store().digests()) == []
    with get_engine().connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM app_user")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one() == 0
    assert not (embedded / "creds.txt").exists()


def test_lifecycle_run_records_passed_review_dates_once(embedded: Path) -> None:
    from app.db.session import unit_of_work
    from app.schemas.signatures import SignatureCreate
    from app.services import auth, signatures
    from tests.committed import committed_registry

    dev, _ = committed_registry(get_engine(), get_store(), model_names=("m",), train=True)
    with unit_of_work() as session:
        qa = auth.create_user(
            session,
            username="qa",
            full_name="QA",
            role=Role.qa,
            password="another long password",
            actor="pytest",
            reason="t",
        ).user
        for user, password, meaning in (
            (dev, "long enough password", "authored"),
            (qa, "another long password", "approved"),
        ):
            signer = session.merge(user)
            data = SignatureCreate(
                meaning=meaning, username=signer.username, password=password, comment="ok"
            )
            assert signatures.sign_version(session, "m", 1, data=data, actor=signer) is not None
    result = runner.invoke(app, ["lifecycle", "run"])
    assert result.exit_code == 0, result.output
    assert "0 version(s) made requalification_due" in result.output
    with get_engine().begin() as conn:
        conn.execute(text("UPDATE model_version SET review_due_at = '2026-01-01 00:00:00.000000'"))
    result = runner.invoke(app, ["lifecycle", "run"])
    assert result.exit_code == 0, result.output
    assert "m v1: approved -> requalification_due (periodic review date 2026-01-01" in result.output
    assert "1 version(s) made requalification_due" in result.output
    again = runner.invoke(app, ["lifecycle", "run"])
    assert "0 version(s) made requalification_due" in again.output
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0


def test_sample_request_writes_a_body_the_demo_alias_answers(tmp_path: Path) -> None:
    """The README's first prediction: the body ssreg sample-request writes is read by the
    predict parser of a 701-channel model and carries its sample ids and purpose."""
    import json

    from app.services.spectra_bodies import parse_json_body

    out = tmp_path / "body.json"
    result = CliRunner().invoke(app, ["sample-request", "--out", str(out), "--n", "4"])
    assert result.exit_code == 0, result.output
    assert result.output.count("simulated reference") == 4
    body = json.loads(out.read_text())
    assert body["purpose"] == "monitoring"
    assert len(body["sample_ids"]) == 4
    axis = np.asarray(body["axis"])
    parsed = parse_json_body(
        out.read_bytes(), n_channels=axis.size, axis=axis, prefix="wn_", max_rows=10
    )
    assert parsed.spectra.shape == (4, axis.size)
    assert parsed.sample_ids == body["sample_ids"]
    bad = CliRunner().invoke(app, ["sample-request", "--out", str(out), "--purpose", "x"])
    assert bad.exit_code != 0


def test_keygen_then_verify_anchored_and_a_rewound_chain_fails(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = embedded / "keys" / "audit.pem"
    result = runner.invoke(app, ["audit", "keygen", str(key)])
    assert result.exit_code == 0, result.output
    assert "public key (base64, raw Ed25519)" in result.output
    assert runner.invoke(app, ["audit", "keygen", str(key)]).exit_code == 1  # never overwrites
    monkeypatch.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(key))
    get_settings.cache_clear()
    for name in ("carol", "dave"):
        create = ["user", "create", "--username", name, "--role", "qa", "--full-name", name]
        result = runner.invoke(app, [*create, "--password", "a long enough password"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["audit", "checkpoint"])
    assert "sealed the audit chain at seq 2" in result.output, result.output
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "from the checkpoint at seq 2" in result.output
    assert "records reconciled" in result.output
    with get_engine().begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        conn.execute(text("DROP TRIGGER audit_head_guard_update"))
        conn.execute(text("DROP TRIGGER audit_checkpoint_no_delete"))
        conn.execute(text("DELETE FROM audit_checkpoint"))
        conn.execute(text("DELETE FROM audit_event WHERE seq = 2"))
        conn.execute(text("UPDATE audit_head SET seq = 1, hash = (SELECT hash FROM audit_event)"))
    for args in (["audit", "verify"], ["audit", "verify", "--full"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "rewound" in result.output
        assert "user app_user" not in result.output


def test_fsck_reports_a_version_repointed_at_another_artifact(embedded: Path) -> None:
    from app.db.session import unit_of_work
    from app.services.seed import seed_demo

    with unit_of_work() as session:
        seed_demo(session, get_store())
    assert runner.invoke(app, ["store", "fsck"]).exit_code == 0
    with get_engine().begin() as conn:
        conn.execute(text("DROP TRIGGER model_version_guard_update"))
        conn.execute(
            text(
                "UPDATE model_version SET artifact_sha256 = (SELECT artifact_sha256 FROM "
                "model_version WHERE version = 2) WHERE version = 1"
            )
        )
    result = runner.invoke(app, ["store", "fsck"])
    assert result.exit_code == 1
    assert "repointed: 1" in result.output
    assert "artifact_sha256" in result.output
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "artifact_sha256" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owner-password", "x", "--owner-password-file", "{dir}/owner"], "given twice"),
        (["--owner-password-file", "{dir}/empty"], "is empty"),
        (["--runtime-password-file", "{dir}/absent"], "cannot read --runtime-password"),
        (
            ["--admin-url", "postgresql://postgres:inline@127.0.0.1:1/postgres"],
            "--admin-url carries a password and --admin-password-file too",
        ),
    ],
)
def test_db_roles_refuses_a_password_file_it_cannot_use(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Before it connects anywhere (port 1: nothing listens)."""
    (tmp_path / "owner").write_text("owner\n")
    (tmp_path / "runtime").write_text("runtime\n")
    (tmp_path / "admin").write_text("admin\n")
    (tmp_path / "empty").write_text("\n")
    given = [a.format(dir=tmp_path) for a in args]
    defaults = {
        "--admin-url": "postgresql://postgres@127.0.0.1:1/postgres",
        "--admin-password-file": str(tmp_path / "admin"),
        "--owner-password-file": str(tmp_path / "owner"),
        "--runtime-password-file": str(tmp_path / "runtime"),
    }
    rest = [w for name, value in defaults.items() if name not in given for w in (name, value)]
    result = runner.invoke(app, ["db", "roles", *given, *rest])
    assert result.exit_code == 1, result.output
    assert message in result.output


def test_verify_full_record_then_verify_reconciles_from_the_recorded_run(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = embedded / "keys" / "audit.pem"
    assert runner.invoke(app, ["audit", "keygen", str(key)]).exit_code == 0
    monkeypatch.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(key))
    get_settings.cache_clear()
    create = ["user", "create", "--username", "erin", "--role", "qa", "--full-name", "Erin"]
    assert runner.invoke(app, [*create, "--password", "a long enough password"]).exit_code == 0
    assert runner.invoke(app, ["audit", "verify", "--record"]).exit_code == 2  # needs --full
    result = runner.invoke(app, ["audit", "verify", "--full", "--record"])
    assert result.exit_code == 0, result.output
    assert "records reconciled: 1 rows match their audited state (all rows)" in result.output
    assert "recorded: audit.reconcile event 2, sealed with key" in result.output
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "last recorded full reconciliation: event 2" in result.output
    assert "(head seq 1), 1 rows, clean" in result.output
    assert "rows written after seq 1" in result.output
    assert "not checked: rows that no event after seq 1 wrote" in result.output
