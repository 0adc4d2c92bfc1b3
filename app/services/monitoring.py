"""Monitoring deployed versions against sparse reference results (ICH Q14 lifecycle, USP
<1039>, ASTM E2617).

A plant system or a developer posts the offline result of a predicted sample
(:func:`post_reference`); the service compares it with what the call predicted and, in the
same transaction, evaluates the version's rules (:func:`evaluate`) over its monitoring window
(the predictions made since its newest approval or requalification,
:mod:`app.services.monitoring_settings`):

- the residuals ``reference − prediction`` standardized by the version's validation SEP
  (centred on the validation mean residual by default), in sample-time order, charted by an
  EWMA and a two-sided CUSUM (:mod:`app.core.monitoring`); rolling bias and RMSE over the last
  N references and the last T days are figures, not rules;
- the T² and Q exceedance rates of every prediction of the window (the log's flag counts)
  against their nominal 1 % (the flags use the 99 % limits), exact binomial tests.

A rule in force that breaches records one :class:`~app.db.models.MonitoringAlarm` per window
(audited ``monitoring.alarm``, with its figures and the references behind it); a qualified
version then becomes ``requalification_due`` (trigger ``monitoring``, actor
``service:monitoring``); a version already due keeps its status and gains the alarm. Until the
version is requalified, every prediction of it — by version or through an alias — carries the
alarms' messages in ``warnings``. Versions that are not deployed (draft, pending, rejected,
retired) are charted but raise nothing. References are append-only; a second reference for a
sample replaces the first only with a correction reason, and both stay visible.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.core import monitoring as charts
from app.db.base import utcnow
from app.db.models import ModelVersion, MonitoringAlarm, ReferenceResult, User
from app.db.repositories import aliases as alias_rows
from app.db.repositories import models as model_rows
from app.db.repositories import monitoring as monitoring_rows
from app.db.repositories import prediction_log as prediction_log_rows
from app.db.repositories import signatures as signature_rows
from app.enums import (
    QUALIFIED_STATUSES,
    AuditAction,
    AuditEntityType,
    LifecycleTrigger,
    MonitoringRule,
    SettingsOrigin,
    VersionStatus,
)
from app.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from app.schemas.monitoring import (
    AliasFigures,
    ExceedancePoint,
    MonitoringAlarmRead,
    MonitoringParameters,
    MonitoringPoint,
    MonitoringRead,
    MonitoringSettingsChange,
    ReferenceCreate,
    ReferenceCreated,
    ReferenceRead,
    RollingFigures,
    RuleState,
)
from app.schemas.predict import FLAG_CONFIDENCE
from app.services import audit, lifecycle, scopes
from app.services import models as models_service
from app.services import monitoring_settings as settings_service
from app.services.canonical import sha256_hex
from app.services.monitoring_settings import SettingsView
from app.services.qualification import is_qualified

SERVICE_ACTOR = "service:monitoring"
DEPLOYED = QUALIFIED_STATUSES | {VersionStatus.requalification_due}
RULE_NAMES = {
    MonitoringRule.ewma: "EWMA",
    MonitoringRule.cusum: "CUSUM",
    MonitoringRule.t2_exceedance: "T² exceedance",
    MonitoringRule.q_exceedance: "Q exceedance",
}


# --------------------------------------------------------------------------------------------
# computing the window
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Window:
    """Everything the rules and the charts are computed from, and the results."""

    version: ModelVersion
    model: str
    units: str
    view: SettingsView
    references: list[ReferenceResult]  # every revision in the window, in posting order
    series: list[ReferenceResult]  # the revisions in force, in sample-time order
    residual: np.ndarray
    z: np.ndarray | None
    ewma: charts.EwmaChart | None
    cusum: charts.CusumChart | None
    rolling_bias: np.ndarray
    rolling_rmse: np.ndarray
    calls: list[monitoring_rows.CallFlags]
    t2: charts.ExceedanceTest
    q: charts.ExceedanceTest
    now: datetime

    @property
    def parameters(self) -> MonitoringParameters:
        return self.view.parameters

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version.version}"


def _in_force(references: list[ReferenceResult]) -> list[ReferenceResult]:
    newest: dict[tuple[uuid.UUID, int], ReferenceResult] = {}
    for ref in references:
        key = (ref.prediction_log_id, ref.row)
        if key not in newest or ref.revision > newest[key].revision:
            newest[key] = ref
    return sorted(newest.values(), key=lambda r: (r.sample_time, r.posted_at, r.id))


def _nominal_rate(calls: list[monitoring_rows.CallFlags]) -> float:
    confidences = {c.flag_confidence for c in calls if c.flag_confidence is not None}
    confidence = confidences.pop() if len(confidences) == 1 else FLAG_CONFIDENCE
    return 1.0 - confidence


def compute(session: Session, version: ModelVersion, *, view: SettingsView | None = None) -> Window:
    """The version's monitoring window as it stands (reads only)."""
    model = model_rows.model_by_id(session, version.model_id)
    assert model is not None  # foreign key
    view = view or settings_service.in_force(session, version)
    p = view.parameters
    references = monitoring_rows.references_of_version(session, version.id, since=view.window_start)
    series = _in_force(references)
    reference = np.array([r.value for r in series], dtype=np.float64)
    predicted = np.array([r.predicted for r in series], dtype=np.float64)
    residual = reference - predicted
    z = ewma = cusum = None
    if view.figures.sep is not None and view.centre is not None:
        z = charts.standardized_residuals(
            reference, predicted, sep=view.figures.sep, centre=view.centre
        )
        ewma = charts.ewma_chart(z, lam=p.ewma_lambda, L=p.ewma_L)
        cusum = charts.cusum_chart(z, k=p.cusum_k, h=p.cusum_h)
    bias, rmse = charts.rolling_bias_rmse(residual, p.rolling_n)
    calls = monitoring_rows.call_flags(session, version.id, since=view.window_start)
    n = sum(c.n_spectra for c in calls)
    nominal = _nominal_rate(calls)
    alpha = p.exceedance_alpha

    def test(count: int) -> charts.ExceedanceTest:
        return charts.exceedance_test(count, n, nominal_rate=nominal, alpha=alpha)

    return Window(
        version=version,
        model=model.name,
        units=model.units,
        view=view,
        references=references,
        series=series,
        residual=residual,
        z=z,
        ewma=ewma,
        cusum=cusum,
        rolling_bias=bias,
        rolling_rmse=rmse,
        calls=calls,
        t2=test(sum(c.t2_exceeded for c in calls)),
        q=test(sum(c.q_exceeded for c in calls)),
        now=utcnow(),
    )


