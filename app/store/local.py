"""Local-filesystem artifact store: ``<root>/sha256/<ab>/<digest>``, written once, re-hashed.

Writes go to a temporary file in the same directory, are fsynced and renamed into place, so a
reader never sees a partial artifact and an existing artifact is never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from app.errors import IntegrityFailure, NotFound
from app.settings import get_settings

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore(Protocol):
    def put(self, blob: bytes) -> tuple[str, bool]: ...
    def get(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def discard(self, digest: str) -> None: ...
    def digests(self) -> Iterator[str]: ...
    def check(self, digest: str) -> str: ...
    def writable(self) -> bool: ...


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class LocalStore:
    """Artifacts as files under ``root``; the file name is the sha256 of its bytes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise NotFound(f"{digest!r} is not a sha256 hex digest")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, blob: bytes) -> tuple[str, bool]:
        """Store ``blob`` once. Returns its sha256 and whether this call created the file."""
        digest = sha256_hex(blob)
        target = self.path(digest)
        if target.exists():
            return digest, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                # link() fails if the target exists: never overwrite, even under a race.
                os.link(tmp, target)
                created = True
            except FileExistsError:
                created = False
        finally:
            os.unlink(tmp)
        if created:
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return digest, created

    def get(self, digest: str) -> bytes:
        """The artifact's bytes, re-hashed: raises IntegrityFailure if they no longer match."""
        target = self.path(digest)
        try:
            blob = target.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is missing from the store") from None
        if sha256_hex(blob) != digest:
            raise IntegrityFailure(f"artifact {digest} is corrupt: its bytes hash differently")
        return blob

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def discard(self, digest: str) -> None:
        """Remove an artifact written by a request that then failed (never a referenced one)."""
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.exists():
            return
        for sub in sorted(base.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    if _DIGEST.match(f.name):
                        yield f.name

    def check(self, digest: str) -> str:
        """``ok``, ``missing`` or ``corrupt``."""
        target = self.path(digest)
        if not target.exists():
            return "missing"
        h = hashlib.sha256()
        with target.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return "ok" if h.hexdigest() == digest else "corrupt"

    def writable(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError:
            return False
        return True


@lru_cache
def get_store() -> LocalStore:
    return LocalStore(get_settings().store_root)
