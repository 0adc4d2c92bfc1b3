"""Database dumps and restores for ``ssreg backup`` / ``ssreg restore``.

SQLite: the sqlite3 online-backup API copies a consistent snapshot of the live file (writers
go on meanwhile, WAL), saved as one self-contained file. PostgreSQL: ``pg_dump`` in its custom
format, run on a snapshot exported from a REPEATABLE READ transaction of this process, so what
this process reads alongside (the schema revision, the audit head, the artifacts the records
name) is exactly what the dump holds; ``pg_restore`` loads it in one transaction. The client
programs must be of the server's major version or newer.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.session import make_engine
from app.errors import Conflict, InvalidInput

T = TypeVar("T")
SQLITE_DUMP = "database.sqlite3"
PG_DUMP = "database.pgdump"


class BackupError(Conflict):
    """A backup or restore that cannot be done as asked (refused before anything is changed,
    or failed with the reason)."""


def dialect_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise InvalidInput(f"cannot back up or restore a {name!r} database")
    return name


def dump_file_name(dialect: str) -> str:
    return SQLITE_DUMP if dialect == "sqlite" else PG_DUMP


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput("an in-memory SQLite database has nothing to back up or restore")
    return Path(database)


# --- reading a state --------------------------------------------------------------------------


def schema_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at (None: not migrated)."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) if heads else None


def table_counts(session: Session) -> dict[str, int]:
    """Rows per table of the application's schema."""
    return {
        table.name: session.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
    }


def is_empty(url: str) -> bool:
    """True if the database has no tables (or, for SQLite, does not exist yet)."""
    if dialect_of(url) == "sqlite" and not _sqlite_path(url).exists():
        return True
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return not inspect(connection).get_table_names()
    finally:
        engine.dispose()


@contextmanager
def reading(url: str) -> Iterator[Session]:
    """A read-only session on the database at ``url`` (its own engine, disposed after)."""
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


# --- dumping ----------------------------------------------------------------------------------


def dump(url: str, out_dir: Path, *, read: Callable[[Session], T]) -> tuple[str, T]:
    """Dump the database at ``url`` into ``out_dir``; returns the dump's file name and what
    ``read`` returned when run on exactly the dumped state (a session on it)."""
    if dialect_of(url) == "sqlite":
        return SQLITE_DUMP, _dump_sqlite(_sqlite_path(url), out_dir / SQLITE_DUMP, read)
    return PG_DUMP, _dump_postgres(make_url(url), out_dir / PG_DUMP, read)


def _dump_sqlite(source: Path, target: Path, read: Callable[[Session], T]) -> T:
    if not source.exists():
        raise BackupError(f"no SQLite database at {source}")
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # one consistent snapshot of the live file
        dst.execute("PRAGMA journal_mode = DELETE")  # the dump is one file, no -wal beside it
    _fsync(target)
    # Read only, and not through make_engine, whose connections switch a file to WAL mode.
    engine = create_engine(f"sqlite:///file:{target}?mode=ro&uri=true")
    try:
        with Session(engine) as session, session.begin():
            return read(session)
    finally:
        engine.dispose()


def _dump_postgres(url: URL, target: Path, read: Callable[[Session], T]) -> T:
    pg_dump = _client("pg_dump")
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                with Session(bind=connection) as session:
                    result = read(session)
                _run(
                    [
                        pg_dump,
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--file={target}",
                        f"--dbname={_conninfo(url)}",
                    ],
                    url,
                )
    finally:
        engine.dispose()
    _fsync(target)
    return result


# --- restoring --------------------------------------------------------------------------------


def restore(url: str, dump_path: Path) -> None:
    """Load a dump made by :func:`dump` into the empty database at ``url``."""
    if dialect_of(url) == "sqlite":
        _restore_sqlite(dump_path, _sqlite_path(url))
    else:
        _restore_postgres(dump_path, make_url(url))


def _restore_sqlite(dump_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".restore-{os.getpid()}-{target.name}")
    staging.unlink(missing_ok=True)
    try:
        with (
            closing(sqlite3.connect(f"file:{dump_path}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(staging)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = WAL")  # as the service runs it
        _fsync(staging)
        for side in ("-wal", "-shm"):  # of an empty database that was there
            target.with_name(target.name + side).unlink(missing_ok=True)
        os.replace(staging, target)  # the caller checked the target is empty
        _fsync(target.parent)
    finally:
        staging.unlink(missing_ok=True)


def _restore_postgres(dump_path: Path, url: URL) -> None:
    pg_restore = _client("pg_restore")
    # One transaction: a restore that fails leaves the database as empty as it was. Owners and
    # privileges are restored as dumped, so the roles they name must exist on the server.
    _run(
        [
            pg_restore,
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={_conninfo(url)}",
            str(dump_path),
        ],
        url,
    )


# --- helpers ----------------------------------------------------------------------------------


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client programs of the server's "
            "major version (or newer)"
        )
    return found


def _conninfo(url: URL) -> str:
    """A libpq connection string without the password (that goes in PGPASSWORD, not argv)."""
    parts = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "dbname": url.database,
        **{k: v for k, v in url.query.items() if isinstance(v, str)},
    }
    return " ".join(f"{k}='{_quote(str(v))}'" for k, v in parts.items() if v is not None)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _run(cmd: list[str], url: URL) -> None:
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        program = Path(cmd[0]).name
        raise BackupError(f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
