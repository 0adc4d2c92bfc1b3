"""What the login throttle's and the lockout's reads cost as ``login_failure`` grows (not a test).

``login_failure`` rows are never removed (the database guards refuse DELETE), so the table
grows with every failed password check for the life of the deployment. The two reads of a
login only look at the current window (``login_window_minutes``, 15 by default):

- the throttle, ``newest_logins_from``: the newest ``login_address_limit`` failed logins from
  one client address after the window's start (index ``(client_address, occurred_at)``);
- the lockout, ``count_against``: failures against one account after the window's start, or
  after its last reset (index ``(user_id, occurred_at)``).

Run ``.venv/bin/python bench/login_failures.py [--rows 100000 1000000] [--postgres]``. For each
size it migrates a fresh database (SQLite file in a temporary directory, or a temporary
PostgreSQL database on 127.0.0.1:5432), fills ``login_failure`` with that many failures over
the past year from 50 000 addresses (one in ten against one of 20 accounts), of which the
probed address and account hold 2 % of all rows, then adds a few failures of the probed
address and account inside the window. It prints the plan of each query and the median of
1000 calls (each its own read on one open session), in µs.

Target: both medians stay flat, within a small factor, from 1e5 to 1e6 rows (an index range
over the window only, not a scan of the history).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.db.models import LoginFailure  # noqa: E402
from app.db.repositories import login_failures  # noqa: E402
from app.db.session import make_engine  # noqa: E402
from app.enums import PasswordCheck, Role  # noqa: E402
from app.services import auth  # noqa: E402
from bench._serving import database, migrate  # noqa: E402

ADDRESSES, ACCOUNTS = 50_000, 20
PROBED_ADDRESS = "192.0.2.7"
PROBED_SHARE = 0.02  # of all rows: a long history of the address and account probed
IN_WINDOW = 4  # failures of the probed address and account inside the window
CALLS = 1000
WINDOW = timedelta(minutes=15)
BATCH = 50_000


def accounts(engine: Engine) -> list[uuid.UUID]:
    with Session(engine) as session, session.begin():
        return [
            auth.create_user(
                session,
                username=f"bench-user-{i}",
                full_name="Bench user",
                role=Role.developer,
                password="bench password, long enough",
                actor="bench",
                reason="benchmark",
            ).user.id
            for i in range(ACCOUNTS)
        ]


def fill(engine: Engine, rows: int, users: list[uuid.UUID], now: datetime) -> None:
    """``rows`` failures over the past year, all older than the window, then ``IN_WINDOW``
    failures of the probed address against the probed account (``users[0]``) inside it."""
    rng = random.Random(2026)
    year = 365 * 24 * 3600
    oldest_recent = WINDOW.total_seconds() + 60

    def row(i: int) -> dict[str, object]:
        probed = rng.random() < PROBED_SHARE
        address = PROBED_ADDRESS if probed else f"10.{i % 200}.{rng.randrange(ADDRESSES) % 250}.1"
        against = users[0] if probed else (rng.choice(users) if rng.random() < 0.1 else None)
        ago = rng.uniform(oldest_recent, year)
        return {
            "id": uuid.uuid4(),
            "occurred_at": now - timedelta(seconds=ago),
            "kind": PasswordCheck.login,
            "client_address": address,
            "user_id": against,
        }

    with engine.begin() as conn:
        for start in range(0, rows, BATCH):
            conn.execute(
                insert(LoginFailure), [row(i) for i in range(start, min(rows, start + BATCH))]
            )
        recent = [
            {
                "id": uuid.uuid4(),
                "occurred_at": now - timedelta(minutes=k + 1),
                "kind": PasswordCheck.login,
                "client_address": PROBED_ADDRESS,
                "user_id": users[0],
            }
            for k in range(IN_WINDOW)
        ]
        conn.execute(insert(LoginFailure), recent)
        conn.execute(text("ANALYZE"))


def plan(session: Session, sql: str, params: dict[str, object]) -> str:
    if session.get_bind().dialect.name == "sqlite":
        rows = session.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params).all()
        return "; ".join(str(r[-1]) for r in rows)
    rows = session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) {sql}"), params)
    return "\n      ".join(r[0] for r in rows)


def median_us(call: Callable[[], object]) -> float:
    for _ in range(50):
        call()
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def measure(url: str, rows: int) -> None:
    migrate(url)
    engine = make_engine(url)
    try:
        users = accounts(engine)
        now = datetime.now(UTC)
        started = time.perf_counter()
        fill(engine, rows, users, now)
        filled = time.perf_counter() - started
        since = now - WINDOW
        with Session(engine) as session:
            total = session.scalar(text("SELECT count(*) FROM login_failure"))
            newest = login_failures.newest_logins_from(
                session, PROBED_ADDRESS, since=since, limit=5
            )
            counted = login_failures.count_against(session, users[0], since=since)
            assert len(newest) == IN_WINDOW, newest
            assert counted == IN_WINDOW, counted
            throttle = median_us(
                lambda: login_failures.newest_logins_from(
                    session, PROBED_ADDRESS, since=since, limit=5
                )
            )
            lockout = median_us(
                lambda: login_failures.count_against(session, users[0], since=since)
            )
            dialect = engine.dialect.name
            # The statements as the repository sends them, for the plans.
            stmt_t = (
                "SELECT occurred_at FROM login_failure WHERE client_address = :a AND kind = "
                "'login' AND occurred_at > :s ORDER BY occurred_at DESC LIMIT 5"
            )
            stmt_l = "SELECT count(*) FROM login_failure WHERE user_id = :u AND occurred_at > :s"
            since_param: object = (
                since if dialect != "sqlite" else since.strftime("%Y-%m-%d %H:%M:%S.%f")
            )
            user_param: object = users[0] if dialect != "sqlite" else users[0].hex
            print(
                f"{dialect} {total} rows (filled in {filled:.1f} s; the probed address and "
                f"account {int(rows * PROBED_SHARE)} of them, {IN_WINDOW} in the window):"
            )
            print(f"  throttle (newest_logins_from) median {throttle:.0f} µs")
            print(f"    plan: {plan(session, stmt_t, {'a': PROBED_ADDRESS, 's': since_param})}")
            print(f"  lockout (count_against) median {lockout:.0f} µs")
            print(f"    plan: {plan(session, stmt_l, {'u': user_param, 's': since_param})}")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    args = parser.parse_args()
    print(f"login_failure reads, {CALLS} calls each, load avg {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-login-failures-") as tmp_name:
        for rows in args.rows:
            with database(args.postgres, Path(tmp_name), f"r{rows}") as url:
                measure(url, rows)


if __name__ == "__main__":
    main()
