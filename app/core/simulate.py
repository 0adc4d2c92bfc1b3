"""Simulated CHO fed-batch Raman data for demos, tests and examples.

The simulator stands in for a reference dataset such as ``raman_spectra.parquet``: 336 hourly
in-line Raman spectra of one 14-day fed-batch (``BATCH-2026-001``), 701 channels ``wn_400 …
wn_1800`` (step 2 cm⁻¹) and the product titre ``titer_g_L`` rising from 0 to about 5.7 g/L. It
is illustrative, not a digital twin: the kinetics and band positions are textbook, the
amplitudes are chosen so that titre is learnable by PLS but only after the model has separated
it from overlapping metabolite, cell and fluorescence signals.

Three layers, each deterministic given a seed (``np.random.Generator`` throughout; the global
NumPy state is never touched):

1. **Kinetics** (:func:`simulate_kinetics`). An unstructured fed-batch model in the spirit of
   Xing et al. [1]_: Monod growth on glucose with lactate and crowding inhibition, death
   (basal, starvation, lactate toxicity, culture age), glucose uptake with maintenance, lactate
   production inhibited by lactate and lactate consumption, a depletable amino-acid pool and
   non-growth-associated product formation. Glucose is fed to a set-point by daily boluses from
   day 3 (sample first, then feed; the feed volume is neglected, so titre never dilutes) and the
   temperature is shifted on day 7 (37 → 33 °C: slower growth and death, higher specific
   productivity, more lactate consumption). Integrated with ``scipy.integrate.solve_ivp``
   between feed and shift events.
2. **Spectra** (:func:`simulate_batch`). Each spectrum is a sum of pseudo-Voigt bands at
   literature Raman shifts [2]_ [3]_ scaled by the states: water (bending ~1640 cm⁻¹ and the
   low-wavenumber libration wing), a medium-lot background, the amino-acid pool, glucose, lactate,
   the product (antibody: Phe 1003, Tyr 830/850, amide III ~1245, CH₂ 1450, amide I ~1660),
   cellular biomass; a turbidity attenuation and a smooth fluorescence baseline that rises with
   viable and dead cells; then shot and read noise.
3. **Probe shift** (:class:`ProbeShift`, :func:`apply_probe_shift`). An illustrative
   development-to-plant probe difference: a wavenumber-dependent gain, a sloped additive baseline,
   an axis drift of a fraction of a channel (applied by interpolation) and extra noise.

Batches ``BATCH-2026-001 …`` differ by kinetic-parameter jitter, a media lot (background
scale, band balance and autofluorescence) and feed timing. A batch's data depend only on
``(seed, batch_id)``, so ``simulate_batch("BATCH-2026-001", seed=s)`` equals the first batch of
``simulate_campaign(seed=s)``. A :class:`MediaLotShift` runs a batch on another media lot
(:data:`NEW_MEDIA_LOT`: less vitamin autofluorescence), everything else unchanged.

References
----------
.. [1] Xing, Z., Bishop, N., Leister, K. & Li, Z. J. "Modeling kinetics of a large-scale fed-batch
   CHO cell culture by Markov chain Monte Carlo method." Biotechnology Progress 26 (2010)
   208–219.
.. [2] Abu-Absi, N. R. et al. "Real time monitoring of multiple parameters in mammalian cell
   culture bioreactors using an in-line Raman spectroscopy probe." Biotechnology and
   Bioengineering 108 (2011) 1215–1221.
.. [3] Rygula, A. et al. "Raman spectroscopy of proteins: a review." Journal of Raman
   Spectroscopy 44 (2013) 1061–1076.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from os import PathLike
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

from app.core.spectra import FloatArray, as_axis, as_spectra

__all__ = [
    "DEFAULT_AXIS",
    "NEW_MEDIA_LOT",
    "NO_SHIFT",
    "SIMULATOR_VERSION",
    "KineticParams",
    "MediaLotShift",
    "ProbeShift",
    "SimulatedBatch",
    "apply_probe_shift",
    "batch_ids",
    "remeasure",
    "simulate_batch",
    "simulate_campaign",
    "simulate_kinetics",
    "spectral_columns",
    "to_arrow_table",
    "with_foreign_band",
    "write_parquet",
]

SIMULATOR_VERSION: Final = "1.0"
DEFAULT_AXIS: Final[FloatArray] = np.arange(400.0, 1800.0 + 1.0, 2.0)
DEFAULT_AXIS.setflags(write=False)

_STATE_NAMES: Final = ("vcd", "glucose_g_L", "lactate_g_L", "titer_g_L", "dead", "amino_acids")


# --------------------------------------------------------------------------------------------
# kinetics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KineticParams:
    """Parameters of the fed-batch model; time in h, concentrations in g/L, cells in 1e6/mL.

    The defaults are the nominal process; :func:`simulate_batch` jitters them per batch.
    """

    mu_max: float = 0.043  # 1/h, maximum specific growth rate at 37 °C
    ks_glucose: float = 0.2  # g/L, Monod constant for glucose
    ki_lactate: float = 2.5  # g/L, lactate inhibition of growth
    x_max: float = 27.0  # 1e6 cells/mL, crowding limit (logistic term)
    kd0: float = 0.0025  # 1/h, basal death rate
    kd_starve: float = 0.01  # 1/h, extra death when glucose is exhausted
    k_starve: float = 0.3  # g/L
    kd_lactate: float = 0.006  # 1/h, lactate toxicity at high lactate
    k_lactate_tox: float = 3.5  # g/L
    kd_age: float = 0.012  # 1/h, late-culture death, rises as (t / 336 h)^3
    k_lysis: float = 0.01  # 1/h, lysis of dead cells
    y_x_glucose: float = 4.0  # (1e6 cells/mL) per (g/L) of glucose
    m_glucose: float = 0.0035  # g/L/h per 1e6 cells/mL, maintenance uptake
    y_lactate_glucose: float = 1.0  # g lactate per g glucose (before inhibition)
    ki_lactate_prod: float = 2.0  # g/L, self-inhibition of lactate production
    q_lactate_cons: float = 0.0045  # g/L/h per 1e6 cells/mL, maximum lactate uptake
    k_lactate_cons: float = 0.6  # g/L
    q_amino: float = 0.0022  # pool units/h per 1e6 cells/mL, amino-acid consumption
    amino_feed: float = 0.3  # pool units added by each bolus feed
    q_product: float = 0.00121  # g/L/h per 1e6 cells/mL (~29 pg/cell/day) at 37 °C
    shift_mu: float = 0.45  # growth-rate factor after the temperature shift
    shift_kd: float = 0.8  # basal-death factor after the shift
    shift_q_product: float = 1.75  # specific-productivity factor after the shift
    shift_lactate_cons: float = 1.3  # lactate-uptake factor after the shift
    glucose_setpoint: float = 6.0  # g/L, each feed tops glucose up to this
    vcd0: float = 0.45  # 1e6 cells/mL at inoculation
    glucose0: float = 6.0  # g/L
    lactate0: float = 0.15  # g/L


def _rates(t: float, s: FloatArray, p: KineticParams, shifted: bool) -> list[float]:
    vcd, glc, lac, _titer, dead, amino = (max(v, 0.0) for v in s)
    f_mu = p.shift_mu if shifted else 1.0
    glc_term = glc / (p.ks_glucose + glc)
    mu = (
        p.mu_max
        * f_mu
        * glc_term
        * p.ki_lactate
        / (p.ki_lactate + lac)
        * max(0.0, 1.0 - vcd / p.x_max)
    )
    kd = (
        p.kd0 * (p.shift_kd if shifted else 1.0)
        + p.kd_starve * p.k_starve / (p.k_starve + glc)
        + p.kd_lactate * lac**2 / (p.k_lactate_tox**2 + lac**2)
        + p.kd_age * (t / 336.0) ** 3
    )
    q_glc = mu / p.y_x_glucose + p.m_glucose * glc_term
    q_lac = p.y_lactate_glucose * q_glc * p.ki_lactate_prod / (p.ki_lactate_prod + lac) - (
        p.q_lactate_cons
        * (p.shift_lactate_cons if shifted else 1.0)
        * lac
        / (p.k_lactate_cons + lac)
    )
    q_amino = p.q_amino * amino / (0.05 + amino)
    q_p = p.q_product * (p.shift_q_product if shifted else 1.0)
    return [
        (mu - kd) * vcd,
        -q_glc * vcd,
        q_lac * vcd,
        q_p * vcd,
        kd * vcd - p.k_lysis * dead,
        -q_amino * vcd,
    ]


def simulate_kinetics(
    params: KineticParams,
    *,
    feed_hours: Sequence[float],
    shift_hour: float,
    hours: int = 336,
) -> dict[str, FloatArray]:
    """Integrate the fed-batch model and sample it every hour.

    Parameters
    ----------
    params : KineticParams
    feed_hours : sequence of float
        Culture times (h) of the bolus feeds. A sample due at a feed time is taken before it.
    shift_hour : float
        Culture time (h) of the temperature shift.
    hours : int, default=336
        Number of hourly samples, at t = 0, 1, …, hours - 1 h.

    Returns
    -------
    dict of str to ndarray of shape (hours,)
        ``hour`` and the states ``vcd`` (1e6 cells/mL), ``glucose_g_L``, ``lactate_g_L``,
        ``titer_g_L``, ``dead`` (1e6 cells/mL, not yet lysed) and ``amino_acids`` (pool,
        1 = fresh medium).
    """
    if hours < 2:
        raise ValueError(f"hours must be >= 2, got {hours}")
    t_end = float(hours - 1)
    feeds = sorted(float(h) for h in feed_hours if 0.0 < h < t_end)
    breaks = sorted({0.0, t_end, *feeds, *([shift_hour] if 0.0 < shift_hour < t_end else [])})
    t_out = np.arange(hours, dtype=np.float64)
    out = np.empty((hours, len(_STATE_NAMES)))
    state = np.array(
        [params.vcd0, params.glucose0, params.lactate0, 0.0, 0.0, 1.0], dtype=np.float64
    )
    out[0] = state
    feed_set = set(feeds)
    for a, b in itertools.pairwise(breaks):
        sol = solve_ivp(
            _rates,
            (a, b),
            state,
            method="LSODA",
            args=(params, a >= shift_hour),
            dense_output=True,
            rtol=1e-8,
            atol=1e-10,
        )
        if not sol.success:  # pragma: no cover - the model is smooth between events
            raise RuntimeError(f"kinetics failed on [{a}, {b}] h: {sol.message}")
        inside = (t_out > a) & (t_out <= b)  # a sample at a feed time precedes the feed
        if inside.any():
            out[inside] = sol.sol(t_out[inside]).T
        state = sol.y[:, -1].copy()
        if b in feed_set:
            state[1] = max(state[1], params.glucose_setpoint)
            state[5] += params.amino_feed
    np.maximum(out, 0.0, out=out)
    # Titre is an integral of a non-negative rate; remove solver round-off wiggles.
    out[:, 3] = np.maximum.accumulate(out[:, 3])
    result = {name: np.ascontiguousarray(out[:, k]) for k, name in enumerate(_STATE_NAMES)}
    result["hour"] = t_out
    return result


# --------------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------------

# (centre cm⁻¹, FWHM cm⁻¹, Lorentzian fraction, peak height in counts per unit of the state)
_Band = tuple[float, float, float, float]

_WATER: Final[tuple[_Band, ...]] = (
    (1640.0, 95.0, 0.3, 1400.0),  # H–O–H bending
    (430.0, 380.0, 0.0, 900.0),  # libration wing (tail of the ~500 cm⁻¹ band)
)
_MEDIUM: Final[tuple[_Band, ...]] = (  # salts, buffer, vitamins: constant within a batch
    (470.0, 30.0, 0.5, 60.0),
    (620.0, 25.0, 0.5, 45.0),
    (900.0, 35.0, 0.5, 70.0),
    (1050.0, 22.0, 0.6, 95.0),  # HEPES / nitrate region, overlaps lactate 1045
    (1180.0, 40.0, 0.5, 40.0),
    (1310.0, 45.0, 0.5, 55.0),
    (1400.0, 30.0, 0.5, 50.0),
    (1590.0, 40.0, 0.5, 35.0),
)
_AMINO: Final[tuple[_Band, ...]] = (  # free amino acids per pool unit: depleted and re-fed
    (760.0, 14.0, 0.6, 22.0),  # Trp
    (830.0, 14.0, 0.6, 18.0),  # Tyr
    (1003.0, 9.0, 0.7, 55.0),  # Phe ring breathing
    (1340.0, 30.0, 0.5, 30.0),
    (1415.0, 25.0, 0.5, 40.0),  # carboxylate
)
_GLUCOSE: Final[tuple[_Band, ...]] = (  # per g/L
    (422.0, 22.0, 0.6, 14.0),
    (520.0, 24.0, 0.6, 12.0),
    (910.0, 25.0, 0.6, 8.0),
    (1062.0, 28.0, 0.6, 15.0),
    (1125.0, 24.0, 0.6, 18.0),
    (1365.0, 30.0, 0.5, 7.0),
)
_LACTATE: Final[tuple[_Band, ...]] = (  # per g/L
    (855.0, 18.0, 0.6, 26.0),
    (1045.0, 20.0, 0.6, 14.0),
    (1090.0, 25.0, 0.6, 8.0),
    (1420.0, 28.0, 0.5, 16.0),
)
_PRODUCT: Final[tuple[_Band, ...]] = (  # antibody, per g/L
    (830.0, 16.0, 0.6, 4.5),  # Tyr Fermi doublet
    (852.0, 16.0, 0.6, 4.5),
    (940.0, 35.0, 0.5, 6.0),  # C–C skeletal
    (1003.0, 9.0, 0.7, 16.5),  # Phe
    (1245.0, 55.0, 0.4, 12.0),  # amide III (β-sheet)
    (1340.0, 30.0, 0.5, 6.0),
    (1450.0, 32.0, 0.5, 13.5),  # CH₂ deformation
    (1665.0, 45.0, 0.4, 18.0),  # amide I (β-sheet), on the water band
)
_CELLS: Final[tuple[_Band, ...]] = (  # biomass per 1e6 cells/mL (viable; dead count 40 %)
    (725.0, 18.0, 0.6, 2.0),  # adenine
    (785.0, 20.0, 0.6, 2.6),  # nucleic acids (ring + backbone)
    (1003.0, 9.0, 0.7, 1.6),  # cellular protein Phe
    (1095.0, 25.0, 0.6, 2.0),  # PO₂⁻ backbone
    (1300.0, 30.0, 0.5, 3.0),  # lipid CH₂ twist
    (1440.0, 30.0, 0.5, 4.0),  # lipid CH₂ deformation
    (1580.0, 25.0, 0.5, 1.5),
    (1660.0, 45.0, 0.4, 3.5),  # protein amide I / lipid C=C
)

_DARK_COUNTS: Final = 500.0  # detector offset, counts
_MEDIUM_FLUORESCENCE: Final = 1500.0  # counts at the high-wavenumber end
_CELL_FLUORESCENCE: Final = 160.0  # counts per 1e6 viable cells/mL
_DEBRIS_FLUORESCENCE: Final = 120.0  # counts per 1e6 dead cells/mL
_MEDIUM_PER_FEED: Final = 0.04  # relative rise of the medium background per bolus feed
_TURBIDITY: Final = 0.0015  # relative Raman attenuation per 1e6 cells/mL
_READ_NOISE: Final = 4.0  # counts
_PHOTONS_PER_COUNT: Final = 80.0  # shot noise: variance = signal / this


def _pseudo_voigt(axis: FloatArray, bands: Sequence[_Band]) -> FloatArray:
    """Unit-height pseudo-Voigt bands, one column per band: shape (n_channels, n_bands)."""
    c = np.array([b[0] for b in bands], dtype=np.float64)
    hwhm = np.array([b[1] for b in bands], dtype=np.float64) / 2.0
    eta = np.array([b[2] for b in bands], dtype=np.float64)
    d: FloatArray = (axis[:, None] - c) / hwhm
    lorentz = 1.0 / (1.0 + d**2)
    gauss = np.exp(-math.log(2.0) * d**2)
    out: FloatArray = eta * lorentz + (1.0 - eta) * gauss
    return out


def _spectrum(
    axis: FloatArray, bands: Sequence[_Band], scale: ArrayLike | None = None
) -> FloatArray:
    """Sum of the bands of one component; ``scale`` multiplies each band's height."""
    heights = np.array([b[3] for b in bands], dtype=np.float64)
    if scale is not None:
        heights = heights * np.asarray(scale, dtype=np.float64)
    out: FloatArray = _pseudo_voigt(axis, bands) @ heights
    return out


