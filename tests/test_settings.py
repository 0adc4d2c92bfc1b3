"""Settings from secret files (docker compose mounts them in /run/secrets): a database login's
password kept out of its URL and out of the environment."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app import settings as settings_module
from app.settings import Settings, get_settings

RUNTIME_URL = "postgresql://registry_app@db:5432/registry"
OWNER_URL = "postgresql://registry_owner@db:5432/registry"


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """get_settings() reading its secret files from a directory of the test's."""
    directory = tmp_path / "run-secrets"
    directory.mkdir()
    monkeypatch.setattr(settings_module, "SECRETS_DIR", directory)
    for name in ("DATABASE_PASSWORD", "MIGRATION_DATABASE_PASSWORD", "MIGRATION_DATABASE_URL"):
        monkeypatch.delenv(f"REGISTRY_{name}", raising=False)
    monkeypatch.setenv("REGISTRY_DATABASE_URL", RUNTIME_URL)
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()


def test_the_password_file_completes_the_url(secrets_dir: Path) -> None:
    (secrets_dir / "registry_database_password").write_text("s3cret: @/?#%\n")
    url = make_url(get_settings().database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "registry_app",
        "s3cret: @/?#%",
        "db",
        "registry",
    )
    assert "s3cret" not in repr(get_settings().database_password)


def test_the_migration_login_gets_its_own_password_file(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_MIGRATION_DATABASE_URL", OWNER_URL)
    (secrets_dir / "registry_migration_database_password").write_text("owner-pw")
    settings = get_settings()
    assert make_url(settings.migration_url).password == "owner-pw"
    assert make_url(settings.database_url).password is None


def test_the_environment_wins_over_a_secret_file(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets_dir / "registry_database_password").write_text("from-file")
    monkeypatch.setenv("REGISTRY_DATABASE_PASSWORD", "from-env")
    assert make_url(get_settings().database_url).password == "from-env"


def test_no_secrets_directory_reads_nothing_and_warns_nothing(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "SECRETS_DIR", secrets_dir / "absent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_settings().database_url == RUNTIME_URL


def test_a_password_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"carries a password and .* is set too"):
        Settings(
            database_url="postgresql://registry_app:inline@db/registry",
            database_password="file",
        )


def test_a_password_for_sqlite_is_refused() -> None:
    with pytest.raises(ValidationError, match="SQLite, which has no logins"):
        Settings(database_url="sqlite:///var/x.db", database_password="pw")


def test_a_migration_password_without_its_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="MIGRATION_DATABASE_URL is not"):
        Settings(database_url=RUNTIME_URL, migration_database_password="pw")
