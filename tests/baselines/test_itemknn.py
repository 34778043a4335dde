import numpy as np
import pytest
import torch

from hybridrec.baselines import ItemKNN
from hybridrec.data.dataset import Interactions
from hybridrec.testing import ScorerContract, checkerboard


class TestItemKNN(ScorerContract):
    def make_scorer(self, device):
        return ItemKNN(k=5, shrink=1.0, device=device)


def _dense_reference(users, items, num_users, num_items, k, shrink):
    x = np.zeros((num_users, num_items))
    x[users, items] = 1
    norms = np.sqrt(x.sum(0))
    sim = (x.T @ x) / (norms[:, None] * norms[None, :] + shrink + 1e-12)
    np.fill_diagonal(sim, 0)
    kept = np.zeros_like(sim)
    for j in range(num_items):  # k most similar items per target column
        top = np.argsort(-sim[:, j], kind="stable")[:k]
        kept[top, j] = sim[top, j]
    kept[kept < 0] = 0
    return x @ kept


@pytest.mark.parametrize("block_size", [3, 2048])
def test_matches_dense_reference(block_size):
    gen = np.random.default_rng(0)
    mask = gen.random((30, 12)) < 0.3
    users, items = np.nonzero(mask)
    model = ItemKNN(k=4, shrink=2.0, block_size=block_size, device="cpu")
    model.fit(Interactions(users, items), 30, 12)
    expected = _dense_reference(users, items, 30, 12, 4, 2.0)
    torch.testing.assert_close(model.score(torch.arange(30)).double(),
                               torch.from_numpy(expected), atol=1e-5, rtol=1e-5)


def test_bad_parameters():
    with pytest.raises(ValueError, match="ItemKNN: need k >= 1"):
        ItemKNN(k=0).fit(Interactions([0], [0]), 1, 2)


def test_load_refuses_indices_out_of_range(tmp_path):
    from safetensors.torch import save_file

    from hybridrec.data.errors import DataError
    from hybridrec.tensor_files import read_tensors

    board = checkerboard(10)
    ItemKNN(k=3).fit(board.train, board.n, board.n).save(tmp_path)
    tensors, _ = read_tensors(tmp_path / "scorer.safetensors")
    tensors["history_indices"][0] = 99
    save_file(tensors, str(tmp_path / "scorer.safetensors"))
    with pytest.raises(DataError, match="history_indices"):
        ItemKNN.load(tmp_path)