def _unit_position(axis: FloatArray) -> FloatArray:
    """Map the axis linearly onto [-1, 1] (centre 0), for gains and baselines."""
    lo, hi = float(axis[0]), float(axis[-1])
    if hi == lo:
        return np.zeros_like(axis)
    return (2.0 * axis - (lo + hi)) / (hi - lo)


@dataclass(frozen=True)
class _MediaLot:
    background_scale: float
    band_balance: FloatArray  # per medium band
    autofluorescence: float


@dataclass(frozen=True)
class MediaLotShift:
    """A batch run on another media lot than the calibration's: factors on the lot the
    batch would otherwise have drawn (its random draws are unchanged, so the same batch with
    and without the shift differs only by the medium).

    Attributes
    ----------
    background : float, default=1.0
        Factor on the medium's Raman background (salts, buffer: the osmolality level).
    autofluorescence : float, default=1.0
        Factor on the medium's autofluorescence (riboflavin and other vitamins).
    """

    background: float = 1.0
    autofluorescence: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MediaLotShift.{f.name} must be positive, got {value}")

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))


# A lot with a fifth less vitamin autofluorescence. The titre model has learnt the medium's
# fluorescence as part of its baseline: its predictions fall by about 1-2 validation SEPs
# while T² and Q stay at their nominal rates — the drift only reference results reveal.
NEW_MEDIA_LOT: Final = MediaLotShift(autofluorescence=0.8)


