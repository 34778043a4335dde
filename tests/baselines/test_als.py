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


@pytest.mark.parametrize("spoil, message", [
    (lambda f: (f / "scorer.safetensors").write_bytes(__import__("pickle").dumps([1])),
     "a pickle"),
    (lambda f: (f / "scorer.json").write_text("{"), "valid JSON"),
    (lambda f: (f / "scorer.json").write_text('{"format": 1, "class": "ALS", "params": '
                                              '{"no_such": 1}, "num_users": 10, '
                                              '"num_items": 10}'), "parameters of ALS"),
    (lambda f: (f / "scorer.json").write_text('{"format": 1, "class": "ALS", "params": {}, '
                                              '"num_users": 11, "num_items": 10}'),
     r"tensor 'user_factors': shape \[11, 4\]"),
    (lambda f: (f / "scorer.json").unlink(), "no saved scorer|there is none"),
])
def test_load_refuses_hostile_files_with_a_data_error(tmp_path, spoil, message):
    from hybridrec.baselines import BaseScorer
    from hybridrec.data.errors import DataError

    board = checkerboard(10)
    ALS(factors=4, iterations=2, num_threads=1, device="cpu").fit(
        board.train, board.n, board.n).save(tmp_path)
    spoil(tmp_path)
    with pytest.raises(DataError, match=message):
        BaseScorer.load(tmp_path)


def test_a_width_the_parameters_fix_must_match_before_allocating(tmp_path):
    """A BPR-MF builds its embeddings from ``embedding_dim``: a saved file claiming a huge
    one is refused from the header, not by allocating it."""
    import json

    from hybridrec.baselines import BPRMF
    from hybridrec.data.errors import DataError

    board = checkerboard(10)
    BPRMF(embedding_dim=4, epochs=1, device="cpu").fit(board.train, board.n, board.n).save(
        tmp_path)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    meta["params"]["embedding_dim"] = 10**9
    (tmp_path / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"shape \[10, 1000000000\]"):
        BPRMF.load(tmp_path)