@dataclass(frozen=True)
class Breach:
    """A rule beyond its limit: what an alarm records."""

    rule: MonitoringRule
    statistic: float
    limit: float
    message: str
    figures: dict[str, Any]
    reference_ids: list[uuid.UUID]


def _fmt_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _chart_breach(w: Window, rule: MonitoringRule) -> Breach | None:
    if w.z is None or w.ewma is None or w.cusum is None:
        return None
    p = w.parameters
    if rule is MonitoringRule.ewma:
        at = int(w.ewma.alarm)
        if at < 0:
            return None
        statistic, limit = float(w.ewma.statistic[at]), w.ewma.limit
        design = f"λ = {p.ewma_lambda:g}, L = {p.ewma_L:g}"
        what = f"the EWMA of the standardized residuals reached {statistic:+.2f} SEP"
        beyond = f"its limit ±{limit:.2f}"
    else:
        at = int(w.cusum.alarm)
        if at < 0:
            return None
        upper, lower = float(w.cusum.upper[at]), float(w.cusum.lower[at])
        statistic = upper if upper > w.cusum.h else -lower
        limit = w.cusum.h
        design = f"k = {p.cusum_k:g}, h = {p.cusum_h:g}"
        side = "upper" if statistic > 0 else "lower"
        what = f"the {side} CUSUM of the standardized residuals reached {abs(statistic):.2f} SEP"
        beyond = f"its decision interval h = {limit:g}"
    ref = w.series[at]
    first = max(0, at + 1 - p.rolling_n)
    recent = w.residual[first : at + 1]
    shift = float(w.z[first : at + 1].mean())
    centre = "its validation mean" if p.centre.value == "validation" else "zero"
    message = (
        f"monitoring alarm ({RULE_NAMES[rule]}, {design}) on {w.label}: {what}, beyond "
        f"{beyond}, at reference {at + 1} of the window (sample "
        f"{ref.sample_id or f'row {ref.row}'} taken {_fmt_time(ref.sample_time)}); over the "
        f"last {recent.size} references the residual (reference − prediction) averaged "
        f"{float(recent.mean()):+.3g} {w.units}, {shift:+.2f} SEP from {centre}. Requalify the "
        "version before relying on its predictions"
    )
    figures = {
        "point": at,
        "n_references": len(w.series),
        "sample_time": ref.sample_time,
        "sample_id": ref.sample_id,
        "parameters": w.parameters.model_dump(mode="json"),
        "validation_sep": w.view.figures.sep,
        "centre": w.view.centre,
        "z": [round(float(v), 6) for v in w.z[: at + 1]],
        "statistic_series": [
            round(float(v), 6)
            for v in (w.ewma.statistic if rule is MonitoringRule.ewma else w.cusum.upper)[: at + 1]
        ],
        "cusum_lower": (
            [round(float(v), 6) for v in w.cusum.lower[: at + 1]]
            if rule is MonitoringRule.cusum
            else None
        ),
        "mean_residual_recent": float(recent.mean()),
        "mean_z_recent": shift,
        "units": w.units,
    }
    return Breach(rule, statistic, limit, message, figures, [r.id for r in w.series[: at + 1]])


