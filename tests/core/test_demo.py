import io
from dataclasses import replace

import numpy as np
import pytest

from app.core import demo
from app.core.demo import DemoResult, format_report, main, run_demo

HEADER = (
    "Calibration transfer demo (illustrative shift): 336 spectra x 701 channels, "
    "24 Kennard-Stone standards"
)


@pytest.fixture(scope="module")
def result() -> DemoResult:
    return run_demo(seed=2026, n_standards=24)


def test_demo_sizes_and_held_out_design(result: DemoResult) -> None:
    assert (result.n_spectra, result.n_channels, result.n_standards) == (336, 701, 24)
    assert result.held_out_batch == "BATCH-2026-001"
    assert result.held_out_batch not in result.training_batches
    assert len(set(result.standards.tolist())) == 24
    assert result.naive["n"] == result.corrected["n"] == 336 - 24
    assert result.source["n"] == 336


def test_source_model_is_accurate_in_domain(result: DemoResult) -> None:
    assert result.source["r2"] >= 0.99


def test_naive_transfer_fails(result: DemoResult) -> None:
    assert result.naive["r2"] < 0.0


def test_corrected_transfer_recovers(result: DemoResult) -> None:
    assert result.corrected["r2"] >= 0.98
    assert result.corrected["rmse"] < result.naive["rmse"]
    assert result.improved


def test_default_shift_needs_a_spectral_correction(result: DemoResult) -> None:
    # The plant probe's response varies across the axis, so a slope/bias correction of the
    # predictions is not enough: CV over the standards gives PDS and DS nearly all the weight.
    assert result.method in {"pds", "ds", "weighted"}
    spectral = sum(w["weight"] for w in result.weights if w["method"] in {"pds", "ds"})
    assert spectral > 0.9, result.weights
    assert np.isfinite(result.rmsecv)
    assert result.scheme == (
        "12-fold venetian-blinds (standard i in fold i mod 12) over 24 standards"
    )


def test_report_has_the_four_lines(result: DemoResult) -> None:
    lines = format_report(result).splitlines()
    assert len(lines) == 4
    assert lines[0] == HEADER
    assert lines[1].startswith("source (in-domain, held out) : R2=")
    assert lines[2].startswith("naive transfer               : R2=")
    assert lines[3].startswith(f"{result.method.upper()}-corrected (held out)")
    assert "chosen by 12-fold venetian-blinds (standard i in fold i mod 12) CV over 24" in lines[3]
    assert f"R2={result.corrected['r2']:.3f}" in lines[3]


def test_main_prints_the_report_and_succeeds(
    result: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "run_demo", lambda seed: result)  # no second run
    out = io.StringIO()
    assert main(seed=2026, out=out) == 0
    assert out.getvalue().splitlines()[0] == HEADER


def test_main_fails_and_says_why_when_transfer_does_not_help(
    result: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    worse = result.corrected.copy()
    worse["rmse"] = result.naive["rmse"] + 1.0
    monkeypatch.setattr(demo, "run_demo", lambda seed: replace(result, corrected=worse))
    out = io.StringIO()
    assert main(seed=2026, out=out) == 1
    assert "did not reduce the RMSE" in out.getvalue()


def test_run_demo_rejects_impossible_standard_counts() -> None:
    with pytest.raises(ValueError, match="n_standards"):
        run_demo(n_standards=2)