@dataclass(frozen=True, eq=False)
class SimulatedBatch:
    """One simulated fed-batch: hourly process states and the Raman spectra of each sample.

    Attributes
    ----------
    batch_id : str
    seed : int
        Campaign seed the batch was simulated from.
    hour : ndarray of shape (n_samples,)
        Culture time of each sample in h (0, 1, …).
    vcd : ndarray of shape (n_samples,)
        Viable cell density, 1e6 cells/mL.
    glucose_g_L, lactate_g_L, titer_g_L : ndarray of shape (n_samples,)
        Concentrations in g/L; ``titer_g_L`` is the reference value of the soft sensor
        (noise-free: the reference assay's error is not simulated).
    axis : ndarray of shape (n_channels,)
        Raman shift in cm⁻¹.
    X : ndarray of shape (n_samples, n_channels)
        Spectra as measured (counts, with noise) on the probe named by ``probe``.
    signal : ndarray of shape (n_samples, n_channels)
        The same spectra without detector noise on the development probe; :func:`remeasure`
        measures them again on another probe.
    probe : str
        Name of the probe the spectra ``X`` were measured on.
    params : KineticParams
        The batch's (jittered) kinetic parameters.
    feed_hours : tuple of float
        Times of the bolus feeds, h.
    shift_hour : float
        Time of the temperature shift, h.
    """

    batch_id: str
    seed: int
    hour: FloatArray
    vcd: FloatArray
    glucose_g_L: FloatArray  # noqa: N815 - the dataset's column name, units included
    lactate_g_L: FloatArray  # noqa: N815 - the dataset's column name, units included
    titer_g_L: FloatArray  # noqa: N815 - the dataset's column name, units included
    axis: FloatArray
    X: FloatArray
    signal: FloatArray
    probe: str = "dev-raman-ambr250"
    params: KineticParams = field(default_factory=KineticParams)
    feed_hours: tuple[float, ...] = ()
    shift_hour: float = 168.0

    @property
    def n_samples(self) -> int:
        """Number of hourly samples (spectra)."""
        return int(self.X.shape[0])

    @property
    def sample_ids(self) -> list[str]:
        """``<batch_id>-H<hour>``, e.g. ``BATCH-2026-001-H000``: the same id on every probe."""
        return [f"{self.batch_id}-H{int(h):03d}" for h in self.hour]


