"""Schemathesis over the OpenAPI document the app serves, against a served, seeded registry, as
every role, on SQLite and PostgreSQL (issue 14): no 5xx, and every response documented - its
status code, content type, headers and body schema.

Per backend: a fresh database seeded by ``ssreg seed``'s function (every role's demo account,
models, versions, transfers, aliases, the prediction log), served by ``ssreg serve`` on a free
port; its own database, so the fuzz's failed logins and re-entered passwords cannot throttle
or lock any other test's accounts. Each generated case is sent as every role the access policy
(:data:`tests.api.test_role_matrix.POLICY`) allows for the operation, and as one caller that
it does not (a forbidden role or no credential, picked by a digest of the case so a replay
picks the same): those answer 401/403 before the input is looked at, so one per case covers
them. Half the generated path parameters are swapped for the seeded records' names, so the
fuzz reaches past the 404.

Bounded and deterministic: a fixed seed and ``derandomize``, ``MAX_EXAMPLES`` per operation in
the fuzzing phase (plus the document's own examples), no example database, a per-request
timeout. The coverage phase (every boundary of every parameter, ~100 cases per operation) and
the stateful phase are off: they do not fit the time budget of ``make test``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.db.session import make_engine, unit_of_work
from app.enums import Role
from app.main import create_app
from app.services.seed import DEMO_USERS, DEV_DOMAIN, PLANT_DOMAIN, seed_demo
from app.store import LocalStore
from bench._serving import free_port, until_stopped
from tests.api.test_role_matrix import POLICY, PUBLIC
from tests.conftest import _drop_pg_database, fresh_database

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = {
    "seed": 14,
    "suppress-health-check": ["too_slow"],  # a busy CI machine must not fail the fuzz
    "generation": {
        "mode": "all",  # valid and invalid inputs
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",  # nothing written into the repository
        "with-security-parameters": False,  # the credential is the role's, below
    },
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "request-timeout": 60,
}
# The document the app serves at /openapi.json (the fixture checks the served one is this).
DOCUMENT = create_app().openapi()
SCHEMA = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_dict(CONFIG)
)
ARROW = "application/vnd.apache.arrow.stream"

# Records ``seed_demo`` creates, by path parameter (``name`` is a model's or a domain's).
SEEDED = {
    "model": ["titer_pls"],
    "domain": [DEV_DOMAIN, PLANT_DOMAIN],
    "version": [1, 2, 3],
    "alias": ["plant-2000L", "plant-2000L-B"],
    "id": ["1", "2"],
    "ref": ["CC-2026-0042"],
}


@schemathesis.serializer(ARROW)
def _arrow_bytes(ctx: Any, value: Any) -> bytes:
    """The generated body as it comes (bytes; anything else as its text): the server's Arrow
    reader meets arbitrary bytes and must answer them with a 4xx."""
    return value if isinstance(value, bytes) else str(value).encode()


@SCHEMA.hook
def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return st.just(path_parameters)
    names = "domain" if ctx.operation.path.startswith("/api/v1/domains/") else "model"
    choices: dict[str, Any] = {}
    for key in path_parameters:
        pool = SEEDED.get(names if key == "name" else key)
        if pool:
            choices[key] = st.sampled_from(pool)
    if not choices:
        return st.just(path_parameters)
    seeded = st.fixed_dictionaries(choices).map(lambda values: {**path_parameters, **values})
    return st.one_of(st.just(path_parameters), seeded)


@dataclass(frozen=True)
class Registry:
    base: str
    headers: dict[Role, dict[str, str]]
    http: requests.Session
    log: Path


@pytest.fixture(scope="module")
def registry(
    backend: str, tmp_path_factory: pytest.TempPathFactory, worker_id_safe: str
) -> Iterator[Registry]:
    """The demo registry on a fresh database of ``backend``, served; a login per person."""
    where = tmp_path_factory.mktemp(f"fuzz-{backend}")
    url, pg_name = fresh_database(backend, f"{worker_id_safe}_fuzz", where)
    try:
        engine = make_engine(url)
        with unit_of_work(bind=engine) as session:
            seeded = seed_demo(session, LocalStore(where / "store"))
        engine.dispose()
        env = os.environ | {
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_STORE_ROOT": str(where / "store"),
        }
        log = where / "server.log"
        port = free_port()
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
            with until_stopped(
                proc, f"http://127.0.0.1:{port}", "ssreg serve", lambda: log.read_text()[-2000:]
            ) as base:
                assert httpx.get(f"{base}/openapi.json", timeout=60).json() == DOCUMENT
                headers = {}
                for role, username in DEMO_USERS.items():
                    secret = seeded.credentials[username]  # the plant account's: its API key
                    if role is not Role.plant:
                        login = {"username": username, "password": secret}
                        issued = httpx.post(f"{base}/api/v1/auth/token", data=login, timeout=60)
                        assert issued.status_code == 200, issued.text
                        secret = issued.json()["access_token"]
                    headers[role] = {"Authorization": f"Bearer {secret}"}
                with requests.Session() as http:
                    yield Registry(base, headers, http, log)
    finally:
        if pg_name:
            _drop_pg_database(pg_name)


def _callers(case: Any) -> list[Role | None]:
    """Who sends ``case`` (None: no credential): nobody for a public operation; else every
    allowed role and one caller that is not allowed, the same whenever the case is replayed."""
    key = (case.method.upper(), case.operation.path)
    if key in PUBLIC:
        return [None]
    allowed = POLICY[key][0]
    refused: list[Role | None] = [role for role in Role if role not in allowed]
    refused.append(None)
    digest = zlib.crc32(repr((case.formatted_path, case.query, case.body)).encode())
    return [*(role for role in Role if role in allowed), refused[digest % len(refused)]]


@SCHEMA.parametrize()
def test_every_operation_as_every_role(case: Any, registry: Registry) -> None:
    for role in _callers(case):
        headers = {} if role is None else registry.headers[role]
        try:
            case.call_and_validate(
                base_url=registry.base, session=registry.http, headers=headers, checks=CHECKS
            )
        except Exception as exc:
            exc.add_note(f"sent as: {role.value if role else 'anonymous'} (log: {registry.log})")
            raise
