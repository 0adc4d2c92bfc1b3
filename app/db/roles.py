"""PostgreSQL roles: an owner that migrates, a runtime role that serves.

The *owner* owns the database and its schema: it runs the migrations, so it creates the
tables and their triggers, and only it (or a superuser) can alter a table or disable a
trigger. The *runtime* role is what the service logs in as: it may SELECT and INSERT on
every record table and UPDATE only the columns audited transitions change
(:mod:`app.db.guards`); it owns nothing, so ``ALTER TABLE ... DISABLE TRIGGER``, ``DROP
TRIGGER``, ``TRUNCATE`` and ``DELETE`` are refused to it, and the triggers stand behind the
grants.

:func:`create_roles` and :func:`prepare_schema` run once, as a superuser: ``ssreg db
roles``. :func:`grant_runtime` runs after every migration, as the owner:
``ssreg migrate`` does it when ``REGISTRY_RUNTIME_DB_ROLE`` is set (``ssreg db grant``
alone).
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, inspect, text

from app.db.guards import LOCKED_ONLY, READ_ONLY, UPDATABLE

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a plain role or database name ([a-z_][a-z0-9_]*)")
    return f'"{value}"'


def _literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a password cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def create_roles(
    admin: Connection,
    *,
    owner: str,
    owner_password: str,
    runtime: str,
    runtime_password: str,
    database: str,
) -> list[str]:
    """Create the owner and runtime roles (LOGIN) and the database owned by the owner, unless
    they exist. ``admin`` is an AUTOCOMMIT connection of a superuser to another database
    (CREATE DATABASE cannot run in a transaction). Returns what it did."""
    done: list[str] = []
    for role, password in ((owner, owner_password), (runtime, runtime_password)):
        exists = admin.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            # NOINHERIT, no CREATEDB/CREATEROLE: neither can grant itself more.
            admin.exec_driver_sql(
                f"CREATE ROLE {_name(role)} LOGIN NOINHERIT PASSWORD {_literal(password)}"
            )
            done.append(f"created role {role}")
    exists = admin.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database})
    if exists.first() is None:
        admin.exec_driver_sql(f"CREATE DATABASE {_name(database)} OWNER {_name(owner)}")
        done.append(f"created database {database} owned by {owner}")
    admin.exec_driver_sql(f"REVOKE ALL ON DATABASE {_name(database)} FROM PUBLIC")
    admin.exec_driver_sql(f"GRANT CONNECT ON DATABASE {_name(database)} TO {_name(runtime)}")
    return done


def prepare_schema(admin: Connection, *, owner: str) -> None:
    """In the registry's database, as a superuser: the owner owns schema ``public`` (where the
    migrations create the tables) and nobody else may create objects in it."""
    admin.exec_driver_sql(f"ALTER SCHEMA public OWNER TO {_name(owner)}")
    admin.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def grant_statements(tables: list[str], runtime: str) -> list[str]:
    role = _name(runtime)
    unknown = sorted(set(tables) - set(UPDATABLE) - set(READ_ONLY))
    if unknown:
        raise ValueError(
            f"tables {', '.join(unknown)} are not in app/db/guards.py: say what the runtime "
            "role may change in them first"
        )
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
    ]
    for table in sorted(tables):
        if table in READ_ONLY:
            statements.append(f"GRANT SELECT ON {_name(table)} TO {role}")
            continue
        statements.append(f"GRANT SELECT, INSERT ON {_name(table)} TO {role}")
        columns = (*UPDATABLE[table], *LOCKED_ONLY.get(table, ()))
        if columns:
            names = ", ".join(_name(c) for c in columns)
            statements.append(f"GRANT UPDATE ({names}) ON {_name(table)} TO {role}")
    return statements


def grant_runtime(owner_connection: Connection, runtime: str) -> list[str]:
    """Grant ``runtime`` exactly what the service needs on every table of the schema (after
    revoking everything, so a grant removed from app/db/guards.py is removed here too)."""
    tables = inspect(owner_connection).get_table_names()
    statements = grant_statements(tables, runtime)
    for statement in statements:
        owner_connection.exec_driver_sql(statement)
    return statements
