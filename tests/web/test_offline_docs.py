"""/docs and /redoc render with every host but the service unreachable (an air-gapped plant
network): their scripts and styles come from the service itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.web.conftest import SCREENSHOTS

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _offline_page(chromium: object, base: str) -> tuple[object, list[str], list[str]]:
    """A page whose requests to any host but the service fail, the list they go to, and the
    browser's reports of what the page's Content-Security-Policy blocked."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    refused: list[str] = []
    blocked: list[str] = []
    page.on(  # type: ignore[attr-defined]
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    service = urlsplit(base).netloc

    def route(r: object) -> None:
        request = r.request  # type: ignore[attr-defined]
        if urlsplit(request.url).netloc == service:
            r.continue_()  # type: ignore[attr-defined]
        else:
            refused.append(request.url)
            r.abort("internetdisconnected")  # type: ignore[attr-defined]

    page.route("**/*", route)
    return page, refused, blocked


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock-tag"),
        ("/redoc", "redoc-wrap, .redoc-wrap, [role='navigation']"),
    ],
)
def test_api_docs_render_offline(
    chromium: object, empty_server: str, path: str, rendered: str
) -> None:
    page, refused, blocked = _offline_page(chromium, empty_server)
    page.goto(empty_server + path)  # type: ignore[attr-defined]
    page.wait_for_selector(rendered, timeout=20_000)  # type: ignore[attr-defined]
    body = page.inner_text("body")  # type: ignore[attr-defined]
    assert "softsensor-registry" in body
    assert "transfers" in body.lower()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"api{path.replace('/', '-')}.png"))  # type: ignore[attr-defined]
    # ReDoc's bundle links its own "powered by" logo from its CDN: the one request allowed to
    # fail (decoration; the documentation renders without it), and the policy blocks it.
    others = [u for u in refused if u != REDOC_LOGO]
    assert others == [], f"{path} asked other hosts: {others}"
    blocked_others = [b for b in blocked if REDOC_LOGO not in b]
    assert blocked_others == [], f"{path}: the Content-Security-Policy blocked {blocked_others}"
