"""A version's monitoring rules and their parameters: recorded when it is approved or
requalified, changed only by QA with a reason (:func:`app.services.monitoring.change_settings`),
every change kept (``monitoring_settings`` is append-only; the newest row is in force).

Recording at qualification opens a new **monitoring window**: predictions made from then on
are what the rules watch, so an investigated and requalified version starts its charts
afresh. The parameters carry over from the version's previous row (QA's choices stand), else
they are the defaults (:class:`~app.schemas.monitoring.MonitoringParameters`). The row also
keeps the validation figures the residuals are standardized with: the version's validation
SEP and mean residual (reference − prediction), read from its metrics — post-transfer figures
of a transferred version, held-out (else cross-validated) figures of a trained one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from app.core import monitoring as charts
from app.db.models import LifecycleEvent, ModelVersion, MonitoringSettings, User
from app.db.repositories import monitoring as monitoring_rows
from app.enums import AuditAction, AuditEntityType, ResidualCentre, SettingsOrigin
from app.schemas.monitoring import DesignFigures, MonitoringParameters, MonitoringSettingsRead
from app.services import audit


@dataclass(frozen=True)
class ValidationFigures:
    sep: float | None
    mean_residual: float | None
    basis: str


def validation_figures(version: ModelVersion) -> ValidationFigures:
    """The SEP and mean residual (reference − prediction) of the version's validation, and
    what they were computed on (SEP None when the version's metrics have none)."""
    metrics = version.metrics or {}
    if version.transfer_id is not None:
        block, basis = metrics.get("post_transfer"), metrics.get("basis") or "post-transfer"
        basis = f"post-transfer figures ({basis})"
    elif metrics.get("holdout"):
        block, basis = metrics["holdout"], "held-out rows of the training dataset"
    else:
        block, basis = metrics.get("cv"), "cross-validation over the training rows"
    block = block or {}
    sep, bias = block.get("sep"), block.get("bias")
    if not (isinstance(sep, int | float) and math.isfinite(sep) and sep > 0):
        return ValidationFigures(None, None, f"no validation SEP ({basis})")
    mean = -float(bias) if isinstance(bias, int | float) and math.isfinite(bias) else 0.0
    return ValidationFigures(float(sep), mean, basis)


@dataclass(frozen=True)
class SettingsView:
    """The settings in force: a recorded row, or the defaults (``row`` None)."""

    parameters: MonitoringParameters
    figures: ValidationFigures
    window_start: datetime | None
    row: MonitoringSettings | None

    @property
    def centre(self) -> float | None:
        if self.figures.sep is None:
            return None
        if self.parameters.centre is ResidualCentre.zero:
            return 0.0
        return self.figures.mean_residual or 0.0


def view_of(row: MonitoringSettings) -> SettingsView:
    return SettingsView(
        MonitoringParameters.model_validate(row.parameters),
        ValidationFigures(row.validation_sep, row.validation_mean_residual, row.figures_basis),
        row.window_start,
        row,
    )


def in_force(session: Session, version: ModelVersion) -> SettingsView:
    """The newest recorded settings of the version, else the defaults with the version's
    figures and, as window, its newest approval or requalification (None: every prediction)."""
    row = monitoring_rows.newest_settings(session, version.id)
    if row is not None:
        return view_of(row)
    return SettingsView(
        MonitoringParameters(),
        validation_figures(version),
        monitoring_rows.last_qualified_at(session, version.id),
        None,
    )


def append(
    session: Session,
    version: ModelVersion,
    *,
    parameters: MonitoringParameters,
    window_start: datetime | None,
    origin: SettingsOrigin,
    actor: User | str,
    reason: str,
    previous: SettingsView | None,
    lifecycle_event: LifecycleEvent | None = None,
    now: datetime | None = None,
) -> MonitoringSettings:
    """Append the version's next settings row and its ``monitoring.settings`` audit event
    (before: the settings replaced), in the caller's transaction."""
    figures = validation_figures(version)
    existing = monitoring_rows.settings_of(session, version.id)
    row = MonitoringSettings(
        model_version_id=version.id,
        sequence=(existing[-1].sequence if existing else 0) + 1,
        parameters=parameters.model_dump(mode="json"),
        validation_sep=figures.sep,
        validation_mean_residual=figures.mean_residual,
        figures_basis=figures.basis,
        window_start=window_start,
        origin=origin,
        lifecycle_event_id=lifecycle_event.id if lifecycle_event is not None else None,
        set_by_id=actor.id if isinstance(actor, User) else None,
        set_by=actor.username if isinstance(actor, User) else actor,
        reason=reason,
    )
    if now is not None:
        row.set_at = now
    monitoring_rows.add(session, row)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.monitoring_settings,
        entity_type=AuditEntityType.model_version,
        entity_id=version.id,
        reason=reason,
        before=None if previous is None else _snapshot(previous),
        after=_snapshot(view_of(row)) | {"origin": origin, "settings_id": row.id},
    )
    return row


def _snapshot(view: SettingsView) -> dict[str, Any]:
    return {
        "sequence": view.row.sequence if view.row is not None else None,
        "parameters": view.parameters.model_dump(mode="json"),
        "validation_sep": view.figures.sep,
        "validation_mean_residual": view.figures.mean_residual,
        "window_start": view.window_start,
    }


def record_at_qualification(
    session: Session,
    version: ModelVersion,
    event: LifecycleEvent,
    *,
    actor: User | str,
    label: str,
) -> MonitoringSettings:
    """The settings recorded when ``version`` becomes approved or requalified (``event``): the
    previous row's parameters or the defaults, and a new window from the event's time."""
    previous = in_force(session, version)
    return append(
        session,
        version,
        parameters=previous.parameters,
        window_start=event.occurred_at,
        origin=SettingsOrigin.qualification,
        actor=actor,
        reason=f"monitoring of {label} from its {event.to_status.value} on "
        f"{event.occurred_at.isoformat(timespec='seconds')}: "
        + ("parameters carried over" if previous.row is not None else "default parameters"),
        previous=previous if previous.row is not None else None,
        lifecycle_event=event,
        now=event.occurred_at,
    )


@lru_cache(maxsize=256)
def design_figures(lam: float, L: float, k: float, h: float) -> DesignFigures:
    """ARL₀ and ARL₁ (1-SEP step) of the charts with these parameters (Markov chains)."""
    return DesignFigures(
        ewma_limit=charts.ewma_limit(lam, L),
        ewma_arl0=charts.ewma_arl(lam, L),
        ewma_arl1=charts.ewma_arl(lam, L, 1.0),
        cusum_arl0=charts.cusum_arl(k, h),
        cusum_arl1=charts.cusum_arl(k, h, 1.0),
    )


def read(view: SettingsView) -> MonitoringSettingsRead:
    p, row = view.parameters, view.row
    return MonitoringSettingsRead(
        sequence=row.sequence if row is not None else None,
        parameters=p,
        validation_sep=view.figures.sep,
        validation_mean_residual=view.figures.mean_residual,
        centre_value=view.centre,
        figures_basis=view.figures.basis,
        window_start=view.window_start,
        origin=row.origin if row is not None else None,
        set_at=row.set_at if row is not None else None,
        set_by=row.set_by if row is not None else None,
        reason=row.reason if row is not None else None,
        design=design_figures(p.ewma_lambda, p.ewma_L, p.cusum_k, p.cusum_h),
    )


def history(session: Session, version: ModelVersion) -> list[MonitoringSettingsRead]:
    """Every recorded settings row of the version, oldest first."""
    return [read(view_of(row)) for row in monitoring_rows.settings_of(session, version.id)]