def _exceedance_breach(w: Window, rule: MonitoringRule) -> Breach | None:
    test = w.t2 if rule is MonitoringRule.t2_exceedance else w.q
    if not test.alarm:
        return None
    stat = "T²" if rule is MonitoringRule.t2_exceedance else "Q"
    message = (
        f"monitoring alarm ({RULE_NAMES[rule]}) on {w.label}: {test.exceedances} of "
        f"{test.n} spectra predicted in the window ({test.rate:.1%}) exceeded the 99 % {stat} "
        f"limit against a nominal {test.nominal_rate:.0%} (binomial test p = "
        f"{test.p_value:.2g} < {test.alpha:g}): the spectra are leaving the calibration. "
        "Requalify the version before relying on its predictions"
    )
    figures = {
        "n_spectra": test.n,
        "exceedances": test.exceedances,
        "rate": test.rate,
        "nominal_rate": test.nominal_rate,
        "p_value": test.p_value,
        "alpha": test.alpha,
        "critical_count": test.critical,
        "n_calls": len(w.calls),
    }
    return Breach(rule, test.rate, test.critical_rate, message, figures, [])


def breaches(w: Window) -> dict[MonitoringRule, Breach]:
    """Every rule (in force or not) beyond its limit over the window."""
    found: dict[MonitoringRule, Breach] = {}
    for rule in MonitoringRule:
        check = (
            _chart_breach
            if rule in (MonitoringRule.ewma, MonitoringRule.cusum)
            else _exceedance_breach
        )
        breach = check(w, rule)
        if breach is not None:
            found[rule] = breach
    return found


def _window_alarms(session: Session, w: Window) -> list[MonitoringAlarm]:
    start = w.view.window_start
    return [
        a
        for a in monitoring_rows.alarms_of(session, w.version.id)
        if start is None or a.raised_at >= start
    ]


# --------------------------------------------------------------------------------------------
# evaluating the rules
# --------------------------------------------------------------------------------------------


