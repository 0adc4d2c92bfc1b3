from __future__ import annotations

from typing import Literal

from app.schemas.common import Schema


class LivenessRead(Schema):
    status: Literal["ok"]


class ReadinessRead(Schema):
    """``ready`` only if every check says ``ok``; otherwise each check says what is wrong."""

    ready: bool
    checks: dict[str, str]
