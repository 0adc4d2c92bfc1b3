"""The demo's monitoring story (part of ``ssreg seed``), on a second plant line so the main
demo (``plant-2000L`` → v2, qualified) stays as the README shows it.

1. **Line B.** A second 2000 L bioreactor with its own Raman probe (``plant-raman-2000L-B``,
   another illustrative probe difference) gets transfer #2 of ``titer_pls`` v1 the way the
   first line got transfer #1 (24 Kennard–Stone standards among 60 plant-probe spectra of
   BATCH-2026-001, validated on BATCH-2026-002), signed by the demo developer and QA:
   ``titer_pls`` v3 is requalified and the alias ``plant-2000L-B`` names it.
2. **The runs.** The plant DCS (``demo-plant``) predicts three batches on line B through the
   alias, one call a day with that day's 24 hourly spectra: BATCH-2026-002, in control, then
   BATCH-2026-003 and BATCH-2026-004 on a new media lot (the simulator's
   :data:`~app.core.simulate.NEW_MEDIA_LOT`: less vitamin autofluorescence). The lab returns
   one titre result a day (the 08:00 sample), posted as a reference result the same day.
3. **What the service does.** Each reference is compared with its prediction and the rules
   are evaluated; on the new lot the predictions fall short of the references while T² and Q
   stay near their nominal rates, a chart alarms, v3 becomes ``requalification_due``. From
   then on the plant's monitoring calls are refused (409) and it predicts for evaluation only,
   every answer carrying the alarm in ``warnings``.

Sample times follow the simulated calendar: the three runs back to back, a day apart, the
last reference the day before the seed runs. (The calls themselves are logged at the seed's
own time: the service sets every server timestamp.)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from app.core.simulate import (
    NEW_MEDIA_LOT,
    ProbeShift,
    SimulatedBatch,
    remeasure,
    simulate_batch,
    to_arrow_table,
)
from app.db.base import utcnow
from app.db.models import ModelVersion, User
from app.enums import PredictionPurpose, SignatureMeaning
from app.schemas.monitoring import ReferenceCreate
from app.schemas.signatures import SignatureCreate
from app.services import aliases, auth, monitoring, signatures, transfers
from app.services import predict as predict_service
from app.services.qualification import is_qualified
from app.services.seed_transfer import SeedTransfer, create_simulated_domain, run_seed_transfer
from app.store import ArtifactStore

LINE_B_DOMAIN = "plant-raman-2000L-B"
LINE_B_ALIAS = "plant-2000L-B"
LINE_B_CHANGE_CONTROL = "CC-2026-0051"
# Line B's probe: a little less throughput, more stray light, a smaller axis drift.
LINE_B_SHIFT = ProbeShift(gain=0.55, gain_slope=-0.2, offset=260.0, axis_drift=0.6)
IN_CONTROL_BATCH = "BATCH-2026-002"
NEW_LOT_BATCHES = ("BATCH-2026-003", "BATCH-2026-004")
SAMPLE_HOUR = 8  # the lab's daily sample: 08:00 of each culture day
RUN_GAP = timedelta(days=1)  # between the end of one run and the start of the next


@dataclass(frozen=True)
class LineB:
    version: ModelVersion
    notes: list[str]


def _parquet(batch: SimulatedBatch) -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_arrow_table(batch, scale="2000 L"), buf)
    return buf.getvalue()


def line_b_probe_files(seed: int, source_batch: str, n_candidates: int) -> tuple[bytes, bytes]:
    """Line B's candidate standards (hours of the source batch) and validation batch."""
    source = remeasure(
        simulate_batch(source_batch, seed=seed), LINE_B_SHIFT, seed=seed, probe=LINE_B_DOMAIN
    )
    hours = np.unique(np.linspace(0, source.n_samples - 1, n_candidates).round().astype(np.intp))
    standards = replace(
        source,
        hour=source.hour[hours],
        vcd=source.vcd[hours],
        glucose_g_L=source.glucose_g_L[hours],
        lactate_g_L=source.lactate_g_L[hours],
        titer_g_L=source.titer_g_L[hours],
        X=np.ascontiguousarray(source.X[hours]),
        signal=np.ascontiguousarray(source.signal[hours]),
    )
    validation = remeasure(
        simulate_batch(IN_CONTROL_BATCH, seed=seed), LINE_B_SHIFT, seed=seed, probe=LINE_B_DOMAIN
    )
    return _parquet(standards), _parquet(validation)