def evaluate(
    session: Session,
    version: ModelVersion,
    *,
    trigger_reference: ReferenceResult | None = None,
) -> list[MonitoringAlarm]:
    """Evaluate the rules in force over the window; record an alarm for each rule that
    breached and has none in this window yet, and move a qualified version to
    requalification_due, in the caller's transaction. The caller holds the version's lock."""
    if version.status not in DEPLOYED:
        return []
    w = compute(session, version)
    standing = {a.rule for a in _window_alarms(session, w)}
    found = breaches(w)
    new = [found[r] for r in w.parameters.rules if r in found and r not in standing]
    if not new:
        return []
    event = None
    if version.status in QUALIFIED_STATUSES:
        event = lifecycle.transition(
            session,
            version,
            to=VersionStatus.requalification_due,
            trigger=LifecycleTrigger.monitoring,
            actor=SERVICE_ACTOR,
            reason=" | ".join(b.message for b in new),
        )
    alarms = []
    for breach in new:
        alarm = MonitoringAlarm(
            model_version_id=version.id,
            settings_id=w.view.row.id if w.view.row is not None else None,
            rule=breach.rule,
            window_start=w.view.window_start,
            statistic=breach.statistic,
            limit=breach.limit,
            message=breach.message,
            figures=audit.jsonable(breach.figures),
            reference_ids=[str(i) for i in breach.reference_ids],
            trigger_reference_id=trigger_reference.id if trigger_reference else None,
            lifecycle_event_id=event.id if event is not None else None,
        )
        monitoring_rows.add(session, alarm)
        audit.record(
            session,
            actor=SERVICE_ACTOR,
            action=AuditAction.monitoring_alarm,
            entity_type=AuditEntityType.model_version,
            entity_id=version.id,
            reason=breach.message,
            after={
                "alarm_id": alarm.id,
                "version": w.label,
                "rule": breach.rule,
                "statistic": breach.statistic,
                "limit": breach.limit,
                "figures": breach.figures,
                "reference_ids": breach.reference_ids,
                "trigger_reference_id": alarm.trigger_reference_id,
                "lifecycle_event_id": alarm.lifecycle_event_id,
                "status": version.status,
            },
        )
        alarms.append(alarm)
    return alarms


# --------------------------------------------------------------------------------------------
# reference results
# --------------------------------------------------------------------------------------------


def _sample_row(results: dict[str, Any], n_spectra: int, data: ReferenceCreate) -> int:
    if data.row is not None:
        if data.row >= n_spectra:
            raise InvalidInput(
                f"row {data.row} is not a sample of this call: it predicted {n_spectra} "
                f"spectra (rows 0-{n_spectra - 1})"
            )
        return data.row
    ids = results.get("sample_ids")
    if not ids:
        raise InvalidInput(
            f"the call sent no sample ids: name the sample by its row (0-{n_spectra - 1})"
        )
    try:
        return list(ids).index(data.sample_id)
    except ValueError:
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise InvalidInput(
            f"sample {data.sample_id!r} is not among the {len(ids)} samples of this call ({shown})"
        ) from None


def _reference_read(
    ref: ReferenceResult, *, model: str, version: int, in_force: bool
) -> ReferenceRead:
    return ReferenceRead(
        id=ref.id,
        prediction_log_id=ref.prediction_log_id,
        model=model,
        version=version,
        alias=ref.alias,
        row=ref.row,
        sample_id=ref.sample_id,
        revision=ref.revision,
        in_force=in_force,
        value=ref.value,
        units=ref.units,
        assay_method=ref.assay_method,
        sample_time=ref.sample_time,
        lab_reference=ref.lab_reference,
        predicted=ref.predicted,
        predicted_at=ref.predicted_at,
        residual=ref.value - ref.predicted,
        correction_reason=ref.correction_reason,
        corrects_id=ref.corrects_id,
        posted_at=ref.posted_at,
        posted_by=ref.posted_by,
    )


def _alarm_read(alarm: MonitoringAlarm) -> MonitoringAlarmRead:
    return MonitoringAlarmRead(
        id=alarm.id,
        rule=alarm.rule,
        raised_at=alarm.raised_at,
        window_start=alarm.window_start,
        statistic=alarm.statistic,
        limit=alarm.limit,
        message=alarm.message,
        figures=alarm.figures,
        reference_ids=[uuid.UUID(str(i)) for i in alarm.reference_ids],
        trigger_reference_id=alarm.trigger_reference_id,
        lifecycle_event_id=alarm.lifecycle_event_id,
    )


