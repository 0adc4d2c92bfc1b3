"""The demo seed's monitoring story: line B's v3 requalified, three runs predicted through
its alias with daily references, the new media lot's drift caught and v3 due — while the main
demo (plant-2000L → v2) stays qualified."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import LifecycleEvent, MonitoringAlarm, ReferenceResult
from app.enums import LifecycleTrigger, MonitoringRule, VersionStatus
from app.services import models, monitoring, transfers
from app.services.seed import seed_demo
from app.services.seed_monitoring import IN_CONTROL_BATCH, LINE_B_ALIAS, LINE_B_DOMAIN
from app.store import LocalStore


# The demo seed runs on the embedded SQLite default (`make run`); once is enough.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_seeded_story_catches_the_new_media_lot_on_line_b(
    session: Session, store: LocalStore, settings_env: None
) -> None:
    result = seed_demo(session, store)
    story = result.notes[-1]
    assert story.startswith(f"monitoring story on {LINE_B_ALIAS}"), result.notes
    record = transfers.describe_transfer(session, transfers.get_transfer(session, "2"))
    assert record.target.domain == LINE_B_DOMAIN
    assert record.transfer.acceptance.verdict == "pass"
    v2 = models.describe_version(session, models.get_version(session, "titer_pls", 2))
    assert (v2.status, v2.qualified, v2.aliases) == (
        VersionStatus.requalified,
        True,
        ["plant-2000L"],
    )
    v3_row = models.get_version(session, "titer_pls", 3)
    view = monitoring.describe(session, v3_row)
    assert view.status is VersionStatus.requalification_due
    assert view.aliases_naming_it == [LINE_B_ALIAS]
    assert len(view.series) == 42  # one reference a day, three 14-day runs
    # BATCH-2026-002 is in control: the first alarm comes on the new media lot
    in_control = [
        p for p in view.series if p.sample_id and p.sample_id.startswith(IN_CONTROL_BATCH)
    ]
    assert len(in_control) == 14
    alarms = session.scalars(
        select(MonitoringAlarm).where(MonitoringAlarm.model_version_id == v3_row.id)
    ).all()
    first = min(alarms, key=lambda a: a.raised_at)
    assert first.rule in (MonitoringRule.ewma, MonitoringRule.cusum)
    assert first.figures["point"] >= 14  # not during the in-control run
    assert first.figures["sample_id"].startswith("BATCH-2026-003")
    (due,) = session.scalars(
        select(LifecycleEvent).where(
            LifecycleEvent.model_version_id == v3_row.id,
            LifecycleEvent.trigger == LifecycleTrigger.monitoring,
        )
    )
    assert first.lifecycle_event_id == due.id
    # the T² and Q rates stay near nominal: only the references reveal the drift
    states = {s.rule: s for s in view.rules}
    assert states[MonitoringRule.t2_exceedance].state == "in_control"
    assert states[MonitoringRule.q_exceedance].state == "in_control"
    assert view.warnings
    refs = session.scalars(
        select(ReferenceResult).where(ReferenceResult.model_version_id == v3_row.id)
    ).all()
    assert {r.alias for r in refs} == {LINE_B_ALIAS}
    assert {r.posted_by for r in refs} == {"demo-plant"}
