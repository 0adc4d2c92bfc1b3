"""Numeric artifacts: ``.npz`` written and read without pickle, stored by sha256."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.db.session import on_rollback
from app.errors import IntegrityFailure
from app.store import ArtifactStore


def dump_npz(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Serialize arrays plus a JSON ``meta`` entry (a unicode scalar, not an object)."""
    buf = io.BytesIO()
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if any(a.dtype == object for a in payload.values()):
        raise TypeError("object arrays would need pickle; artifacts are numeric only")
    payload["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez(buf, **payload)  # type: ignore[arg-type]
    return buf.getvalue()


def load_npz(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an artifact; never executes code (``allow_pickle=False``)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as exc:
        raise IntegrityFailure(f"artifact is not a numeric .npz: {exc}") from exc
    meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    return arrays, meta


def put_artifact(session: Session, store: ArtifactStore, blob: bytes) -> str:
    """Store ``blob``; if this request created it and then fails, remove it again."""
    digest, created = store.put(blob)
    if created:
        on_rollback(session, lambda: store.discard(digest))
    return digest
