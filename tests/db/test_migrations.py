"""The schema comes from Alembic alone, matches the ORM, and downgrades cleanly."""

import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from tests.conftest import _drop_pg_database, alembic_config, fresh_database


def test_models_match_the_migrations(engine: Engine) -> None:
    command.check(alembic_config(engine.url.render_as_string(hide_password=False)))


def test_downgrade_to_base_and_back(backend: str, worker_id_safe: str, tmp_path: Path) -> None:
    url, pg_name = fresh_database(backend, f"{worker_id_safe}_migrations", tmp_path)
    try:
        cfg = alembic_config(url)
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")
        from app.db.session import make_engine

        eng = make_engine(url)
        assert "audit_event" in inspect(eng).get_table_names()
        eng.dispose()
    finally:
        if pg_name:
            _drop_pg_database(pg_name)


_USER = "11111111111111111111111111111111"
_ROWS = [
    (
        "INSERT INTO app_user (id, username, full_name, role, is_active, failed_login_count, "
        "created_at) VALUES (:u, 'm', 'M', 'developer', true, 0, '2026-01-01 00:00:00')"
    ),
    (
        "INSERT INTO domain (id, name, instrument, probe_serial, scale, site, created_at, "
        "created_by_id) VALUES (:d, 'dom', 'i', 'p', 's', 's', '2026-01-01 00:00:00', :u)"
    ),
    (
        "INSERT INTO dataset (id, sha256, name, domain_id, file_format, size_bytes, "
        "reference_column, units, spectral_prefix, axis_unit, n_samples, n_channels, axis, "
        "reference_min, reference_max, created_at, created_by_id) VALUES (:s, :sha, 'ds', :d, "
        "'csv', 1, 'y', 'g/L', 'wn_', 'cm-1', 1, 1, '[1]', 0, 1, '2026-01-01 00:00:00', :u)"
    ),
    (
        "INSERT INTO soft_sensor_model (id, name, analyte, units, created_at, created_by_id) "
        "VALUES (:m, 'mdl', 'titer', 'g/L', '2026-01-01 00:00:00', :u)"
    ),
]
_VERSION = (
    "INSERT INTO model_version (id, model_id, version, status, domain_id, dataset_id, "
    "artifact_sha256, n_components, component_selection, split, metrics, operating_range_min, "
    "operating_range_max, operating_range_source, t2_limit_95, t2_limit_99, q_limit_95, "
    "q_limit_99, intended_use, reason, created_at, created_by_id) VALUES (:id, :m, :n, 'draft', "
    ":d, :s, :sha, 1, '{}', '{}', '{}', 0, 1, 'training', 1, 1, 1, 1, :use, 'r', "
    "'2026-01-01 00:00:00', :u)"
)


def test_free_text_intended_use_becomes_a_class_and_a_statement(
    backend: str, worker_id_safe: str, tmp_path: Path
) -> None:
    """Revision 5e2d8c41a9f0 on a database with versions: the words move to the statement,
    the class comes from them, and model_version keeps its DELETE guard on both backends."""
    url, pg_name = fresh_database(backend, f"{worker_id_safe}_intended_use", tmp_path)
    try:
        cfg = alembic_config(url)
        command.downgrade(cfg, "3c1f0a9d2b7e")
        from sqlalchemy import text

        from app.db.session import make_engine

        eng = make_engine(url)
        ids = {k: uuid.uuid4().hex for k in "udsm"}
        ids["u"] = _USER
        params = {**ids, "sha": "a" * 64}
        if backend == "postgresql":  # UUID columns take the hyphenated form
            params = {k: (str(uuid.UUID(v)) if k in "udsm" else v) for k, v in params.items()}
        texts = ["monitoring titer in Ambr 250 runs", "Control of feed", "release", "for R&D"]
        with eng.begin() as conn:
            for row in _ROWS:
                conn.execute(text(row), params)
            for n, use in enumerate(texts, start=1):
                vid = uuid.uuid4()
                conn.execute(
                    text(_VERSION),
                    {
                        **params,
                        "id": vid.hex if backend == "sqlite" else str(vid),
                        "n": n,
                        "use": use,
                    },
                )
        eng.dispose()
        command.upgrade(cfg, "head")
        eng = make_engine(url)
        with eng.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT intended_use, intended_use_statement FROM model_version "
                    "ORDER BY version"
                )
            ).all()
            assert [tuple(r) for r in rows] == [
                ("monitoring", "monitoring titer in Ambr 250 runs"),
                ("control", "Control of feed"),
                ("release", None),
                ("advisory", "for R&D"),
            ]
            with pytest.raises(DBAPIError, match="not allowed"):
                conn.execute(text("DELETE FROM model_version"))
        eng.dispose()
    finally:
        if pg_name:
            _drop_pg_database(pg_name)


