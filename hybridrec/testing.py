"""Test helpers shipped with the package: a checkerboard data set and the scorer contract.

Every scorer's tests inherit :class:`ScorerContract` (after ``implicit``'s
``RecommenderBaseTestMixin`` and LensKit's ``ScorerTests``)::

    class TestMostPopular(ScorerContract):
        personalised = False

        def make_scorer(self, device):
            return MostPopular(device=device)

Needs ``pytest`` (a development dependency); import this module from tests only.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from hybridrec.baselines.base import BaseScorer
from hybridrec.data.dataset import Interactions
from hybridrec.data.split import Split
from hybridrec.evaluation import evaluate, recommend_topk
from hybridrec.scoring import Scorer, UserItems

#: ``python -m hybridrec.train`` flags for the example data set in ``kg/examples``.
EXAMPLE_DATA = ["--interactions", "kg/examples/interactions.csv",
                "--items", "kg/examples/items.csv", "--users", "kg/examples/users.csv",
                "--kg", "kg/examples/graph.ttl", "--item-iri", "iri",
                "--item-text", "title,year", "--item-categorical", "genre",
                "--user-text", "age", "--user-categorical", "gender,occupation"]
#: Flags that train it in seconds (tiny model, few epochs, no baseline table).
EXAMPLE_SMALL = ["--epochs", "3", "--quiet", "--no-baselines", "--ratios", "0.6,0.2,0.2",
                 "--set", "train.valid_metric=ndcg@5", "--set", "train.batch_size=16",
                 "--set", "train.num_negatives=8", "--set", "model.hidden_channels=16"]
#: A film the example data lacks, by a director it has: what add_items tests add.
MANN = "http://example.org/kg/michael_mann"
THIEF = {"item_id": "m14", "title": "Thief", "year": "1981", "genre": "Crime|Thriller",
         "iri": "http://example.org/kg/thief"}


def random_feature_graph(dataset: Any, seed: int = 0) -> tuple[Split, Any]:
    """The example data set's 60:20:20 random split and its prepared training graph, with
    random 16-wide features on every node (fast: no text encoder): what the trainer's and the
    sampler's tests train on."""
    from hybridrec.data.split import random_split
    from hybridrec.graph import build_graph
    from hybridrec.models import prepare_graph

    split = random_split(dataset, (0.6, 0.2, 0.2), seed=seed)
    g = torch.Generator().manual_seed(seed)
    graph = build_graph(dataset, split.train,
                        user_x=torch.randn(dataset.num_users, 16, generator=g),
                        item_x=torch.randn(dataset.num_items, 16, generator=g),
                        entity_x=torch.randn(dataset.num_entities, 16, generator=g))
    return split, prepare_graph(graph, prune_leaf_entities=False)


