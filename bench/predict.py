"""Benchmark of ``POST /api/v1/models/{name}/versions/{v}/predict`` over HTTP (not a test).

Run ``.venv/bin/python bench/predict.py`` (add ``--postgres`` for PostgreSQL on
127.0.0.1:5432 instead of SQLite). SQLite is measured as deployed, ``synchronous=FULL`` (an
fsync per commit); ``--sqlite-synchronous NORMAL`` prints a run labelled as not the default. It

1. creates a temporary directory with a SQLite database (or a temporary PostgreSQL database)
   and an artifact store, migrates it with Alembic, and seeds, through the service layer in
   this process, a developer, a domain, the simulated BATCH-2026-001 dataset (336 spectra x
   701 channels) and ``titer_pls`` v1 trained on it;
2. starts uvicorn on 127.0.0.1 (a free port) as a subprocess pointed at them, waits for
   ``/readyz`` and logs in for a bearer token;
3. measures, with bounded request counts:

   - single-spectrum JSON latency p50/p95/p99 over 5 rounds of 1000 requests, each after
     100 warm-ups (target p50 <= 1.5 ms), judged on a keep-alive ``http.client`` connection
     (the standard library's client costs about 1 ms less per request than httpx here, so
     the figure is mostly the server's) and also shown through the keep-alive
     ``httpx.Client`` (1000 requests); each round's p50 is printed, since this machine's
     latency drifts with the load of its neighbours (1.3 to 2.9 ms for the same code within
     ten minutes, seen here);
   - beside it, with no target: single-spectrum Arrow latency in the list layout (one
     ``FixedSizeList<float64>`` column ``spectra``, the axis in the schema metadata), one
     round of 1000 requests after 100 warm-ups on the same keep-alive connection, with its
     body size next to a one-column-per-channel Arrow message's;
   - batch throughput, 1000-spectrum JSON bodies, median of 20 requests (>= 8,000 spectra/s);
   - batch throughput, 1000-spectrum Arrow IPC bodies, median of 20 (>= 50,000 spectra/s);
   - with no target: 4 keep-alive clients x 250 single-spectrum calls at once, beside a fifth
     client posting 1000-spectrum JSON batches; every call must succeed;

   and prints each figure with its target and PASS/MISS, plus two floors on the same
   clients: ``GET /healthz`` (no authentication, no database) and ``GET /api/v1/users/me``
   (the request session and the bearer-token lookup that every authenticated call pays);
4. stops the server and removes the temporary database in any case.

``--pin`` runs the server on the last CPU and this client on CPU 0 (labelled; not how
``make run`` deploys): it shows how much of the latency is threads waking on another core.

Latencies are client-side wall times (``time.perf_counter`` around each request), so they
include the client's own overhead. The server runs one worker (httptools with the request-head
timeout of ``app/server.py``, as ``ssreg serve`` runs it, and uvloop) as deployed: the app
limits BLAS and OpenMP to ``REGISTRY_COMPUTE_THREADS`` threads (default 1: one worker per core
is how the service scales; ``--compute-threads N`` passes another value, 0 = the libraries'
defaults), and no access log. ``--request-log`` configures logging as ``ssreg serve`` does - one
JSON line per request, here to a file in the temporary directory - and prints how many lines
were written.
Figures vary with the machine's load; the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _serving import (  # noqa: E402  (bench/ is the script's folder)
    BENCH_PASSWORD,
    BENCH_USERNAME,
    create_bench_developer,
    database,
    free_port,
    migrate,
    until_stopped,
)

# The name bench/listing.py, predict_ab.py and predict_unit.py read (as bench.PASSWORD).
PASSWORD = BENCH_PASSWORD
ARROW = "application/vnd.apache.arrow.stream"
MODEL = "titer_pls"
SINGLE_WARMUP, SINGLE_N, SINGLE_ROUNDS = 100, 1000, 5
BATCH_WARMUP, BATCH_N, BATCH_ROWS = 3, 20, 1000
CONCURRENT_CLIENTS, CONCURRENT_N = 4, 250
TARGET_SINGLE_P50_MS = 1.5
TARGET_JSON_PER_S = 8_000
TARGET_ARROW_PER_S = 50_000


def seed(url: str, store_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A developer, then the demo's development side (domain, simulated dataset, titer_pls v1:
    ``seed_source_version``), through the services.

    Returns the dataset's spectra (336, 701) and axis, to build request bodies from.
    """
    from sqlalchemy.orm import Session

    from app.core.simulate import simulate_batch
    from app.db.session import make_engine
    from app.services.seed import SEED, SOURCE_BATCH, seed_source_version
    from app.store import LocalStore

    engine = make_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            dev = create_bench_developer(session)
            seed_source_version(session, LocalStore(store_root), dev)
    finally:
        engine.dispose()
    batch = simulate_batch(SOURCE_BATCH, seed=SEED)
    return batch.X, batch.axis