def post_reference(
    session: Session, log_id: uuid.UUID, *, data: ReferenceCreate, actor: User
) -> ReferenceCreated:
    """Record the offline result for one predicted sample of call ``log_id``, audited, and
    evaluate the version's rules in the same transaction.

    Raises
    ------
    NotFound
        No such call.
    Forbidden
        A plant caller whose scope does not cover the call's version.
    InvalidInput
        Units other than the model's; a sample not in the call; a sample time in the future;
        a correction reason on a first reference.
    Conflict
        The sample has a reference already and no correction reason was given.
    IntegrityFailure
        The call's logged results no longer hash to their recorded sha256.
    """
    entry = prediction_log_rows.by_id(session, log_id)
    if entry is None:
        raise NotFound(f"prediction-log entry {log_id} does not exist")
    log = entry.row
    # The version's row lock serializes references and rule evaluations of one version.
    version = signature_rows.lock_version(session, log.model_version_id)
    scopes.check_version(session, scopes.read_scope(session, actor), version)
    model = model_rows.model_by_id(session, version.model_id)
    assert model is not None  # foreign key
    label = f"{model.name} v{version.version}"
    if log.results is None:
        raise Conflict(
            f"call {log_id} was logged before results were kept: it has no predictions to "
            "compare a reference with"
        )
    if log.results_sha256 is None or sha256_hex(log.results) != log.results_sha256:
        raise IntegrityFailure(f"the results logged for call {log_id} do not match their sha256")
    row = _sample_row(log.results, log.n_spectra, data)
    if data.units.strip() != model.units:
        raise InvalidInput(
            f"units {data.units!r} are not the model's: {model.name} predicts {model.analyte} "
            f"in {model.units!r}; convert the result first"
        )
    now = utcnow()
    if data.sample_time > now:
        raise InvalidInput(
            f"sample_time {data.sample_time.isoformat()} is in the future (server time "
            f"{now.isoformat(timespec='seconds')})"
        )
    existing = monitoring_rows.newest_revision(session, log.id, row)
    sample = data.sample_id or (log.results.get("sample_ids") or [None] * (row + 1))[row]
    name = f"sample {sample!r}" if sample else f"row {row}"
    if existing is not None and data.correction_reason is None:
        raise Conflict(
            f"{name} of call {log_id} has a reference already ({existing.value:g} "
            f"{existing.units}, {existing.lab_reference}, posted {_fmt_time(existing.posted_at)} "
            f"by {existing.posted_by}): give correction_reason to correct it"
        )
    if existing is None and data.correction_reason is not None:
        raise InvalidInput(
            f"{name} of call {log_id} has no reference yet: a correction_reason corrects "
            "nothing (leave it out)"
        )
    reference = ReferenceResult(
        prediction_log_id=log.id,
        model_version_id=version.id,
        row=row,
        revision=(existing.revision + 1) if existing is not None else 1,
        sample_id=sample,
        alias=log.alias,
        predicted=float(log.results["predictions"][row]),
        predicted_at=log.occurred_at,
        value=float(data.value),
        units=model.units,
        assay_method=data.assay_method,
        sample_time=data.sample_time,
        lab_reference=data.lab_reference,
        correction_reason=data.correction_reason,
        corrects_id=existing.id if existing is not None else None,
        posted_at=now,
        posted_by_id=actor.id,
        posted_by=actor.username,
    )
    monitoring_rows.add(session, reference)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.reference_record,
        entity_type=AuditEntityType.reference,
        entity_id=reference.id,
        reason=data.correction_reason or f"reference result {data.lab_reference} for {name}",
        before=None if existing is None else _reference_snapshot(existing),
        after=_reference_snapshot(reference) | {"version": label},
    )
    raised = evaluate(session, version, trigger_reference=reference)
    read = _reference_read(reference, model=model.name, version=version.version, in_force=True)
    return ReferenceCreated(
        **read.model_dump(),
        version_status=version.status,
        alarms_raised=[_alarm_read(a) for a in raised],
    )


def _reference_snapshot(ref: ReferenceResult) -> dict[str, Any]:
    return {
        "reference_id": ref.id,
        "prediction_log_id": ref.prediction_log_id,
        "model_version_id": ref.model_version_id,
        "row": ref.row,
        "sample_id": ref.sample_id,
        "revision": ref.revision,
        "value": ref.value,
        "units": ref.units,
        "assay_method": ref.assay_method,
        "sample_time": ref.sample_time,
        "lab_reference": ref.lab_reference,
        "predicted": ref.predicted,
        "corrects_id": ref.corrects_id,
    }


def references_of_call(session: Session, log_id: uuid.UUID) -> list[ReferenceRead]:
    """Every reference posted for the samples of one call (every revision)."""
    entry = prediction_log_rows.by_id(session, log_id)
    if entry is None:
        raise NotFound(f"prediction-log entry {log_id} does not exist")
    refs = monitoring_rows.references_of_log(session, log_id)
    newest: dict[int, int] = {}
    for r in refs:
        newest[r.row] = max(newest.get(r.row, 0), r.revision)
    return [
        _reference_read(
            r, model=entry.model, version=entry.version, in_force=r.revision == newest[r.row]
        )
        for r in refs
    ]