def test_rows_from_before_state_hashing_get_a_baseline_that_reconciles(
    backend: str, worker_id_safe: str, tmp_path: Path
) -> None:
    """Revision 1fa9417ffd5f on a database with records and a chain: one audit.baseline event
    per row, chained after the existing head; the records then reconcile, and a row changed
    afterwards behind the application's back is named."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from app.db.models import AuditEvent
    from app.db.session import make_engine, unit_of_work
    from app.services import audit, audit_verify

    url, pg_name = fresh_database(backend, f"{worker_id_safe}_baseline", tmp_path)
    try:
        cfg = alembic_config(url)
        command.downgrade(cfg, "5e2d8c41a9f0")
        eng = make_engine(url)
        ids = {k: uuid.uuid4().hex for k in "udsm"}
        ids["u"] = _USER
        params = {**ids, "sha": "a" * 64}
        if backend == "postgresql":
            params = {k: (str(uuid.UUID(v)) if k in "udsm" else v) for k, v in params.items()}
        old = AuditEvent(
            seq=1,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            actor="m",
            actor_id=None,
            action="user.create",
            entity_type="user",
            entity_id=_USER,
            reason="before states",
            before=None,
            after={"username": "m"},
            prev_hash=audit.GENESIS,
        )
        old.hash = audit.event_hash(old)
        with eng.begin() as conn:
            for row in _ROWS:
                conn.execute(text(row), params)
            vid = uuid.uuid4()
            conn.execute(
                text(_VERSION),
                {
                    **params,
                    "id": vid.hex if backend == "sqlite" else str(vid),
                    "n": 1,
                    "use": "advisory",
                },
            )
            conn.execute(
                text(
                    "INSERT INTO audit_event (seq, occurred_at, actor, action, entity_type, "
                    "entity_id, reason, after, prev_hash, hash) VALUES (1, :at, 'm', "
                    "'user.create', 'user', :u, 'before states', :after, :prev, :h)"
                ),
                {
                    "at": old.occurred_at,
                    "u": _USER,
                    "after": '{"username": "m"}',
                    "prev": audit.GENESIS,
                    "h": old.hash,
                },
            )
            conn.execute(
                text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 1, :h)"), {"h": old.hash}
            )
        eng.dispose()
        command.upgrade(cfg, "head")
        eng = make_engine(url)
        with unit_of_work(bind=eng, read_only=True) as session:
            report = audit_verify.verify(session)
            baseline = session.execute(
                text("SELECT entity_type FROM audit_event WHERE action = 'audit.baseline'")
            ).scalars()
            assert sorted(baseline) == ["dataset", "domain", "model", "model_version", "user"]
        assert report.valid, (report.problems, report.reconciliation)
        assert report.head_seq == 6
        with eng.begin() as conn:
            if backend == "sqlite":
                conn.execute(text("DROP TRIGGER soft_sensor_model_no_update"))
            else:
                conn.execute(text("ALTER TABLE soft_sensor_model DISABLE TRIGGER USER"))
            conn.execute(text("UPDATE soft_sensor_model SET units = 'mg/L'"))
        with unit_of_work(bind=eng, read_only=True) as session:
            rec = audit_verify.verify(session).reconciliation
        assert rec is not None
        assert [(d.table, [f.field for f in d.fields]) for d in rec.differences] == [
            ("soft_sensor_model", ["units"])
        ]
        eng.dispose()
    finally:
        if pg_name:
            _drop_pg_database(pg_name)
