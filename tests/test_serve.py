"""``ssreg serve`` as deployed: JSON log lines with request ids, and metrics that add up over
several worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.db.session import make_engine, unit_of_work
from app.enums import Role
from app.services import auth
from bench._serving import free_port, until_stopped
from tests.conftest import _drop_pg_database, fresh_database
from tests.helpers import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _serve(env_extra: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env | env_extra, stdout=out, stderr=out, cwd=ROOT)
        with until_stopped(
            proc, f"http://127.0.0.1:{port}", "ssreg serve", lambda: log.read_text()[-3000:]
        ) as base:
            yield base


def _json_lines(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        if not line.startswith("{"):
            continue  # the note on the metrics directory
        parsed.append(json.loads(line))
    return parsed


def _admin(url: str) -> None:
    engine = make_engine(url)
    with unit_of_work(bind=engine) as session:
        auth.create_user(
            session,
            username="ops-admin",
            full_name="Ops Admin",
            role=Role.admin,
            password=PASSWORD,
            actor="pytest",
            reason="serve test",
        )
    engine.dispose()


def test_serve_writes_one_json_line_per_request_with_its_id_and_user(tmp_path: Path) -> None:
    url, _ = fresh_database("sqlite", "serve", tmp_path)
    _admin(url)
    log = tmp_path / "server.log"
    env = {"REGISTRY_DATABASE_URL": url, "REGISTRY_STORE_ROOT": str(tmp_path / "store")}
    with _serve(env, log) as base, httpx.Client(base_url=base) as c:
        token = c.post(
            "/api/v1/auth/token",
            data={"username": "ops-admin", "password": PASSWORD},
            headers={"X-Request-ID": "login-1"},
        ).json()["access_token"]
        me = c.get(
            "/api/v1/users/me",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "me-1"},
        )
        assert me.headers["X-Request-ID"] == "me-1"
        c.get("/api/v1/users/me", headers={"X-Request-ID": "anon-1"})
    lines = _json_lines(log)
    assert lines, log.read_text()
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines)
    requests = {line["request_id"]: line for line in lines if line["logger"] == "app.request"}
    assert requests["login-1"]["user"] == "ops-admin"
    assert requests["login-1"]["route"] == "/api/v1/auth/token"
    me_line = requests["me-1"]
    assert me_line["method"] == "GET"
    assert me_line["route"] == "/api/v1/users/me"
    assert me_line["status"] == 200
    assert me_line["user"] == "ops-admin"
    assert me_line["duration_ms"] > 0
    assert (requests["anon-1"]["status"], requests["anon-1"]["user"]) == (401, None)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


@pytest.mark.postgres
def test_metrics_add_up_over_two_workers_and_the_verify_command(tmp_path: Path) -> None:
    url, pg_name = fresh_database("postgresql", f"serve_{os.getpid()}", tmp_path)
    try:
        _admin(url)
        metrics_dir = tmp_path / "prometheus"
        metrics_dir.mkdir()
        (metrics_dir / "counter_999999.db").write_bytes(b"a previous run's file")
        env = {
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_STORE_ROOT": str(tmp_path / "store"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        log = tmp_path / "server.log"

        def workers_seen() -> set[int]:
            return {
                line["pid"]
                for line in _json_lines(log)
                if line["logger"] == "app.request" and line["request_id"].startswith("h-")
            }

        def hit(i: int) -> None:  # a new connection each time
            r = httpx.get(f"{base}/healthz", headers={"X-Request-ID": f"h-{i}"})
            assert r.status_code == 200

        n = 0
        with _serve(env, log, "--workers", "2") as base:
            # Concurrent batches until both workers have answered (the kernel hands each new
            # connection to whichever worker accepts first), 10 batches at most.
            with ThreadPoolExecutor(max_workers=8) as pool:
                for _ in range(10):
                    list(pool.map(hit, range(n, n + 40)))
                    n += 40
                    if len(workers_seen()) == 2:
                        break
            verify = subprocess.run(
                [sys.executable, "-m", "app.cli", "audit", "verify"],
                env={**os.environ, **env},
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            assert verify.returncode == 0, verify.stderr
            scraped = [httpx.get(f"{base}/metrics").text for _ in range(4)]
        assert len(workers_seen()) == 2, f"the {n} requests were all served by one worker"
        for text in scraped:
            healthz = _samples(text, "ssreg_http_requests_total")
            key = frozenset({("method", "GET"), ("route", "/healthz"), ("status", "200")})
            assert healthz[key] == n
            assert _samples(text, "ssreg_audit_chain_valid") == {frozenset(): 1.0}
            assert _samples(text, "ssreg_audit_chain_events") == {frozenset(): 1.0}
    finally:
        _drop_pg_database(pg_name or "")


def test_the_log_configuration_is_plain_json() -> None:
    """uvicorn's --log-config reads it from a file (bench/predict.py --request-log does)."""
    from app.telemetry.logs import log_config

    assert json.loads(json.dumps(log_config("INFO"))) == log_config("INFO")
