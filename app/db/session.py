"""Engines, sessions and units of work; committing and rolling back a request's session."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import SingletonThreadPool

from app.errors import WouldBlock
from app.settings import get_settings
from app.telemetry import metrics

BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "registry_read_only"  # execution option: BEGIN DEFERRED on SQLite


def _sqlite_begin_immediate(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    """Let SQLAlchemy own SQLite transactions; writers take the write lock at BEGIN.

    pysqlite's own transaction handling breaks SAVEPOINTs, and a deferred BEGIN lets two writers
    read the same audit head and then deadlock on upgrade. ``BEGIN IMMEDIATE`` serializes
    writers up front (the embedded default is a single-node deployment). Connections marked
    read-only (GET requests, the reads of a :class:`ReadThenWrite`) begin DEFERRED instead:
    a snapshot that takes no lock.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Write-ahead log: readers never block the writer, and a commit appends to the log
        # instead of rewriting pages through a rollback journal.
        # synchronous=FULL (default) fsyncs the log at every COMMIT: an acknowledged record or
        # audit event survives a power cut, as ALCOA+ "enduring" asks. NORMAL skips that fsync
        # and can lose the last commits on power loss or an OS crash - whole, so the hash
        # chain stays consistent - and is an explicit opt-in for test benches only.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A connection may ask for a read-only snapshot (no write lock): see ReadThenWrite.
        mode = "DEFERRED" if conn.get_execution_options().get(_READ_ONLY) else "IMMEDIATE"
        # Straight to the driver: SQLAlchemy's own execution path costs more than the BEGIN.
        conn.connection.dbapi_connection.execute(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (SQLite file or PostgreSQL via psycopg 3).

    ``hide_parameters``: a statement's bound values (password hashes, API key digests, whole
    spectra) never go into an error's message, hence never into a log. ``pool_pre_ping``
    (PostgreSQL): a pooled connection whose server backend is gone (terminated, database
    restarted) is replaced at checkout, so the service recovers from a database fault by
    itself.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
        _sqlite_begin_immediate(engine, get_settings().sqlite_synchronous, BUSY_TIMEOUT_MS)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    _count_database_errors(engine)
    return engine


def _count_database_errors(engine: Engine) -> None:
    """Count every error the driver raises (metric ``ssreg_database_errors_total``) by its
    DB-API category (OperationalError, IntegrityError, ...) and whether the connection was
    lost. Not on the event-loop engine, whose "database is locked" is its normal way of
    handing a call to the thread pool."""

    @event.listens_for(engine, "handle_error")
    def _count(context: ExceptionContext) -> None:
        wrapped = context.sqlalchemy_exception
        error = wrapped if wrapped is not None else context.original_exception
        metrics.count_database_error(type(error).__name__, disconnect=context.is_disconnect)


def make_event_loop_engine(url: str) -> Engine | None:
    """For short transactions run on the event loop itself: SQLite only, and never waiting.

    ``busy_timeout = 0``, so BEGIN IMMEDIATE fails at once when another connection holds the
    write lock (the caller then goes to the thread pool, which waits); one connection per
    thread, so a checkout never waits on the pool. None for PostgreSQL, whose every statement
    is a network round trip: its transactions always run in the thread pool.
    """
    if not url.startswith("sqlite"):
        return None
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False},
        poolclass=SingletonThreadPool,
        pool_size=1,
        hide_parameters=True,
    )
    _sqlite_begin_immediate(engine, get_settings().sqlite_synchronous, busy_timeout_ms=0)
    return engine


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_event_loop_engine() -> Engine | None:
    return make_event_loop_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache
def get_read_sessionmaker() -> sessionmaker[Session]:
    """Sessions for requests that only read: on SQLite they begin DEFERRED, a snapshot that
    takes no lock (WAL), so readers never queue behind a writer; a write in one would take
    the lock then, as a deferred transaction does. The same as the others on PostgreSQL."""
    return sessionmaker(
        bind=get_engine().execution_options(**{_READ_ONLY: True}), expire_on_commit=False
    )


def dispose_engines() -> None:
    """Close the pooled connections and forget the engines (after a settings change)."""
    get_transactions.cache_clear()
    get_sessionmaker.cache_clear()
    get_read_sessionmaker.cache_clear()
    for getter in (get_engine, get_event_loop_engine):
        if getter.cache_info().currsize:
            engine = getter()
            if engine is not None:
                engine.dispose()
        getter.cache_clear()


class ReadThenWrite(Protocol):
    """A short unit of work that reads, computes, then writes: ``connection`` serves both, and
    :meth:`write` marks the switch. On SQLite the reads run in a read-only snapshot and the
    write lock is taken only at :meth:`write`, so a long computation between the two (parsing
    and predicting a large batch) does not hold up every other writer; on PostgreSQL, whose
    reads lock nothing, it is one transaction. Leaving the ``with`` block commits; an
    exception rolls back."""

    connection: Connection

    def write(self) -> None: ...


class Transactions(Protocol):
    def open(self, *, on_event_loop: bool) -> AbstractContextManager[ReadThenWrite]:
        """A unit of work. ``on_event_loop=True`` never waits - no connection to wait for, no
        lock: it raises :class:`~app.errors.WouldBlock` instead (always on PostgreSQL)."""
        ...


