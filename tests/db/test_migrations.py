"""The schema comes from Alembic alone, matches the ORM, and downgrades cleanly."""

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, inspect

from tests.conftest import _drop_pg_database, alembic_config, fresh_database


def test_models_match_the_migrations(engine: Engine) -> None:
    command.check(alembic_config(engine.url.render_as_string(hide_password=False)))


def test_downgrade_to_base_and_back(backend: str, worker_id_safe: str, tmp_path: Path) -> None:
    url, pg_name = fresh_database(backend, f"{worker_id_safe}_migrations", tmp_path)
    try:
        cfg = alembic_config(url)
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")
        from app.db.session import make_engine

        eng = make_engine(url)
        assert "audit_event" in inspect(eng).get_table_names()
        eng.dispose()
    finally:
        if pg_name:
            _drop_pg_database(pg_name)
