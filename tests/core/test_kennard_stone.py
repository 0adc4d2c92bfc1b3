import numpy as np
import pytest

from app.core.kennard_stone import kennard_stone


def test_kennard_stone_matches_hand_computed_order() -> None:
    # 1-D points 0, 1, 3, 7, 10: the pair (0, 10) is farthest; then 3 and 7 are both 3 away
    # from the set (tie -> lower row, 3); then 7 (3 from 10), then 1.
    X = np.array([[0.0], [1.0], [3.0], [7.0], [10.0]])
    assert kennard_stone(X, 5).tolist() == [0, 4, 2, 3, 1]


def test_kennard_stone_two_dimensional_square_with_centre() -> None:
    # Corners of a 2x2 square and its centre. Diagonal (0,0)-(2,2) is the first farthest pair
    # in row-major order; then (2,0) and (0,2) are equally far (tie -> lower row); centre last.
    X = np.array([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    assert kennard_stone(X, 5).tolist() == [0, 1, 3, 4, 2]


def test_kennard_stone_returns_k_distinct_rows() -> None:
    X = np.random.default_rng(0).normal(size=(50, 20))
    idx = kennard_stone(X, 12)
    assert idx.shape == (12,)
    assert len(set(idx.tolist())) == 12


def test_kennard_stone_is_deterministic_and_prefix_consistent() -> None:
    X = np.random.default_rng(1).normal(size=(40, 8))
    assert kennard_stone(X, 10).tolist() == kennard_stone(X, 20)[:10].tolist()


@pytest.mark.parametrize("k", [0, 1, 6])
def test_kennard_stone_rejects_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match="2 <= k <= n_samples"):
        kennard_stone(np.eye(5), k)
