"""Benchmark of ``GET /api/v1/domains`` with 10,000 domains over HTTP (not a test).

Run ``.venv/bin/python bench/listing.py`` (``--postgres`` for PostgreSQL on 127.0.0.1:5432
instead of SQLite; ``--tree DIR`` serves the ``app`` package of another checkout, e.g. ``git
archive main | tar -x -C /tmp/before``, against the same database, to compare). It

1. creates a temporary SQLite database (or PostgreSQL database), migrates it, and adds an
   administrator through the service and ``--domains`` domains (default 10,000) directly as
   rows (the repository layer's ORM objects, no audit events: the list is what is measured);
2. starts uvicorn on 127.0.0.1 as a subprocess (as ``bench/predict.py`` does) and logs in;
3. measures, on one keep-alive ``http.client`` connection after 3 warm-ups, the median of 20
   requests for the first page (default ``limit``) and for a page of ``limit=1000``, with
   each response's size, and the time to walk every page by the ``Link`` headers;

and prints the figures. No target: the issue measured 2.2 MB in 679 ms for the unpaged list.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import predict as bench  # bench/predict.py: database(), server(), migrate

WARMUP, N = 3, 20


def seed(url: str, n_domains: int) -> None:
    """An administrator (to log in) and ``n_domains`` domain rows, committed."""
    from sqlalchemy.orm import Session

    from app.db.models import Domain
    from app.db.session import make_engine
    from app.enums import Role
    from app.services import auth

    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            admin = auth.create_user(
                session,
                username="bench-admin",
                full_name="Bench administrator",
                role=Role.admin,
                password=bench.PASSWORD,
                actor="bench",
                reason="benchmark",
            ).user
            session.flush()
            session.add_all(
                Domain(
                    name=f"site-{i:05d}-raman-{uuid.uuid4().hex[:8]}",
                    instrument="Kaiser Raman RXN2 with a 785 nm laser",
                    probe_serial=f"PROBE-{i:05d}",
                    scale="2000 L single-use bioreactor",
                    site="Plant 3, building 12, suite B",
                    description="immersion probe in the production bioreactor; serviced yearly",
                    created_by_id=admin.id,
                )
                for i in range(n_domains)
            )
    finally:
        engine.dispose()


def timed_get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, int, str]:
    """(seconds, body bytes, Link header) of one GET."""
    start = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return elapsed, len(body), response.getheader("Link") or ""


def median_of(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, int]:
    for _ in range(WARMUP):
        timed_get(conn, path, token)
    runs = [timed_get(conn, path, token) for _ in range(N)]
    return statistics.median(r[0] for r in runs), runs[0][1]


def walk(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, int, int]:
    """Every page by the Link headers: (seconds, pages, bytes)."""
    start, pages, size = time.perf_counter(), 0, 0
    while path:
        _, n, link = timed_get(conn, path, token)
        pages, size = pages + 1, size + n
        path = ""
        if link:
            target = urlsplit(link.split(";", 1)[0].strip("<> "))
            path = f"{target.path}?{target.query}"
    return time.perf_counter() - start, pages, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--tree", type=Path, default=bench.ROOT, help="checkout to serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp_name:
        tmp = Path(tmp_name)
        with bench.database(args.postgres, tmp) as url:
            bench.migrate(url)
            seed(url, args.domains)
            backend = "PostgreSQL" if args.postgres else "SQLite"
            print(
                f"listing benchmark: {backend}, {args.domains:,} domains, serving "
                f"{args.tree}, uvicorn 1 worker, {os.cpu_count()} cores, "
                f"load avg {os.getloadavg()[0]:.2f}"
            )
            with bench.server(
                url, tmp / "store", None, "auto", "auto", "FULL", None, root=args.tree
            ) as base:
                token = httpx.post(
                    f"{base}/api/v1/auth/token",
                    data={"username": "bench-admin", "password": bench.PASSWORD},
                ).json()["access_token"]
                conn = http.client.HTTPConnection(*urlsplit(base).netloc.split(":"))
                for label, path in (
                    ("first page (default limit)", "/api/v1/domains"),
                    ("first page, limit=1000", "/api/v1/domains?limit=1000"),
                ):
                    try:
                        seconds, size = median_of(conn, path, token)
                    except RuntimeError as exc:  # a tree without paging refuses ?limit
                        print(f"  GET {path:<30} {label:<27} {exc}")
                        continue
                    print(
                        f"  GET {path:<30} {label:<27} median {seconds * 1e3:8.1f} ms of {N}"
                        f"   {size / 1e6:6.3f} MB"
                    )
                seconds, pages, size = walk(conn, "/api/v1/domains", token)
                print(
                    f"  every page by Link (default limit): {pages} pages, {size / 1e6:.2f} MB "
                    f"in {seconds:.2f} s"
                )
                conn.close()
    print(f"  load avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
