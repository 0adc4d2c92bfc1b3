"""T²/Q flag rates of transferred versions with target-domain limits (issue 10, item 3; not a test).

Run ``.venv/bin/python bench/flag_rates.py`` (``--data-dir`` or ``$TABLETS_DATA_DIR`` for the
tablet files, as bench/transfer_accuracy.py). It prints what it ran, then:

1. **The seeded demo transfer.** ``ssreg migrate`` and ``ssreg seed`` in a temporary directory
   (SQLite + store), then from that database: transfer #1's recorded flag rates (cross-fitted
   over its 336 validation spectra) at 95/99 % beside nominal, the 99 % rate of the same
   validation spectra against the limits stored on titer_pls v2, of plant-probe spectra of
   three further simulated batches (in-control, seen by nothing), and of the same batches from
   another process (``simulate.with_foreign_band``: ethanol at 883 cm⁻¹, 200 counts); the
   source version's limits on each set beside them. The limits are recomputed in-process from
   the stored datasets and must equal the stored ones.
2. **The IDRC 2002 tablet shoot-out**, bench/transfer_accuracy.py's protocol (PLS, 10
   components, on instrument 1's ``cal`` rows; Kennard–Stone standards among instrument 2's
   ``trans`` rows; validation instrument 2's ``test`` rows) through the service's own pure
   evaluation (``evaluate_transfer``), for 8/12/20/30 standards with auto and with SBC. Beside
   the recorded and the stored-limit rates on ``test``: instrument 2's ``cal`` rows (400
   tablets neither the model, the transfer nor the limits saw) and ``test`` with a foreign
   absorption band (1200 nm, FWHM 30 nm, 0.3 AU ≈ 1.5 per-channel SD): another formulation.
3. **Cost.** ``calibrate_target_limits`` on the seeded transfer's data, given the selection's
   held-out spectra as the service passes them (best and median of 9)
   and the whole standards step (``transfers.upload_standards``: parse, pin, choose by CV,
   calibrate, record) repeated in rolled-back transactions, with one BLAS thread as the
   served app. The host is shared (2 cores): times are noisy; compare best-of figures.

Targets: 99 % flag rate of in-control spectra <= 3 % (T² and Q each, nominal 1 %) on the seeded
transfer and on the tablets' test set; the seeded transfer's out-of-process spectra flagged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer_accuracy import DATA_ENV, DEFAULT_DATA_DIR, load_tablets  # noqa: E402

from app.core.applicability import ControlLimits, calibrate_target_limits  # noqa: E402
from app.core.pls import PLSSoftSensor  # noqa: E402
from app.core.serving import ServingModel  # noqa: E402
from app.core.simulate import (  # noqa: E402
    ProbeShift,
    remeasure,
    simulate_batch,
    with_foreign_band,
)
from app.core.spectra import FloatArray  # noqa: E402
from app.core.transfer import fit_transfer, select_transfer  # noqa: E402
from app.enums import TransferMethod  # noqa: E402
from app.services.transfer_evaluation import (  # noqa: E402
    CandidateStandards,
    TransferPlan,
    evaluate_transfer,
)

STANDARDS = (8, 12, 20, 30)
N_COMPONENTS = 10
TARGET_99 = 0.03
NEW_BATCHES = ("BATCH-2026-003", "BATCH-2026-004", "BATCH-2026-005")
SSREG = Path(sys.executable).with_name("ssreg")


def rates(serving: ServingModel, limits: ControlLimits, X: FloatArray) -> tuple[float, float]:
    """Shares of ``X`` above the 99 % T² and Q limits."""
    t2, q = serving.diagnose(X)
    return float(np.mean(t2 > limits.t2_99)), float(np.mean(q > limits.q_99))


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def pair(r: tuple[float, float]) -> str:
    return f"{pct(r[0])} / {pct(r[1])}"


def timed(f: Callable[[], Any], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), 1e3 * statistics.median(times)


# --------------------------------------------------------------------------- seeded demo


def seed(tmp: Path) -> None:
    os.environ["REGISTRY_DATABASE_URL"] = f"sqlite:///{tmp / 'registry.db'}"
    os.environ["REGISTRY_STORE_ROOT"] = str(tmp / "store")
    for cmd in (
        [str(SSREG), "migrate"],
        [str(SSREG), "seed", "--credentials-file", str(tmp / "credentials.txt")],
    ):
        print(
            "$", " ".join(cmd[:2]), f"(REGISTRY_DATABASE_URL={os.environ['REGISTRY_DATABASE_URL']})"
        )
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        for line in out.stdout.splitlines():
            if line.startswith(("titer_pls", "transfer #")):
                print("  ", line)


def seeded_transfer(repeat: int) -> list[tuple[str, bool, str]]:
    from app.db.models import ModelVersion
    from app.db.repositories import users as user_rows
    from app.db.session import open_unit, roll_back_unit, unit_of_work
    from app.enums import IntendedUse, Role
    from app.schemas.models import OperatingRange
    from app.schemas.transfers import AcceptanceCriteria, StandardsForm, TransferCreate
    from app.services import datasets, transfers
    from app.services import seed as demo
    from app.services.artifacts import load_npz
    from app.store import get_store

    store = get_store()
    with unit_of_work(read_only=True) as session:
        record = transfers.describe_transfer(session, transfers.get_transfer(session, "1"))
        tr = record.transfer
        app = tr.applicability
        assert app is not None
        lineage = record.governance.lineage
        assert lineage.target_version is not None
        v2 = session.get(ModelVersion, lineage.target_version.id)
        assert v2 is not None
        stored = ControlLimits(v2.t2_limit_95, v2.t2_limit_99, v2.q_limit_95, v2.q_limit_99)
        serving = ServingModel.from_arrays(load_npz(store.get(v2.artifact_sha256))[0])
        assert tr.target_standards_dataset_sha256
        assert tr.validation_dataset_sha256
        target = datasets.load_dataset_arrays(session, store, tr.target_standards_dataset_sha256)
        val = datasets.load_dataset_arrays(session, store, tr.validation_dataset_sha256)
        train = datasets.load_dataset_arrays(session, store, record.source.training_dataset_sha256)
    assert target.sample_ids is not None
    assert train.sample_ids is not None
    chosen_ids = tr.standard_sample_ids or []
    t_row = {s: i for i, s in enumerate(target.sample_ids)}
    s_row = {s: i for i, s in enumerate(train.sample_ids)}
    chosen = np.array([t_row[s] for s in chosen_ids])
    others = np.setdiff1d(np.arange(len(target.sample_ids)), chosen)
    X_std, X_src = target.X[chosen], train.X[[s_row[s] for s in chosen_ids]]

    # The standards' held-out spectra come from the selection's cross-validation, as in the
    # service (evaluate_transfer): the same selection again, on the same standards.
    assert target.y is not None
    selection = select_transfer(
        X_src,
        X_std,
        coef=serving.source.coef,
        intercept=serving.source.intercept,
        y_ref=target.y[chosen],
        held_out_spectra=True,
    )
    assert selection.cv_spectra is not None
    held_out = (selection.cv_spectra, selection.scheme)

    def calibrate() -> Any:
        return calibrate_target_limits(
            serving, X_std, X_src, X_other=target.X[others], X_val=val.X, held_out=held_out
        )

    again = calibrate().limits
    same = all(
        np.isclose(getattr(again, k), getattr(stored, k), rtol=1e-12, atol=0.0)
        for k in ("t2_95", "t2_99", "q_95", "q_99")
    )
    source = app.source_limits
    source_limits = ControlLimits(source.t2_95, source.t2_99, source.q_95, source.q_99)
    new = [
        remeasure(
            simulate_batch(b, seed=demo.SEED), ProbeShift(), seed=demo.SEED, probe=demo.PLANT_DOMAIN
        )
        for b in NEW_BATCHES
    ]
    X_new = np.vstack([b.X for b in new])
    X_other = np.vstack(
        [
            remeasure(
                with_foreign_band(simulate_batch(b, seed=demo.SEED)),
                ProbeShift(),
                seed=demo.SEED,
                probe=demo.PLANT_DOMAIN,
            ).X
            for b in NEW_BATCHES
        ]
    )
    fr = app.flag_rates
    print(
        f"\nSeeded transfer #1: {tr.method_chosen} {tr.parameters}, {tr.n_standards} standards "
        f"of {tr.n_candidates}, verdict {tr.acceptance.verdict}; limits {app.summary}"
    )
    print(f"recorded ({fr.method}):")
    print("| level | nominal | T² | Q | T² or Q |\n|---|---:|---:|---:|---:|")
    for label, r in (("95 %", fr.at_95), ("99 %", fr.at_99)):
        print(f"| {label} | {pct(r.nominal)} | {pct(r.t2)} | {pct(r.q)} | {pct(r.either)} |")
    print("\n99 % flag rates, T² / Q | target limits (v2) | source limits (v1)\n|---|---:|---:|")
    val_in = rates(serving, stored, val.X)
    new_r, other_r = rates(serving, stored, X_new), rates(serving, stored, X_other)
    for label, X, r in (
        (f"validation set ({val.X.shape[0]}, in-sample)", val.X, val_in),
        (f"3 further batches, in-control ({X_new.shape[0]})", X_new, new_r),
        (f"the same, another process ({X_other.shape[0]})", X_other, other_r),
    ):
        print(f"| {label} | {pair(r)} | {pair(rates(serving, source_limits, X))} |")
    print(f"limits recomputed from the stored datasets equal the stored ones: {same}")
    # The same standards with DS alone (what auto chose before the weighted rule), in-process.
    ds = fit_transfer(
        "ds",
        X_src,
        X_std,
        coef=serving.source.coef,
        intercept=serving.source.intercept,
        rcond=0.03,
    )
    ds_serving = ServingModel.transferred(serving.source, ds)
    ds_limits = calibrate_target_limits(
        ds_serving, X_std, X_src, X_other=target.X[others], X_val=val.X
    )
    r_ds, s_ds = ds_limits.rates, ds_limits.source_rates
    print(
        f"with DS (rcond 0.03) instead: recorded 99 % {pct(r_ds.t2_99)} / {pct(r_ds.q_99)}, "
        f"source limits on the validation set {pct(s_ds.t2_99)} / {pct(s_ds.q_99)}; further "
        f"batches {pair(rates(ds_serving, ds_limits.limits, X_new))}; another process "
        f"{pair(rates(ds_serving, ds_limits.limits, X_other))}"
    )

    best, median = timed(calibrate, 15)
    print(f"\ncost: calibrate_target_limits {best:.1f} ms best, {median:.1f} ms median of 15")
    standards_blob, validation_blob = demo.plant_probe_files()
    op_range = record.governance.operating_range

    def standards_step() -> None:
        session = open_unit()
        try:
            dev = user_rows.by_username(session, demo.DEMO_USERS[Role.developer])
            assert dev is not None
            opened = transfers.open_transfer(
                session,
                data=TransferCreate(
                    source_model="titer_pls",
                    source_version=1,
                    target_domain=demo.PLANT_DOMAIN,
                    method=TransferMethod.auto,
                    n_standards=demo.N_STANDARDS,
                    change_control="CC-BENCH",
                    intended_use=IntendedUse.monitoring,
                    operating_range=OperatingRange(min=op_range.min, max=op_range.max),
                    acceptance=AcceptanceCriteria(max_rmse_ratio=demo.MAX_RMSE_RATIO),
                    reason="bench",
                ),
                actor=dev,
            )
            t0 = time.perf_counter()
            transfers.upload_standards(
                session,
                store,
                ref=str(opened.number),
                files=transfers.StandardsFiles(
                    target_standards=transfers.Upload(standards_blob, "plant_standards.parquet"),
                    validation=transfers.Upload(validation_blob, "plant_validation.parquet"),
                ),
                form=StandardsForm(reason="bench"),
                actor=dev,
            )
            step_times.append(time.perf_counter() - t0)
        finally:
            roll_back_unit(session)

    step_times: list[float] = []
    for _ in range(repeat):
        standards_step()
    print(
        f"cost: the whole standards step (upload_standards, in-process, no HTTP) "
        f"{1e3 * min(step_times):.0f} ms best, {1e3 * statistics.median(step_times):.0f} ms "
        f"median of {repeat}"
    )
    return [
        (
            "seeded: recorded 99 % rates <= 3 %",
            max(fr.at_99.t2, fr.at_99.q) <= TARGET_99,
            f"T² {pct(fr.at_99.t2)}, Q {pct(fr.at_99.q)}",
        ),
        (
            "seeded: validation 99 % rates at the stored limits <= 3 %",
            max(val_in) <= TARGET_99,
            pair(val_in),
        ),
        (
            "seeded: further in-control batches' 99 % rates <= 3 %",
            max(new_r) <= TARGET_99,
            pair(new_r),
        ),
        ("seeded: another process flagged (Q, >= 95 %)", other_r[1] >= 0.95, pct(other_r[1])),
        ("seeded: limits reproduce from the stored data", same, ""),
        ("seeded: transfer #1 passes", tr.acceptance.verdict == "pass", str(tr.acceptance.verdict)),
    ]


# --------------------------------------------------------------------------- tablets


def tablets(data_dir: Path) -> list[tuple[str, bool, str]]:
    t = load_tablets(data_dir)
    cal, test, trans = t.rows("cal"), t.rows("test"), t.rows("trans")
    model = PLSSoftSensor(N_COMPONENTS).fit(t.X1[cal], t.y[cal], t.axis).model_
    band = 0.3 * np.exp(-np.log(2) * ((t.axis - 1200.0) / 15.0) ** 2)
    offered = CandidateStandards(
        sample_ids=[str(s) for s in t.sample_id[trans]],
        X_tgt=t.X2[trans],
        y_tgt=t.y[trans],
        X_src=t.X1[trans],
        y_src=t.y[trans],
        validation=(t.X2[test], t.y[test]),
    )
    print(
        f"\nTablets: PLS {N_COMPONENTS} components on instrument 1 cal ({cal.size}); standards "
        f"among instrument 2 trans ({trans.size}); validation instrument 2 test ({test.size}); "
        f"in-control set instrument 2 cal ({cal.size}); another formulation = test + 0.3 AU "
        "band at 1200 nm"
    )
    print(
        "| standards | method | recorded 95 % T² / Q | recorded 99 % T² / Q | test at stored "
        "limits 99 % | cal (unseen) 99 % | another formulation 99 % (T² or Q) | source limits "
        "on test 99 % | max_flag_rate |\n|---:|---|---:|---:|---:|---:|---:|---:|---|"
    )
    checks: list[tuple[str, bool, str]] = []
    for n in STANDARDS:
        for method in (TransferMethod.auto, TransferMethod.sbc):
            outcome = evaluate_transfer(
                offered,
                TransferPlan(method=method, n_standards=n, fixed_params={}, acceptance={}),
                linear=model,
                source_metrics=None,
            )
            a = outcome.applicability
            s, lim = outcome.serving, a.limits
            t2o, qo = s.diagnose(t.X2[test] + band)
            other = float(np.mean((t2o > lim.t2_99) | (qo > lim.q_99)))
            test_r, cal_r = rates(s, lim, t.X2[test]), rates(s, lim, t.X2[cal])
            crit = outcome.acceptance.results[1]
            name = f"{method.value} ({outcome.method})"
            print(
                f"| {n} | {name} | {pct(a.rates.t2_95)} / {pct(a.rates.q_95)} | "
                f"{pct(a.rates.t2_99)} / {pct(a.rates.q_99)} | {pair(test_r)} | {pair(cal_r)} | "
                f"{pct(other)} | {pair(rates(s, a.source_limits, t.X2[test]))} | "
                f"{'pass' if crit['passed'] else 'FAIL'} |"
            )
            checks.append(
                (
                    f"tablets {n} std {method.value}: test 99 % rates <= 3 % (recorded and at "
                    "the stored limits)",
                    max(a.rates.t2_99, a.rates.q_99, *test_r) <= TARGET_99,
                    f"recorded {pct(a.rates.t2_99)} / {pct(a.rates.q_99)}, stored {pair(test_r)}",
                )
            )
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get(DATA_ENV, DEFAULT_DATA_DIR))
    )
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the standards step")
    args = parser.parse_args(argv)
    print("$", " ".join([Path(sys.executable).name, *sys.argv]))
    # One BLAS/OpenMP thread, as the served app (REGISTRY_COMPUTE_THREADS, default 1).
    threadpool_limits(limits=1)
    with tempfile.TemporaryDirectory(prefix="flag_rates_") as tmp:
        seed(Path(tmp))
        checks = seeded_transfer(args.repeat)
    checks += tablets(args.data_dir)
    print()
    for label, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}" + (f": {detail}" if detail else ""))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
