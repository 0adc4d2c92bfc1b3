"""Monitoring: reference results for predicted samples, and a version's monitoring (series,
limits, rule states, alarms) and its rules' parameters."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.api.deps import QA, AuditReader, CatalogReader, Predictor, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.params import ModelName, VersionNumber
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND, ErrorBody
from app.schemas.monitoring import (
    MonitoringRead,
    MonitoringSettingsChange,
    ReferenceCreate,
    ReferenceCreated,
    ReferenceRead,
)
from app.services import models as models_service
from app.services import monitoring

router = APIRouter(route_class=StrictJSONRoute)


@router.post(
    "/prediction-log/{log_id}/references",
    tags=["predictions"],
    status_code=status.HTTP_201_CREATED,
    response_model=ReferenceCreated,
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "the sample has a reference already (give correction_reason), or "
            "the call was logged without results",
        },
    },
)
def post_reference(
    log_id: uuid.UUID, body: ReferenceCreate, session: SessionDep, actor: Predictor
) -> ReferenceCreated:
    """Record the offline (laboratory) result for one predicted sample of a logged call,
    named by ``sample_id`` or ``row``: value in the model's units, assay method, sample time
    and the laboratory's reference. The service compares it with the call's prediction and
    evaluates the version's monitoring rules in the same transaction: a rule that breaches
    records an alarm and moves a qualified version to requalification_due
    (``alarms_raised``, ``version_status``). Units other than the model's, an unknown sample,
    or a sample time in the future: 422. A second reference for a sample replaces the first
    only with a ``correction_reason`` (else 409); both stay visible. Roles: plant (within
    its scope), developer."""
    return monitoring.post_reference(session, log_id, data=body, actor=actor)


@router.get(
    "/prediction-log/{log_id}/references",
    tags=["predictions"],
    response_model=list[ReferenceRead],
    responses={**ERRORS, **NOT_FOUND},
)
def list_references(log_id: uuid.UUID, session: SessionDep, _: AuditReader) -> list[ReferenceRead]:
    """Every reference posted for the samples of a call, corrections and the results they
    replaced included (``in_force``: the newest for its sample). Roles: qa, auditor, admin."""
    return monitoring.references_of_call(session, log_id)


@router.get(
    "/models/{name}/versions/{version}/monitoring",
    tags=["models"],
    response_model=MonitoringRead,
    responses={**ERRORS, **NOT_FOUND},
)
def get_monitoring(
    name: ModelName, version: VersionNumber, session: SessionDep, reader: CatalogReader
) -> MonitoringRead:
    """The version's monitoring over its window (predictions since its newest approval or
    requalification): the settings in force and their history with the charts' design ARLs;
    the references in force in sample-time order with residual, standardized residual,
    rolling bias/RMSE, EWMA and CUSUM at each; the cumulative T²/Q exceedance rates per call
    with the binomial test's alarm rate; each rule's state; every alarm; every reference of
    the window (corrected ones included); the warnings predictions carry. Roles: any (plant
    within its scope)."""
    return monitoring.monitoring_of(session, name, version, reader=reader)


@router.post(
    "/models/{name}/versions/{version}/monitoring/settings",
    tags=["models"],
    response_model=MonitoringRead,
    responses={**ERRORS, **NOT_FOUND, **CONFLICT},
)
def change_monitoring_settings(
    name: ModelName,
    version: VersionNumber,
    body: MonitoringSettingsChange,
    session: SessionDep,
    actor: QA,
) -> MonitoringRead:
    """QA changes the version's monitoring rules or their parameters, with a reason: a new
    settings row (the old ones stay in ``settings_history``), audited; the rules are
    evaluated at once with the new settings. Fields left out keep their value; a change that
    changes nothing is a 422; a retired version a 409. Roles: qa."""
    models_service.get_version(session, name, version)  # the precise 404 first
    return monitoring.change_settings(session, name, version, data=body, actor=actor)
