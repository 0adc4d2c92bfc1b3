"""Readiness: the database answers, the store accepts writes, the schema is at Alembic head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db.session import get_engine
from app.store import get_store

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def head_revisions() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def readiness() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        checks["database"] = "ok"
        heads = head_revisions()
        checks["migrations"] = (
            "ok" if current == heads else f"at {sorted(current)}, head {sorted(heads)}"
        )
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["store"] = "ok" if get_store().writable() else "not writable"
    return checks
