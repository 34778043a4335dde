import numpy as np
import pytest
import torch

from hybridrec.baselines import EASE, BaseScorer
from hybridrec.baselines.ease import MAX_ITEMS
from hybridrec.data.dataset import Interactions
from hybridrec.data.errors import DataError
from hybridrec.testing import (
    ScorerContract,
    checkerboard,
    spoil_saved_meta,
    spoil_saved_tensor,
)


class TestEASE(ScorerContract):
    def make_scorer(self, device):
        return EASE(l2=1.0, device=device)


def test_three_items_by_hand():
    """X = [[1,1,0],[0,1,1],[1,1,1]], l2 = 1: X^T X + I = [[3,2,1],[2,4,2],[1,2,3]], whose
    inverse is P = [[8,-4,0],[-4,8,-4],[0,-4,8]] / 16, so B_ij = -P_ij / P_jj."""
    users, items = np.nonzero(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]]))
    model = EASE(l2=1.0, device="cpu").fit(Interactions(users, items), 3, 3)
    expected = torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    torch.testing.assert_close(model.item_weights_, expected, atol=1e-6, rtol=0)
    # s(u, .) = x_u B: user 0 holds items 0 and 1.
    torch.testing.assert_close(model.score(torch.tensor([0, 2])),
                               torch.tensor([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5]]),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("l2", [0.5, 20.0])
def test_each_column_is_the_ridge_regression_on_the_other_items(l2):
    """The closed form against its definition: column j of B (row j fixed to 0) is the ridge
    regression of item j's column of X on the other items' columns."""
    gen = np.random.default_rng(0)
    x = (gen.random((40, 9)) < 0.35).astype(float)
    users, items = np.nonzero(x)
    model = EASE(l2=l2, device="cpu").fit(Interactions(users, items), 40, 9)
    weights = model.item_weights_.double().numpy()
    assert np.all(np.diag(weights) == 0)
    for j in range(9):
        others = np.delete(np.arange(9), j)
        a = x[:, others]
        b = np.linalg.solve(a.T @ a + l2 * np.eye(8), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.score(torch.arange(40)).double(),
                               torch.from_numpy(x @ weights), atol=1e-5, rtol=1e-5)


def test_repeated_pairs_count_once():
    once = EASE(l2=2.0, device="cpu").fit(Interactions([0, 0, 1], [0, 1, 1]), 2, 3)
    twice = EASE(l2=2.0, device="cpu").fit(Interactions([0, 0, 0, 1], [0, 1, 1, 1]), 2, 3)
    torch.testing.assert_close(once.item_weights_, twice.item_weights_)


def test_save_load_round_trip(tmp_path):
    board = checkerboard(10)
    model = EASE(l2=3.0, device="cpu").fit(board.train, board.n, board.n)
    loaded = BaseScorer.load(model.save(tmp_path))
    assert isinstance(loaded, EASE) and loaded.l2 == 3.0
    assert torch.equal(loaded.item_weights_, model.item_weights_)
    assert torch.equal(loaded.score(torch.arange(10)), model.score(torch.arange(10)))


@pytest.mark.parametrize("l2", [0, 0.0, -5.0, float("nan"), "250", True])
def test_bad_l2(l2):
    with pytest.raises(ValueError, match=r"EASE: need l2 > 0, got l2="):
        EASE(l2=l2).fit(Interactions([0], [0]), 1, 2)


def test_a_catalogue_above_the_cap_is_refused_before_allocating():
    with pytest.raises(ValueError, match=rf"{MAX_ITEMS + 1} items is above the cap of "
                                         rf"MAX_ITEMS = {MAX_ITEMS}"):
        EASE(device="cpu").fit(Interactions([0], [0]), 1, MAX_ITEMS + 1)
    assert MAX_ITEMS == 30_000  # The documented cap.


@pytest.mark.parametrize("spoil, message", [
    (spoil_saved_tensor("history_indices", 99), r"history_indices.*item indices in \[0, 10\)"),
    (spoil_saved_tensor("history_indptr", 5), "history_indptr.*rising row pointers"),
    (spoil_saved_tensor("item_weights", float("nan")), "item_weights.*finite"),
    (spoil_saved_meta("num_items", 11), r"item_weights.*shape \[11, 11\]"),
    (spoil_saved_meta("params", {"l2": 1.0, "no_such": 1}), "parameters of EASE"),
])
def test_load_refuses_a_spoilt_state(tmp_path, spoil, message):
    board = checkerboard(10)
    EASE(l2=1.0, device="cpu").fit(board.train, board.n, board.n).save(tmp_path)
    spoil(tmp_path)
    with pytest.raises(DataError, match=message):
        EASE.load(tmp_path)
