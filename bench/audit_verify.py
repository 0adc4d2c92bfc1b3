"""Benchmark of the audit verification (not a test): the chain walked whole (what
``GET /audit/verify`` did before signed checkpoints, and ``ssreg audit verify --full`` does),
the chain from the last signed checkpoint (what ``GET /audit/verify`` does now), the full
reconciliation of every record with its audited state, and the incremental one
``GET /audit/verify`` runs by default (the rows written since the last recorded full run).

Run ``.venv/bin/python bench/audit_verify.py`` (``--postgres`` for PostgreSQL on
127.0.0.1:5432, ``--sizes 10000,30000`` for the history sizes). It

1. creates a temporary SQLite database (or PostgreSQL database), migrates it, writes a
   signing key and seeds the demo through the services;
2. grows the history to each size: copies of the demo's version v1 (a model_version row with
   its metrics, split and selection, the biggest record row) added through the ORM, each with
   its audit event (state included), 500 per transaction (each transaction signs the head),
   and one prediction-log row per version (counted by the seals, not reconciled);
3. records a full reconciliation (``ssreg audit verify --full --record``), then writes
   ``--since`` more versions (default 500: the work since the nightly run);
4. times at each size, best of 3 (``?reconcile=full`` and ``--full``: one run):
   ``verify_chain`` over the whole chain, ``verify`` from the last checkpoint without
   reconciliation, the full reconciliation alone, ``verify`` as ``GET /audit/verify`` runs
   it by default (bounded chain + incremental reconciliation, with the rows it read), as
   ``GET /audit/verify?reconcile=full`` does, and ``verify --full``; prints each with its
   cost per event (chain) or per row (reconciliation).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command
from alembic.config import Config

from app.db.models import AuditEvent, ModelVersion, PredictionLog
from app.db.session import make_engine, unit_of_work
from app.enums import ReconcileMode
from app.services import audit, audit_seal, audit_verify, checkpoints, reconcile
from app.services.seed import seed_demo
from app.settings import get_settings
from app.store import LocalStore

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _best(fn: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _grow(engine: Engine, to_versions: int, batch: int = 500) -> None:
    with unit_of_work(bind=engine, read_only=True) as s:
        template = s.scalars(select(ModelVersion).where(ModelVersion.version == 1)).first()
        assert template is not None
        have = s.scalar(select(func.count()).select_from(ModelVersion)) or 0
        top = s.scalar(select(func.max(ModelVersion.version))) or 0
        columns = {
            c.key: copy.deepcopy(getattr(template, c.key)) for c in ModelVersion.__mapper__.columns
        }
    n = top
    while have < to_versions:
        with unit_of_work(bind=engine) as s:
            logs = []
            for _ in range(min(batch, to_versions - have)):
                n += 1
                values = {**columns, "id": uuid.uuid4(), "version": n, "transfer_id": None}
                row = ModelVersion(**values)
                audit.record_created(
                    s,
                    row,
                    actor="bench",
                    action="model_version.create",
                    entity_type="model_version",
                    reason="bench copy",
                    after={"version": n},
                )
                logs.append(
                    {
                        "id": uuid.uuid4(),
                        "occurred_at": row.created_at,
                        "caller_id": row.created_by_id,
                        "caller": "bench",
                        "model_version_id": row.id,
                        "artifact_sha256": row.artifact_sha256,
                        "qualified": False,
                        "n_spectra": 1,
                        "input_sha256": "0" * 64,
                        "input_format": "json",
                        "flag_counts": {},
                    }
                )
                have += 1
            s.execute(insert(PredictionLog), logs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--sizes", default="10000,30000", help="versions (= ~events) per step")
    parser.add_argument("--since", type=int, default=500, help="versions after the full run")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "audit.key"
        checkpoints.keygen(key)
        os.environ["REGISTRY_AUDIT_SIGNING_KEY"] = str(key)
        get_settings.cache_clear()
        pg_name = None
        if args.postgres:
            import psycopg

            pg_name = f"bench_audit_{os.getpid()}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
        else:
            url = f"sqlite:///{tmp}/bench.db"
        try:
            cfg = Config(toml_file=str(ROOT / "pyproject.toml"))
            cfg.attributes["database_url"] = url
            command.upgrade(cfg, "head")
            engine = make_engine(url)
            with unit_of_work(bind=engine) as s:
                seed_demo(s, LocalStore(Path(tmp) / "store"))
            print(f"backend: {'postgresql' if args.postgres else 'sqlite'}; load {os.getloadavg()}")
            header = (
                f"{'events':>8} {'rows':>8} | {'chain whole':>12} {'per event':>10} | "
                f"{'from ckpt':>10} {'read':>5} | {'reconcile':>10} {'per row':>8} | "
                f"{'GET verify':>10} {'rows':>5} | {'?reconcile=full':>15} | {'--full':>8}"
            )
            print(header)
            none, full = ReconcileMode.none, ReconcileMode.full
            for size in sizes:
                _grow(engine, size)
                with unit_of_work(bind=engine, read_only=True) as s:
                    head = audit_verify.verify(s, reconciliation=none).head_seq
                    rec = reconcile.reconcile(s)
                    assert rec.valid, rec.differences[:3]
                with unit_of_work(bind=engine) as s:
                    audit_seal.record_reconciliation(s, rec, head_seq=head, actor="bench")
                _grow(engine, size + args.since)
                with unit_of_work(bind=engine, read_only=True) as s:
                    events = s.scalar(select(func.count()).select_from(AuditEvent)) or 0
                    whole = _best(lambda s=s: audit.verify_chain(s))
                    bounded_report = audit_verify.verify(s, reconciliation=none)
                    assert bounded_report.valid, bounded_report.problems
                    bounded = _best(lambda s=s: audit_verify.verify(s, reconciliation=none))
                    rec = reconcile.reconcile(s)
                    assert rec.valid, rec.differences[:3]
                    rec_t = _best(lambda s=s: reconcile.reconcile(s))
                    get_report = audit_verify.verify(s)
                    assert get_report.valid, get_report.problems
                    assert get_report.reconciliation is not None
                    assert get_report.reconciliation.since_seq is not None
                    get_t = _best(lambda s=s: audit_verify.verify(s))
                    get_full_t = _best(
                        lambda s=s: audit_verify.verify(s, reconciliation=full), rounds=1
                    )
                    full_t = _best(lambda s=s: audit_verify.verify(s, full=True), rounds=1)
                per_event, per_row = whole / events * 1e6, rec_t / rec.rows_checked * 1e6
                print(
                    f"{events:>8} {rec.rows_checked:>8} | {whole:>10.3f} s {per_event:>7.1f} µs"
                    f" | {bounded * 1e3:>7.2f} ms {bounded_report.events:>5} | {rec_t:>8.3f} s"
                    f" {per_row:>5.1f} µs | {get_t * 1e3:>7.1f} ms"
                    f" {get_report.reconciliation.rows_checked:>5} | {get_full_t:>13.3f} s"
                    f" | {full_t:>6.2f} s"
                )
            print(f"load {os.getloadavg()}")
            engine.dispose()
        finally:
            if pg_name:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
