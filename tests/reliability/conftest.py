"""A deployment as processes, the topology docker-compose.yml describes: on PostgreSQL the two
roles created once (``ssreg db roles``: the schema owner and the runtime role), a one-shot
``ssreg migrate`` as the owner that grants the runtime role and seals the chain, and ``ssreg
serve`` processes logging in as the runtime role; an audit signing key file outside the
database (``ssreg audit keygen``) and one store directory shared by every process. Servers are
started, stopped (SIGSTOP), stepped, killed (SIGKILL) and restarted on them; the checks an
operator runs afterwards are ``ssreg audit verify --full`` and ``ssreg store fsck``.

Every test module here is marked ``reliability`` (``pytest -m reliability`` runs only these).
They run inside ``make test``; each server start costs about 3 s of CPU (the app's imports), so
the tests restart only where a kill needs it.
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
from tests.conftest import PG_ADMIN_URL, ROOT
from tests.helpers import PASSWORD
from tests.reliability.topology import MIGRATE_SETTINGS, SERVER_SETTINGS, WORKERS_SETTINGS

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
    """A database at head, a store directory and an audit signing key shared by every server
    started. ``url`` is the service's login (PostgreSQL: the runtime role); ``migration_url``
    the schema owner's, which ran the migrations and granted ``runtime_role``."""

    backend: str
    url: str
    store_root: Path
    signing_key: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    migration_url: str | None = None
    runtime_role: str | None = None
    servers: list[Server] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def settings(self) -> dict[str, str]:
        """The deployment's configuration, as every process of it gets it."""
        values = (self.url, str(self.store_root), str(self.signing_key))
        out = dict(zip(SERVER_SETTINGS, values, strict=True))
        if self.migration_url is not None and self.runtime_role is not None:
            out |= dict(zip(MIGRATE_SETTINGS, (self.migration_url, self.runtime_role), strict=True))
        return out

    @property
    def env(self) -> dict[str, str]:
        return os.environ | self.settings

    @property
    def checkpoint_log(self) -> Path:
        return self.signing_key.with_name(self.signing_key.name + ".checkpoints.jsonl")

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

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        """A one-shot ``ssreg`` step as its own process (as a deployment runs it); its output."""
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env | (env or {}),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

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
        (metrics_dir,) = WORKERS_SETTINGS
        env.pop(metrics_dir, None)
        if workers > 1:  # the workers' metrics files, in a directory that does not exist yet
            env[metrics_dir] = str(self.tmp / f"{name}-metrics")
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

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        """This process configured as the deployment (settings, engines and store cached
        afresh), for the block."""
        with self.monkeypatch.context() as patch:
            for name, value in self.settings.items():
                patch.setenv(name, value)
            _forget_configuration()
            try:
                yield
            finally:
                _forget_configuration()

    def user(self, username: str, role: Role) -> str:
        """Create a user through the service (committed) and return a bearer token of theirs."""
        with self.configured(), unit_of_work() as session:
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
        """Run an ``ssreg`` command against this deployment in this process (which has the
        app imported already): its exit code and output."""
        with self.configured():
            result = CliRunner().invoke(ssreg_app, list(args))
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
    return f"rel_{wid}_{os.getpid()}_{digest}".lower()


def _pg_url(user: str, database: str) -> str:
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{user}@{host}/{database}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")


@contextlib.contextmanager
def _postgresql(tag: str) -> Iterator[tuple[str, str, str]]:
    """A database and its two roles named after ``tag``, dropped afterwards (roles are the
    server's, not the database's: concurrent runs must not share them)."""
    database, owner, runtime = f"registry_test_{tag}", f"owner_{tag}", f"app_{tag}"
    with _admin() as admin:

        def drop() -> None:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in (runtime, owner):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')

        drop()
        try:
            yield database, owner, runtime
        finally:
            drop()


@contextlib.contextmanager
def deployment_on(
    backend: str, request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    key = tmp / "secrets" / "audit-signing.key"
    key.parent.mkdir()
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp / 'registry.db'}"
            deployment = Deployment(backend, url, tmp / "store", key, tmp, monkeypatch)
        else:
            database, owner, runtime = stack.enter_context(_postgresql(_tag(request)))
            deployment = Deployment(
                backend,
                _pg_url(runtime, database),
                tmp / "store",
                key,
                tmp,
                monkeypatch,
                migration_url=_pg_url(owner, database),
                runtime_role=runtime,
            )
            # One-shot, as the superuser: both roles and the database the owner owns; their
            # passwords from secret files, as docker compose mounts them.
            owner_password, runtime_password = key.parent / "owner", key.parent / "app"
            owner_password.write_text("owner\n")
            runtime_password.write_text("app\n")
            deployment.run(
                *("db", "roles", "--admin-url", PG_ADMIN_URL, "--database", database),
                *("--owner", owner, "--owner-password-file", str(owner_password)),
                *("--runtime", runtime, "--runtime-password-file", str(runtime_password)),
            )
        stack.callback(deployment.close)
        code, output = deployment.ssreg("audit", "keygen", str(key))  # the operator's secret
        assert code == 0, output
        deployment.run("migrate")  # one-shot, as the owner: upgrade, grant, seal
        yield deployment


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
    """``ssreg audit verify --full`` must find the whole chain valid and anchored by the
    deployment's signed checkpoints, and every record equal to its audited state; the events'
    sequence numbers must run 1..n without a gap. Returns n."""
    code, output = deployment.ssreg("audit", "verify", "--full")
    assert code == 0, output
    (chain,) = [line for line in output.splitlines() if line.startswith("audit chain valid: ")]
    assert "whole and anchored" in chain, output
    assert "records reconciled: " in output, output
    events = int(chain.removeprefix("audit chain valid: ").split()[0])
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
    assert sections["repointed"] == [], output

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
