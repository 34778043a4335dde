import numpy as np
import pytest
import torch

from hybridrec.baselines import MostPopular, NotFittedError
from hybridrec.data.dataset import Interactions
from hybridrec.testing import ScorerContract


class TestMostPopular(ScorerContract):
    personalised = False

    def make_scorer(self, device):
        return MostPopular(device=device)


def test_scores_are_training_counts():
    train = Interactions([0, 1, 1, 2], [2, 2, 0, 2])
    pop = MostPopular(device="cpu").fit(train, 3, 4)
    assert pop.score(torch.tensor([1])).tolist() == [[1.0, 0.0, 3.0, 0.0]]


def test_score_before_fit():
    with pytest.raises(NotFittedError, match="MostPopular.score: call fit"):
        MostPopular().score(torch.tensor([0]))


def test_get_params_and_repr():
    assert MostPopular(device="cpu").get_params() == {"device": "cpu"}
    assert repr(MostPopular()) == "MostPopular(device=None)"
    with pytest.raises(ValueError, match="unknown parameter 'k'"):
        MostPopular().set_params(k=3)


def test_returned_scores_are_not_shared_state():
    pop = MostPopular(device="cpu").fit(Interactions([0], [1]), 2, 3)
    pop.score(torch.tensor([0])).fill_(7.0)
    assert pop.score(torch.tensor([0])).tolist() == [[0.0, 1.0, 0.0]]
    assert np.isclose(pop.item_popularity_.sum().item(), 1.0)