def devices() -> list[str]:
    """``["cpu"]``, plus ``"cuda"`` when available (as PyG's ``withDevice``)."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@dataclass(frozen=True)
class Checkerboard:
    """``n`` users and ``n`` items; user ``u`` likes every item of its parity.

    Training holds all of them except item ``u`` itself, which is user ``u``'s test item, so
    "the top item recommended should be the same as the user" (``implicit``'s check).
    ``item_embeddings`` are text-like features: a parity direction plus a small item direction.
    """

    n: int
    split: Split
    item_embeddings: torch.Tensor  # [n, n + 2]
    user_embeddings: torch.Tensor  # [n, n + 2]

    @property
    def num_users(self) -> int:
        return self.n

    @property
    def num_items(self) -> int:
        return self.n

    @property
    def train(self) -> Interactions:
        return self.split.train


def checkerboard(n: int = 20) -> Checkerboard:
    """The :class:`Checkerboard` with ``n`` users and items (``n`` even, at least 4)."""
    if n < 4 or n % 2:
        raise ValueError(f"checkerboard: n must be even and >= 4, got {n}")
    u, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    liked = (u % 2) == (i % 2)
    train = liked & (u != i)
    users, items = np.nonzero(train)
    split = Split("checkerboard", Interactions(users, items), Interactions([], []),
                  Interactions(np.arange(n), np.arange(n)))
    parity = torch.zeros(n, n + 2)
    parity[torch.arange(n), torch.arange(n) % 2] = 1.0
    own = torch.zeros(n, n + 2)
    own[torch.arange(n), torch.arange(n) + 2] = 0.3
    return Checkerboard(n, split, parity + own, parity.clone())


class ScorerContract:
    """What every scorer promises; subclass it and define :meth:`make_scorer`.

    Class attributes a subclass may change:

    * ``personalised``: if ``False`` (popularity) the top item is only checked to be the most
      popular one allowed, not the user's own item.
    * ``deterministic``: refitting with the same seed gives the same scores.
    """

    personalised: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    board_size: ClassVar[int] = 20

    def make_scorer(self, device: str) -> Any:
        """A fresh, unfitted scorer on ``device``."""
        raise NotImplementedError

    def fit(self, scorer: Any, board: Checkerboard) -> Scorer:
        """Fit on the checkerboard (override for scorers that need more than interactions)."""
        return scorer.fit(board.train, board.num_users, board.num_items)

    def save(self, scorer: Any, path: Path) -> None:
        scorer.save(path)

    def load(self, path: Path, device: str) -> Scorer:
        return BaseScorer.load(path, device=device)

    @pytest.fixture(scope="class")
    def board(self) -> Checkerboard:
        return checkerboard(self.board_size)

    @pytest.fixture(scope="class", params=devices())
    def fitted(self, request: pytest.FixtureRequest, board: Checkerboard) -> tuple[Scorer, str]:
        device = request.param
        return self.fit(self.make_scorer(device), board), device

    def test_checkerboard_top1(self, fitted, board):
        scorer, _ = fitted
        users = torch.arange(board.n)
        seen = UserItems.from_interactions(board.train, board.n, board.n)
        top_scores, top = recommend_topk(scorer, users, 1, exclude=seen)
        if self.personalised:
            assert top[:, 0].cpu().tolist() == list(range(board.n))
        else:
            allowed = ~seen.dense(users)
            best = scorer.score(users).cpu().masked_fill(~allowed, -float("inf")).max(1).values
            assert torch.equal(top_scores[:, 0].cpu(), best)

    def test_evaluator_agrees(self, fitted, board):
        scorer, device = fitted
        result = evaluate(scorer, (board.n, board.n), board.split, ks=(1, 5), device=device)
        assert result["users_evaluated"] == board.n
        if self.personalised:
            assert result["hit@1"] == 1.0
            assert result["ndcg@5"] == 1.0

    def test_score_shape_and_values(self, fitted, board):
        scorer, _ = fitted
        scores = scorer.score(torch.tensor([0, 3, 3]))
        assert scores.shape == (3, board.n)
        assert scores.dtype.is_floating_point
        assert bool(torch.isfinite(scores).all())
        # Same user, same scores (to rounding: BLAS may take another kernel path per row).
        torch.testing.assert_close(scores[1], scores[2], rtol=1e-6, atol=1e-6)

    def test_unknown_user(self, fitted, board):
        scorer, _ = fitted
        for bad in (board.n, -1):
            with pytest.raises(IndexError, match=f"unknown user_index {bad}"):
                scorer.score(torch.tensor([0, bad]))

    def test_empty_input(self, fitted, board):
        scorer, _ = fitted
        assert scorer.score(torch.zeros(0, dtype=torch.long)).shape == (0, board.n)

    def test_training_items_never_in_topk(self, fitted, board):
        scorer, _ = fitted
        users = torch.arange(board.n)
        seen = UserItems.from_interactions(board.train, board.n, board.n)
        _, top = recommend_topk(scorer, users, board.n // 2, exclude=seen)
        row, item = seen.pairs(users)
        assert not bool((top.cpu()[row] == item[:, None]).any())

    def test_save_load_equal_scores(self, fitted, board, tmp_path):
        scorer, device = fitted
        self.save(scorer, tmp_path / "scorer")
        loaded = self.load(tmp_path / "scorer", device)
        users = torch.arange(board.n)
        torch.testing.assert_close(loaded.score(users).cpu(), scorer.score(users).cpu())

    def test_refit_same_scores(self, fitted, board):
        if not self.deterministic:
            pytest.skip("not deterministic")
        scorer, device = fitted
        again = self.fit(self.make_scorer(device), board)
        users = torch.arange(board.n)
        torch.testing.assert_close(again.score(users).cpu(), scorer.score(users).cpu())


def spoil_saved_tensor(name: str, value: float) -> Callable[[Path], None]:
    """``spoil(folder)``: set the first element of tensor ``name`` in a saved scorer's
    ``scorer.safetensors`` to ``value`` (for tests of what a load refuses)."""
    from safetensors.torch import save_file

    from hybridrec.tensor_files import read_tensors

    def spoil(folder: Path) -> None:
        tensors, _ = read_tensors(folder / "scorer.safetensors")
        tensors[name].view(-1)[0] = value
        save_file(tensors, str(folder / "scorer.safetensors"))
    return spoil


def spoil_saved_meta(key: str, value: Any) -> Callable[[Path], None]:
    """``spoil(folder)``: set ``key`` of a saved scorer's ``scorer.json`` to ``value``."""
    def spoil(folder: Path) -> None:
        meta = json.loads((folder / "scorer.json").read_text())
        meta[key] = value
        (folder / "scorer.json").write_text(json.dumps(meta))
    return spoil