def batch_ids(n_batches: int, *, year: int = 2026) -> list[str]:
    """``BATCH-<year>-001``, ``BATCH-<year>-002``, …"""
    return [f"BATCH-{year}-{k:03d}" for k in range(1, n_batches + 1)]


def _batch_rng(seed: int, batch_id: str) -> np.random.Generator:
    # crc32 is stable across processes and Python versions (unlike hash()).
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(batch_id.encode())]))


def _jitter_params(rng: np.random.Generator) -> KineticParams:
    nominal = KineticParams()
    rel_sd = {
        "mu_max": 0.01,
        "x_max": 0.02,
        "kd0": 0.06,
        "y_lactate_glucose": 0.02,
        "q_lactate_cons": 0.02,
        "q_amino": 0.05,
        "q_product": 0.02,
        "shift_q_product": 0.015,
        "vcd0": 0.05,
    }
    changes = {
        name: getattr(nominal, name) * float(np.exp(rng.normal(0.0, sd)))
        for name, sd in rel_sd.items()
    }
    changes["glucose0"] = nominal.glucose0 + float(rng.normal(0.0, 0.15))
    return replace(nominal, **changes)


def _detector_noise(signal: FloatArray, rng: np.random.Generator) -> FloatArray:
    sd = np.sqrt(_READ_NOISE**2 + np.maximum(signal, 0.0) / _PHOTONS_PER_COUNT)
    return rng.normal(0.0, 1.0, size=signal.shape) * sd