def seed_line_b(
    session: Session,
    store: ArtifactStore,
    source: ModelVersion,
    *,
    dev: tuple[User, str],
    qa: tuple[User, str],
    seed: int,
    source_batch: str,
    n_candidates: int,
    n_standards: int,
    max_rmse_ratio: float,
) -> LineB:
    """Line B's domain, transfer #2 of ``source`` to it and its signatures (v3 requalified)."""
    (dev_user, dev_password), (qa_user, qa_password) = dev, qa
    create_simulated_domain(
        session,
        dev_user,
        name=LINE_B_DOMAIN,
        probe_serial="PLANT-PROBE-0002",
        scale="2000 L",
        site="Manufacturing plant, line B",
        description=f"simulated plant probe of line B ({LINE_B_SHIFT.describe()})",
    )
    standards, validation = line_b_probe_files(seed, source_batch, n_candidates)
    plan = SeedTransfer(
        target_domain=LINE_B_DOMAIN,
        n_standards=n_standards,
        change_control=LINE_B_CHANGE_CONTROL,
        max_rmse_ratio=max_rmse_ratio,
        reason="demo seed: move titer_pls to the line B plant probe",
        standards=transfers.Upload(standards, "line_b_standards.parquet"),
        validation=transfers.Upload(validation, "line_b_validation.parquet"),
        standards_reason="demo seed: line B probe standards and a validation batch",
    )
    done = run_seed_transfer(session, store, source, dev_user, plan)
    post = (done.result or {})["post_transfer_metrics"]
    notes = [
        f"transfer #{done.number} titer_pls v{source.version} -> {LINE_B_DOMAIN}: "
        f"{(done.result or {})['method_chosen']}; on {IN_CONTROL_BATCH}: corrected "
        f"R2={post['r2']:.4f} RMSE={post['rmse']:.4f} SEP={post['sep']:.4f} g/L; verdict "
        f"{done.verdict}"
    ]
    steps = (
        (dev_user, dev_password, SignatureMeaning.authored, "transfer run and record checked"),
        (qa_user, qa_password, SignatureMeaning.reviewed, "demo seed: record reviewed"),
        (
            qa_user,
            qa_password,
            SignatureMeaning.approved,
            "demo seed: acceptance criteria passed on the validation batch; line B requalified",
        ),
    )
    version = None
    for user, password, meaning, comment in steps:
        signed = signatures.sign_transfer(
            session,
            str(done.number),
            data=SignatureCreate(
                meaning=meaning, username=user.username, password=password, comment=comment
            ),
            actor=user,
        )
        assert signed is not None, "the demo passwords were generated here"
        version = signed.version
    assert version is not None
    notes.append(f"transfer #{done.number} signed: titer_pls v{version.version} {version.status}")
    return LineB(version, notes)


def _arrow_body(X: np.ndarray, axis: np.ndarray, sample_ids: list[str]) -> bytes:
    """A day's spectra as the plant DCS sends them: an Arrow IPC stream, list layout."""
    spectra = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    schema = pa.schema(
        [pa.field("spectra", spectra.type), pa.field("sample_id", pa.string())],
        metadata={"axis": json.dumps(axis.tolist())},
    )
    table = pa.table({"spectra": spectra, "sample_id": pa.array(sample_ids)}, schema=schema)
    sink = io.BytesIO()
    with ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _calendar(now: datetime) -> dict[str, datetime]:
    """Each run's start: back to back, the last reference the day before ``now``."""
    runs = (IN_CONTROL_BATCH, *NEW_LOT_BATCHES)
    run = timedelta(days=14)
    first = (now - timedelta(days=1) - len(runs) * run - (len(runs) - 1) * RUN_GAP).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return {b: first + i * (run + RUN_GAP) for i, b in enumerate(runs)}


