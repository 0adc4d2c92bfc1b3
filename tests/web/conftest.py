"""Browser tests: Debian's Chromium (/usr/bin/chromium), driven by Playwright for Python, against
a real ``ssreg serve`` process. Never a browser download. Outside CI a missing Chromium skips
these tests; with ``CI=true`` it fails them (the Makefile installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._serving import free_port, until_stopped
from tests.conftest import ROOT, fresh_database

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
# Screenshots a person looks at before resolving (not compared by the tests).
SCREENSHOTS = ROOT / "test-output" / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is required in CI: /usr/bin/chromium is missing")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


def serve(env_extra: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``ssreg serve`` on a free port with ``env_extra``; yields its base URL."""
    port = free_port()
    env = os.environ | env_extra
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        with until_stopped(
            proc, f"http://127.0.0.1:{port}", "ssreg serve", lambda: log.read_text()[-2000:]
        ) as base:
            yield base


@pytest.fixture
def empty_server(tmp_path: Path) -> Iterator[str]:
    """A server on a fresh, migrated SQLite database with nobody in it."""
    url, _ = fresh_database("sqlite", "web", tmp_path)
    yield from serve(
        {"REGISTRY_DATABASE_URL": url, "REGISTRY_STORE_ROOT": str(tmp_path)},
        tmp_path / "server.log",
    )
