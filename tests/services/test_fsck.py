"""fsck lists leftovers; collect removes only old, unreferenced ones and audits them (both
databases)."""

import os
import time

import pytest
from sqlalchemy.orm import Session

from app.db.models import AuditEvent
from app.enums import Role
from app.schemas.datasets import DatasetCreate, DomainCreate
from app.services import audit
from app.services.datasets import register_dataset
from app.services.domains import create_domain
from app.services.fsck import collect, fsck
from app.store import LocalStore
from tests.factories import REFERENCE, SAMPLE_ID, make_spectral_table
from tests.helpers import Actor

HOUR = 3600.0


def _age(path: os.PathLike[str], seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def dataset_sha(session: Session, store: LocalStore, actors: dict[Role, Actor]) -> str:
    """A registered dataset whose stored bytes are then made two hours old."""
    dev = actors[Role.developer].user
    create_domain(
        session,
        data=DomainCreate(
            name="fsck-dom", instrument="RXN2", probe_serial="p", scale="s", site="s", reason="t"
        ),
        actor=dev,
    )
    ds, _ = register_dataset(
        session,
        store,
        blob=make_spectral_table(n_samples=12, n_channels=8, seed=4),
        filename="d.parquet",
        data=DatasetCreate(
            name="d",
            domain="fsck-dom",
            reference_column=REFERENCE,
            units="g/L",
            sample_id_column=SAMPLE_ID,
        ),
        actor=dev,
    )
    _age(store.path(ds.sha256), 2 * HOUR)
    return ds.sha256


def test_collect_never_removes_a_referenced_artifact(
    session: Session, store: LocalStore, dataset_sha: str
) -> None:
    stray, _ = store.put(b"unreferenced, old")
    _age(store.path(stray), 2 * HOUR)
    done = collect(session, store, grace_seconds=0, actor="cli:op", reason="maintenance")
    assert [a.digest for a in done.removed_artifacts] == [stray]
    assert store.exists(dataset_sha)
    assert store.get(dataset_sha)
    report = fsck(session, store)
    assert report.healthy
    assert report.unreferenced == []


def test_collect_keeps_what_is_younger_than_the_grace_period(
    session: Session, store: LocalStore, dataset_sha: str
) -> None:
    old, _ = store.put(b"unreferenced, old")
    young, _ = store.put(b"unreferenced, just put")
    _age(store.path(old), 2 * HOUR)
    tmp_old = store.path(old).parent / ".tmp-killed"
    tmp_old.write_bytes(b"x" * 1000)
    _age(tmp_old, 2 * HOUR)
    tmp_young = store.path(young).parent / ".tmp-writing"
    tmp_young.write_bytes(b"y" * 10)
    listed = {f.path for f in fsck(session, store).temporary}
    assert listed == {str(tmp_old.relative_to(store.root)), str(tmp_young.relative_to(store.root))}

    done = collect(session, store, grace_seconds=HOUR, actor="cli:op", reason="maintenance")
    assert [a.digest for a in done.removed_artifacts] == [old]
    assert [f.path for f in done.removed_temporary] == [str(tmp_old.relative_to(store.root))]
    assert (done.kept_temporary, done.kept_unreferenced) == (1, 1)
    assert done.removed_bytes == len(b"unreferenced, old") + 1000
    assert store.exists(young)
    assert tmp_young.exists()
    assert store.exists(dataset_sha)
    assert not store.exists(old)
    assert not tmp_old.exists()


def test_collect_is_audited_with_what_it_removed(
    session: Session, store: LocalStore, dataset_sha: str
) -> None:
    stray, _ = store.put(b"unreferenced, old")
    _age(store.path(stray), 2 * HOUR)
    done = collect(session, store, grace_seconds=HOUR, actor="cli:op", reason="after the crash")
    assert done.audit_seq is not None
    event = session.get(AuditEvent, done.audit_seq)
    assert event is not None
    assert (event.actor, event.action, event.entity_type) == ("cli:op", "store.collect", "store")
    assert event.reason == "after the crash"
    assert event.after is not None
    assert event.after["removed_artifacts"] == [{"sha256": stray, "size": 17}]
    assert event.after["grace_seconds"] == HOUR
    assert audit.verify_chain(session).valid


def test_collect_that_removes_nothing_writes_no_event(
    session: Session, store: LocalStore, dataset_sha: str
) -> None:
    before = audit.verify_chain(session).events
    done = collect(session, store, grace_seconds=HOUR, actor="cli:op", reason="maintenance")
    assert done.audit_seq is None
    assert not done.removed_artifacts
    assert not done.removed_temporary
    assert audit.verify_chain(session).events == before
