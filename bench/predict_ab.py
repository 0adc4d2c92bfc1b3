"""A/B benchmark of the prediction route: two source trees served at once, requests alternating.

Run ``.venv/bin/python bench/predict_ab.py BEFORE [AFTER] [--rounds 20]``, where BEFORE and
AFTER are directories holding an ``app`` package (AFTER defaults to this checkout), e.g.
``git archive main | tar -x -C /tmp/before``. Both trees must share the database schema: each
server gets its own SQLite file (``synchronous=FULL``), migrated and seeded by this checkout
as in ``bench/predict.py``.

``bench/predict.py`` run before and after a change measures each at a different moment, and
on a shared 2-core host the load of the neighbours moves its figures by more than most code
changes do. Here every round sends the same requests to both servers, one after the other (the
order alternating between rounds), so a load spike hits both alike: per round 100 single-
spectrum JSON calls and 3 batches of 1000 spectra each as JSON and as Arrow (one column per
channel), on keep-alive ``http.client`` connections after warm-ups. It prints, per tree, the
single-spectrum p50/p95/p99 and the batch rates (median request), then AFTER / BEFORE.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predict as bench  # bench/predict.py, the neighbour of this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a directory holding the 'before' app package")
    parser.add_argument("after", type=Path, nargs="?", default=bench.ROOT, help="default: here")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for tree in trees.values():
        if not (tree / "app" / "main.py").is_file():
            parser.error(f"{tree} holds no app package")
    print(
        f"predict A/B: {args.rounds} rounds, before {trees['before']}, after {trees['after']}, "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp_name, contextlib.ExitStack() as up:
        tmp = Path(tmp_name)
        bases: dict[str, str] = {}
        for label, tree in trees.items():
            url, store = f"sqlite:///{tmp / label}.db", tmp / f"store-{label}"
            bench.migrate(url)
            X, axis = bench.seed(url, store)
            bases[label] = up.enter_context(
                bench.server(url, store, None, "auto", "auto", "FULL", None, root=tree)
            )
        results = measure(bases, X, axis, args.rounds)
    for label, times in results.items():
        p50, p95, p99 = bench.percentiles_ms(times["single"])
        print(
            f"  {label:6s} single spectrum, JSON ({len(times['single'])} requests)  p50 {p50:6.3f} "
            f"ms  p95 {p95:6.3f} ms  p99 {p99:6.3f} ms   batch JSON "
            f"{1000 / statistics.median(times['json']):9,.0f} spectra/s   batch Arrow "
            f"{1000 / statistics.median(times['arrow']):9,.0f} spectra/s"
        )
    before, after = results["before"], results["after"]
    ratio = {
        kind: statistics.median(after[kind]) / statistics.median(before[kind])
        for kind in ("single", "json", "arrow")
    }
    print(
        f"  after / before (median request time): single {ratio['single']:.3f}, "
        f"JSON batch {ratio['json']:.3f}, Arrow batch {ratio['arrow']:.3f}   "
        f"load avg after: {os.getloadavg()[0]:.2f}"
    )


def measure(
    bases: dict[str, str], X: np.ndarray, axis: np.ndarray, rounds: int
) -> dict[str, dict[str, list[float]]]:
    rows = np.vstack([X] * (bench.BATCH_ROWS // X.shape[0] + 1))[: bench.BATCH_ROWS]
    singles = [bench.json_body(X[i : i + 1]) for i in range(X.shape[0])]
    big_json, big_arrow = bench.json_body(rows), bench.arrow_body(rows, axis)
    path = f"/api/v1/models/{bench.MODEL}/versions/1/predict"
    clients, headers = {}, {}
    for label, base in bases.items():
        r = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "bench-dev", "password": bench.PASSWORD},
        )
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        headers[label] = (
            auth | {"Content-Type": "application/json"},
            auth | {"Content-Type": bench.ARROW},
        )
        clients[label] = bench.LeanClient(base)

    def timed(label: str, body: bytes, arrow: bool = False) -> float:
        t0 = time.perf_counter()
        status, content = clients[label].post(path, body, headers[label][arrow])
        elapsed = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"{label}: {status}: {content[:300]!r}")
        return elapsed

    for label in bases:  # warm-up: loads the model, fills the caches
        for i in range(bench.SINGLE_WARMUP):
            timed(label, singles[i % len(singles)])
        for _ in range(bench.BATCH_WARMUP):
            timed(label, big_json)
            timed(label, big_arrow, arrow=True)
    times: dict[str, dict[str, list[float]]] = {
        label: {"single": [], "json": [], "arrow": []} for label in bases
    }
    labels = list(bases)
    for k in range(rounds):
        order = labels if k % 2 == 0 else labels[::-1]
        for i in range(100):
            for label in order:
                times[label]["single"].append(timed(label, singles[i % len(singles)]))
        for _ in range(3):
            for label in order:
                times[label]["json"].append(timed(label, big_json))
                times[label]["arrow"].append(timed(label, big_arrow, arrow=True))
    for client in clients.values():
        client.conn.close()
    return times


if __name__ == "__main__":
    main()