def run_monitoring_story(
    session: Session,
    store: ArtifactStore,
    version: ModelVersion,
    *,
    plant: User,
    plant_key: str,
    qa: User,
    seed: int,
) -> list[str]:
    """Point ``plant-2000L-B`` at ``version``, then predict the three runs through it and
    post the daily references; returns the notes (what the rules did)."""
    aliases.assign_for_seed(
        session,
        model_name="titer_pls",
        alias=LINE_B_ALIAS,
        version=version.version,
        actor=qa,
        reason="demo seed: line B uses its requalified transferred version",
        change_control=LINE_B_CHANGE_CONTROL,
    )
    notes = [f"alias {LINE_B_ALIAS} -> titer_pls v{version.version} ({LINE_B_CHANGE_CONTROL})"]
    connection = session.connection()
    caller = auth.resolve_caller(connection, plant_key)
    assert caller is not None, "the demo plant key was created in this unit"
    starts = _calendar(utcnow())
    caught: str | None = None
    refused_from: str | None = None
    n_references = 0
    for batch_id, start in starts.items():
        media = NEW_MEDIA_LOT if batch_id in NEW_LOT_BATCHES else None
        batch = remeasure(
            simulate_batch(batch_id, seed=seed, media=media),
            LINE_B_SHIFT,
            seed=seed,
            probe=LINE_B_DOMAIN,
        )
        ids = batch.sample_ids
        for day in range(batch.n_samples // 24):
            hours = slice(24 * day, 24 * (day + 1))
            session.refresh(version)
            qualified = is_qualified(version.status, version.review_due_at)
            purpose = PredictionPurpose.monitoring if qualified else PredictionPurpose.evaluation
            if not qualified and refused_from is None:
                refused_from = f"{batch_id} day {day + 1}"
            evaluation = predict_service.evaluate(
                connection,
                store,
                caller=caller,
                model_name="titer_pls",
                alias=LINE_B_ALIAS,
                body=_arrow_body(batch.X[hours], batch.axis, ids[hours]),
                input_format="arrow",
                purpose=purpose.value,
            )
            logged = predict_service.record(connection, evaluation, actor=caller)
            row = 24 * day + SAMPLE_HOUR
            posted = monitoring.post_reference(
                session,
                logged.log_id,
                data=ReferenceCreate(
                    sample_id=ids[row],
                    value=round(float(batch.titer_g_L[row]), 4),
                    units="g/L",
                    assay_method="Protein A HPLC (simulated: the simulator's titre)",
                    sample_time=start + timedelta(hours=float(batch.hour[row])),
                    lab_reference=f"LIMS-{batch_id[-3:]}-{day + 1:02d}",
                ),
                actor=plant,
            )
            n_references += 1
            for alarm in posted.alarms_raised:
                notes.append(f"reference {n_references} ({ids[row]}): {alarm.message}")
                caught = caught or ids[row]
    status = session.get(ModelVersion, version.id)
    assert status is not None
    session.refresh(status)
    notes.append(
        f"monitoring story on {LINE_B_ALIAS}: {IN_CONTROL_BATCH} in control, "
        f"{', '.join(NEW_LOT_BATCHES)} on a new media lot ({NEW_MEDIA_LOT.describe()}); "
        f"{n_references} daily references; "
        + (f"caught at {caught}" if caught else "nothing caught")
        + f"; titer_pls v{status.version} is {status.status.value}"
        + (f"; monitoring calls refused from {refused_from} on" if refused_from else "")
    )
    return notes
