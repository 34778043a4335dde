"""Most popular: everyone gets the items with the most training interactions."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hybridrec.baselines.base import BaseScorer
from hybridrec.data.dataset import Interactions


class MostPopular(BaseScorer):
    r"""Scores every item by its number of training interactions, the same for every user.

    .. math::
        s(u, i) = |\{(u', i) \in \mathcal{D}_{\mathrm{train}}\}|

    Args:
        device: where scores live (default: ``None``, automatic).
    """

    state_layout = {"item_popularity": ("F32", ("I",))}

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def fit(self, train: Interactions, num_users: int, num_items: int) -> MostPopular:
        """Count training interactions per item."""
        self._start_fit(num_users, num_items, self.device)
        counts = np.bincount(train.item_index, minlength=num_items).astype(np.float32)
        self.item_popularity_ = torch.from_numpy(counts).to(self.device_)  # [num_items]
        return self

    def _score(self, user_index: Tensor) -> Tensor:
        return self.item_popularity_.expand(len(user_index), -1).clone()  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"item_popularity": self.item_popularity_}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        self.item_popularity_ = state["item_popularity"]
