"""The prediction route's unit of work in process, without HTTP (not a test).

Run ``.venv/bin/python bench/predict_unit.py [TREE]`` (TREE: a directory holding an ``app``
package and its ``bench``, e.g. ``git archive main | tar -x -C /tmp/main``; default this
checkout). It migrates and seeds a temporary SQLite file as ``bench/predict.py`` does (with
TREE's own migrations, so trees with different schemas compare), then calls the route's
``_predict_and_commit`` for one JSON spectrum of ``titer_pls`` v1 — authentication, the
version's status, parsing, the prediction, the log row and its COMMIT — 5 rounds of 400 calls,
and prints the median of each round and the best. ``--synchronous NORMAL`` (the default here)
leaves out the COMMIT's fsync, whose latency on a shared disk varies more than the code's cost;
``FULL`` is the deployment. No target: ``bench/predict.py`` holds the 1.5 ms p50 over HTTP; this
isolates the code's share of it when the host is too loaded for that one to compare trees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("tree", type=Path, nargs="?", default=Path(__file__).resolve().parents[1])
parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="NORMAL")
parser.add_argument("--calls", type=int, default=400)
args = parser.parse_args()
tree = args.tree.resolve()
sys.path[:0] = [str(tree), str(tree / "bench")]
tmp = Path(tempfile.mkdtemp(prefix="bench-unit-"))
url = f"sqlite:///{tmp / 'b.db'}"
os.environ.update(
    REGISTRY_DATABASE_URL=url,
    REGISTRY_STORE_ROOT=str(tmp / "store"),
    REGISTRY_COMPUTE_THREADS="1",
    REGISTRY_SQLITE_SYNCHRONOUS=args.synchronous,
)

import predict as bench  # noqa: E402  (TREE's bench/predict.py)
from fastapi.security import HTTPAuthorizationCredentials  # noqa: E402
from starlette.requests import Request  # noqa: E402

from app.api.routers.predict import _predict_and_commit  # noqa: E402
from app.db.session import get_transactions, unit_of_work  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services import auth  # noqa: E402
from app.store import get_store  # noqa: E402

bench.migrate(url)
X, _axis = bench.seed(url, tmp / "store")
create_app()  # the process as served: thread limits, settings
with unit_of_work() as session:
    issued = auth.login(session, username="bench-dev", password=bench.PASSWORD)
    assert issued is not None
    token = issued.token
credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
request = Request(
    {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json")],
    }
)
body = json.dumps({"spectra": X[:1].tolist()}).encode()
transactions, store = get_transactions(), get_store()


def call() -> bytes:
    return _predict_and_commit(
        transactions,
        store,
        credentials,
        request,
        body,
        name="titer_pls",
        version=1,
        alias=None,
        purpose=None,
    )


call()  # the model loads once per process
medians = []
for _ in range(5):
    times = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    medians.append(1e3 * statistics.median(times))
print(
    f"{tree}: predict unit of work, SQLite synchronous={args.synchronous}, load avg "
    f"{os.getloadavg()[0]:.2f}: median per call of each round "
    + " ".join(f"{m:.3f}" for m in medians)
    + f" ms, best {min(medians):.3f} ms"
)
