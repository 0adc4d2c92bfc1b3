"""Hostile bodies and heads against a real server (not a test): what they cost it in memory.

Run ``.venv/bin/python bench/hostile_bodies.py`` (``--root DIR`` serves another source tree,
e.g. ``git archive <commit> | tar -x -C DIR``, to compare). It

1. migrates a fresh SQLite database in a temporary directory and starts ``ssreg serve`` from
   the tree on a free port, as ``make run`` does, and waits for ``/readyz``;
2. reads the server's resident memory (``VmRSS`` in ``/proc/PID/status``);
3. opens 8 connections at once, each posting a 60 MB multipart upload (one file part) to
   ``/api/v1/datasets`` without credentials, sending its body in 1 MiB parts and watching for
   an answer between parts; prints each answer (status, error code), how much of the body had
   been sent when it came, and whether the server then closed the connection;
4. reads the server's memory again: now (``VmRSS``) and its peak since it started
   (``VmHWM``);
5. opens one connection that sends part of a request head and nothing more, and prints how
   long the server kept it open (30 s at most);
6. as a developer (created through the services before the server starts), uploads a Parquet
   file of 100,000 rows x 1,000 channels of one constant value (a few MB that decode to 800 MB
   of float64) and prints the answer, the time it took and the server's peak memory after it;
7. stops the server and removes the temporary directory in any case.

Figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _serving import (  # noqa: E402  (bench/ is the script's folder)
    BENCH_PASSWORD,
    BENCH_USERNAME,
    create_bench_developer,
    free_port,
    migrate,
    until_stopped,
)

CONNECTIONS = 8
BODY_BYTES = 60_000_000
PART = b"x" * 2**20
# A well-formed multipart body: one file part of almost 60 MB, so a server that reads it
# parses it to the end.
FILE_HEAD = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
FILE_TAIL = b"\r\n--x--\r\n"
HEAD_PATIENCE = 30.0
CONSTANT_ROWS, CONSTANT_CHANNELS = 100_000, 1_000


@dataclass
class Outcome:
    status: str
    sent: int
    closed: bool
    seconds: float


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def _answer(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(5)
    try:
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + 60:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def upload(port: int) -> Outcome:
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        "POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {BODY_BYTES}\r\n\r\n"
    )
    sock.sendall(head.encode())
    sock.sendall(FILE_HEAD)
    sent = len(FILE_HEAD)
    data = b""
    try:
        while sent < BODY_BYTES:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                data = _answer(sock)
                break
            part = PART[: BODY_BYTES - len(FILE_TAIL) - sent] or FILE_TAIL
            sock.sendall(part)
            sent += len(part)
        else:
            data = _answer(sock)
    except (BrokenPipeError, ConnectionResetError):
        data = data or _answer(sock)
    seconds = time.monotonic() - started
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "(no answer)"
    code = ""
    if b'"error":"' in data:
        code = data.split(b'"error":"', 1)[1].split(b'"', 1)[0].decode()
    closed = _closed(sock)
    sock.close()
    return Outcome(f"{status_line} {code}".strip(), sent, closed, seconds)


def partial_head(port: int) -> tuple[float, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    sock.settimeout(HEAD_PATIENCE)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    sock.close()
    return time.monotonic() - started, data.split(b"\r\n", 1)[0]


def seed_developer(url: str) -> None:
    """A developer and a domain, through the services of this checkout."""
    from sqlalchemy.orm import Session

    from app.db.session import make_engine
    from app.schemas.datasets import DomainCreate
    from app.services import domains

    engine = make_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            dev = create_bench_developer(session)
            data = DomainCreate(
                name="bench",
                instrument="Raman",
                probe_serial="p1",
                scale="250 mL",
                site="bench",
                reason="benchmark",
            )
            domains.create_domain(session, data=data, actor=dev)
    finally:
        engine.dispose()


def constant_parquet(path: Path) -> bytes:
    """CONSTANT_ROWS x CONSTANT_CHANNELS spectra of 1.0 and a reference column, written row
    group by row group from one shared column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    group_rows = 10_000
    column = pa.array(np.full(group_rows, 1.0))
    names = [f"wn_{400 + j}" for j in range(CONSTANT_CHANNELS)] + ["titer_g_L"]
    group = pa.table([column] * len(names), names=names)
    with pq.ParquetWriter(path, group.schema) as writer:
        for _ in range(CONSTANT_ROWS // group_rows):
            writer.write_table(group)
    return path.read_bytes()


def upload_constants(base: str, blob: bytes) -> tuple[int, str, float]:
    import httpx

    token = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": BENCH_USERNAME, "password": BENCH_PASSWORD}
    ).json()["access_token"]
    started = time.monotonic()
    r = httpx.post(
        f"{base}/api/v1/datasets",
        headers={"Authorization": f"Bearer {token}"},
        data={
            "name": "constants",
            "domain": "bench",
            "reference_column": "titer_g_L",
            "units": "g/L",
        },
        files={"file": ("constants.parquet", blob)},
        timeout=600,
    )
    detail = r.json().get("detail", "") if r.status_code >= 400 else "registered"
    return r.status_code, str(detail), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree to serve")
    args = parser.parse_args()
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        url = f"sqlite:///{tmp}/registry.db"
        migrate(url)
        seed_developer(url)
        blob = constant_parquet(Path(tmp) / "constants.parquet")
        env = dict(os.environ, REGISTRY_DATABASE_URL=url, REGISTRY_STORE_ROOT=f"{tmp}/store")
        env["PYTHONPATH"] = str(root)
        port = free_port()
        cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
            with until_stopped(proc, f"http://127.0.0.1:{port}", "ssreg serve") as base:
                print(f"server: {root} (pid {proc.pid}), load average {os.getloadavg()[0]:.1f}")
                before = memory(proc.pid)
                print(f"  RSS before: {before['VmRSS']} MiB")
                outcomes: list[Outcome] = []
                threads = [
                    threading.Thread(target=lambda: outcomes.append(upload(port)))
                    for _ in range(CONNECTIONS)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                after = memory(proc.pid)
                print(
                    f"  {CONNECTIONS} unauthenticated connections x {BODY_BYTES / 1e6:.0f} MB "
                    "upload to /api/v1/datasets:"
                )
                for o in outcomes:
                    print(
                        f"    {o.status:45s} after {o.sent / 1e6:5.1f} MB sent, "
                        f"{o.seconds:5.2f} s; connection closed by the server: {o.closed}"
                    )
                print(
                    f"  RSS after: {after['VmRSS']} MiB, peak (VmHWM) {after['VmHWM']} MiB "
                    f"(before: {before['VmRSS']} MiB)"
                )
                seconds, first_line = partial_head(port)
                answer = first_line.decode("latin-1") or "(nothing)"
                kept = "closed" if seconds < HEAD_PATIENCE else "still open"
                print(
                    f"  a connection sending part of a request head: {kept} after "
                    f"{seconds:.1f} s, answer {answer}"
                )
                status, detail, took = upload_constants(base, blob)
                peak = memory(proc.pid)["VmHWM"]
                print(
                    f"  Parquet of {CONSTANT_ROWS:,} x {CONSTANT_CHANNELS:,} constants "
                    f"({len(blob) / 1e6:.1f} MB), as a developer: {status} in {took:.2f} s, "
                    f"server peak (VmHWM) {peak} MiB\n    {detail}"
                )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
