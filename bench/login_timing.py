"""How long a failed login takes, by why it failed (not a test).

Run ``.venv/bin/python bench/login_timing.py [--repeats N]``. Through the service
(``app.services.auth.login``, one unit of work each, committed) on a fresh migrated SQLite
file in a temporary directory; each attempt from its own client address so that the throttle
never answers. Prints the median and the spread (min–max) in ms of each case:

- unknown user name
- wrong password for an existing account
- a locked account (the right password)
- a successful login

Target: the three failures' medians within 10 % of each other (one argon2 verification
each; the database work differs by a few statements). Figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db.session import make_engine, unit_of_work  # noqa: E402
from app.enums import Role  # noqa: E402
from app.services import auth  # noqa: E402
from bench._serving import migrate  # noqa: E402

PASSWORD = "a long enough benchmark password"
_addresses = itertools.count(1)


def _attempt(engine: object, username: str, password: str) -> float:
    n = next(_addresses)
    host = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    started = time.perf_counter()
    with unit_of_work(bind=engine) as session:  # type: ignore[arg-type]
        auth.login(session, username=username, password=password, client_host=host)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate(url)
        engine = make_engine(url)
        with unit_of_work(bind=engine) as session:
            for name in ("alice", "locked-bob"):
                auth.create_user(
                    session,
                    username=name,
                    full_name=name,
                    role=Role.qa,
                    password=PASSWORD,
                    actor="bench",
                    reason="login timing",
                )
        from app.settings import get_settings

        for _ in range(get_settings().lockout_threshold):  # each from another address
            _attempt(engine, "locked-bob", "wrong wrong wrong")
        cases = {
            "unknown user name": ("nobody", PASSWORD),
            "wrong password": ("alice", "wrong wrong wrong"),
            "locked account": ("locked-bob", PASSWORD),
            "successful login": ("alice", PASSWORD),
        }
        times: dict[str, list[float]] = {case: [] for case in cases}
        _attempt(engine, "alice", PASSWORD)  # warm-up
        for _ in range(args.repeats):
            for case, (username, password) in cases.items():  # interleaved: same load
                times[case].append(_attempt(engine, username, password))
        engine.dispose()
    print(f"failed and successful logins, {args.repeats} each, SQLite, median (min-max) ms")
    for case, samples in times.items():
        median, low, high = statistics.median(samples), min(samples), max(samples)
        print(f"  {case:<20} {median:7.1f}  ({low:.1f}-{high:.1f})")
    failures = [statistics.median(times[c]) for c in list(cases)[:3]]
    spread = max(failures) / min(failures) - 1
    verdict = "PASS" if spread <= 0.10 else "MISS"
    print(f"failures' medians within {spread:.1%} of each other (target <= 10 %): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
