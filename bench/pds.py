"""Benchmark of the PDS transfer and of the collapsed soft sensor (not a test).

Run ``.venv/bin/python bench/pds.py``. Prints the median of 7 timed repeats (after one
warm-up) with ``time.perf_counter`` for each case, its target and PASS/MISS:

- PDS fit, 701 channels x 24 standards, window 11             target <= 15 ms
- PDS fit, 3000 channels x 50 standards, window 11            target <= 150 ms
- PDS transform of 10,000 x 3000 spectra                      (no target; reported)
- collapsed model ``X @ coef_t + intercept_t`` on 10,000 x 3000 target <= 50 ms
- ``select_transfer`` with its defaults, 24 standards x 701 channels (23 candidates)
                                                              target <= 1000 ms

Inputs are synthetic smooth spectra from ``np.random.default_rng(0)``, made C-contiguous
float64 once, as the service does at its boundary (DESIGN.md §2: a dense transform on
Fortran-ordered input ran 20x slower). The BLAS/threading environment is left as found;
figures are as measured on this machine and vary with its load.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from app.core.spectra import FloatArray
from app.core.transfer import PDS, select_transfer

REPEATS = 7


def smooth_spectra(rng: np.random.Generator, n: int, p: int) -> FloatArray:
    """Raman-like spectra: 12 Gaussian bands with random amounts, a baseline, noise."""
    axis = np.linspace(0.0, 1.0, p)
    centres = rng.uniform(0.05, 0.95, 12)
    widths = rng.uniform(0.005, 0.03, 12)
    bands = np.exp(-0.5 * ((axis[None, :] - centres[:, None]) / widths[:, None]) ** 2)
    amounts = rng.uniform(0.1, 1.0, (n, 12))
    baseline = rng.normal(size=(n, 1)) * (0.05 + 0.1 * axis[None, :])
    X = amounts @ bands + baseline + 1e-3 * rng.normal(size=(n, p))
    return np.ascontiguousarray(X, dtype=np.float64)


def other_probe(rng: np.random.Generator, X: FloatArray) -> FloatArray:
    """Target probe: smooth gain, sloped offset, a third of a channel of axis drift, noise."""
    n, p = X.shape
    drifted = 0.7 * X + 0.3 * np.roll(X, 1, axis=1)
    gain = 1.0 + 0.1 * np.sin(np.linspace(0.0, np.pi, p))
    offset = 0.02 + 0.01 * np.linspace(0.0, 1.0, p)
    return np.ascontiguousarray(drifted * gain + offset + 1e-3 * rng.normal(size=(n, p)))


def median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def report(label: str, ms: float, target_ms: float | None) -> None:
    if target_ms is None:
        print(f"{label:<58} {ms:9.1f} ms   target: none (reported)")
    else:
        verdict = "PASS" if ms <= target_ms else "MISS"
        print(f"{label:<58} {ms:9.1f} ms   target <= {target_ms:g} ms   {verdict}")


def main() -> None:
    rng = np.random.default_rng(0)
    threads = {k: v for k, v in os.environ.items() if "THREADS" in k or "CORETYPE" in k}
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"threading env: {threads or 'none set'}; median of {REPEATS} after 1 warm-up")

    X_src = smooth_spectra(rng, 24, 701)
    X_tgt = other_probe(rng, X_src)
    pds = PDS(window=11, rcond=0.01)
    report(
        "PDS fit 701 ch x 24 std, w=11, rcond=0.01", median_ms(lambda: pds.fit(X_tgt, X_src)), 15
    )

    X_src3 = smooth_spectra(rng, 50, 3000)
    X_tgt3 = other_probe(rng, X_src3)
    pds3 = PDS(window=11, rcond=0.01)
    report(
        "PDS fit 3000 ch x 50 std, w=11, rcond=0.01",
        median_ms(lambda: pds3.fit(X_tgt3, X_src3)),
        150,
    )
    pds_svd = PDS(window=11, rcond=1e-4)
    report(
        "  (SVD path) PDS fit 3000 ch x 50 std, w=11, rcond=1e-4",
        median_ms(lambda: pds_svd.fit(X_tgt3, X_src3)),
        None,
    )

    X_big = other_probe(rng, smooth_spectra(rng, 10_000, 3000))
    report("PDS transform 10,000 x 3000", median_ms(lambda: pds3.transform(X_big)), None)

    coef = rng.normal(size=3000) / 3000
    coef_t, intercept_t = pds3.collapse(coef, 0.5)
    report(
        "collapsed model X @ coef_t + intercept_t, 10,000 x 3000",
        median_ms(lambda: X_big @ coef_t + intercept_t),
        50,
    )

    coef7 = rng.normal(size=701) / 701
    report(
        "select_transfer 24 std x 701 ch, 23 candidates (12-fold, weighted)",
        median_ms(lambda: select_transfer(X_src, X_tgt, coef=coef7, intercept=0.5)),
        1000,
    )


if __name__ == "__main__":
    main()