def simulate_batch(
    batch_id: str,
    *,
    seed: int,
    hours: int = 336,
    axis: ArrayLike | None = None,
    media: MediaLotShift | None = None,
) -> SimulatedBatch:
    """Simulate one fed-batch and its hourly Raman spectra on the development probe.

    Parameters
    ----------
    batch_id : str
        E.g. ``"BATCH-2026-001"``. With ``seed`` it determines every random draw (kinetic
        jitter, media lot, feed timing, noise).
    seed : int
        Campaign seed.
    hours : int, default=336
        Number of hourly samples (14 days).
    axis : array-like of shape (n_channels,), optional
        Raman shifts in cm⁻¹; defaults to 400, 402, …, 1800 (701 channels).
    media : MediaLotShift, optional
        Run the batch on another media lot (default: the lot it draws itself).

    Returns
    -------
    SimulatedBatch
    """
    ax = as_axis(DEFAULT_AXIS if axis is None else axis)
    rng = _batch_rng(seed, batch_id)
    kin_rng, lot_rng, noise_rng = rng.spawn(3)

    params = _jitter_params(kin_rng)
    feed_offset = float(kin_rng.uniform(-2.0, 2.0))  # this batch's feeding routine, h
    feed_hours = tuple(
        72.0 + 24.0 * k + feed_offset + float(kin_rng.uniform(-0.5, 0.5)) for k in range(14)
    )
    shift_hour = 168.0 + float(kin_rng.uniform(-3.0, 3.0))
    states = simulate_kinetics(params, feed_hours=feed_hours, shift_hour=shift_hour, hours=hours)
    # feeds strictly before each sample (a sample due at a feed time is taken first)
    states["n_feeds"] = np.searchsorted(np.sort(feed_hours), states["hour"], side="left").astype(
        np.float64
    )

    lot = _MediaLot(
        background_scale=float(np.exp(lot_rng.normal(0.0, 0.03))),
        band_balance=np.exp(lot_rng.normal(0.0, 0.02, size=len(_MEDIUM))),
        autofluorescence=float(np.exp(lot_rng.normal(0.0, 0.03))),
    )
    if media is not None:
        lot = replace(
            lot,
            background_scale=lot.background_scale * media.background,
            autofluorescence=lot.autofluorescence * media.autofluorescence,
        )
    signal = _render(ax, states, lot)
    X = signal + _detector_noise(signal, noise_rng)
    return SimulatedBatch(
        batch_id=batch_id,
        seed=int(seed),
        hour=states["hour"],
        vcd=states["vcd"],
        glucose_g_L=states["glucose_g_L"],
        lactate_g_L=states["lactate_g_L"],
        titer_g_L=states["titer_g_L"],
        axis=ax,
        X=np.ascontiguousarray(X),
        signal=np.ascontiguousarray(signal),
        params=params,
        feed_hours=tuple(h for h in feed_hours if h < hours - 1),
        shift_hour=shift_hour,
    )


