"""The row lock writers take on a record row (a model, version, transfer or user) to queue
behind each other."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select

SelectT = TypeVar("SelectT", bound=Select[Any])


def for_write(stmt: SelectT) -> SelectT:
    """``stmt`` as ``SELECT ... FOR NO KEY UPDATE`` (PostgreSQL; SQLite ignores it, its
    ``BEGIN IMMEDIATE`` already serializes writers).

    The lock conflicts with itself and with an UPDATE of the row, so writers of one row still
    queue. Unlike ``FOR UPDATE`` it does not conflict with the ``KEY SHARE`` lock that a
    foreign-key check takes when another transaction inserts a row referencing this one. With
    ``FOR UPDATE``, a transaction holding the audit-head lock that inserts such a row (a
    transfer naming its source version and its creator) waits for the holder of the row lock,
    who waits for the audit head: a deadlock, answered 503, whenever several workers sign,
    train and open transfers at once (tests/reliability/test_two_servers.py). Keys never
    change and record rows are never deleted, so nothing needs the stronger lock.
    """
    return stmt.with_for_update(key_share=True)
