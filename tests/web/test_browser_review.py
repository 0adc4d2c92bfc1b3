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


# What a person reaches from the reviewer's home; each must fit 1280 px without sideways scrolling.
PAGES = (
    "/home",
    "/transfers/1",
    "/models",
    "/models/titer_pls",
    "/models/titer_pls/versions/1",
    "/models/titer_pls/versions/2",
    "/models/titer_pls/versions/3",
    "/prediction-log",
    "/change-controls/CC-2026-0042",
    "/account",
)
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(el => el.type !== 'hidden' && el.labels.length === 0 && !el.getAttribute('aria-label'))
    .map(el => el.outerHTML)"""


def test_every_page_fits_1280_px_and_labels_its_controls(
    chromium: Any, demo: dict[str, Any]
) -> None:
    page = _page(chromium)
    _log_in(page, demo["base"], "demo-qa", demo["credentials"]["demo-qa"])
    for path in PAGES:
        response = page.goto(demo["base"] + path)
        assert response is not None, path
        assert response.status == 200, path
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, (path, width)
        assert page.evaluate(UNLABELLED) == [], path
        slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
        page.screenshot(path=str(SCREENSHOTS / f"page-{slug}.png"), full_page=True)
    page.goto(demo["base"] + "/transfers/1")
    page.get_by_role("link", name="audit trail").click()
    page.wait_for_url(re.compile(r".*/audit-trail\?entity_type=transfer.*"))
    assert "transfer.complete" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.screenshot(path=str(SCREENSHOTS / "transfer-1-audit-trail.png"), full_page=True)


def _tab_to(page: Any, predicate: str, limit: int = 80) -> dict[str, Any]:
    """Press Tab until the focused element satisfies ``predicate`` (JS, on ``el``)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        found = page.evaluate(
            f"() => {{ const el = document.activeElement; return ({predicate}) ? "
            "{tag: el.tagName, name: el.name || '', text: el.innerText || '', "
            "outline: getComputedStyle(el).outlineStyle} : null; }"
        )
        if found:
            return dict(found)
    raise AssertionError(f"Tab never reached {predicate}")


def test_a_reviewer_gets_from_login_to_the_sign_form_with_the_keyboard_only(
    chromium: Any, demo: dict[str, Any]
) -> None:
    page = _page(chromium)
    page.goto(demo["base"] + "/login")
    _tab_to(page, "el.name === 'username'")
    page.keyboard.type("demo-qa")
    _tab_to(page, "el.name === 'password'", limit=3)
    page.keyboard.type(demo["credentials"]["demo-qa"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/home$"))
    number = demo["transfer"]
    link = _tab_to(page, f"el.tagName === 'A' && el.innerText.trim() === '#{number}'")
    assert link["outline"] != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf".*/transfers/{number}$"))
    # The sign form's controls come in reading order and each takes the focus.
    reached = [_tab_to(page, "el.name === 'meaning'")["name"]]
    for name in ("comment", "username", "password"):
        reached.append(_tab_to(page, f"el.name === '{name}'", limit=6)["name"])
    button = _tab_to(page, "el.tagName === 'BUTTON'", limit=3)
    assert reached == ["meaning", "comment", "username", "password"]
    assert button["text"].strip() == "Sign"
    assert button["outline"] != "none"


def test_the_printed_record_card_is_the_record_without_the_page_chrome(
    chromium: Any, demo: dict[str, Any]
) -> None:
    page = _page(chromium)
    _log_in(page, demo["base"], "demo-qa", demo["credentials"]["demo-qa"])
    page.goto(demo["base"] + "/transfers/1")
    page.wait_for_load_state("networkidle")
    page.emulate_media(media="print")
    for hidden in ("header.top", "form"):
        assert not page.locator(hidden).first.is_visible(), hidden
    for block in ("Source", "Target", "Calibration transfer", "Governance", "Plots"):
        assert page.get_by_role("heading", name=block, exact=True).is_visible(), block
    assert page.get_by_role("cell", name="naive", exact=True).first.is_visible()  # the CV table
    page.screenshot(path=str(SCREENSHOTS / "transfer-record-card-print.png"), full_page=True)
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 10_000


def test_the_pages_work_under_their_content_security_policy(
    chromium: Any, demo: dict[str, Any]
) -> None:
    """Every page (plots and lineage graph included) renders with nothing blocked by the
    policy: no inline script or style, nothing from another host."""
    page = _page(chromium)
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else None)
    _log_in(page, demo["base"], "demo-qa", demo["credentials"]["demo-qa"])
    for path in (
        "/home",
        "/transfers/1",
        "/models",
        "/models/titer_pls",
        "/models/titer_pls/versions/2",
        "/models/titer_pls/versions/3",
        "/prediction-log",
        "/audit-trail?entity_type=model&entity_id=titer_pls",
        "/change-controls/CC-2026-0042",
        "/account",
    ):
        response = page.goto(demo["base"] + path)
        assert response.status == 200, path
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        page.wait_for_load_state("networkidle")
        for img in page.locator("img").all():
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), path
        assert page.locator("link[rel=stylesheet]").evaluate("l => l.sheet !== null"), path
    assert blocked == []