def _render(axis: FloatArray, states: Mapping[str, FloatArray], lot: _MediaLot) -> FloatArray:
    """Noise-free spectra of shape (n_samples, n_channels) from the states and the media lot."""
    vcd, dead, amino = states["vcd"], states["dead"], states["amino_acids"]
    water = _spectrum(axis, _WATER)
    # Each bolus brings salts and buffer with it: the medium background (osmolality) rises
    # step by step through the run, on top of the lot's own level.
    medium = np.outer(
        lot.background_scale * (1.0 + _MEDIUM_PER_FEED * states["n_feeds"]),
        _spectrum(axis, _MEDIUM, lot.band_balance),
    )
    comps = np.stack(
        [
            _spectrum(axis, _AMINO),
            _spectrum(axis, _GLUCOSE),
            _spectrum(axis, _LACTATE),
            _spectrum(axis, _PRODUCT),
            _spectrum(axis, _CELLS),
        ]
    )
    conc = np.column_stack(
        [
            amino,
            states["glucose_g_L"],
            states["lactate_g_L"],
            states["titer_g_L"],
            vcd + 0.4 * dead,
        ]
    )
    raman = water + medium + conc @ comps
    # Cells scatter the excitation and the Raman light: a mild multiplicative attenuation.
    raman *= (1.0 / (1.0 + _TURBIDITY * (vcd + dead)))[:, None]

    u = _unit_position(axis)
    # Broad fluorescence from the medium, living cells and debris, with different shapes so
    # the baseline changes shape over the run (not only its level).
    # Medium autofluorescence comes partly from vitamins (riboflavin) that the feeds bring and
    # the cells consume: it follows the nutrient pool.
    medium_fl = np.outer(
        _MEDIUM_FLUORESCENCE * lot.autofluorescence * (0.7 + 0.3 * amino), 0.55 + 0.45 * u
    )
    cell_fl = _CELL_FLUORESCENCE * np.exp(-(((axis - 2100.0) / 1100.0) ** 2))
    debris_fl = _DEBRIS_FLUORESCENCE * (1.0 + 0.35 * u - 0.25 * u**2)
    baseline = _DARK_COUNTS + medium_fl + np.outer(vcd, cell_fl) + np.outer(dead, debris_fl)
    return np.ascontiguousarray(raman + baseline)


