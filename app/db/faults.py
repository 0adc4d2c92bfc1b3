"""Which database errors are faults of the database (a 503 the client retries), not bugs.

A fault is a condition of the database server or file that goes away by itself or by an
operator's hand: the connection refused or lost, the backend terminated, the server shutting
down or out of resources, a lock that could not be had, a serialization failure, a SQLite file
that is locked, read-only, unreadable or not a database. Everything else a driver raises (a
constraint violated, a value out of range, a statement the database does not understand) is
an error of this code or of unchecked input, and stays a 500 to be fixed.
"""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import exc as sa_exc

# SQLSTATE classes (PostgreSQL, Appendix A): 08 connection exception, 40 transaction rollback
# (serialization failure, deadlock), 53 insufficient resources, 57 operator intervention
# (admin_shutdown from pg_terminate_backend, cannot_connect_now, query_canceled), 58 system
# error. Not 54 (program limit exceeded): that comes from what a statement was given.
_PG_FAULT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_PG_FAULT_STATES = frozenset({"55P03"})  # lock_not_available
# SQLite primary result codes (the low byte of an extended code).
_SQLITE_FAULT_CODES = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def is_database_fault(exc: BaseException) -> bool:
    """True when ``exc`` (SQLAlchemy's, or the driver's own) says the database is unavailable
    or lost the connection, rather than that a statement was wrong."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # the pool had no connection to give in time; a ping found none alive
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:  # the dialect recognised a lost connection
            return True
        driver: BaseException = exc.orig if isinstance(exc.orig, BaseException) else exc
    else:
        driver = exc
    if isinstance(driver, sqlite3.Error):
        code = getattr(driver, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_FAULT_CODES
    if isinstance(driver, psycopg.Error):
        state = driver.sqlstate
        if state is None:  # from libpq, not the server: refused, reset, timed out
            return isinstance(driver, psycopg.OperationalError)
        return state[:2] in _PG_FAULT_CLASSES or state in _PG_FAULT_STATES
    return False