# --------------------------------------------------------------------------------------------
# settings changed by QA
# --------------------------------------------------------------------------------------------


def change_settings(
    session: Session, name: str, number: int, *, data: MonitoringSettingsChange, actor: User
) -> MonitoringRead:
    """QA changes the version's rules or parameters with a reason (a new settings row in the
    same window, audited); the rules are evaluated at once with the new settings."""
    found = models_service.get_version(session, name, number)
    version = signature_rows.lock_version(session, found.id)
    if version.status is VersionStatus.retired:
        raise Conflict(f"{name} v{number} is retired: its monitoring has ended")
    current = settings_service.in_force(session, version)
    changes = data.model_dump(exclude={"reason"}, exclude_none=True)
    merged = MonitoringParameters.model_validate(current.parameters.model_dump() | changes)
    if merged == current.parameters:
        raise InvalidInput(
            f"nothing changes: the settings of {name} v{number} in force are already these"
        )
    settings_service.append(
        session,
        version,
        parameters=merged,
        window_start=current.window_start,
        origin=SettingsOrigin.qa,
        actor=actor,
        reason=data.reason,
        previous=current,
    )
    evaluate(session, version)
    return describe(session, version)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _rolling(residual: np.ndarray) -> RollingFigures:
    if residual.size == 0:
        return RollingFigures(n=0, bias=None, rmse=None)
    return RollingFigures(
        n=int(residual.size),
        bias=float(residual.mean()),
        rmse=float(math.sqrt(float(np.mean(residual**2)))),
    )


def _point_value(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])


def rule_states(session: Session, w: Window) -> list[RuleState]:
    """Each rule's state over the window, with the alarm recorded for it (if any)."""
    found = breaches(w)
    standing = {a.rule: a.id for a in _window_alarms(session, w)}
    states = []
    for rule in MonitoringRule:
        enabled = rule in w.parameters.rules
        breach = found.get(rule)
        common: dict[str, Any] = {
            "rule": rule,
            "enabled": enabled,
            "alarm_id": standing.get(rule),
        }
        if rule in (MonitoringRule.ewma, MonitoringRule.cusum):
            if w.z is None or w.ewma is None or w.cusum is None:
                states.append(
                    RuleState(
                        **common,
                        state="unavailable",
                        statistic=None,
                        limit=None,
                        detail=f"the version has no validation SEP ({w.view.figures.basis})",
                    )
                )
                continue
            if not w.series:
                limit = w.ewma.limit if rule is MonitoringRule.ewma else w.cusum.h
                states.append(
                    RuleState(
                        **common,
                        state="no_data",
                        statistic=None,
                        limit=limit,
                        detail="no reference result in the window yet",
                    )
                )
                continue
            if rule is MonitoringRule.ewma:
                statistic, limit = float(w.ewma.statistic[-1]), w.ewma.limit
            else:
                up, down = float(w.cusum.upper[-1]), float(w.cusum.lower[-1])
                statistic, limit = (up if up >= down else -down), w.cusum.h
            at = int((w.ewma if rule is MonitoringRule.ewma else w.cusum).alarm)
            states.append(
                RuleState(
                    **common,
                    state="alarm" if breach is not None else "in_control",
                    statistic=statistic,
                    limit=limit,
                    first_breach_at=w.series[at].sample_time if at >= 0 else None,
                    detail=breach.message
                    if breach is not None
                    else f"{len(w.series)} references within the limits",
                )
            )
            continue
        test = w.t2 if rule is MonitoringRule.t2_exceedance else w.q
        if test.n == 0:
            states.append(
                RuleState(
                    **common,
                    state="no_data",
                    statistic=None,
                    limit=None,
                    detail="no prediction in the window yet",
                )
            )
            continue
        states.append(
            RuleState(
                **common,
                state="alarm" if breach is not None else "in_control",
                statistic=test.rate,
                limit=test.critical_rate,
                p_value=test.p_value,
                detail=breach.message
                if breach is not None
                else f"{test.exceedances} of {test.n} spectra beyond the 99 % limit "
                f"({test.rate:.1%}; p = {test.p_value:.2g})",
            )
        )
    return states


