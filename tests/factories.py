"""Test data builders: simulated spectral tables, domains and dataset uploads over the API.

The simulated spectra carry the reference value in a Gaussian band on a sloping, per-sample
baseline with a little noise, so a PLS model trained on them has something real to learn.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi.testclient import TestClient
from numpy.typing import ArrayLike

from app.core.simulate import ProbeShift, remeasure, simulate_batch

DOMAIN = "dev-raman-ambr250"
REFERENCE = "titer_g_L"
SAMPLE_ID = "sample_id"


def simulate_spectra(
    n_samples: int = 20,
    n_channels: int = 30,
    *,
    axis_start: float = 400.0,
    axis_step: float = 2.0,
    noise: float = 0.002,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n_samples, n_channels), y (n_samples,) in g/L and the axis (n_channels,)."""
    rng = np.random.default_rng(seed)
    axis = axis_start + axis_step * np.arange(n_channels, dtype=np.float64)
    y = rng.uniform(0.5, 5.0, n_samples)
    centre = axis[n_channels // 2]
    width = max(3 * abs(axis_step), (axis[-1] - axis[0]) / 8)
    band = np.exp(-0.5 * ((axis - centre) / width) ** 2)
    baseline = rng.normal(1.0, 0.05, (n_samples, 1)) * np.linspace(1.0, 0.8, n_channels)
    X = baseline + 0.2 * y[:, None] * band + rng.normal(0.0, noise, (n_samples, n_channels))
    return X, y, axis


def spectral_table(
    X: ArrayLike,
    y: Sequence[Any] | ArrayLike,
    axis: ArrayLike,
    *,
    prefix: str = "wn_",
    reference_column: str = REFERENCE,
    sample_ids: Sequence[Any] | None = None,
    sample_id_column: str = SAMPLE_ID,
) -> pa.Table:
    """An Arrow table: [sample id,] spectral columns ``<prefix><position:g>``, reference."""
    X = np.asarray(X, dtype=np.float64)
    columns: dict[str, Any] = {}
    if sample_ids is not None:
        columns[sample_id_column] = list(sample_ids)
    for j, position in enumerate(np.asarray(axis, dtype=np.float64)):
        columns[f"{prefix}{position:g}"] = X[:, j]
    columns[reference_column] = list(y)  # type: ignore[arg-type]
    return pa.table(columns)


def table_bytes(table: pa.Table, file_format: Literal["parquet", "csv"] = "parquet") -> bytes:
    buf = io.BytesIO()
    if file_format == "parquet":
        pq.write_table(table, buf)
    else:
        pacsv.write_csv(table, buf)
    return buf.getvalue()


def make_spectral_table(
    *,
    n_samples: int = 20,
    n_channels: int = 30,
    axis_start: float = 400.0,
    axis_step: float = 2.0,
    prefix: str = "wn_",
    reference_column: str = REFERENCE,
    sample_id_column: str | None = SAMPLE_ID,
    file_format: Literal["parquet", "csv"] = "parquet",
    seed: int = 0,
    X: ArrayLike | None = None,
    y: Sequence[Any] | ArrayLike | None = None,
    axis: ArrayLike | None = None,
    sample_ids: Sequence[Any] | None = None,
) -> bytes:
    """Bytes of a dataset file; pass X / y / axis / sample_ids to override the simulation.

    Sample ids default to ``S001``, ``S002``, ...; ``sample_id_column=None`` leaves them out.
    """
    X_sim, y_sim, axis_sim = simulate_spectra(
        n_samples, n_channels, axis_start=axis_start, axis_step=axis_step, seed=seed
    )
    spectra = X_sim if X is None else X
    reference = y_sim if y is None else y
    positions = axis_sim if axis is None else axis
    n = len(np.asarray(spectra))
    if sample_id_column is not None and sample_ids is None:
        sample_ids = [f"S{i + 1:03d}" for i in range(n)]
    table = spectral_table(
        spectra,
        reference,
        positions,
        prefix=prefix,
        reference_column=reference_column,
        sample_ids=sample_ids if sample_id_column is not None else None,
        sample_id_column=sample_id_column or SAMPLE_ID,
    )
    return table_bytes(table, file_format)


def domain_payload(name: str = DOMAIN, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "instrument": "Kaiser Raman RXN2",
        "probe_serial": f"probe-{name}",
        "scale": "250 mL",
        "site": "Basel development lab",
        "description": "development probe",
        "reason": "new development bioreactor probe",
    }
    return body | overrides


def create_domain(
    client: TestClient, headers: dict[str, str], name: str = DOMAIN, **overrides: Any
) -> dict[str, Any]:
    """POST /domains (developer headers); returns the created domain."""
    r = client.post("/api/v1/domains", json=domain_payload(name, **overrides), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload_dataset(
    client: TestClient,
    headers: dict[str, str],
    blob: bytes | None = None,
    *,
    domain: str = DOMAIN,
    name: str = "ambr250 runs 1-4",
    filename: str | None = None,
    reference_column: str = REFERENCE,
    units: str = "g/L",
    sample_id_column: str | None = SAMPLE_ID,
    spectral_prefix: str | None = None,
    axis_unit: str | None = None,
    reason: str | None = None,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    """POST /datasets as multipart; the default blob is :func:`make_spectral_table`'s.

    The file name defaults to ``spectra.parquet`` or ``spectra.csv`` by the content.
    """
    if blob is None:
        blob = make_spectral_table()
    if filename is None:
        filename = "spectra.parquet" if blob.startswith(b"PAR1") else "spectra.csv"
    form: dict[str, str] = {
        "name": name,
        "domain": domain,
        "reference_column": reference_column,
        "units": units,
    }
    optional = {
        "sample_id_column": sample_id_column,
        "spectral_prefix": spectral_prefix,
        "axis_unit": axis_unit,
        "reason": reason,
    }
    form |= {k: v for k, v in optional.items() if v is not None}
    response: httpx.Response = client.post(
        "/api/v1/datasets",
        data=form,
        files={"file": (filename, blob, content_type)},
        headers=headers,
    )
    return response


# --------------------------------------------------------------------------------------------
# Calibration transfer: simulated development-probe and plant-probe spectra (app.core.simulate)
# --------------------------------------------------------------------------------------------

PLANT_DOMAIN = "plant-raman-2000L"


@dataclass(frozen=True, eq=False)
class TransferData:
    """Simulated spectra for a transfer, small enough for fast tests (701 channels).

    ``source_*``: every 2nd hour of BATCH-2026-001 on the development probe (the training
    dataset); ``plant_*``: the same samples measured on the plant probe (:class:`ProbeShift`),
    of which ``candidates`` (row indices) are offered as target standards; ``validation_*``:
    every 4th hour of BATCH-2026-002 on the plant probe (other sample ids).
    """

    axis: np.ndarray
    source_x: np.ndarray
    source_y: np.ndarray
    source_ids: list[str]
    plant_x: np.ndarray
    candidates: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray
    validation_ids: list[str]

    def source_bytes(self) -> bytes:
        """Development-probe training dataset (parquet), built once."""
        return _cached_bytes(self, "source")

    def target_bytes(self, rows: Sequence[int] | np.ndarray | None = None) -> bytes:
        """Plant-probe spectra of the candidate standards (or of ``rows``), with references."""
        if rows is None:
            return _cached_bytes(self, "target")
        idx = np.asarray(rows)
        return self._table(self.plant_x, idx)

    def source_standards_bytes(self) -> bytes:
        """Development-probe spectra of the candidate standards."""
        return _cached_bytes(self, "source_standards")

    def validation_bytes(self) -> bytes:
        return _cached_bytes(self, "validation")

    def _table(self, X: np.ndarray, idx: np.ndarray) -> bytes:
        ids = [self.source_ids[i] for i in idx]
        return table_bytes(spectral_table(X[idx], self.source_y[idx], self.axis, sample_ids=ids))


@lru_cache(maxsize=8)
def _cached_bytes(data: TransferData, which: str) -> bytes:
    if which == "source":
        return data._table(data.source_x, np.arange(len(data.source_ids)))
    if which == "target":
        return data._table(data.plant_x, data.candidates)
    if which == "source_standards":
        return data._table(data.source_x, data.candidates)
    return table_bytes(
        spectral_table(
            data.validation_x, data.validation_y, data.axis, sample_ids=data.validation_ids
        )
    )


@lru_cache(maxsize=1)
def transfer_data(seed: int = 3, n_candidates: int = 30) -> TransferData:
    """Built once per process: the simulator is deterministic given ``seed``."""
    shift = ProbeShift()
    source = simulate_batch("BATCH-2026-001", seed=seed)
    plant = remeasure(source, shift, seed=seed + 1, probe=PLANT_DOMAIN)
    rows = np.arange(0, source.n_samples, 2)
    other = simulate_batch("BATCH-2026-002", seed=seed)
    other_plant = remeasure(other, shift, seed=seed + 1, probe=PLANT_DOMAIN)
    val_rows = np.arange(1, other.n_samples, 4)
    ids = source.sample_ids
    other_ids = other.sample_ids
    return TransferData(
        axis=source.axis,
        source_x=source.X[rows],
        source_y=source.titer_g_L[rows],
        source_ids=[ids[i] for i in rows],
        plant_x=plant.X[rows],
        candidates=np.unique(np.linspace(0, rows.size - 1, n_candidates).round().astype(np.intp)),
        validation_x=other_plant.X[val_rows],
        validation_y=other.titer_g_L[val_rows],
        validation_ids=[other_ids[i] for i in val_rows],
    )


TRANSFER_MODEL = {
    "name": "titer_pls",
    "analyte": "titer",
    "units": "g/L",
    "reason": "new soft sensor",
}


def train_transfer_source(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    """titer_pls v1 (5 components) on :func:`transfer_data`'s development-probe spectra, with
    the development and the plant domains: ``{"dataset": ..., "version": ...}`` as JSON."""
    create_domain(client, headers)
    create_domain(client, headers, PLANT_DOMAIN, scale="2000 L", probe_serial="plant-probe")
    ds = upload_dataset(client, headers, transfer_data().source_bytes(), name="BATCH-2026-001")
    assert ds.status_code == 201, ds.text
    assert client.post("/api/v1/models", json=TRANSFER_MODEL, headers=headers).status_code == 201
    body = {
        "dataset_sha256": ds.json()["sha256"],
        "n_components": 5,
        "intended_use": "monitoring",
        "intended_use_statement": "monitoring titer in Ambr 250 runs",
        "reason": "first calibration",
    }
    r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return {"dataset": ds.json(), "version": r.json()}
