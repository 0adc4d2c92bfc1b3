"""Local-filesystem artifact store: ``<root>/sha256/<ab>/<digest>``, written once, re-hashed.

Writes go to a temporary file in the same directory, are fsynced and linked into place, so a
reader never sees a partial artifact and an existing artifact is never overwritten.

A request that stored new bytes and then failed removes its file again (:meth:`discard`) -
unless another request found the same bytes stored in the meantime and may be about to commit
a record naming them. Such a request leaves a mark beside the file (``<digest>.kept``) under a
shared ``flock``; the removal checks for the mark under an exclusive one, so the two cannot
interleave: either the mark is seen and the file stays, or the file is gone before the other
request looks and it writes the bytes again. Locks are per host, like the store. A file kept
this way whose every user failed is left unreferenced, which ``ssreg store fsck`` lists.

A process killed while writing leaves its temporary file (``.tmp-*`` beside the artifacts,
``.probe-*`` at the root). ``ssreg store fsck`` lists those too, and ``--collect`` removes them
and unreferenced artifacts once they are older than a grace period. The age of an artifact is
its modification time, which :meth:`LocalStore.put` refreshes when it finds the bytes already
stored (under the same shared lock), so an artifact that a request in flight has just put -
written or found - is never older than that request; :meth:`LocalStore.collect` re-checks the
age under the exclusive lock before removing anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from app.errors import IntegrityFailure, NotFound
from app.settings import get_settings

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Prefixes of the temporary files a write (beside the artifacts) and a writability probe (at
# the root) make; a process killed meanwhile leaves them behind.
TMP_PREFIX = ".tmp-"
PROBE_PREFIX = ".probe-"
KEPT_SUFFIX = ".kept"


@dataclass(frozen=True)
class StoreFile:
    """A file in the store that is not an artifact: its path relative to the root, size in
    bytes and modification time (seconds since the epoch)."""

    path: str
    size: int
    mtime: float


class ArtifactStore(Protocol):
    def put(self, blob: bytes) -> tuple[str, bool]: ...
    def get(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def discard(self, digest: str) -> bool: ...
    def digests(self) -> Iterator[str]: ...
    def check(self, digest: str) -> str: ...
    def writable(self) -> bool: ...
    def temporaries(self) -> Iterator[StoreFile]: ...
    def remove_temporary(self, found: StoreFile, *, older_than: float) -> bool: ...
    def collect(self, digest: str, *, older_than: float) -> int | None: ...


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
        """Store ``blob`` once. Returns its sha256 and whether this call created the file.

        If the file was there already, it is marked as wanted by a second writer first, so a
        failed creator's :meth:`discard` leaves it in place.
        """
        digest = sha256_hex(blob)
        target = self.path(digest)
        for _ in range(100):
            if self._mark_kept(target):
                return digest, False
            created = self._write(target, blob)
            if created or self._mark_kept(target):
                return digest, created
            # Created by another request and removed by its discard since: write it again.
        raise IntegrityFailure(f"artifact {digest} keeps disappearing from the store")

    @staticmethod
    def _kept_mark(target: Path) -> Path:
        return target.with_name(target.name + KEPT_SUFFIX)

    def _mark_kept(self, target: Path) -> bool:
        """Mark an existing file as wanted; False if there is no file (or it was removed while
        we waited for a discard that held the lock)."""
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a discard holds it exclusively
            try:
                if os.stat(target).st_ino != os.fstat(fd).st_ino:
                    return False  # we locked a file that was unlinked meanwhile
            except FileNotFoundError:
                return False
            mark = self._kept_mark(target)
            if not mark.exists():
                mark.touch()
            # Fresh again: ``collect`` removes only artifacts older than its grace period.
            os.utime(fd)
            return True
        finally:
            os.close(fd)  # drops the lock

    def _write(self, target: Path, blob: bytes) -> bool:
        """Write ``blob`` to ``target`` unless it exists; whether this call created it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
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
        return created

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

    def discard(self, digest: str) -> bool:
        """Remove an artifact that this request created and no longer needs (it failed),
        unless another request has marked it as wanted. Returns whether it was removed."""
        target = self.path(digest)
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another request is marking it right now: it is wanted
            if self._kept_mark(target).exists():
                return False
            target.unlink()
            return True
        finally:
            os.close(fd)

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
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=PROBE_PREFIX):
                pass
        except OSError:
            return False
        return True

    def temporaries(self) -> Iterator[StoreFile]:
        """Temporary files left by writes and probes that did not finish (a process killed
        meanwhile), in path order."""
        found: list[Path] = []
        if self.root.is_dir():
            found += [p for p in self.root.iterdir() if p.name.startswith(PROBE_PREFIX)]
        base = self.root / "sha256"
        if base.is_dir():
            for sub in base.iterdir():
                if not sub.is_dir():
                    continue
                for p in sub.iterdir():
                    if p.name.startswith(TMP_PREFIX):
                        found.append(p)
        for p in sorted(found):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # finished or removed meanwhile
            yield StoreFile(str(p.relative_to(self.root)), st.st_size, st.st_mtime)

    def remove_temporary(self, found: StoreFile, *, older_than: float) -> bool:
        """Remove a file listed by :meth:`temporaries` if it is still there and was last
        modified before ``older_than`` (seconds since the epoch)."""
        path = self.root / found.path
        try:
            if path.stat().st_mtime >= older_than:
                return False  # a write in progress (or a new file of the same name)
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def collect(self, digest: str, *, older_than: float) -> int | None:
        """Remove an artifact that no record references, with its ``.kept`` mark, if it was
        last stored before ``older_than`` (seconds since the epoch). Returns its size if it
        was removed, None if it stays (younger, gone, or being marked by a request now).

        The caller makes sure no record references it. The age is read under the exclusive
        lock that :meth:`put` waits for when it finds the bytes stored, and ``put`` refreshes
        it under its shared lock: a request that found these bytes stored keeps them.
        """
        target = self.path(digest)
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a request is marking it as wanted right now
            st = os.fstat(fd)
            if st.st_mtime >= older_than:
                return None
            target.unlink()
            self._kept_mark(target).unlink(missing_ok=True)
            return st.st_size
        finally:
            os.close(fd)


@lru_cache
def get_store() -> LocalStore:
    return LocalStore(get_settings().store_root)
