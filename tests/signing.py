"""Helpers for the signature and lifecycle tests: sign over the API, complete a transfer."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.enums import Role
from tests.factories import PLANT_DOMAIN, transfer_data
from tests.helpers import PASSWORD, Actor


def signature_body(actor: Actor, meaning: str, comment: str | None = None, **extra: Any) -> Any:
    body = {"meaning": meaning, "username": actor.user.username, "password": PASSWORD, **extra}
    if comment is not None:
        body["comment"] = comment
    elif meaning in ("approved", "rejected"):
        body["comment"] = f"{meaning}: evidence reviewed"
    return body


def sign_version(
    client: TestClient,
    actor: Actor,
    meaning: str,
    *,
    model: str = "titer_pls",
    version: int = 1,
    **kwargs: Any,
) -> httpx.Response:
    url = f"/api/v1/models/{model}/versions/{version}/signatures"
    response: httpx.Response = client.post(
        url, json=signature_body(actor, meaning, **kwargs), headers=actor.headers
    )
    return response


def sign_transfer(
    client: TestClient, actor: Actor, meaning: str, *, ref: Any = 1, **kwargs: Any
) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/api/v1/transfers/{ref}/signatures",
        json=signature_body(actor, meaning, **kwargs),
        headers=actor.headers,
    )
    return response


def approve_version(
    client: TestClient, actors: dict[Role, Actor], *, version: int = 1, **kwargs: Any
) -> dict[str, Any]:
    """Authored by the developer, approved by QA: the response of the approval."""
    r = sign_version(client, actors[Role.developer], "authored", version=version)
    assert r.status_code == 201, r.text
    r = sign_version(client, actors[Role.qa], "approved", version=version, **kwargs)
    assert r.status_code == 201, r.text
    return dict(r.json())


def complete_transfer(
    client: TestClient,
    headers: dict[str, str],
    operating_range: dict[str, float],
    *,
    acceptance: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A PDS transfer of titer_pls v1 to the plant probe, completed (the record as JSON)."""
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "pds",
        "params": {"window": 5},
        "n_standards": 12,
        "change_control": "CC-SIGN-0001",
        "intended_use": "monitoring",
        "operating_range": operating_range,
        "acceptance": acceptance or {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    r = client.post("/api/v1/transfers", json=plan, headers=headers)
    assert r.status_code == 201, r.text
    data = transfer_data()
    r = client.post(
        f"/api/v1/transfers/{r.json()['number']}/standards",
        data={"reason": "plant probe standards"},
        files={
            "target_standards": ("standards.parquet", data.target_bytes()),
            "validation": ("validation.parquet", data.validation_bytes()),
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())
