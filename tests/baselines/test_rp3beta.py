import numpy as np
import pytest
import torch

from hybridrec.baselines import BaseScorer, RP3beta
from hybridrec.data.dataset import Interactions
from hybridrec.data.errors import DataError
from hybridrec.testing import (
    ScorerContract,
    checkerboard,
    spoil_saved_meta,
    spoil_saved_tensor,
)


class TestRP3beta(ScorerContract):
    def make_scorer(self, device):
        # k covers the 9 same-parity neighbours, whose weights tie.
        return RP3beta(alpha=0.75, beta=0.5, k=10, device=device)


def _weights(model):
    n = model.num_items_
    dense = torch.zeros(n, n, dtype=torch.float64)
    dense[model.similarity_index_[0], model.similarity_index_[1]] = (
        model.similarity_value_.double())
    return dense.numpy()


def test_three_items_by_hand():
    """X = [[1,1,0],[0,1,1],[1,1,1]], alpha = beta = 1. User degrees (2, 2, 3), item
    popularity (2, 3, 2); P_iu P_ui has rows (5/12, 5/12, 1/6), (5/18, 4/9, 5/18),
    (1/6, 5/12, 5/12); zero the diagonal and divide column j by pop(j)."""
    users, items = np.nonzero(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]]))
    model = RP3beta(alpha=1.0, beta=1.0, k=2, device="cpu").fit(Interactions(users, items), 3, 3)
    expected = np.array([[0, 5 / 36, 1 / 12], [5 / 36, 0, 5 / 36], [1 / 12, 5 / 36, 0]])
    np.testing.assert_allclose(_weights(model), expected, atol=1e-7)
    # s(u, .) = x_u W: user 0 holds items 0 and 1.
    np.testing.assert_allclose(model.score(torch.tensor([0])).numpy(),
                               [[5 / 36, 5 / 36, 1 / 12 + 5 / 36]], atol=1e-7)
    # k = 1 keeps each row's largest weight: row 0 keeps 5/36 (item 1), row 2 keeps 5/36.
    top1 = RP3beta(alpha=1.0, beta=1.0, k=1, device="cpu").fit(Interactions(users, items), 3, 3)
    kept = _weights(top1)
    assert (kept > 0).sum(1).tolist() == [1, 1, 1]
    np.testing.assert_allclose(kept[[0, 2], [1, 1]], [5 / 36, 5 / 36], atol=1e-7)


def _dense_reference(x, alpha, beta):
    """W before the top-k cut, written out from the definition."""
    p_ui = (x / np.maximum(x.sum(1, keepdims=True), 1)) ** alpha
    p_iu = (x.T / np.maximum(x.sum(0)[:, None], 1)) ** alpha
    pop = x.sum(0)
    penalty = np.where(pop > 0, np.maximum(pop, 1) ** -beta, 0.0)
    w = (p_iu @ p_ui) * penalty[None, :]
    np.fill_diagonal(w, 0)
    return w


@pytest.fixture(scope="module")
def random_matrix():
    gen = np.random.default_rng(0)
    x = (gen.random((30, 12)) < 0.3).astype(float)
    x[:, 11] = 0  # An item nobody holds.
    return x


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.5, 0.25), (1.5, 0.8)])
@pytest.mark.parametrize("block_size", [1, 5, 2048])
def test_matches_dense_reference_without_the_cut(random_matrix, alpha, beta, block_size):
    x = random_matrix
    users, items = np.nonzero(x)
    model = RP3beta(alpha=alpha, beta=beta, k=100, block_size=block_size, device="cpu")
    model.fit(Interactions(users, items), 30, 12)
    expected = _dense_reference(x, alpha, beta)
    np.testing.assert_allclose(_weights(model), expected, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(model.score(torch.arange(30)).double().numpy(), x @ expected,
                               atol=1e-5, rtol=1e-5)


def test_alpha_one_beta_zero_is_the_plain_random_walk(random_matrix):
    """With alpha = 1 and beta = 0 each row of P_iu P_ui is a probability distribution: what
    the walk does not return to the item itself is spread over the others."""
    x = random_matrix
    users, items = np.nonzero(x)
    model = RP3beta(alpha=1.0, beta=0.0, k=100, device="cpu").fit(Interactions(users, items),
                                                                    30, 12)
    p_ui = x / np.maximum(x.sum(1, keepdims=True), 1)
    p_iu = x.T / np.maximum(x.sum(0)[:, None], 1)
    back = np.diag(p_iu @ p_ui)
    np.testing.assert_allclose(_weights(model)[:11].sum(1) + back[:11], 1.0, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("block_size", [4, 2048])
def test_keeps_the_k_largest_of_each_row(random_matrix, k, block_size):
    x = random_matrix
    users, items = np.nonzero(x)
    model = RP3beta(alpha=0.75, beta=0.5, k=k, block_size=block_size, device="cpu")
    model.fit(Interactions(users, items), 30, 12)
    kept, full = _weights(model), _dense_reference(x, 0.75, 0.5)
    for i in range(12):
        # Compare values, not positions: equal weights may tie for the last place.
        expected = np.sort(full[i])[::-1][:k]
        got = np.sort(kept[i])[::-1]
        np.testing.assert_allclose(got[got > 0], expected[expected > 0], atol=1e-6, rtol=1e-5)
        nonzero = kept[i] > 0
        np.testing.assert_allclose(kept[i, nonzero], full[i, nonzero], atol=1e-6, rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    board = checkerboard(10)
    model = RP3beta(alpha=0.5, beta=0.25, k=3, device="cpu").fit(board.train, board.n, board.n)
    loaded = BaseScorer.load(model.save(tmp_path))
    assert isinstance(loaded, RP3beta)
    assert (loaded.alpha, loaded.beta, loaded.k) == (0.5, 0.25, 3)
    assert torch.equal(loaded.score(torch.arange(10)), model.score(torch.arange(10)))


@pytest.mark.parametrize("params, name", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": -1.0}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"beta": -0.1}, "beta"), ({"beta": "0.5"}, "beta"),
    ({"k": 0}, "k"), ({"k": 2.5}, "k"), ({"block_size": 0}, "block_size"),
])
def test_bad_arguments_name_themselves(params, name):
    with pytest.raises(ValueError, match=rf"RP3beta: need .*{name} >.*got {name}="):
        RP3beta(**params).fit(Interactions([0], [0]), 1, 2)


@pytest.mark.parametrize("spoil, message", [
    (spoil_saved_tensor("similarity_index", 10), r"similarity_index.*item indices in \[0, 10\)"),
    (spoil_saved_tensor("similarity_index", -1), r"similarity_index.*item indices in \[0, 10\)"),
    (spoil_saved_tensor("history_indices", 99), r"history_indices.*item indices in \[0, 10\)"),
    (spoil_saved_tensor("history_indptr", 5), "history_indptr.*rising row pointers"),
    (spoil_saved_tensor("similarity_value", float("inf")), "similarity_value.*finite"),
    (spoil_saved_meta("num_users", 11), "history_indptr.*12 rising row pointers"),
    (spoil_saved_meta("class", "EASE"), "holds a 'EASE', expected a RP3beta"),
])
def test_load_refuses_a_spoilt_state(tmp_path, spoil, message):
    board = checkerboard(10)
    RP3beta(k=3, device="cpu").fit(board.train, board.n, board.n).save(tmp_path)
    spoil(tmp_path)
    with pytest.raises(DataError, match=message):
        RP3beta.load(tmp_path)
