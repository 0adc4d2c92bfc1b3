"""Shared test helpers (importable as ``tests.helpers``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.db.models import User

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Actor:
    user: User
    credential: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}


def assert_error(response: Any, status: int, *fragments: str, code: str | None = None) -> None:
    """A refusal in the error envelope: ``status``, only ``error`` and ``detail``, the
    ``code`` if given, and every fragment somewhere in the detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    if code is not None:
        assert body["error"] == code
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