def _is_sqlite_busy(exc: BaseException) -> bool:
    driver_error = getattr(exc, "orig", exc)  # SQLAlchemy wraps what it executes
    return getattr(driver_error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


class _SqliteUnit:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        connection.execution_options(**{_READ_ONLY: True}).begin()  # BEGIN DEFERRED

    def write(self) -> None:
        self.connection.commit()  # ends the read snapshot
        self.connection.execution_options(**{_READ_ONLY: False}).begin()  # BEGIN IMMEDIATE

    def finish(self, ok: bool) -> None:
        if not self.connection.in_transaction():
            return  # write() failed to BEGIN: nothing is open
        if ok:
            self.connection.commit()
        else:
            self.connection.rollback()


class _OneTransaction:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def write(self) -> None:
        pass


class EngineTransactions:
    def __init__(self, engine: Engine, loop_engine: Engine | None) -> None:
        self.engine, self.loop_engine = engine, loop_engine

    @contextmanager
    def open(self, *, on_event_loop: bool) -> Iterator[ReadThenWrite]:
        if self.engine.dialect.name != "sqlite":
            if on_event_loop:
                raise WouldBlock("PostgreSQL transactions run in the thread pool")
            with self.engine.begin() as connection:
                yield _OneTransaction(connection)
            return
        engine = self.loop_engine if on_event_loop else self.engine
        if engine is None:
            raise WouldBlock("no event-loop engine")
        with engine.connect() as connection:
            try:
                unit = _SqliteUnit(connection)
                try:
                    yield unit
                except BaseException:
                    unit.finish(ok=False)
                    raise
                unit.finish(ok=True)
            except (sqlite3.OperationalError, OperationalError) as exc:
                # On the event loop (busy_timeout 0) a lock held elsewhere: nothing is
                # committed, the caller goes to the thread pool, which waits for it.
                if on_event_loop and _is_sqlite_busy(exc):
                    raise WouldBlock("another connection holds the write lock") from None
                raise


@lru_cache
def get_transactions() -> EngineTransactions:
    return EngineTransactions(get_engine(), get_event_loop_engine())


async def request_transactions() -> Transactions:
    """For a route whose database work is one short unit of work on a Core connection (no ORM
    session: its identity map and unit of work cost more than a short request's queries),
    run in one thread-pool trip or, where nothing would wait, on the event loop."""
    return get_transactions()


def open_unit(*, read_only: bool = False, bind: Engine | None = None) -> Session:
    """Begin a unit of work: one session, one transaction.

    ``read_only`` (GET and HEAD requests, CLI checks) begins DEFERRED on SQLite, a snapshot
    that takes no lock. ``bind`` is for callers with an engine of their own (tests, benches);
    by default the configured database. End it with :func:`commit_unit` or
    :func:`roll_back_unit`, or use :func:`unit_of_work`, which does.
    """
    if bind is not None:
        engine = bind.execution_options(**{_READ_ONLY: True}) if read_only else bind
        session = Session(engine, expire_on_commit=False)
    else:
        session = (get_read_sessionmaker() if read_only else get_sessionmaker())()
    session.begin()
    return session


def commit_unit(session: Session, *, close: bool = True) -> None:
    """Commit the unit. If the COMMIT fails, the unit is rolled back as by
    :func:`roll_back_unit` (its artifacts removed) and the error propagates."""
    try:
        session.commit()
    except BaseException:
        roll_back_unit(session, close=close)
        raise
    session.info.pop(_ON_ROLLBACK, None)
    for hook in session.info.pop(_ON_COMMIT, []):
        hook()
    if close:
        session.close()


def roll_back_unit(session: Session, *, close: bool = True) -> None:
    """Roll the unit back and remove from the store every artifact it wrote
    (:func:`on_rollback`), so a failed unit leaves neither a row nor an orphan file."""
    session.info.pop(_ON_COMMIT, None)
    try:
        session.rollback()
    finally:
        try:
            for hook in reversed(session.info.pop(_ON_ROLLBACK, [])):
                hook()
        finally:
            if close:
                session.close()


@contextmanager
def unit_of_work(*, read_only: bool = False, bind: Engine | None = None) -> Iterator[Session]:
    """One unit of work for the CLI, scripts and tests: commit when the block ends, roll back
    (and remove the artifacts it wrote) when it raises. Requests get the same unit from the
    API's session dependency."""
    session = open_unit(read_only=read_only, bind=bind)
    try:
        yield session
    except BaseException:
        roll_back_unit(session)
        raise
    commit_unit(session)


_ON_ROLLBACK = "on_rollback"
_ON_COMMIT = "on_commit"


def on_rollback(session: Session, hook: Any) -> None:
    """Register ``hook()`` to run if this unit of work is rolled back.

    Used to remove artifacts written during a unit that then failed, so a failed request or
    command leaves no orphan file behind.
    """
    session.info.setdefault(_ON_ROLLBACK, []).append(hook)


def on_commit(session: Session, hook: Any) -> None:
    """Register ``hook()`` to run once this unit of work has committed (never if it is rolled
    back): for what must only count what was kept, such as metrics."""
    session.info.setdefault(_ON_COMMIT, []).append(hook)
