import numpy as np
import pytest

from app.core.spectra import as_axis, as_spectra, check_same_axis


def test_as_spectra_makes_c_contiguous_float64() -> None:
    X = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    out = as_spectra(X)
    assert out.dtype == np.float64
    assert out.flags["C_CONTIGUOUS"]


def test_as_spectra_names_the_first_non_finite_cell() -> None:
    X = np.ones((3, 4))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="sample 2, channel 1"):
        as_spectra(X)


def test_as_spectra_rejects_one_dimensional_input() -> None:
    with pytest.raises(ValueError, match=r"2-D .* shape \(4,\)"):
        as_spectra(np.ones(4))


def test_as_axis_rejects_a_decreasing_axis_naming_the_channel() -> None:
    with pytest.raises(ValueError, match="channel 2"):
        as_axis([400.0, 402.0, 401.0])


def test_check_same_axis_names_first_mismatch() -> None:
    with pytest.raises(ValueError, match="channel 1: got 403, expected 402"):
        check_same_axis([400.0, 402.0, 404.0], [400.0, 403.0, 404.0])
