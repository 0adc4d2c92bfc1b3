"""Checks on the serving path that a record is as its audit trail says."""

from __future__ import annotations

import itertools
from typing import Any, cast

from sqlalchemy import Connection, Table

from app.db.guards import UPDATABLE
from app.db.models import ModelVersion
from app.db.repositories import audit as audit_rows
from app.db.repositories import predictions as predictions_repo
from app.db.repositories.predictions import VersionRecord
from app.errors import UnvouchedRecord
from app.services import record_state

_VERSIONS = cast(Table, ModelVersion.__table__)


def check_version(connection: Connection, record: VersionRecord) -> dict[str, Any]:
    """The version's last audited state, when its row equals it; UnvouchedRecord (naming
    the columns) when the row was changed behind the application's back or has no audited
    state, or whose audited states differ in a column no transition changes. Two indexed
    queries: the row and the version's events that hold a state."""
    row = predictions_repo.version_row(connection, record.id)
    key, current = record_state.mapping_state(_VERSIONS, row._mapping)
    label = f"{record.model} v{record.version}"
    held = [
        (seq, state[key])
        for seq, state in audit_rows.entity_states(connection, "model_version", str(record.id))
        if key in state
    ]
    if not held:
        raise UnvouchedRecord(
            f"{label}: its record has no audited state (written behind the application's "
            "back): it is not served"
        )
    seq, audited = held[0]
    changed = record_state.differing_fields(audited, current)
    # Audited states one after the other differ only in what transitions change: otherwise
    # the row was altered in between and a later transition took it into its state.
    for (later, newer), (_, older) in itertools.pairwise(held):
        changed += [
            f"{name} (between events)"
            for name in record_state.differing_fields(older, newer)
            if name not in UPDATABLE["model_version"]
        ]
        if changed:
            seq = later
            break
    if changed:
        raise UnvouchedRecord(
            f"{label}: its record differs from its audited state (event {seq}) in "
            f"{', '.join(changed)}: changed behind the application's back, it is not served "
            "(GET /api/v1/audit/verify names the changes)"
        )
    return cast(dict[str, Any], audited)
