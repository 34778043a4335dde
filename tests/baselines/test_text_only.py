import pytest
import torch

from hybridrec.baselines import TextOnly
from hybridrec.testing import ScorerContract, checkerboard


class TestTextOnlyHistory(ScorerContract):
    def make_scorer(self, device):
        return TextOnly(user_mode="history", device=device)

    def fit(self, scorer, board):
        return scorer.fit(board.train, board.n, board.n, item_embeddings=board.item_embeddings)


class TestTextOnlyBoth(TestTextOnlyHistory):
    def make_scorer(self, device):
        return TextOnly(user_mode="both", device=device)

    def fit(self, scorer, board):
        return scorer.fit(board.train, board.n, board.n, item_embeddings=board.item_embeddings,
                          user_embeddings=board.user_embeddings)


def test_scores_are_cosines_to_the_history_mean():
    board = checkerboard(8)
    model = TextOnly(center=False, device="cpu").fit(board.train, 8, 8,
                                                      item_embeddings=board.item_embeddings)
    items = torch.nn.functional.normalize(board.item_embeddings, dim=1)
    history = items[[2, 4, 6]].mean(0)  # user 0's training items
    expected = torch.nn.functional.cosine_similarity(history[None], items)
    torch.testing.assert_close(model.score(torch.tensor([0]))[0], expected)


def test_centering_removes_the_common_direction():
    board = checkerboard(8)
    shifted = board.item_embeddings + 5.0  # a big shared component
    plain = TextOnly(center=False, device="cpu").fit(board.train, 8, 8, item_embeddings=shifted)
    centred = TextOnly(center=True, device="cpu").fit(board.train, 8, 8, item_embeddings=shifted)
    reference = TextOnly(center=True, device="cpu").fit(board.train, 8, 8,
                                                         item_embeddings=board.item_embeddings)
    users = torch.arange(8)
    torch.testing.assert_close(centred.score(users), reference.score(users))
    assert plain.score(users).min() > 0.9  # everything looks alike without centring


def test_user_text_needs_user_embeddings():
    board = checkerboard(8)
    with pytest.raises(ValueError, match="needs user_embeddings"):
        TextOnly(user_mode="user_text").fit(board.train, 8, 8,
                                            item_embeddings=board.item_embeddings)
    with pytest.raises(ValueError, match="expected \\[8, D\\]"):
        TextOnly().fit(board.train, 8, 8, item_embeddings=torch.zeros(7, 3))


def test_user_mode_checked_at_construction():
    with pytest.raises(ValueError, match="user_mode must be one of"):
        TextOnly(user_mode="titles")
