"""A deployment as processes: a fresh database brought to head by a one-shot ``ssreg migrate``,
one store directory, and ``ssreg serve`` processes started, killed (SIGKILL) and restarted on
them; the checks an operator runs afterwards (``ssreg audit verify``, ``ssreg store fsck``).

Every test module here is marked ``reliability`` (``pytest -m reliability`` runs only these).
They run inside ``make test``; each server start costs about 3 s of CPU (the app's imports), so the
tests restart only where a kill needs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import app as ssreg_app
from app.db.models import AuditEvent, Dataset, ModelVersion
from app.db.session import dispose_engines, make_engine, unit_of_work
from app.enums import Role
from app.services import auth as auth_service
from app.services.fsck import referenced_digests
from app.settings import get_settings
from app.store import LocalStore, get_store
from bench._serving import free_port
from tests.conftest import PG_ADMIN_URL, ROOT, _drop_pg_database, _pg_database_url
from tests.helpers import PASSWORD

SERVE = (sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1")
READY_SECONDS = 120  # a start takes ~3 s of CPU; on a loaded 2-core machine far longer
STEP = 0.002  # s a stepped server runs between two looks at its state
_CACHES = (get_settings, get_store)


@dataclass
class Server:
    """One ``ssreg serve`` process (its own process group) and its log."""

    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def client(self, token: str | None = None, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self) -> None:
        """SIGSTOP: the process does nothing more until killed; what it left can be read."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def step_until(
        self, seen: Callable[[], bool], request: InFlight, what: str, *, limit: float = 120
    ) -> None:
        """Run the server in slices of STEP seconds, stopped between them, until ``seen()``
        (looked at while it is stopped); it is left stopped. A state that lasts longer than a
        slice of the server's own work cannot be missed, however busy the machine is. Fails
        if ``request`` ended first."""
        deadline = time.monotonic() + limit
        self.freeze()
        while not seen():
            assert request.outcome is None, f"the request ended before {what}: {request.outcome!r}"
            assert time.monotonic() < deadline, f"never saw {what}"
            self.resume()
            time.sleep(STEP)
            self.freeze()

    def kill(self) -> None:
        """kill -9 (the whole process group: uvicorn and any worker it forked)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Deployment:
    """A migrated database (``url``) and a store directory shared by every server started."""

    backend: str
    url: str
    store_root: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    servers: list[Server] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {
            "REGISTRY_DATABASE_URL": self.url,
            "REGISTRY_STORE_ROOT": str(self.store_root),
        }

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.store_root)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def read(self) -> contextlib.AbstractContextManager[Session]:
        """A read-only unit of work (on SQLite a snapshot that takes no lock, so it does not
        wait for a server frozen inside its write transaction)."""
        return unit_of_work(read_only=True, bind=self.engine)

    def migrate(self) -> None:
        """The one-shot migration step, as its own process (as a deployment runs it)."""
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def serve(self) -> Server:
        """Start ``ssreg serve`` on a free port; returns once ``/readyz`` answers 200."""
        (server,) = self.serve_many(1)
        return server

    def serve_many(self, *workers: int) -> list[Server]:
        """Start one ``ssreg serve --workers w`` process per ``w`` at once, each on its own
        port; returns once every one answers ``/readyz`` with 200 (the health check a
        deployment waits for)."""
        started = [self._start(w) for w in workers]
        deadline = time.monotonic() + READY_SECONDS
        waiting = list(started)
        while waiting:
            server = waiting[0]
            if not server.alive:
                raise AssertionError(
                    f"ssreg serve exited with {server.proc.returncode}\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.base}/readyz", timeout=5).status_code == 200:
                    waiting.pop(0)
                    continue
            if time.monotonic() > deadline:
                raise AssertionError(f"ssreg serve not ready in {READY_SECONDS} s")
            time.sleep(0.2)
        return started

    def _start(self, workers: int) -> Server:
        port = free_port()
        name = f"server-{len(self.servers) + 1}-{port}"
        env = self.env
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if workers > 1:  # the workers' metrics files, in a directory that does not exist yet
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.tmp / f"{name}-metrics")
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*SERVE, "--port", str(port), "--workers", str(workers)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill() reaches every process of it
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        self.servers.append(server)
        return server

    def user(self, username: str, role: Role) -> str:
        """Create a user (committed) and return a bearer token of theirs."""
        with unit_of_work(bind=self.engine) as session:
            auth_service.create_user(
                session,
                username=username,
                full_name=username.replace("-", " ").title(),
                role=role,
                password=PASSWORD,
                actor="pytest",
                reason="reliability test",
            )
            issued = auth_service.login(
                session, username=username, password=PASSWORD, client_host="127.0.0.1"
            )
            assert issued is not None
            return issued.token

    def ssreg(self, *args: str) -> tuple[int, str]:
        """Run an ``ssreg`` command against this deployment (in this process, which has the
        app imported already): its exit code and output."""
        with self.monkeypatch.context() as patch:
            patch.setenv("REGISTRY_DATABASE_URL", self.url)
            patch.setenv("REGISTRY_STORE_ROOT", str(self.store_root))
            _forget_configuration()
            try:
                result = CliRunner().invoke(ssreg_app, list(args))
            finally:
                _forget_configuration()
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self._engine is not None:
            self._engine.dispose()


class InFlight:
    """A request run in a thread; ``outcome`` is its response or the exception it met."""

    def __init__(self, call: Callable[[], httpx.Response]) -> None:
        self.outcome: httpx.Response | BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], httpx.Response]) -> None:
        try:
            self.outcome = call()
        except BaseException as exc:  # the test reads it
            self.outcome = exc

    def finished(self) -> BaseException | httpx.Response:
        self.thread.join(timeout=60)
        assert self.outcome is not None, "the request did not end after the kill"
        return self.outcome


def transaction_open(deployment: Deployment) -> bool:
    """Whether a server holds a write transaction open on the database right now: on
    PostgreSQL a backend idle in a transaction, on SQLite the write lock taken."""
    if deployment.backend == "sqlite":
        probe = sqlite3.connect(deployment.url.removeprefix("sqlite:///"), timeout=0)
        probe.isolation_level = None
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()",
            (deployment.engine.url.database,),
        ).fetchone()
    return bool(row and row[0])


def _forget_configuration() -> None:
    dispose_engines()
    for cached in _CACHES:
        cached.cache_clear()


def _tag(request: pytest.FixtureRequest) -> str:
    wid = getattr(request.config, "workerinput", {}).get("workerid", "main")
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    return f"rel_{wid}_{os.getpid()}_{digest}"


@contextlib.contextmanager
def deployment_on(
    backend: str, request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'registry.db'}"
    else:
        pg_name = f"registry_test_{_tag(request)}"
        url = _pg_database_url(pg_name)
    deployment = Deployment(backend, url, tmp / "store", tmp, monkeypatch)
    try:
        deployment.migrate()
        yield deployment
    finally:
        deployment.close()
        if pg_name is not None:
            _drop_pg_database(pg_name)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    """A deployment on SQLite, then on PostgreSQL."""
    with deployment_on(str(request.param), request, tmp_path, monkeypatch) as d:
        yield d


@pytest.fixture
def pg_deployment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    """A deployment on PostgreSQL (several processes share one database)."""
    with deployment_on("postgresql", request, tmp_path, monkeypatch) as d:
        yield d


# ------------------------------------------------------------------------------------ checks


def audit_chain(deployment: Deployment) -> int:
    """``ssreg audit verify`` must say the chain is valid; returns how many events it read.
    The events' sequence numbers must run 1..n without a gap."""
    code, output = deployment.ssreg("audit", "verify")
    assert code == 0, output
    assert output.startswith("audit chain valid: "), output
    events = int(output.split(": ", 1)[1].split()[0])
    with deployment.read() as s:
        seqs = list(s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
    assert seqs == list(range(1, len(seqs) + 1)), "audit sequence numbers have a gap"
    assert events == len(seqs)
    return events


@dataclass(frozen=True)
class StoreState:
    artifacts: frozenset[str]  # final files, named by their digest
    temporary: frozenset[Path]  # .tmp-* files: a write interrupted before it was linked
    unreferenced: frozenset[str]  # what ssreg store fsck lists as such


def parse_fsck(output: str) -> dict[str, list[str]]:
    """``ssreg store fsck``'s sections: ``label: n`` followed by n indented lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("  ") and current is not None:
            current.append(line.split()[0])
        elif ": " in line and not line.startswith("checked"):
            label, count = line.split(": ", 1)
            current = sections.setdefault(label, [])
            assert count.strip().isdigit(), line
        else:
            current = None
    return sections


def store_consistent(deployment: Deployment) -> StoreState:
    """What must hold after any crash, read from the database, the store and ``ssreg store
    fsck``: every dataset and version row's file exists and hashes to the row's sha256; fsck
    finds nothing missing or corrupt; every file in the store is an artifact a record
    references, one fsck lists as unreferenced, a ``.kept`` mark, or a temporary file of an
    interrupted write that fsck lists - nothing else, and never a partial file under an
    artifact's name."""
    store = deployment.store
    with deployment.read() as s:
        rows = set(s.scalars(select(Dataset.sha256))) | set(
            s.scalars(select(ModelVersion.artifact_sha256))
        )
        referenced = referenced_digests(s)
    for digest in sorted(rows):
        path = store.path(digest)
        assert path.is_file(), f"a record names {digest}, which is not in the store"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{digest} is corrupt"

    code, output = deployment.ssreg("store", "fsck")
    assert code == 0, output
    sections = parse_fsck(output)
    assert sections["missing"] == [], output
    assert sections["corrupt"] == [], output

    artifacts: set[str] = set()
    temporary: set[Path] = set()
    base = store.root / "sha256"
    for path in store.root.rglob("*") if store.root.exists() else ():
        if path == base or (path.is_dir() and path.parent == base and len(path.name) == 2):
            continue
        name = path.name
        if name.startswith((".tmp-", ".probe-")):
            temporary.add(path)
        elif name.endswith(".kept"):
            assert path.with_name(name.removesuffix(".kept")).exists(), path
        else:
            assert path == store.path(name), f"unexpected file in the store: {path}"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == name, f"partial {path}"
            artifacts.add(name)
    unreferenced = set(sections["unreferenced"])
    assert artifacts - referenced == unreferenced, output
    listed = {str(p.relative_to(store.root)) for p in temporary}
    assert listed == set(sections["temporary"]), output
    return StoreState(frozenset(artifacts), frozenset(temporary), frozenset(unreferenced))
