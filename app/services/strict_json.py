"""JSON bodies read strictly: what two JSON readers may read differently is refused.

RFC 8259 (section 4) leaves an object with a name twice to the reader: Python's ``json`` and
orjson keep the last value, simdjson's look-up the first, and a proxy, a log or the client's
own library may do either. A signature's ``meaning``, an acceptance criterion or a row of
spectra sent twice would then be recorded differently from what the sender's tools show, so
every JSON body is refused (422) when one of its objects holds a name twice. ``NaN``,
``Infinity`` and numbers beyond float64 are not JSON numbers either (Python reads them), and
are refused too unless the caller checks them itself (the prediction bodies, which name the
row and channel of such a value).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from app.errors import InvalidInput


def repeated_name(names: Iterable[str]) -> str | None:
    """The first name that comes a second time in ``names``, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def duplicate_detail(name: str) -> str:
    shown = json.dumps(name)[:80]
    return (
        f"the JSON body has the key {shown} twice in one object: send each key once "
        "(JSON readers differ on which of the two counts)"
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        name = repeated_name(key for key, _ in pairs)
        assert name is not None
        raise InvalidInput(duplicate_detail(name))
    return obj


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"the JSON body holds {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"the number {text[:40]} in the JSON body is beyond float64")
    return value


def loads(body: bytes | str, *, allow_non_finite: bool = False) -> Any:
    """The document ``body`` holds, or :class:`~app.errors.InvalidInput`: not JSON, a key
    twice in one object, or (unless ``allow_non_finite``) NaN, Infinity or a number beyond
    float64."""
    try:
        if allow_non_finite:
            return json.loads(body, object_pairs_hook=_unique_keys)
        return json.loads(
            body,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit integer, ...
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
