"""``ssreg backup`` / ``ssreg restore`` on SQLite and PostgreSQL: a restored system verifies and
passes fsck, and a backup that differs from its manifest in one byte is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import app
from app.db.session import dispose_engines, make_engine
from app.settings import get_settings
from app.store import LocalStore, get_store
from tests.committed import committed_registry
from tests.conftest import _drop_pg_database, _pg_database_url, fresh_database

runner = CliRunner()
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class System:
    url: str
    store: Path


def _use(monkeypatch: pytest.MonkeyPatch, system: System) -> None:
    """Point the CLI at ``system`` (fresh engines, settings and store)."""
    monkeypatch.setenv("REGISTRY_DATABASE_URL", system.url)
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(system.store))
    dispose_engines()
    get_settings.cache_clear()
    get_store.cache_clear()


def _rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            tables = ("app_user", "dataset", "model_version", "audit_event", "soft_sensor_model")
            return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
    finally:
        engine.dispose()


@pytest.fixture
def systems(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[System, System]]:
    """A populated system (a developer, a dataset, model m with v1 trained, one stray
    unreferenced artifact) and an empty one (database not even migrated) to restore into."""
    backend = request.param
    dropped: list[str] = []
    url, pg_name = fresh_database(backend, f"bk_src_{abs(hash(tmp_path)) % 10**8}", tmp_path)
    if pg_name:
        dropped.append(pg_name)
        target_name = f"{pg_name}_target"
        target_url = _pg_database_url(target_name)
        dropped.append(target_name)
    else:
        target_url = f"sqlite:///{tmp_path / 'restored.db'}"
    source = System(url, tmp_path / "store")
    engine = make_engine(url)
    committed_registry(engine, LocalStore(source.store), model_names=("m",), train=True)
    engine.dispose()
    LocalStore(source.store).put(b"an unreferenced leftover")
    try:
        yield source, System(target_url, tmp_path / "restored-store")
    finally:
        dispose_engines()
        get_settings.cache_clear()
        get_store.cache_clear()
        for name in dropped:
            _drop_pg_database(name)


def _backup(monkeypatch: pytest.MonkeyPatch, source: System, where: Path) -> str:
    _use(monkeypatch, source)
    result = runner.invoke(app, ["backup", str(where)])
    assert result.exit_code == 0, result.output
    assert "not copied: 1 unreferenced artifact(s)" in result.output
    return result.output.split("manifest.json sha256 ")[1].split()[0]


@pytest.mark.parametrize("systems", BACKENDS, indirect=True)
def test_a_restored_system_verifies_and_passes_fsck(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = systems
    where = tmp_path / "backup"
    manifest_sha = _backup(monkeypatch, source, where)
    manifest = json.loads((where / "manifest.json").read_text())
    assert manifest["store"]["artifacts"] == 2  # the dataset and v1's model
    stored = sorted(p for p in manifest["files"] if p.startswith("store/"))
    assert len(stored) == 2
    assert sorted(manifest["files"]) == sorted([manifest["database"]["file"], *stored])
    before = _rows(source.url)

    _use(monkeypatch, target)
    result = runner.invoke(app, ["restore", str(where), "--manifest-sha256", manifest_sha])
    assert result.exit_code == 0, result.output
    assert "audit chain valid" in result.output
    assert "0 missing, 0 corrupt, 0 unreferenced" in result.output
    after = _rows(target.url)
    assert after == before | {"audit_event": before["audit_event"] + 1}  # + backup.restore

    verify = runner.invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    assert f"audit chain valid: {after['audit_event']} events" in verify.output
    fsck = runner.invoke(app, ["store", "fsck"])
    assert fsck.exit_code == 0, fsck.output
    assert "checked 2 referenced artifacts" in fsck.output
    for line in ("missing: 0", "corrupt: 0", "unreferenced: 0", "temporary: 0"):
        assert line in fsck.output
    for digest in get_store().digests():
        assert get_store().get(digest) == LocalStore(source.store).get(digest)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("systems", BACKENDS, indirect=True)
@pytest.mark.parametrize("which", ["database", "artifact", "manifest"])
def test_a_backup_with_one_byte_changed_is_refused_and_nothing_restored(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    source, target = systems
    where = tmp_path / "backup"
    manifest_sha = _backup(monkeypatch, source, where)
    manifest = json.loads((where / "manifest.json").read_text())
    if which == "database":
        changed = manifest["database"]["file"]
    elif which == "artifact":
        changed = next(p for p in manifest["files"] if p.startswith("store/"))
    else:
        changed = "manifest.json"  # its created_at, say: caught by the sha256 kept apart
        raw = (where / changed).read_text()
        (where / changed).write_text(raw.replace(manifest["created_at"][:4], "1999", 1))
    if which != "manifest":
        _flip_a_byte(where / changed)

    _use(monkeypatch, target)
    result = runner.invoke(app, ["restore", str(where), "--manifest-sha256", manifest_sha])
    assert result.exit_code == 1
    assert "restore refused" in result.output
    if which == "manifest":
        assert "the manifest's sha256 is" in result.output
    else:
        assert f"{changed}: its sha256 differs from the manifest's" in result.output
    assert list(get_store().digests()) == []
    from app.db.backup import is_empty

    assert is_empty(target.url)


@pytest.mark.parametrize("systems", ["sqlite"], indirect=True)
def test_restore_refuses_an_added_or_missing_file_and_a_database_in_use(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = systems
    where = tmp_path / "backup"
    _backup(monkeypatch, source, where)
    artifact = next(where.glob("store/sha256/*/*"))

    _use(monkeypatch, target)
    (where / "store" / "extra.txt").write_text("slipped in")
    result = runner.invoke(app, ["restore", str(where)])
    assert result.exit_code == 1
    assert "store/extra.txt: not in the manifest" in result.output
    (where / "store" / "extra.txt").unlink()

    kept = artifact.read_bytes()
    artifact.unlink()
    result = runner.invoke(app, ["restore", str(where)])
    assert result.exit_code == 1
    assert f"{artifact.relative_to(where).as_posix()}: missing" in result.output
    artifact.write_bytes(kept)

    _use(monkeypatch, source)  # its own, populated database
    result = runner.invoke(app, ["restore", str(where)])
    assert result.exit_code == 1
    assert "the target database is not empty" in result.output


@pytest.mark.parametrize("systems", ["sqlite"], indirect=True)
def test_a_sqlite_dump_is_one_file_and_stays_so_through_a_restore(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    source, target = systems
    where = tmp_path / "backup"
    _backup(monkeypatch, source, where)
    assert sorted(p.name for p in where.iterdir()) == ["database.sqlite3", "manifest.json", "store"]
    with sqlite3.connect(where / "database.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    _use(monkeypatch, target)
    assert runner.invoke(app, ["restore", str(where)]).exit_code == 0
    assert sorted(p.name for p in where.iterdir()) == ["database.sqlite3", "manifest.json", "store"]


@pytest.mark.parametrize("systems", ["sqlite"], indirect=True)
def test_restore_refuses_a_backup_of_another_schema_revision(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = systems
    where = tmp_path / "backup"
    _backup(monkeypatch, source, where)
    manifest = json.loads((where / "manifest.json").read_text())
    manifest["database"]["schema_revision"] = "0123456789ab"
    (where / "manifest.json").write_text(json.dumps(manifest))
    _use(monkeypatch, target)
    result = runner.invoke(app, ["restore", str(where)])
    assert result.exit_code == 1
    assert "the backup is at schema revision 0123456789ab" in result.output
    assert list(get_store().digests()) == []


@pytest.mark.parametrize("systems", ["sqlite"], indirect=True)
def test_backup_refuses_a_directory_that_is_not_empty(
    systems: tuple[System, System], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = systems
    where = tmp_path / "backup"
    where.mkdir()
    (where / "old.txt").write_text("x")
    _use(monkeypatch, source)
    result = runner.invoke(app, ["backup", str(where)])
    assert result.exit_code == 1
    assert "is not an empty directory" in result.output
