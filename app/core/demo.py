"""The calibration-transfer demo on simulated data: source model, naive transfer, correction.

The arc a scientist meets when a Raman soft sensor moves from a development probe (250 mL
Ambr) to a plant probe (2,000 L):

1. **Source.** A PLS titre model is trained on development-probe spectra of batches
   BATCH-2026-002 … 004 and tested on BATCH-2026-001 (336 hourly spectra × 701 channels),
   which the fit never saw.
2. **Naive transfer.** The same batch measured on the plant probe (:class:`ProbeShift`: lower
   throughput, spectral gain, baseline, half-channel axis drift, extra noise) and predicted with
   the unchanged model: the shift alone ruins the predictions.
3. **Correction.** Kennard–Stone picks transfer standards among the plant spectra; each is
   paired with the same sample on the development probe. :func:`select_transfer` chooses the
   method (PDS, DS, slope/bias or none) and its parameters by cross-validation over the
   standards only, and the corrected model predicts the plant spectra that are *not*
   standards.

Everything is deterministic given the seed. ``ssreg demo`` calls :func:`main`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from app.core.kennard_stone import kennard_stone
from app.core.metrics import Metrics, regression_metrics
from app.core.pls import PLSSoftSensor
from app.core.simulate import ProbeShift, remeasure, simulate_campaign
from app.core.spectra import IntArray
from app.core.transfer import WeightRow, select_transfer

__all__ = ["DemoResult", "format_report", "main", "run_demo"]

SOURCE_PROBE = "dev-raman-ambr250"
TARGET_PROBE = "plant-raman-2000L"
HOURS = 336  # one spectrum per hour for 14 days


@dataclass(frozen=True)
class DemoResult:
    """Figures of the demo; every metric is on spectra the corresponding fit did not see.

    Attributes
    ----------
    seed : int
    n_spectra, n_channels : int
        Size of the held-out batch (BATCH-2026-001) on each probe.
    n_standards : int
        Number of Kennard–Stone transfer standards.
    held_out_batch : str
        Batch whose spectra give every metric; never used to fit the PLS model.
    training_batches : tuple of str
        Batches the PLS model was fitted on (development probe).
    n_components : int
        Latent variables of the source model (chosen by leave-one-batch-out CV).
    source : Metrics
        Source model on the held-out batch, development probe (in-domain).
    naive : Metrics
        Source model, unchanged, on the plant-probe spectra that are not standards.
    corrected : Metrics
        Transferred model on the same non-standard plant-probe spectra.
    method : str
        Transfer method chosen by CV (``"pds"``, ``"ds"``, ``"sbc"`` or ``"naive"``).
    params : dict
        Its parameters (e.g. ``window``, ``rcond``).
    scheme : str
        How the choice was cross-validated, e.g. ``"leave-one-out over 12 standards"``.
    rmsecv : float
        Cross-validated RMSE of the chosen transfer over the standards, g/L.
    weights : list of WeightRow
        The candidates the transfer is made of, with their weights (see
        :func:`select_transfer`).
    standards : ndarray of shape (n_standards,)
        Row indices (hours) of the standards in Kennard–Stone order.
    shift : ProbeShift
        The simulated difference between the probes.
    """

    seed: int
    n_spectra: int
    n_channels: int
    n_standards: int
    held_out_batch: str
    training_batches: tuple[str, ...]
    n_components: int
    source: Metrics
    naive: Metrics
    corrected: Metrics
    method: str
    params: dict[str, float | int | str]
    scheme: str
    rmsecv: float
    weights: list[WeightRow]
    standards: IntArray = field(repr=False)
    shift: ProbeShift

    @property
    def improved(self) -> bool:
        """True when the correction lowers the RMSE of the naive transfer."""
        return self.corrected["rmse"] < self.naive["rmse"]


def run_demo(seed: int = 2026, n_standards: int = 24) -> DemoResult:
    """Run the source → naive → corrected arc on a simulated campaign.

    Parameters
    ----------
    seed : int, default=2026
        Seed of the simulated campaign and of the plant-probe measurement.
    n_standards : int, default=24
        Number of Kennard–Stone transfer standards (3 <= n_standards < 336).

    Returns
    -------
    DemoResult
    """
    if not 3 <= n_standards < HOURS:
        raise ValueError(f"n_standards must be between 3 and {HOURS - 1}, got {n_standards}")
    batches = simulate_campaign(seed=seed, n_batches=4, hours=HOURS)
    source, training = batches[0], batches[1:]
    n = source.n_samples
    axis = source.axis
    y = source.titer_g_L

    # Held out: all of BATCH-2026-001. The PLS model sees only BATCH-2026-002..004 on the
    # development probe; with cv=3 contiguous blocks over those three 336-hour runs, the number
    # of components is chosen by leave-one-batch-out CV. The in-domain figures are therefore
    # on a batch (media lot, kinetics, noise) the fit never saw.
    X_train = np.vstack([b.X for b in training])
    y_train = np.concatenate([b.titer_g_L for b in training])
    sensor = PLSSoftSensor(cv=len(training), cv_scheme="blocks").fit(X_train, y_train, axis)
    model = sensor.model_
    source_metrics = regression_metrics(y, model.predict(source.X))

    shift = ProbeShift()
    target = remeasure(source, shift, seed=seed, probe=TARGET_PROBE)
    standards = kennard_stone(target.X, n_standards)
    test = np.setdiff1d(np.arange(n), standards)  # plant spectra never used by the transfer

    naive_metrics = regression_metrics(y[test], model.predict(target.X[test]))

    selection = select_transfer(
        source.X[standards],
        target.X[standards],
        coef=model.coef,
        intercept=model.intercept,
        y_ref=y[standards],
    )
    coef_t, intercept_t = selection.transfer.collapse(model.coef, model.intercept)
    corrected_metrics = regression_metrics(y[test], target.X[test] @ coef_t + intercept_t)
    return DemoResult(
        seed=seed,
        n_spectra=n,
        n_channels=int(axis.shape[0]),
        n_standards=n_standards,
        held_out_batch=source.batch_id,
        training_batches=tuple(b.batch_id for b in training),
        n_components=sensor.n_components_,
        source=source_metrics,
        naive=naive_metrics,
        corrected=corrected_metrics,
        method=selection.method,
        params=dict(selection.params),
        scheme=selection.scheme,
        rmsecv=selection.rmsecv,
        weights=selection.weights,
        standards=standards,
        shift=shift,
    )


def _format_params(params: dict[str, float | int | str]) -> str:
    return " ".join(f"{k}={v}" if isinstance(v, str) else f"{k}={v:g}" for k, v in params.items())


def format_report(result: DemoResult) -> str:
    """The four-line summary that ``ssreg demo`` prints."""
    label = f"{result.method.upper()}-corrected (held out)"
    choice = " ".join(filter(None, [result.method, _format_params(result.params)]))
    how = result.scheme.replace(" over ", " CV over ", 1)

    def figures(m: Metrics) -> str:
        return f"R2={m['r2']:.3f} RMSE={m['rmse']:.3f} g/L"

    return "\n".join(
        [
            f"Calibration transfer demo (illustrative shift): {result.n_spectra} spectra x "
            f"{result.n_channels} channels, {result.n_standards} Kennard-Stone standards",
            f"{'source (in-domain, held out)':<29}: {figures(result.source)}",
            f"{'naive transfer':<29}: {figures(result.naive)}",
            f"{label:<29}: {figures(result.corrected)}   [{choice}, chosen by {how}]",
        ]
    )


def main(seed: int = 2026, *, out: TextIO | None = None) -> int:
    """Print the demo's report; return 0, or 1 if the transfer does not beat the naive one."""
    stream = sys.stdout if out is None else out
    result = run_demo(seed=seed)
    print(format_report(result), file=stream)
    if not result.improved:
        print(
            f"FAIL: the {result.method} transfer did not reduce the RMSE of the naive transfer "
            f"({result.corrected['rmse']:.3f} vs {result.naive['rmse']:.3f} g/L)",
            file=stream,
        )
        return 1
    return 0
