"""Simulated instrument pairs for ``bench/transfer_accuracy.py --simulated`` (not a test).

Each case: a source PLS model trained on three simulated CHO fed-batches on the development
probe (components by leave-one-batch-out CV, and a larger model with 5 more, at most 15); a
target probe drawn at random (:class:`ProbeShift` with gain 0.4-1.2, gain slope +-0.35,
curvature +-0.2, baseline 0-500 counts with slope +-300, axis drift +-2.5 cm-1, band
broadening 0-8 cm-1 FWHM, extra noise 1-12 counts); transfer standards: Kennard-Stone on the
target spectra of every 4th hour of a fourth batch (84 candidates), the first n; test: a fifth
batch measured on the target probe (336 spectra), never seen by the transfer or the selection.

Fixed methods (each alone, at the service's defaults): naive, bias-only, SBC, DS anchored at
the identity (rcond 0.01), textbook DS (anchor zero, rcond 0.01), PDS w3/w5/w7/w9/w11
(rcond 0.01). ``auto`` is :func:`select_transfer` with its defaults, which sees the standards
only. A case's ratio is auto's test RMSE over the best fixed method's, chosen in hindsight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from app.core.kennard_stone import kennard_stone
from app.core.pls import PLSSoftSensor
from app.core.simulate import ProbeShift, remeasure, simulate_campaign
from app.core.transfer import SelectionRule, fit_transfer, select_transfer

FIXED: tuple[tuple[str, str, dict[str, float | int | str]], ...] = (
    ("naive", "naive", {}),
    ("bias", "bias", {}),
    ("SBC", "sbc", {}),
    ("DS", "ds", {"rcond": 0.01}),
    ("DS zero", "ds", {"rcond": 0.01, "anchor": "zero"}),
    *((f"PDS w{w}", "pds", {"window": w, "rcond": 0.01}) for w in (3, 5, 7, 9, 11)),
)
POOL_STEP = 4  # every 4th hour of the standards batch is a candidate standard
SIZES = ("cv", "cv+5")


@dataclass(frozen=True)
class Case:
    seed: int
    shift_index: int
    shift: ProbeShift
    size: str
    n_components: int
    n_standards: int
    fixed: dict[str, float]  # label -> test RMSE
    auto: float
    auto_method: str
    select_ms: float
    other_rules: dict[str, float]  # rule -> auto's test RMSE with that selection rule

    @property
    def best_label(self) -> str:
        return min(self.fixed, key=lambda k: self.fixed[k])

    @property
    def ratio(self) -> float:
        return self.auto / self.fixed[self.best_label]

    @property
    def worse_than_naive(self) -> bool:
        return self.auto > self.fixed["naive"]


def random_shift(rng: np.random.Generator) -> ProbeShift:
    """A target probe: every parameter uniform in its range (redrawn if the gain is not
    positive across the axis)."""
    while True:
        try:
            return ProbeShift(
                gain=rng.uniform(0.4, 1.2),
                gain_slope=rng.uniform(-0.35, 0.35),
                gain_curvature=rng.uniform(-0.2, 0.2),
                offset=rng.uniform(0.0, 500.0),
                offset_slope=rng.uniform(-300.0, 300.0),
                axis_drift=rng.uniform(-2.5, 2.5),
                noise_sd=rng.uniform(1.0, 12.0),
                broadening=rng.uniform(0.0, 8.0),
            )
        except ValueError:
            continue


def run_cases(
    seeds: Sequence[int],
    shifts_per_seed: int,
    standards: Sequence[int],
    max_folds: int | None = None,
    other_rules: Sequence[SelectionRule] = (),
) -> Iterator[Case]:
    """Every case; ``max_folds`` caps the CV folds of auto (None: the service's default);
    ``other_rules`` are also run, for comparison with the default rule."""
    for seed in seeds:
        batches = simulate_campaign(seed=seed, n_batches=5)
        pool_batch, test_batch, training = batches[0], batches[1], batches[2:]
        X_train = np.vstack([b.X for b in training])
        y_train = np.concatenate([b.titer_g_L for b in training])
        axis = pool_batch.axis
        by_cv = PLSSoftSensor(cv=len(training), cv_scheme="blocks").fit(X_train, y_train, axis)
        larger = min(by_cv.n_components_ + 5, 15)
        models = {
            "cv": by_cv.model_,
            "cv+5": PLSSoftSensor(n_components=larger).fit(X_train, y_train, axis).model_,
        }
        rng = np.random.default_rng(10_000 + seed)
        pool = np.arange(0, pool_batch.n_samples, POOL_STEP)
        for k in range(shifts_per_seed):
            shift = random_shift(rng)
            noise_seed = int(rng.integers(1 << 30))
            target_pool = remeasure(pool_batch, shift, seed=noise_seed)
            target_test = remeasure(test_batch, shift, seed=noise_seed + 1)
            order = kennard_stone(target_pool.X[pool], max(standards))
            X_test, y_test = target_test.X, target_test.titer_g_L
            for size, model in models.items():
                c, b = model.coef, model.intercept
                for n in standards:
                    rows = pool[order[:n]]
                    Xs, Xt, y = pool_batch.X[rows], target_pool.X[rows], pool_batch.titer_g_L[rows]
                    fixed = {}
                    for label, method, params in FIXED:
                        tr = fit_transfer(method, Xs, Xt, coef=c, intercept=b, y_ref=y, **params)
                        fixed[label] = _rmse(y_test, X_test, *tr.collapse(c, b))
                    t0 = time.perf_counter()
                    cv = None if max_folds is None else min(n, max_folds)
                    sel = select_transfer(Xs, Xt, coef=c, intercept=b, y_ref=y, cv=cv)
                    ms = 1e3 * (time.perf_counter() - t0)
                    others = {}
                    for rule in other_rules:
                        alt = select_transfer(
                            Xs, Xt, coef=c, intercept=b, y_ref=y, cv=cv, rule=rule
                        )
                        others[rule] = _rmse(y_test, X_test, *alt.transfer.collapse(c, b))
                    yield Case(
                        seed=seed,
                        shift_index=k,
                        shift=shift,
                        size=size,
                        n_components=model.n_components,
                        n_standards=n,
                        fixed=fixed,
                        auto=_rmse(y_test, X_test, *sel.transfer.collapse(c, b)),
                        auto_method=sel.method,
                        select_ms=ms,
                        other_rules=others,
                    )


def _rmse(y: np.ndarray, X: np.ndarray, coef: np.ndarray, intercept: float) -> float:
    return math.sqrt(float(np.mean((X @ coef + intercept - y) ** 2)))


def summarize(cases: Sequence[Case], within: float) -> list[str]:
    """The whole distribution of auto / best fixed, overall and per number of standards."""
    lines = []

    def row(label: str, group: Sequence[Case]) -> str:
        r = np.array([c.ratio for c in group])
        q = np.percentile(r, [0, 5, 25, 50, 75, 90, 95, 99, 100])
        worse = sum(c.worse_than_naive for c in group)
        return (
            f"| {label} | {len(r)} | {100 * np.mean(r <= within):.1f} % | {worse} | "
            + " | ".join(f"{v:.3f}" for v in q)
            + " |"
        )

    lines.append(
        f"| cases | n | auto <= {within:g} x best | worse than naive | min | p5 | p25 | "
        "median | p75 | p90 | p95 | p99 | max |"
    )
    lines.append("|---|" + "---:|" * 12)
    lines.append(row("all", cases))
    for n in sorted({c.n_standards for c in cases}):
        lines.append(row(f"{n} standards", [c for c in cases if c.n_standards == n]))
    for size in SIZES:
        lines.append(row(f"model {size}", [c for c in cases if c.size == size]))
    for rule in cases[0].other_rules if cases else ():
        r = np.array([c.other_rules[rule] / c.fixed[c.best_label] for c in cases])
        worse = sum(c.other_rules[rule] > c.fixed["naive"] for c in cases)
        lines.append(
            f"| rule {rule} instead | {len(r)} | {100 * np.mean(r <= within):.1f} % | {worse} | "
            + " | ".join(f"{v:.3f}" for v in np.percentile(r, [0, 5, 25, 50, 75, 90, 95, 99, 100]))
            + " |"
        )
    edges = [0.0, 0.9, 0.95, 1.0, 1.05, 1.10, 1.20, 1.50, math.inf]
    ratios = np.array([c.ratio for c in cases])
    counts = np.histogram(ratios, bins=edges)[0]
    lines.append("")
    lines.append(
        "Histogram of auto / best fixed: "
        + ", ".join(
            f"[{lo:g}, {hi:g}) {k}" for lo, hi, k in zip(edges[:-1], edges[1:], counts, strict=True)
        )
    )
    best = {}
    for c in cases:
        best[c.best_label] = best.get(c.best_label, 0) + 1
    lines.append(
        "Best fixed method in hindsight: "
        + ", ".join(f"{k} {v}" for k, v in sorted(best.items(), key=lambda kv: -kv[1]))
    )
    methods: dict[str, int] = {}
    for c in cases:
        methods[c.auto_method] = methods.get(c.auto_method, 0) + 1
    lines.append("auto's transfer: " + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))
    ms = np.array([c.select_ms for c in cases])
    lines.append(
        f"select_transfer time per case: median {np.median(ms):.0f} ms, max {ms.max():.0f} ms"
    )
    worst = sorted(cases, key=lambda c: -c.ratio)[:5]
    lines.append("Worst cases (ratio, seed/shift/model/standards, best fixed, shift):")
    for c in worst:
        lines.append(
            f"  {c.ratio:.3f}  seed {c.seed} shift {c.shift_index} {c.size} ({c.n_components} "
            f"comp) {c.n_standards} std; best {c.best_label} {c.fixed[c.best_label]:.4f}, "
            f"auto {c.auto:.4f}, naive {c.fixed['naive']:.4f} g/L; {c.shift.describe()}"
        )
    return lines
