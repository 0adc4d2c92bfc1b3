"""kill -9 of the server during a dataset upload - while the body is in flight, while the
service writes the artifact, right after the artifact is in place - and a restart on the same
database and store: no record without its file, no file but what fsck reports, the chain
valid, and the same upload then succeeds."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db.models import Dataset
from app.enums import Role
from app.store.local import sha256_hex
from tests.factories import DOMAIN, REFERENCE, create_domain, make_spectral_table
from tests.reliability.conftest import (
    Deployment,
    InFlight,
    Server,
    audit_chain,
    store_consistent,
)

pytestmark = pytest.mark.reliability

CHUNK = 256 * 1024


def _multipart(blob: bytes) -> tuple[bytes, bytes, str]:
    """The head and tail of a POST /datasets body around the file's bytes, and its type."""
    boundary = uuid.uuid4().hex
    fields = {"name": "large campaign", "domain": DOMAIN, "reference_column": REFERENCE}
    fields |= {"units": "g/L", "sample_id_column": "sample_id"}
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="large.parquet"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def _stream(blob: bytes, on_chunk: Callable[[int], None]) -> tuple[Iterator[bytes], str, int]:
    head, tail, content_type = _multipart(blob)
    body = head + blob + tail

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), CHUNK):
            on_chunk(start)
            yield body[start : start + CHUNK]

    return chunks(), content_type, len(body)


def _post(
    server: Server,
    token: str,
    blob: bytes,
    on_chunk: Callable[[int], None] = lambda sent: None,
) -> httpx.Response:
    """POST /datasets with ``blob``, streamed; ``on_chunk(offset)`` before each chunk."""
    chunks, content_type, length = _stream(blob, on_chunk)
    headers = {"Content-Type": content_type, "Content-Length": str(length)}
    with server.client(token) as client:
        return client.post("/api/v1/datasets", content=chunks, headers=headers)


def _files(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


def _datasets(deployment: Deployment) -> list[str]:
    with deployment.read() as s:
        return list(s.scalars(select(Dataset.sha256)))


def test_uploads_killed_in_flight_mid_write_and_after_the_write_leave_nothing_half_done(
    deployment: Deployment,
) -> None:
    dev = deployment.user("dev-upload", Role.developer)
    server = deployment.serve()
    with server.client(dev) as client:
        create_domain(client, {})
    before = audit_chain(deployment)  # the user, their login, the domain
    # ~38 MB of spectra: long enough to parse, hash and write that each moment can be caught.
    blob = make_spectral_table(n_samples=4000, n_channels=1000, seed=7)
    digest = sha256_hex(blob)
    final = deployment.store.path(digest)
    small = make_spectral_table(n_samples=500, n_channels=500, seed=8)  # ~2 MB

    # 1. One server dies with two uploads in it: one whose body is half sent (its client
    # waits), one whose artifact the service is writing (a temporary file, not yet linked).
    halfway, killed = threading.Event(), threading.Event()

    def wait_halfway(sent: int) -> None:
        if sent >= len(small) // 2 and not halfway.is_set():
            halfway.set()
            killed.wait(timeout=120)

    in_flight = InFlight(lambda: _post(server, dev, small, on_chunk=wait_halfway))
    assert halfway.wait(timeout=60)
    writing = InFlight(lambda: _post(server, dev, blob))
    server.step_until(
        lambda: any(n.startswith(".tmp-") for n in _files(final.parent)),
        writing,
        "the artifact being written",
    )
    server.kill()
    killed.set()
    assert isinstance(in_flight.finished(), httpx.TransportError)
    assert isinstance(writing.finished(), httpx.TransportError)
    assert _datasets(deployment) == []  # neither record was committed
    assert not final.exists()  # nothing under an artifact's name but whole bytes, ever
    server = deployment.serve()
    state = store_consistent(deployment)
    assert state.artifacts == set()
    assert state.temporary, "the interrupted write left its temporary file"
    assert audit_chain(deployment) == before

    # 2. Killed the moment the artifact is in place: before or after the commit, the record
    # and its file agree; a file whose record never committed is listed by fsck.
    upload = InFlight(lambda: _post(server, dev, blob))
    server.step_until(final.exists, upload, "the artifact in place")
    server.kill()
    upload.finished()
    server = deployment.serve()
    state = store_consistent(deployment)
    committed = _datasets(deployment)
    assert committed in ([], [digest])
    assert state.artifacts == {digest}
    assert state.unreferenced == (set() if committed else {digest})
    assert audit_chain(deployment) == before + len(committed)

    # After the restart the same uploads succeed and everything is consistent.
    response = _post(server, dev, blob)
    assert response.status_code == (200 if committed else 201), response.text
    assert response.json()["sha256"] == digest
    assert _post(server, dev, small).status_code == 201
    with server.client(dev) as client:
        stored = client.get(f"/api/v1/datasets/{digest}/content")
    assert stored.status_code == 200
    assert sha256_hex(stored.content) == digest
    assert sorted(_datasets(deployment)) == sorted([digest, sha256_hex(small)])
    state = store_consistent(deployment)
    assert state.artifacts == {digest, sha256_hex(small)}
    assert state.unreferenced == set()
    assert audit_chain(deployment) == before + 2

    # What the kills left, fsck --collect removes (nothing is being written now), audited.
    code, output = deployment.ssreg("store", "fsck", "--collect", "--grace", "0")
    assert code == 0, output
    assert f"removed {len(state.temporary)} temporary file(s)" in output
    state = store_consistent(deployment)
    assert state.temporary == set()
    assert state.artifacts == {digest, sha256_hex(small)}
    assert audit_chain(deployment) == before + 3
