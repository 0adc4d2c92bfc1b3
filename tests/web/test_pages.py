"""The pages' sign-in: same users, lockout and audit as the API; a strict session cookie; CSRF
on every form; people only (both backends, through the app in-process)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, User
from app.enums import Role
from app.web import routes as web_routes
from tests.factories import PLANT_DOMAIN, train_transfer_source, transfer_data
from tests.helpers import PASSWORD, Actor


def _login_csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _log_in(client: TestClient, username: str, password: str = PASSWORD, **extra: str):
    token = _login_csrf(client)
    data = {"username": username, "password": password, "csrf_token": token, **extra}
    return client.post("/login", data=data, follow_redirects=False)


def test_pages_need_a_login_and_keep_where_you_were_going(client: TestClient) -> None:
    response = client.get("/home?model=titer_pls", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/home%3Fmodel%3Dtiter_pls"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_login_sets_a_strict_http_only_cookie_and_is_audited(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].user
    response = _log_in(client, qa.username, next="/transfers/1")
    assert response.status_code == 303
    assert response.headers["location"] == "/transfers/1"
    cookie = next(
        h for k, h in response.headers.multi_items() if k == "set-cookie" and "ssr_session" in h
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in this test; https requests get it
    home = client.get("/home")
    assert home.status_code == 200
    assert "What waits for review" in home.text
    assert qa.full_name in home.text
    events = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == qa.username)).all()
    assert "auth.login" in events


def test_an_offsite_next_is_ignored(client: TestClient, actors: dict[Role, Actor]) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil"):
        response = _log_in(client, actors[Role.auditor].user.username, next=target)
        assert response.headers["location"] == "/home"


def test_wrong_password_is_a_401_page_counted_and_audited(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    dev = session.get(User, actors[Role.developer].user.id)
    assert dev is not None
    before = dev.failed_login_count
    response = _log_in(client, dev.username, password="not the password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    session.refresh(dev)
    assert dev.failed_login_count == before + 1
    failed = session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_id == str(dev.id))
    ).all()
    assert "auth.login_failed" in failed
    assert "ssr_session" not in response.headers.get("set-cookie", "")


def test_login_without_its_csrf_token_is_refused(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    data = {"username": actors[Role.qa].user.username, "password": PASSWORD}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "ssr_session" not in response.headers.get("set-cookie", "")


def test_logout_needs_the_csrf_token_and_ends_the_session(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].user
    assert _log_in(client, qa.username).status_code == 303
    forged = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/home").status_code == 200  # still signed in
    home = client.get("/home")
    token = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert token
    out = client.post("/logout", data={"csrf_token": token.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert client.get("/home", follow_redirects=False).status_code == 303
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == qa.username))
    assert "auth.logout" in list(actions)


def test_service_accounts_get_no_pages(client: TestClient, actors: dict[Role, Actor]) -> None:
    client.cookies.set("ssr_session", actors[Role.plant].credential)
    assert client.get("/home", follow_redirects=False).status_code == 303  # a key is no session


def test_the_transfer_card_page_of_an_unknown_transfer_is_a_404_page(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert _log_in(client, actors[Role.auditor].user.username).status_code == 303
    response = client.get("/transfers/999999")
    assert response.status_code == 404
    assert "No such transfer" in response.text


def _completed_transfer(
    client: TestClient, dev: dict[str, str], *, validation: bool, method: str = "pds"
) -> int:
    source = train_transfer_source(client, dev)
    return _run_transfer(client, dev, source, validation=validation, method=method)


def _run_transfer(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    *,
    validation: bool,
    method: str = "pds",
) -> int:
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": method,
        "n_standards": 10,
        "change_control": "CC-WEB-1",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "page test",
    }
    opened = client.post("/api/v1/transfers", json=plan, headers=dev)
    assert opened.status_code == 201, opened.text
    files = {"target_standards": ("s.parquet", transfer_data().target_bytes())}
    if validation:
        files["validation"] = ("v.parquet", transfer_data().validation_bytes())
    number = opened.json()["number"]
    done = client.post(
        f"/api/v1/transfers/{number}/standards", data={"reason": "t"}, files=files, headers=dev
    )
    assert done.status_code == 201, done.text
    return int(number)


def test_the_home_page_lists_the_newest_and_links_to_older_ones(
    client: TestClient, actors: dict[Role, Actor], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = actors[Role.developer].headers
    source = train_transfer_source(client, dev)
    first = _run_transfer(client, dev, source, validation=False, method="sbc")
    second = _run_transfer(client, dev, source, validation=False, method="sbc")
    monkeypatch.setattr(web_routes, "HOME_PAGE", 1)
    assert _log_in(client, actors[Role.qa].user.username).status_code == 303
    home = client.get("/home")
    assert home.status_code == 200
    listed = re.findall(r'href="/transfers/(\d+)"', home.text)
    assert str(second) in listed
    assert str(first) not in listed
    older = re.search(r'href="(/home\?[^"]+)" rel="next"', home.text)
    assert older, home.text
    assert older.group(1) == f"/home?before={second}"
    page = client.get(older.group(1))
    assert page.status_code == 200
    assert f'href="/transfers/{first}"' in page.text
    assert 'rel="next"' not in page.text
    assert client.get("/home?before=0").status_code == 422
    assert client.get("/home?bogus=1").status_code == 422


def test_the_record_card_shows_its_four_blocks_and_five_plots(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    number = _completed_transfer(client, actors[Role.developer].headers, validation=True)
    assert _log_in(client, actors[Role.qa].user.username).status_code == 303
    page = client.get(f"/transfers/{number}")
    assert page.status_code == 200
    for heading in ("Source", "Target", "Calibration transfer", "Governance", "Plots"):
        assert f">{heading}</h2>" in page.text
    assert "CC-WEB-1" in page.text
    assert "g/L" in page.text
    plots = re.findall(rf'src="(/transfers/{number}/plots/[a-z0-9]+\.svg)"', page.text)
    assert len(plots) == 5
    for url in plots:
        svg = client.get(url)
        assert svg.status_code == 200, url
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.content.lstrip().startswith(b"<?xml")
        assert b"No validation set" not in svg.content
        assert client.get(url).content == svg.content  # cached, same bytes
    assert client.get(f"/transfers/{number}/plots/bogus.svg").status_code == 404


def test_without_a_validation_set_the_plots_say_so(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    number = _completed_transfer(client, actors[Role.developer].headers, validation=False)
    assert _log_in(client, actors[Role.auditor].user.username).status_code == 303
    svg = client.get(f"/transfers/{number}/plots/predicted.svg")
    assert svg.status_code == 200
    assert b"No validation set" in svg.content
    assert client.get(f"/transfers/{number}/plots/spectra.svg").status_code == 200


def test_a_correction_of_predictions_draws_no_corrected_spectrum(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    number = _completed_transfer(
        client, actors[Role.developer].headers, validation=True, method="sbc"
    )
    assert _log_in(client, actors[Role.qa].user.username).status_code == 303
    page = client.get(f"/transfers/{number}")
    assert page.status_code == 200
    assert "sbc" in page.text
    for kind in ("predicted", "spectra", "residuals", "cv", "t2q"):
        svg = client.get(f"/transfers/{number}/plots/{kind}.svg")
        assert svg.status_code == 200, kind
        assert svg.content.lstrip().startswith(b"<?xml"), kind
    spectra = client.get(f"/transfers/{number}/plots/spectra.svg").content
    assert b"target corrected" not in spectra
    assert b"the correction acts on predictions, not spectra" in spectra


def test_plots_need_a_session(client: TestClient) -> None:
    response = client.get("/transfers/1/plots/cv.svg", follow_redirects=False)
    assert response.status_code == 303


def test_model_version_audit_log_and_account_pages(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    number = _completed_transfer(client, actors[Role.developer].headers, validation=True)
    assert _log_in(client, actors[Role.auditor].user.username).status_code == 303
    models = client.get("/models")
    assert models.status_code == 200
    assert 'href="/models/titer_pls"' in models.text
    history = client.get("/models/titer_pls")
    assert "Version history" in history.text
    assert f'href="/transfers/{number}"' in history.text
    version = client.get("/models/titer_pls/versions/2")
    assert version.status_code == 200
    assert "pending_requalification" in version.text
    signed_on = f'<a href="/transfers/{number}#signatures-h">transfer record #{number}</a>'
    assert signed_on in version.text
    lineage = client.get("/models/titer_pls/versions/2/lineage.svg")
    assert lineage.headers["content-type"] == "image/svg+xml"
    assert b"transfer #" in lineage.content
    trail = re.search(r'href="(/audit-trail\?entity_type=model_version[^"]+)"', version.text)
    assert trail
    audit_page = client.get(trail.group(1).replace("&amp;", "&"))
    assert audit_page.status_code == 200
    assert "model_version.create" in audit_page.text
    log = client.get("/prediction-log?model=titer_pls&flagged=yes")
    assert log.status_code == 200
    assert "No call under these filters" in log.text
    assert client.get("/prediction-log?model=nope").text.count("does not exist") == 1
    csv = client.get("/prediction-log/export.csv?model=titer_pls")
    assert csv.headers["content-type"].startswith("text/csv")
    assert client.get("/account").status_code == 200


def test_developers_see_records_but_not_the_audit_pages(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert _log_in(client, actors[Role.developer].user.username).status_code == 303
    assert client.get("/models").status_code == 200
    assert client.get("/prediction-log").status_code == 403
    assert client.get("/audit-trail?entity_type=user&entity_id=x").status_code == 403


def test_changing_the_password_on_the_account_page(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].user
    assert _log_in(client, qa.username).status_code == 303
    page = client.get("/account")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    form = {"current_password": "wrong one", "new_password": "n" * 14, "confirm_password": "n" * 14}
    assert client.post("/account/password", data=form).status_code == 403  # no CSRF token
    wrong = client.post("/account/password", data=form | {"csrf_token": token.group(1)})
    assert wrong.status_code == 401
    differ = form | {"current_password": PASSWORD, "confirm_password": "m" * 14}
    assert (
        client.post("/account/password", data=differ | {"csrf_token": token.group(1)}).status_code
        == 422
    )


def _csrf_of(page_text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert found
    return found.group(1)


def test_signing_on_the_card_authored_then_approved(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    number = _completed_transfer(client, dev.headers, validation=True)
    assert _log_in(client, dev.user.username).status_code == 303
    card = client.get(f"/transfers/{number}")
    assert 'value="authored"' in card.text
    assert 'value="approved"' not in card.text  # the author never sees an approval
    form = {"meaning": "authored", "username": dev.user.username, "password": PASSWORD}
    forged = client.post(f"/transfers/{number}/sign", data=form, follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token
    form["csrf_token"] = _csrf_of(card.text)
    done = client.post(f"/transfers/{number}/sign", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    again = client.get(done.headers["location"])
    assert "Signed: authored" in again.text
    assert 'action="/transfers/' not in again.text.split("Signatures")[1]  # signed once
    client.cookies.clear()

    assert _log_in(client, qa.user.username).status_code == 303
    card = client.get(f"/transfers/{number}")
    assert 'value="approved"' in card.text
    approve = {
        "meaning": "approved",
        "username": qa.user.username,
        "csrf_token": _csrf_of(card.text),
    }
    wrong = client.post(
        f"/transfers/{number}/sign", data=approve | {"password": "nope", "comment": "ok"}
    )
    assert wrong.status_code == 401
    assert "nothing was signed" in wrong.text
    no_comment = client.post(f"/transfers/{number}/sign", data=approve | {"password": PASSWORD})
    assert no_comment.status_code == 422
    assert "comment is required" in no_comment.text
    ok = client.post(
        f"/transfers/{number}/sign",
        data=approve | {"password": PASSWORD, "comment": "record reviewed, criteria met"},
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    after = client.get(ok.headers["location"])
    assert "requalified" in after.text
    assert "record reviewed, criteria met" in after.text
    assert after.text.count(">valid<") == 2
    client.cookies.clear()

    # The record's own audit trail holds its signatures and the refused attempt beside its events.
    assert _log_in(client, actors[Role.auditor].user.username).status_code == 303
    trail_link = re.search(r'href="(/audit-trail\?[^"]+)"', client.get(after.url.path).text)
    assert trail_link, "the card links its audit trail"
    trail = client.get(trail_link.group(1).replace("&amp;", "&"))
    assert trail.status_code == 200
    actions = re.findall(r"<td>((?:transfer|signature)\.[a-z_]+)</td>", trail.text)
    assert actions == [
        "transfer.open",
        "transfer.complete",
        "signature.sign",
        "signature.refused",
        "signature.sign",
    ], actions


def test_the_change_control_page_and_its_bundle(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    number = _completed_transfer(client, actors[Role.developer].headers, validation=False)
    assert _log_in(client, actors[Role.auditor].user.username).status_code == 303
    card = client.get(f"/transfers/{number}")
    assert 'href="/change-controls/CC-WEB-1"' in card.text
    page = client.get("/change-controls/CC-WEB-1")
    assert page.status_code == 200
    assert f'href="/transfers/{number}"' in page.text
    bundle = client.get("/change-controls/CC-WEB-1/export.zip")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "application/zip"
    assert bundle.content[:2] == b"PK"
    assert len(bundle.headers["x-manifest-sha256"]) == 64
    assert client.get("/change-controls/CC-NOPE").status_code == 404
    assert client.get("/models/titer_pls").status_code == 200  # no alias yet: "No alias."


def test_a_trained_version_is_authored_and_approved_from_its_page(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    train_transfer_source(client, dev.headers)
    assert _log_in(client, dev.user.username).status_code == 303
    page = client.get("/models/titer_pls/versions/1")
    assert 'value="authored"' in page.text
    assert 'value="approved"' not in page.text
    form = {
        "meaning": "authored",
        "username": dev.user.username,
        "password": PASSWORD,
        "csrf_token": _csrf_of(page.text),
    }
    done = client.post("/models/titer_pls/versions/1/sign", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert "Signed: authored" in client.get(done.headers["location"]).text
    client.cookies.clear()

    assert _log_in(client, qa.user.username).status_code == 303
    page = client.get("/models/titer_pls/versions/1")
    assert 'value="approved"' in page.text
    approve = {
        "meaning": "approved",
        "username": qa.user.username,
        "password": PASSWORD,
        "comment": "held-out figures reviewed",
        "csrf_token": _csrf_of(page.text),
    }
    ok = client.post("/models/titer_pls/versions/1/sign", data=approve, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    after = client.get(ok.headers["location"])
    assert '<span class="status">approved</span>' in after.text
    assert after.text.count(">valid<") == 2
    twice = client.post("/models/titer_pls/versions/1/sign", data=approve)
    assert twice.status_code == 409  # already approved: an illegal transition, nothing kept