@contextlib.contextmanager
def server(
    url: str,
    store_root: Path,
    compute_threads: int | None,
    http: str,
    loop: str,
    synchronous: str,
    cpus: set[int] | None,
    root: Path = ROOT,
    request_log: Path | None = None,
) -> Iterator[str]:
    """uvicorn serving the ``app`` package found in ``root`` (default: this checkout).

    ``request_log``: configure logging as ``ssreg serve`` does (one JSON line per request) and
    send the server's stderr to that file; otherwise no request lines (uvicorn at WARNING)."""
    port = free_port()
    env = dict(
        os.environ,
        REGISTRY_DATABASE_URL=url,
        REGISTRY_STORE_ROOT=str(store_root),
        REGISTRY_SQLITE_SYNCHRONOUS=synchronous,
    )
    if compute_threads is not None:
        env["REGISTRY_COMPUTE_THREADS"] = str(compute_threads)
    if http == "auto" and (root / "app" / "server.py").exists():
        http = "app.server:HeadGuardProtocol"  # httptools with the head timeout: ssreg serve's
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--http",
        http,
        "--loop",
        loop,
        "--log-level",
        "warning",
    ]
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    with contextlib.ExitStack() as stack:
        stderr = None
        if request_log is not None:
            import json

            from app.telemetry.logs import log_config

            config = request_log.with_suffix(".config.json")
            config.write_text(json.dumps(log_config("INFO")))
            cmd += ["--log-config", str(config)]
            stderr = stack.enter_context(request_log.open("wb"))
        proc = subprocess.Popen(cmd, cwd=root, env=env, preexec_fn=pin, stderr=stderr)
        with until_stopped(proc, f"http://127.0.0.1:{port}", "uvicorn") as base:
            yield base


def arrow_body(X: np.ndarray, axis: np.ndarray) -> bytes:
    from app.core.simulate import spectral_columns

    table = pa.table({name: X[:, j] for j, name in enumerate(spectral_columns(axis))})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def arrow_list_body(X: np.ndarray, axis: np.ndarray) -> bytes:
    """The list layout: one FixedSizeList<float64> column, the axis in the schema metadata."""
    kind = pa.list_(pa.float64(), X.shape[1])
    schema = pa.schema(
        [pa.field("spectra", kind)],
        metadata={b"axis": orjson.dumps(axis, option=orjson.OPT_SERIALIZE_NUMPY)},
    )
    values = pa.array(np.ascontiguousarray(X, dtype=np.float64).ravel())
    table = pa.table(
        {"spectra": pa.FixedSizeListArray.from_arrays(values, X.shape[1])}, schema=schema
    )
    sink = io.BytesIO()
    with ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def json_body(X: np.ndarray) -> bytes:
    return orjson.dumps({"spectra": X}, option=orjson.OPT_SERIALIZE_NUMPY)


