"""What the HTTP benches share: a fresh database (a SQLite file, or a PostgreSQL database dropped
afterwards), migrating it, their developer account, a free port, and a server process run until
ready, then stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.db.models import User

ROOT = Path(__file__).resolve().parents[1]
BENCH_USERNAME = "bench-dev"
BENCH_PASSWORD = "bench password, long enough"


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def database(postgres: bool, tmp: Path, label: str = "bench") -> Iterator[str]:
    """A SQLite file ``<label>.db`` in ``tmp``, or (``postgres``) a new database on
    127.0.0.1:5432, dropped afterwards in any case."""
    if not postgres:
        yield f"sqlite:///{tmp / f'{label}.db'}"
        return
    import psycopg

    name = f"bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the head revision, as ``ssreg migrate`` does."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")


def create_bench_developer(session: Session) -> User:
    """The benches' developer (``BENCH_USERNAME``, ``BENCH_PASSWORD``), through the services
    of this checkout; the caller commits."""
    from app.enums import Role
    from app.services import auth

    return auth.create_user(
        session,
        username=BENCH_USERNAME,
        full_name="Bench developer",
        role=Role.developer,
        password=BENCH_PASSWORD,
        actor="bench",
        reason="benchmark",
    ).user


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def until_stopped(
    proc: subprocess.Popen[bytes], base: str, name: str, log_tail: Callable[[], str] = str
) -> Iterator[str]:
    """Wait (60 s at most) for ``base``/readyz, yield ``base``, and stop ``proc`` in any case.
    ``log_tail()`` is added to the error if the process exits before it is ready."""
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}{log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready in 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
