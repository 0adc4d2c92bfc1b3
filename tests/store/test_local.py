import fcntl
import hashlib
import threading
import time
from pathlib import Path

import pytest

from app.errors import IntegrityFailure, NotFound
from app.store import LocalStore


def test_put_is_content_addressed_and_write_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest, created = store.put(b"spectra")
    assert digest == hashlib.sha256(b"spectra").hexdigest()
    assert created
    assert store.put(b"spectra") == (digest, False)
    assert store.path(digest) == tmp_path / "sha256" / digest[:2] / digest
    assert store.get(digest) == b"spectra"
    assert not list(store.path(digest).parent.glob(".tmp-*"))  # temp file renamed away


def test_get_rehashes_and_refuses_corrupt_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest, _ = store.put(b"model weights")
    store.path(digest).write_bytes(b"model weightz")
    with pytest.raises(IntegrityFailure, match="corrupt"):
        store.get(digest)
    assert store.check(digest) == "corrupt"


def test_missing_artifact_is_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(NotFound):
        store.get("0" * 64)
    assert store.check("0" * 64) == "missing"


def test_paths_only_accept_hex_digests(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalStore(tmp_path).path("../../etc/passwd")


def test_digests_lists_what_is_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    a, _ = store.put(b"a")
    b, _ = store.put(b"b")
    assert sorted(store.digests()) == sorted([a, b])


# --- a failed request's discard against a second writer of the same bytes -------------------


def test_discard_removes_what_only_this_request_wrote(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest, created = store.put(b"upload that then fails")
    assert created
    assert store.discard(digest)
    assert not store.exists(digest)
    assert not store.discard(digest)  # already gone: nothing to do


def test_discard_keeps_bytes_another_request_also_stored(tmp_path: Path) -> None:
    """Request A writes the file; request B finds it and will commit a record naming it; A
    fails. A's cleanup must not remove B's artifact (the race fsck used to report)."""
    store = LocalStore(tmp_path)
    digest, created_by_a = store.put(b"same bytes, two requests")
    assert store.put(b"same bytes, two requests") == (digest, False)  # B
    assert created_by_a
    assert not store.discard(digest)  # A's rollback
    assert store.get(digest) == b"same bytes, two requests"
    assert list(store.digests()) == [digest]  # the mark is not listed as an artifact


def test_discard_keeps_a_file_locked_by_a_writer_marking_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest, _ = store.put(b"being marked")
    with store.path(digest).open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_SH)  # a second writer between lock and mark
        assert not store.discard(digest)
    assert store.exists(digest)


def test_a_writer_waiting_on_a_discard_writes_the_bytes_again(tmp_path: Path) -> None:
    """B finds the file while A's discard holds it exclusively; A removes it; B must not
    return a digest whose file is gone."""
    store = LocalStore(tmp_path)
    blob = b"removed while the second writer waited"
    digest, _ = store.put(blob)
    path = store.path(digest)
    result: list[tuple[str, bool]] = []
    with path.open("rb") as discarding:
        fcntl.flock(discarding.fileno(), fcntl.LOCK_EX)  # A's discard, in progress
        writer = threading.Thread(target=lambda: result.append(store.put(blob)))
        writer.start()
        time.sleep(0.2)  # B has opened the file and waits for the lock
        assert writer.is_alive()
        path.unlink()  # A removes it, then drops the lock
    writer.join(timeout=10)
    assert result == [(digest, True)]  # B wrote the bytes again
    assert store.get(digest) == blob