def timed(send: Callable[[], httpx.Response], warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        send()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = send()
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
    return times


class LeanClient:
    """Keep-alive HTTP/1.1 on the standard library: about 1 ms less overhead per request
    than httpx here, so the latency figure is mostly the server's."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, r.read()


def timed_lean(send: Callable[[], tuple[int, bytes]], warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        send()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, content = send()
        times.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{status}: {content[:300]!r}")
    return times


def percentiles_ms(times: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles([t * 1e3 for t in times], n=100, method="inclusive")
    return q[49], q[94], q[98]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def measure(base: str, X: np.ndarray, axis: np.ndarray) -> None:
    rows = np.vstack([X] * (BATCH_ROWS // X.shape[0] + 1))[:BATCH_ROWS]
    singles = [json_body(X[i : i + 1]) for i in range(X.shape[0])]
    singles_arrow = [arrow_list_body(X[i : i + 1], axis) for i in range(X.shape[0])]
    columns_single_size = len(arrow_body(X[:1], axis))
    big_json, big_arrow = json_body(rows), arrow_body(rows, axis)
    path = f"{base}/api/v1/models/{MODEL}/versions/1/predict"
    with httpx.Client(timeout=60) as client:
        r = client.post(
            f"{base}/api/v1/auth/token", data={"username": BENCH_USERNAME, "password": PASSWORD}
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        h_json = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        h_arrow = {"Authorization": f"Bearer {token}", "Content-Type": ARROW}

        # Same predictions from both body formats (a sanity check, not timed).
        pj = client.post(path, content=big_json, headers=h_json).json()["predictions"]
        pa_ = client.post(path, content=big_arrow, headers=h_arrow).json()["predictions"]
        assert np.array_equal(pj, pa_), "JSON and Arrow bodies disagree"
        pl = client.post(path, content=arrow_list_body(rows, axis), headers=h_arrow)
        assert np.array_equal(pj, pl.json()["predictions"]), "the Arrow list layout disagrees"

        floor_httpx = timed(lambda: client.get(f"{base}/healthz"), SINGLE_WARMUP, SINGLE_N)
        it = iter(range(10**9))
        single_httpx = timed(
            lambda: client.post(path, content=singles[next(it) % len(singles)], headers=h_json),
            SINGLE_WARMUP,
            SINGLE_N,
        )
        t_json = timed(
            lambda: client.post(path, content=big_json, headers=h_json), BATCH_WARMUP, BATCH_N
        )
        t_arrow = timed(
            lambda: client.post(path, content=big_arrow, headers=h_arrow), BATCH_WARMUP, BATCH_N
        )
    lean = LeanClient(base)
    upath = path.removeprefix(base)
    floor_lean = timed_lean(lambda: lean.get("/healthz"), SINGLE_WARMUP, SINGLE_N)
    auth_lean = timed_lean(lambda: lean.get("/api/v1/users/me", h_json), SINGLE_WARMUP, SINGLE_N)
    # Rounds, because this machine's latency drifts with its neighbours' load: each round's
    # p50 is printed, and the judged figures are over all rounds' requests together.
    rounds = [
        timed_lean(
            lambda: lean.post(upath, singles[next(it) % len(singles)], h_json),
            SINGLE_WARMUP,
            SINGLE_N,
        )
        for _ in range(SINGLE_ROUNDS)
    ]
    single_lean = [t for r in rounds for t in r]
    single_arrow = timed_lean(
        lambda: lean.post(upath, singles_arrow[next(it) % len(singles_arrow)], h_arrow),
        SINGLE_WARMUP,
        SINGLE_N,
    )
    lean.conn.close()
    mixed = concurrent_calls(base, upath, singles, big_json, h_json)

    print(
        f"  floor: GET /healthz (no auth, no database)    http.client p50 "
        f"{statistics.median(floor_lean) * 1e3:6.3f} ms   httpx p50 "
        f"{statistics.median(floor_httpx) * 1e3:6.3f} ms"
    )
    print(
        f"  floor: GET /api/v1/users/me (session + token)  http.client p50 "
        f"{statistics.median(auth_lean) * 1e3:6.3f} ms   (any authenticated call pays this)"
    )
    for label, times, judged in (
        ("http.client", single_lean, True),
        ("httpx      ", single_httpx, False),
    ):
        p50, p95, p99 = percentiles_ms(times)
        tail = (
            f"target p50 <= {TARGET_SINGLE_P50_MS} ms   {verdict(p50 <= TARGET_SINGLE_P50_MS)}"
            if judged
            else "(same requests through httpx; not judged)"
        )
        print(
            f"  single spectrum, JSON, {label} ({len(times)} requests)  p50 {p50:6.3f} ms"
            f"  p95 {p95:6.3f} ms  p99 {p99:6.3f} ms   {tail}"
        )
    print(
        f"    p50 of each round of {SINGLE_N} (http.client): "
        + ", ".join(f"{statistics.median(r) * 1e3:.3f}" for r in rounds)
        + " ms"
    )
    p50, p95, p99 = percentiles_ms(single_arrow)
    print(
        f"  single spectrum, Arrow list layout, http.client ({len(single_arrow)} requests)  "
        f"p50 {p50:6.3f} ms  p95 {p95:6.3f} ms  p99 {p99:6.3f} ms   ({len(singles_arrow[0]):,} "
        f"B body; {columns_single_size:,} B with one column per channel; no target)"
    )
    json_rate = BATCH_ROWS / statistics.median(t_json)
    arrow_rate = BATCH_ROWS / statistics.median(t_arrow)
    p50, _, p99 = percentiles_ms(mixed.single_times)
    print(
        f"  concurrent: {CONCURRENT_CLIENTS} clients x {CONCURRENT_N} single spectra beside one "
        f"client posting {BATCH_ROWS}-spectrum JSON batches: single p50 {p50:6.3f} ms  "
        f"p99 {p99:6.3f} ms, {mixed.singles_per_s:,.0f} calls/s, {mixed.batches} batches, "
        f"0 errors (no target)"
    )
    print(
        f"  batch {BATCH_ROWS} spectra, JSON  ({len(big_json) / 2**20:5.1f} MiB body)  "
        f"{json_rate:9,.0f} spectra/s  (median {statistics.median(t_json) * 1e3:6.1f} ms of "
        f"{BATCH_N})   target >= {TARGET_JSON_PER_S:,}   {verdict(json_rate >= TARGET_JSON_PER_S)}"
    )
    print(
        f"  batch {BATCH_ROWS} spectra, Arrow ({len(big_arrow) / 2**20:5.1f} MiB body)  "
        f"{arrow_rate:9,.0f} spectra/s  (median {statistics.median(t_arrow) * 1e3:6.1f} ms of "
        f"{BATCH_N})   target >= {TARGET_ARROW_PER_S:,}   "
        f"{verdict(arrow_rate >= TARGET_ARROW_PER_S)}"
    )


@dataclass
class Mixed:
    single_times: list[float]
    singles_per_s: float
    batches: int


def concurrent_calls(
    base: str, path: str, singles: list[bytes], batch: bytes, headers: dict[str, str]
) -> Mixed:
    """Single-spectrum calls from several keep-alive clients at once while another client
    posts large batches (which hold SQLite's write lock for their whole transaction): every
    call must succeed. Raises on any status but 200."""
    stop = threading.Event()
    batches = 0

    def batch_client() -> None:
        nonlocal batches
        client = LeanClient(base)
        while not stop.is_set():
            status, content = client.post(path, batch, headers)
            if status != 200:
                raise RuntimeError(f"batch: {status}: {content[:300]!r}")
            batches += 1
        client.conn.close()

    def single_client(k: int) -> list[float]:
        client = LeanClient(base)
        times = timed_lean(
            lambda: client.post(path, singles[k % len(singles)], headers), 10, CONCURRENT_N
        )
        client.conn.close()
        return times

    with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS + 1) as pool:
        background = pool.submit(batch_client)
        t0 = time.perf_counter()
        results = list(pool.map(single_client, range(CONCURRENT_CLIENTS)))
        elapsed = time.perf_counter() - t0
        stop.set()
        background.result()
    times = [t for r in results for t in r]
    return Mixed(times, len(times) / elapsed, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument(
        "--compute-threads",
        type=int,
        default=None,
        help="REGISTRY_COMPUTE_THREADS of the server (default: the service's, 1; 0: libraries')",
    )
    parser.add_argument(
        "--http", default="auto", choices=["auto", "h11", "httptools"], help="uvicorn's parser"
    )
    parser.add_argument(
        "--loop", default="auto", choices=["auto", "asyncio", "uvloop"], help="uvicorn's loop"
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        choices=["FULL", "NORMAL"],
        help="SQLite's synchronous pragma for the server (FULL, the default, is what is judged)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on the last CPU, this client on CPU 0 (labelled: not the deployment)",
    )
    parser.add_argument(
        "--request-log",
        action="store_true",
        help="one JSON log line per request, as ssreg serve logs (to a file in the temporary "
        "directory); by default the server logs warnings only",
    )
    args = parser.parse_args()
    server_cpus = None
    if args.pin:
        n_cpus = os.cpu_count() or 1
        if n_cpus < 2:
            parser.error("--pin needs two CPUs")
        server_cpus = {n_cpus - 1}
        os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        with database(args.postgres, tmp) as url:
            store_root = tmp / "store"
            migrate(url)
            X, axis = seed(url, store_root)
            backend = (
                "PostgreSQL"
                if args.postgres
                else f"SQLite synchronous={args.sqlite_synchronous}"
                + (" (the default)" if args.sqlite_synchronous == "FULL" else " (NOT the default)")
            )
            print(
                f"predict benchmark: {backend}, uvicorn 1 worker, {X.shape[1]} channels, "
                f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
                "BLAS/OpenMP threads "
                + (
                    "as deployed (1)"
                    if args.compute_threads is None
                    else f"{args.compute_threads or 'the libraries default'} (NOT the default)"
                )
                + ", "
                f"http {args.http}, loop {args.loop}, "
                f"load avg {os.getloadavg()[0]:.2f}"
                + (
                    f", PINNED: server on CPU {min(server_cpus)}, client on CPU 0 "
                    "(not the deployment)"
                    if server_cpus
                    else ""
                )
                + (
                    ", JSON request log as ssreg serve writes it"
                    if args.request_log
                    else ", no request log"
                )
            )
            request_log = tmp / "server.log" if args.request_log else None
            with server(
                url,
                store_root,
                args.compute_threads,
                args.http,
                args.loop,
                args.sqlite_synchronous,
                server_cpus,
                request_log=request_log,
            ) as base:
                measure(base, X, axis)
            if request_log is not None:
                lines = request_log.read_bytes().count(b'"logger": "app.request"')
                print(f"  request log: {lines} lines")
            print(f"  load avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
