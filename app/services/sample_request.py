"""A ready-made prediction body for the demo: plant-probe spectra of a batch the demo model
never saw, so a newcomer can call the service without writing a spectrum by hand."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.core.simulate import ProbeShift, remeasure, simulate_batch
from app.enums import PredictionPurpose
from app.services.seed import PLANT_DOMAIN, SEED

SAMPLE_BATCH = "BATCH-2026-003"


def plant_sample_request(
    n: int = 3, *, purpose: PredictionPurpose = PredictionPurpose.monitoring
) -> tuple[dict[str, Any], list[float]]:
    """The JSON body of a prediction: ``n`` hourly spectra of BATCH-2026-003 measured on the
    simulated plant probe (the demo's ``plant-raman-2000L``), their axis and sample ids, and
    ``purpose``; and the titer (g/L) the simulator knows for each, to compare with."""
    if not 1 <= n <= 336:
        raise ValueError("n must be between 1 and 336 (the batch's hours)")
    batch = remeasure(
        simulate_batch(SAMPLE_BATCH, seed=SEED), ProbeShift(), seed=SEED, probe=PLANT_DOMAIN
    )
    rows = np.unique(np.linspace(72, 288, n).round().astype(np.intp))
    ids = batch.sample_ids
    return {
        "spectra": batch.X[rows].round(6).tolist(),
        "axis": batch.axis.tolist(),
        "sample_ids": [ids[i] for i in rows],
        "purpose": purpose.value,
    }, batch.titer_g_L[rows].round(4).tolist()
