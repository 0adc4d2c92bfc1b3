"""The engines the service makes: a database error never carries the statement's values."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from app.db.models import User
from app.db.session import make_engine, make_event_loop_engine
from tests.conftest import fresh_database

SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0LXNhbHQ$c2VjcmV0LWhhc2gtbmV2ZXItbG9nZ2Vk"


def _duplicate_user_error(engine: Engine) -> IntegrityError:
    row = {"username": "dup-user", "full_name": "D", "role": "qa", "password_hash": SECRET_HASH}
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(insert(User).values(id=uuid.uuid4(), **row))
            with pytest.raises(IntegrityError) as caught:
                connection.execute(insert(User).values(id=uuid.uuid4(), **row))
        finally:
            transaction.rollback()
    return caught.value


def test_a_database_error_does_not_print_the_parameters(engine: Engine) -> None:
    """A unique violation on app_user once printed the new row's argon2 hash into the log."""
    url = engine.url.render_as_string(hide_password=False)
    own = make_engine(url)
    try:
        message = str(_duplicate_user_error(own))
    finally:
        own.dispose()
    assert "app_user" in message or "username" in message  # the error itself is still named
    assert SECRET_HASH not in message
    assert "parameters hidden" in message


def test_the_event_loop_engine_hides_the_parameters_too(tmp_path: Path) -> None:
    """SQLite only: on PostgreSQL there is no event-loop engine."""
    url, _ = fresh_database("sqlite", "loop", tmp_path)
    loop_engine = make_event_loop_engine(url)
    assert loop_engine is not None
    try:
        message = str(_duplicate_user_error(loop_engine))
    finally:
        loop_engine.dispose()
    assert SECRET_HASH not in message
