"""Shared test helpers (importable as ``tests.helpers``)."""

from __future__ import annotations

from dataclasses import dataclass

from app.db.models import User

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Actor:
    user: User
    credential: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}
