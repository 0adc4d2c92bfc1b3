"""The reviewer's day in real headless Chromium against a served, seeded registry: log in as
QA, find the demo record's four blocks and plots, sign a record as its developer (who finds no
approve button) and approve it as QA with the password; a forged POST is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.db.session import make_engine, unit_of_work
from app.services.seed import N_STANDARDS, PLANT_DOMAIN, plant_probe_files, seed_demo
from app.store import LocalStore
from tests.conftest import fresh_database
from tests.web.conftest import SCREENSHOTS, serve


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``make run``'s demo on a fresh SQLite database, served; plus a transfer (opened and
    completed by the demo developer through the API; the seed made #1 and #2) waiting for
    review."""
    where = tmp_path_factory.mktemp("browser")
    url, _ = fresh_database("sqlite", "browser", where)
    engine = make_engine(url)
    with unit_of_work(bind=engine) as session:
        seeded = seed_demo(session, LocalStore(where / "store"))
    engine.dispose()
    env = {"REGISTRY_DATABASE_URL": url, "REGISTRY_STORE_ROOT": str(where / "store")}
    for base in serve(env, where / "server.log"):
        credentials = seeded.credentials
        number = _another_transfer(base, credentials["demo-developer"])
        yield {"base": base, "credentials": credentials, "transfer": number}


def _another_transfer(base: str, password: str) -> int:
    with httpx.Client(base_url=base, timeout=60) as api:
        token = api.post(
            "/api/v1/auth/token", data={"username": "demo-developer", "password": password}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        v1 = api.get("/api/v1/models/titer_pls/versions/1", headers=headers).json()
        plan = {
            "source_model": "titer_pls",
            "source_version": 1,
            "target_domain": PLANT_DOMAIN,
            "method": "pds",
            "n_standards": N_STANDARDS,
            "change_control": "CC-2026-0077",
            "intended_use": "monitoring",
            "operating_range": v1["operating_range"],
            "acceptance": {"max_rmse_ratio": 2.5},
            "reason": "browser test: a second transfer for review",
        }
        opened = api.post("/api/v1/transfers", json=plan, headers=headers)
        assert opened.status_code == 201, opened.text
        standards, validation = plant_probe_files()
        done = api.post(
            f"/api/v1/transfers/{opened.json()['number']}/standards",
            data={"reason": "browser test"},
            files={
                "target_standards": ("s.parquet", standards),
                "validation": ("v.parquet", validation),
            },
            headers=headers,
        )
        assert done.status_code == 201, done.text
        return int(done.json()["number"])


def _page(chromium: Any) -> Any:
    return chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()


def _log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/home$"))


def test_qa_reads_the_demo_record_with_its_blocks_and_plots(
    chromium: Any, demo: dict[str, Any]
) -> None:
    page = _page(chromium)
    _log_in(page, demo["base"], "demo-qa", demo["credentials"]["demo-qa"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "reviewers-home.png"), full_page=True)
    assert page.get_by_role("heading", name=re.compile("Transfers pending review")).is_visible()
    page.get_by_role("link", name="#1").first.click()
    page.wait_for_load_state("networkidle")
    for block in ("Source", "Target", "Calibration transfer", "Governance", "Plots"):
        assert page.get_by_role("heading", name=block, exact=True).is_visible(), block
    images = page.locator(".plots img")
    assert images.count() == 5
    for i in range(5):  # every plot loaded and has a size
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), i
    assert "requalified" in page.inner_text("body")
    page.screenshot(path=str(SCREENSHOTS / "transfer-record-card.png"), full_page=True)
    page.goto(demo["base"] + "/models/titer_pls")
    aliases = page.locator("table").first.inner_text()
    assert "plant-2000L" in aliases
    assert "CC-2026-0042" in aliases
    page.screenshot(path=str(SCREENSHOTS / "model-versions-aliases.png"), full_page=True)


def test_the_author_signs_and_qa_approves_with_the_password(
    chromium: Any, demo: dict[str, Any]
) -> None:
    base, credentials, n = demo["base"], demo["credentials"], demo["transfer"]
    dev = _page(chromium)
    _log_in(dev, base, "demo-developer", credentials["demo-developer"])
    dev.goto(base + f"/transfers/{n}")
    assert dev.get_by_label("approved").count() == 0  # no approve button for the author
    dev.get_by_label("authored").check()
    dev.get_by_label("User name (entered again)").fill("demo-developer")
    dev.get_by_label("Password (entered again)").fill(credentials["demo-developer"])
    dev.get_by_role("button", name="Sign").click()
    dev.wait_for_url(re.compile(rf".*/transfers/{n}\?signed=authored$"))
    assert "Signed: authored" in dev.inner_text("body")

    qa = _page(chromium)
    _log_in(qa, base, "demo-qa", credentials["demo-qa"])
    qa.goto(base + f"/transfers/{n}")
    qa.get_by_label("approved").check()
    qa.get_by_label("Comment").fill("criteria met; plots reviewed")
    qa.get_by_label("User name (entered again)").fill("demo-qa")
    qa.get_by_label("Password (entered again)").fill(credentials["demo-qa"])
    qa.get_by_role("button", name="Sign").click()
    qa.wait_for_url(re.compile(rf".*/transfers/{n}\?signed=approved$"))
    body = qa.inner_text("body")
    assert "requalified" in body
    assert "criteria met; plots reviewed" in body
    rows = qa.locator("table.signatures tbody tr")
    assert rows.count() == 2
    assert "valid" in rows.nth(1).inner_text()
    qa.screenshot(path=str(SCREENSHOTS / "transfer-approved.png"), full_page=True)


def test_a_post_without_the_csrf_token_is_refused(chromium: Any, demo: dict[str, Any]) -> None:
    page = _page(chromium)
    _log_in(page, demo["base"], "demo-qa", demo["credentials"]["demo-qa"])
    # The browser sends the session cookie, but a forged form cannot know the token.
    response = page.request.post(
        demo["base"] + "/transfers/1/sign",
        form={"meaning": "reviewed", "username": "demo-qa", "password": "x"},
    )
    assert response.status == 403
    logout = page.request.post(demo["base"] + "/logout", form={"csrf_token": "forged"})
    assert logout.status == 403