def _exceedance_series(w: Window) -> list[ExceedancePoint]:
    points = []
    n = t2 = q = 0
    nominal = w.t2.nominal_rate
    alpha = w.parameters.exceedance_alpha
    for call in w.calls:
        n, t2, q = n + call.n_spectra, t2 + call.t2_exceeded, q + call.q_exceeded
        if n == 0:
            continue
        critical = charts.critical_count(n, nominal_rate=nominal, alpha=alpha)
        points.append(
            ExceedancePoint(
                occurred_at=call.occurred_at,
                n_spectra=n,
                t2_exceeded=t2,
                q_exceeded=q,
                t2_rate=t2 / n,
                q_rate=q / n,
                alarm_rate=critical / n,
            )
        )
    return points


def describe(session: Session, version: ModelVersion) -> MonitoringRead:
    """The version's monitoring as the API and the pages show it."""
    w = compute(session, version)
    model, number = w.model, version.version
    p = w.parameters
    series = [
        MonitoringPoint(
            reference_id=r.id,
            prediction_log_id=r.prediction_log_id,
            row=r.row,
            sample_id=r.sample_id,
            alias=r.alias,
            sample_time=r.sample_time,
            predicted_at=r.predicted_at,
            reference=r.value,
            predicted=r.predicted,
            residual=float(w.residual[i]),
            z=_point_value(w.z, i),
            rolling_bias=float(w.rolling_bias[i]),
            rolling_rmse=float(w.rolling_rmse[i]),
            ewma=_point_value(w.ewma.statistic if w.ewma else None, i),
            cusum_upper=_point_value(w.cusum.upper if w.cusum else None, i),
            cusum_lower=_point_value(w.cusum.lower if w.cusum else None, i),
        )
        for i, r in enumerate(w.series)
    ]
    since = w.now - timedelta(days=p.rolling_days)
    recent = np.array(
        [w.residual[i] for i, r in enumerate(w.series) if r.sample_time >= since],
        dtype=np.float64,
    )
    groups: dict[str | None, list[float]] = defaultdict(list)
    for i, r in enumerate(w.series):
        groups[r.alias].append(float(w.residual[i]))
    by_alias = []
    for alias in sorted(groups, key=lambda a: (a is not None, a or "")):
        fig = _rolling(np.array(groups[alias]))
        by_alias.append(AliasFigures(alias=alias, n=fig.n, bias=fig.bias, rmse=fig.rmse))
    in_force = {r.id for r in w.series}
    warnings = monitoring_rows.open_alarm_messages(session.connection(), version.id)
    return MonitoringRead(
        model=model,
        version=number,
        units=w.units,
        status=version.status,
        qualified=is_qualified(version.status, version.review_due_at),
        deployed=version.status in DEPLOYED,
        warnings=warnings if version.status is VersionStatus.requalification_due else [],
        settings=settings_service.read(w.view),
        settings_history=settings_service.history(session, version),
        aliases_naming_it=alias_rows.current_by_version(session, [version.id]).get(version.id, []),
        n_spectra=w.t2.n,
        last_n=_rolling(w.residual[-p.rolling_n :]),
        last_days=_rolling(recent),
        by_alias=by_alias,
        series=series,
        exceedance=_exceedance_series(w),
        rules=rule_states(session, w),
        alarms=[_alarm_read(a) for a in monitoring_rows.alarms_of(session, version.id)],
        references=[
            _reference_read(r, model=model, version=number, in_force=r.id in in_force)
            for r in w.references
        ],
    )


def standing_alarm_messages(session: Session, version_id: uuid.UUID) -> list[str]:
    """The alarms standing against a version (raised since its newest qualification)."""
    return monitoring_rows.open_alarm_messages(session.connection(), version_id)


def monitoring_of(session: Session, name: str, number: int, *, reader: User) -> MonitoringRead:
    """``GET .../monitoring``: a plant reader only within its scope."""
    version = models_service.get_version(session, name, number)
    scopes.check_version(session, scopes.read_scope(session, reader), version)
    return describe(session, version)
