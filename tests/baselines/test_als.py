import pytest
import torch

from hybridrec.baselines import ALS
from hybridrec.testing import ScorerContract, checkerboard


class TestALS(ScorerContract):
    def make_scorer(self, device):
        return ALS(factors=8, regularization=0.01, alpha=1.0, iterations=10, random_state=23,
                   num_threads=1, device=device)


def test_factors_have_the_requested_size():
    board = checkerboard(10)
    model = ALS(factors=4, iterations=2, num_threads=1, device="cpu")
    model.fit(board.train, board.n, board.n)
    assert model.user_factors_.shape == (10, 4)
    assert model.item_factors_.shape == (10, 4)
    assert model.user_factors_.dtype == torch.float32


def test_load_rejects_another_class(tmp_path):
    from hybridrec.baselines import ItemKNN

    board = checkerboard(10)
    ALS(factors=4, iterations=2, num_threads=1, device="cpu").fit(
        board.train, board.n, board.n).save(tmp_path)
    with pytest.raises(ValueError, match="holds a 'ALS', expected a ItemKNN"):
        ItemKNN.load(tmp_path)
