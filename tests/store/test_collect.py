"""Leftovers of interrupted writes and unreferenced artifacts: listed, and removed only once
older than a grace period (a real kill -9 mid-write included)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from app.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600.0

# Writes ever new 8 MiB artifacts through the store until killed; each put spends most of its
# time with its temporary file open (write, fsync, link), so a kill lands mid-write.
WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from app.store import LocalStore

    store = LocalStore(Path(sys.argv[1]))
    while True:
        store.put(os.urandom(8 * 2**20))
    """
)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _kill_mid_write(root: Path) -> list[Path]:
    """Start a writer, SIGKILL it once a temporary file exists, and return the temporary files
    left behind (retried if the kill landed between two writes)."""
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if list(root.glob("sha256/*/.tmp-*")):
                    break
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        left = list(root.glob("sha256/*/.tmp-*"))
        if left:
            return left
    raise AssertionError("no kill landed during a write in 5 tries")


def test_kill_9_mid_write_leaves_a_temporary_file_that_collect_removes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    left = _kill_mid_write(store.root)
    listed = list(store.temporaries())
    assert sorted(store.root / f.path for f in listed) == sorted(left)
    assert all(f.path.startswith("sha256/") and "/.tmp-" in f.path for f in listed)
    # Young: a grace period keeps it (it could be a write in progress).
    assert not store.remove_temporary(listed[0], older_than=time.time() - HOUR)
    assert left[0].exists()
    assert store.remove_temporary(listed[0], older_than=time.time() + 1)
    assert not left[0].exists()
    assert not store.remove_temporary(listed[0], older_than=time.time() + 1)  # already gone


def test_a_probe_left_at_the_root_is_temporary_too(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    (tmp_path / ".probe-abc").write_bytes(b"")
    assert [f.path for f in store.temporaries()] == [".probe-abc"]
    assert store.writable()  # its own probe cleans up after itself
    assert [f.path for f in store.temporaries()] == [".probe-abc"]


def test_collect_removes_an_old_artifact_and_its_mark_not_a_young_one(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old, _ = store.put(b"left by a failed request long ago")
    store.put(b"left by a failed request long ago")  # a second writer marked it .kept
    young, _ = store.put(b"put a moment ago")
    _age(store.path(old), 2 * HOUR)
    cutoff = time.time() - HOUR
    assert store.collect(young, older_than=cutoff) is None
    assert store.exists(young)
    assert store.collect(old, older_than=cutoff) == len(b"left by a failed request long ago")
    assert not store.exists(old)
    assert not store.path(old).with_name(old + ".kept").exists()
    assert store.collect(old, older_than=cutoff) is None  # gone


def test_putting_stored_bytes_again_refreshes_their_age(tmp_path: Path) -> None:
    """A request that finds the bytes already stored (e.g. left unreferenced) and is about to
    commit a record naming them keeps them from being collected."""
    store = LocalStore(tmp_path)
    digest, _ = store.put(b"old bytes, wanted again")
    _age(store.path(digest), 2 * HOUR)
    assert store.put(b"old bytes, wanted again") == (digest, False)
    assert store.collect(digest, older_than=time.time() - HOUR) is None
    assert store.exists(digest)


def test_collect_leaves_an_artifact_a_request_is_marking_right_now(tmp_path: Path) -> None:
    import fcntl

    store = LocalStore(tmp_path)
    digest, _ = store.put(b"being found by another request")
    fd = os.open(store.path(digest), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what put() holds while it marks and refreshes
        assert store.collect(digest, older_than=time.time() + 1) is None
    finally:
        os.close(fd)
    assert store.exists(digest)
