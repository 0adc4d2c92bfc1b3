import hashlib
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