def simulate_campaign(*, seed: int, n_batches: int = 4, hours: int = 336) -> list[SimulatedBatch]:
    """Simulate ``BATCH-2026-001 … BATCH-2026-<n_batches>`` on the development probe.

    Returns
    -------
    list of SimulatedBatch
        In batch order; each is what :func:`simulate_batch` returns for its id and ``seed``.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    return [simulate_batch(b, seed=seed, hours=hours) for b in batch_ids(n_batches)]


# --------------------------------------------------------------------------------------------
# probe shift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeShift:
    """An illustrative difference between two Raman probes (target relative to source).

    With ``u`` the position on the axis mapped linearly onto [-1, 1], the target reads::

        x_tgt(ν) = g(u) · (x_src ∗ G_broadening)(ν + axis_drift) + b(u) + noise,
        g(u) = gain · (1 + gain_slope · u + gain_curvature · u²),
        b(u) = offset + offset_slope · u.

    The defaults describe a plant probe with 40 % less throughput (longer fibre, different
    laser power), a detector whose response falls off towards high Raman shifts (at 785 nm
    excitation 1800 cm⁻¹ is near 920 nm, where silicon CCD quantum efficiency drops), a stray
    light baseline rising from 0 to 400 counts across the axis, an axis calibration drift of half
    a channel (1 cm⁻¹ on the 2 cm⁻¹ grid) and a little extra noise. Because the response changes
    across the axis, the shift does not act on a model's predictions as a mere slope and bias:
    a correction of the spectra (PDS/DS) is needed, not only of the predictions (SBC).

    Attributes
    ----------
    gain : float, default=0.6
        Throughput of the target probe relative to the source at the axis centre.
    gain_slope : float, default=-0.25
        Relative gain change from the centre to either end of the axis (linear term).
    gain_curvature : float, default=-0.10
        Relative quadratic gain term.
    offset : float, default=200.0
        Additive baseline at the axis centre, in counts (stray light, dark current).
    offset_slope : float, default=200.0
        Change of the additive baseline from the centre to either end, in counts.
    axis_drift : float, default=1.0
        Axis calibration drift in cm⁻¹: target channel ν reads the source spectrum at
        ν + axis_drift (applied by cubic-spline interpolation; values beyond the axis take the
        end value).
    noise_sd : float, default=3.0
        Standard deviation of the extra (white) noise, in counts.
    broadening : float, default=0.0
        Extra band width of the target probe (a wider slit or another spectrograph): FWHM in
        cm⁻¹ of a Gaussian the spectrum is convolved with (0: none; the axis must then be
        evenly spaced). Applied first, to the spectrum as the source probe reads it.
    """

    gain: float = 0.6
    gain_slope: float = -0.25
    gain_curvature: float = -0.10
    offset: float = 200.0
    offset_slope: float = 200.0
    axis_drift: float = 1.0
    noise_sd: float = 3.0
    broadening: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"ProbeShift.{f.name} must be finite, got {value}")
        # g(u) must stay positive on [-1, 1]: check both ends and the parabola's vertex.
        u = [-1.0, 1.0]
        if self.gain_curvature != 0.0:
            vertex = -self.gain_slope / (2.0 * self.gain_curvature)
            if -1.0 < vertex < 1.0:
                u.append(vertex)
        shape = min(1.0 + self.gain_slope * v + self.gain_curvature * v * v for v in u)
        if self.gain <= 0 or shape <= 0:
            raise ValueError(
                f"ProbeShift gain must be positive across the axis, got gain={self.gain}, "
                f"gain_slope={self.gain_slope}, gain_curvature={self.gain_curvature}"
            )
        if self.noise_sd < 0:
            raise ValueError(f"ProbeShift.noise_sd must be >= 0, got {self.noise_sd}")
        if self.broadening < 0:
            raise ValueError(f"ProbeShift.broadening must be >= 0, got {self.broadening}")

    def describe(self) -> str:
        """One line with every parameter, for metadata and reports (broadening when set)."""
        return ", ".join(
            f"{f.name}={getattr(self, f.name):g}"
            for f in fields(self)
            if f.name != "broadening" or self.broadening
        )


NO_SHIFT: Final = ProbeShift(
    gain=1.0,
    gain_slope=0.0,
    gain_curvature=0.0,
    offset=0.0,
    offset_slope=0.0,
    axis_drift=0.0,
    noise_sd=0.0,
)


def apply_probe_shift(
    X: ArrayLike, axis: ArrayLike, shift: ProbeShift, *, rng: np.random.Generator
) -> FloatArray:
    """Return the spectra ``X`` as the target probe of ``shift`` would read them.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_channels)
        Spectra on the source probe (counts).
    axis : array-like of shape (n_channels,)
        Raman shift in cm⁻¹, strictly increasing.
    shift : ProbeShift
    rng : numpy.random.Generator
        Source of the extra noise (not drawn from when ``shift.noise_sd == 0``).

    Returns
    -------
    ndarray of shape (n_samples, n_channels)
        A new array; ``NO_SHIFT`` returns an exact copy of ``X``.
    """
    Xa = as_spectra(X, "X")
    ax = as_axis(axis, Xa.shape[1])
    out = Xa.copy()
    if shift.broadening > 0.0:
        steps = np.diff(ax)
        if ax.shape[0] < 2 or not np.allclose(steps, steps[0], rtol=1e-6):
            raise ValueError("band broadening needs an evenly spaced axis")
        sigma = shift.broadening / (2.0 * math.sqrt(2.0 * math.log(2.0))) / float(steps[0])
        out = np.ascontiguousarray(gaussian_filter1d(out, sigma, axis=1, mode="nearest"))
    if shift.axis_drift != 0.0:
        if ax.shape[0] < 2:
            raise ValueError("an axis drift needs at least 2 channels")
        where = np.clip(ax + shift.axis_drift, ax[0], ax[-1])
        out = np.ascontiguousarray(CubicSpline(ax, out, axis=1)(where))
    u = _unit_position(ax)
    gain = shift.gain * (1.0 + shift.gain_slope * u + shift.gain_curvature * u**2)
    if not np.all(gain == 1.0):
        out *= gain
    baseline = shift.offset + shift.offset_slope * u
    if np.any(baseline != 0.0):
        out += baseline
    if shift.noise_sd > 0:
        out += rng.normal(0.0, shift.noise_sd, size=out.shape)
    return out


def remeasure(
    batch: SimulatedBatch, shift: ProbeShift, *, seed: int, probe: str = "plant-raman-2000L"
) -> SimulatedBatch:
    """Measure the same samples again, on the probe that ``shift`` describes.

    The noise-free ``batch.signal`` goes through the target probe (axis drift, gain, baseline,
    extra noise: :func:`apply_probe_shift`) and is read with detector noise of its own,
    independent of the source measurement's. Process states, ids and ``signal`` are unchanged,
    so the result pairs with ``batch`` sample by sample.

    Parameters
    ----------
    batch : SimulatedBatch
    shift : ProbeShift
    seed : int
        Seed of this measurement's noise.
    probe : str, default="plant-raman-2000L"
        Name of the target probe, recorded on the result.

    Returns
    -------
    SimulatedBatch
        A copy of ``batch`` with ``X`` and ``probe`` replaced.
    """
    rng = _batch_rng(seed, f"{batch.batch_id}@{probe}")
    optical = apply_probe_shift(batch.signal, batch.axis, shift, rng=rng)
    X = optical + _detector_noise(optical, rng)
    return replace(batch, X=np.ascontiguousarray(X), probe=probe)


def with_foreign_band(
    batch: SimulatedBatch,
    *,
    centre_cm1: float = 883.0,
    fwhm_cm1: float = 20.0,
    height: float = 200.0,
) -> SimulatedBatch:
    """The same samples from another process: one Raman band the calibrated process lacks.

    The band (pseudo-Voigt, Lorentzian fraction 0.6) is added to the noise-free ``signal`` and
    to the measured ``X`` alike, so :func:`remeasure` measures it on another probe too. The
    default is ethanol's C–C–O stretch (883 cm⁻¹) at 200 counts — twice the glucose band at
    1125 cm⁻¹ at the 6 g/L set-point: a medium or a cleaning residue the model never saw.

    Parameters
    ----------
    batch : SimulatedBatch
    centre_cm1, fwhm_cm1 : float
        Position and full width at half maximum of the band, cm⁻¹.
    height : float
        Peak height in counts (> 0).

    Returns
    -------
    SimulatedBatch
        A copy of ``batch`` with ``signal`` and ``X`` changed; states and ids unchanged.
    """
    if not (math.isfinite(height) and height > 0 and math.isfinite(fwhm_cm1) and fwhm_cm1 > 0):
        raise ValueError(f"need height > 0 and fwhm_cm1 > 0, got {height} and {fwhm_cm1}")
    band = height * _pseudo_voigt(batch.axis, [(float(centre_cm1), float(fwhm_cm1), 0.6, 1.0)])
    return replace(
        batch,
        X=np.ascontiguousarray(batch.X + band[:, 0]),
        signal=np.ascontiguousarray(batch.signal + band[:, 0]),
    )


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def spectral_columns(axis: ArrayLike) -> list[str]:
    """Column names ``wn_<shift>`` of an axis: ``wn_400`` for 400.0, ``wn_400.5`` for 400.5."""
    ax = as_axis(axis)
    return [f"wn_{np.format_float_positional(v, trim='-')}" for v in ax]


def to_arrow_table(
    batches: SimulatedBatch | Sequence[SimulatedBatch],
    *,
    probe: str | None = None,
    scale: str,
    metadata: Mapping[str, str] | None = None,
) -> pa.Table:
    """Lay one or more batches out as the registry's dataset table.

    Columns: ``sample_id`` (``<batch>-H<hour>``), ``batch_id``, ``hour`` (int64),
    ``titer_g_L``, ``glucose_g_L``, ``lactate_g_L``, ``vcd`` (1e6 cells/mL) and one float64
    column ``wn_<shift>`` per channel, rows in batch then hour order.

    Parameters
    ----------
    batches : SimulatedBatch or sequence of SimulatedBatch
        All on the same axis.
    probe : str, optional
        Measurement domain to record, e.g. ``"dev-raman-ambr250"``; defaults to the batches'
        ``probe`` (which must then be the same for all).
    scale : str
        Bioreactor scale, e.g. ``"250 mL Ambr"`` or ``"2000 L"``.
    metadata : mapping of str to str, optional
        Extra schema metadata (e.g. the probe shift's description).

    Returns
    -------
    pyarrow.Table
        Schema metadata: ``batch`` (comma-separated ids), ``probe``, ``scale``, ``simulator``,
        ``simulator_version``, ``seed``, ``units`` and the extra entries.
    """
    items = [batches] if isinstance(batches, SimulatedBatch) else list(batches)
    if not items:
        raise ValueError("to_arrow_table needs at least one batch")
    axis = items[0].axis
    for b in items[1:]:
        if b.axis.shape != axis.shape or not np.array_equal(b.axis, axis):
            raise ValueError(f"batch {b.batch_id} is on a different axis than {items[0].batch_id}")
    if probe is None:
        probes = sorted({b.probe for b in items})
        if len(probes) != 1:
            raise ValueError(f"batches were measured on several probes {probes}; pass probe=")
        probe = probes[0]
    X = np.vstack([b.X for b in items])
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array([s for b in items for s in b.sample_ids], pa.string()),
        "batch_id": pa.array([b.batch_id for b in items for _ in range(b.n_samples)], pa.string()),
        "hour": pa.array(np.concatenate([b.hour for b in items]).astype(np.int64)),
    }
    for name in ("titer_g_L", "glucose_g_L", "lactate_g_L", "vcd"):
        columns[name] = pa.array(np.concatenate([getattr(b, name) for b in items]))
    for j, name in enumerate(spectral_columns(axis)):
        columns[name] = pa.array(np.ascontiguousarray(X[:, j]))
    meta = {
        "batch": ",".join(b.batch_id for b in items),
        "probe": probe,
        "scale": scale,
        "simulator": "app.core.simulate",
        "simulator_version": SIMULATOR_VERSION,
        "seed": ",".join(sorted({str(b.seed) for b in items})),
        "units": "titer/glucose/lactate g/L; vcd 1e6 cells/mL; hour h; wn_* counts at cm-1",
        **dict(metadata or {}),
    }
    return pa.table(columns).replace_schema_metadata(meta)


def write_parquet(path: str | PathLike[str], table: pa.Table) -> None:
    """Write ``table`` (with its schema metadata) to a Parquet file."""
    pq.write_table(table, path)
