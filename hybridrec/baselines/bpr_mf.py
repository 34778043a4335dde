"""BPR-MF: matrix factorisation trained with the Bayesian personalised ranking loss."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from hybridrec.baselines._sampling import sample_negatives
from hybridrec.baselines.base import BaseScorer, Callback
from hybridrec.data.dataset import Interactions

log = logging.getLogger(__name__)


class MatrixFactorization(torch.nn.Module):
    r"""User and item embeddings scored by their dot product.

    .. math::
        s(u, i) = \mathbf{p}_u^\top \mathbf{q}_i

    Args:
        num_users: number of users.
        num_items: number of items.
        embedding_dim: size of each embedding.

    Shapes:
        - **input:** ``user_index [B]``, ``item_index [B]``
        - **output:** ``[B]``
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_embedding.weight, std=0.1)
        torch.nn.init.normal_(self.item_embedding.weight, std=0.1)

    def forward(self, user_index: Tensor, item_index: Tensor) -> Tensor:
        return (self.user_embedding(user_index) * self.item_embedding(item_index)).sum(-1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_users}, {self.num_items}, "
                f"embedding_dim={self.embedding_dim})")


class BPRMF(BaseScorer):
    r"""Matrix factorisation with the BPR loss (`Rendle et al., 2009
    <https://arxiv.org/abs/1205.2618>`_), one uniform negative per positive.

    .. math::
        \mathcal{L} = -\frac{1}{|B|}\sum_{(u,i,j) \in B} \log \sigma(s(u,i) - s(u,j))
        + \frac{\lambda}{|B|}\sum_{(u,i,j) \in B}
          \left(\lVert\mathbf{p}_u\rVert^2 + \lVert\mathbf{q}_i\rVert^2
          + \lVert\mathbf{q}_j\rVert^2\right)

    Negatives :math:`j` are drawn uniformly from items the user has not interacted with, with a
    seeded ``torch.Generator``; optimiser Adam.

    Search space: ``lr`` in (1e-3, 5e-3), ``weight_decay`` (:math:`\lambda`) in (1e-3, 1e-2);
    ``epochs`` is set by early stopping on validation NDCG@20. (On ml-100k, smaller
    :math:`\lambda` overfits within 15 epochs.)

    Args:
        embedding_dim: size of the embeddings (default: 64).
        lr: Adam learning rate (default: 5e-3).
        weight_decay: :math:`\lambda` (default: 1e-2).
        epochs: passes over the training interactions (default: 100).
        batch_size: positives per step (default: 2048).
        random_state: seed for initialisation and sampling (default: 0).
        device: where to train and score (default: ``None``, automatic).
        show_progress: progress bar over epochs (default: ``False``).
    """

    search_space = {"lr": (1e-3, 5e-3), "weight_decay": (1e-3, 1e-2)}
    iterative = True

    state_layout = {"user_embedding": ("F32", ("U", "embedding_dim")),
                    "item_embedding": ("F32", ("I", "embedding_dim"))}

    def __init__(self, embedding_dim: int = 64, lr: float = 5e-3, weight_decay: float = 1e-2,
                 epochs: int = 100, batch_size: int = 2048, random_state: int = 0,
                 device: str | None = None, show_progress: bool = False) -> None:
        self.embedding_dim = embedding_dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device
        self.show_progress = show_progress

    def fit(self, train: Interactions, num_users: int, num_items: int,
            callback: Callback | None = None) -> BPRMF:
        """Train for ``epochs`` (or until ``callback`` returns ``True``)."""
        self._start_fit(num_users, num_items, self.device)
        generator = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng(devices=[]):  # Seeded initialisation, global RNG untouched.
            torch.manual_seed(self.random_state)
            self.model_ = MatrixFactorization(num_users, num_items, self.embedding_dim)
        self.model_.to(self.device_)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        users = torch.from_numpy(train.user_index.copy())
        items = torch.from_numpy(train.item_index.copy())
        keys = torch.unique(users * num_items + items)  # sorted
        self.loss_history_ = []
        for epoch in tqdm(range(1, self.epochs + 1), desc="BPR-MF", unit="epoch",
                          disable=None if self.show_progress else True):
            order = torch.randperm(len(users), generator=generator)
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                u, i = users[rows], items[rows]
                j = sample_negatives(u, num_items, keys, generator)
                total += self.train_step(optimizer, u.to(self.device_), i.to(self.device_),
                                         j.to(self.device_)) * len(rows)
            self.loss_history_.append(total / max(1, len(order)))
            log.debug("BPR-MF epoch %d: loss %.4f", epoch, self.loss_history_[-1])
            if callback is not None and callback(epoch, self):
                break
        return self

    def train_step(self, optimizer: torch.optim.Optimizer, u: Tensor, i: Tensor,
                   j: Tensor) -> float:
        """One step: zero_grad, forward, loss, backward, step; returns the loss."""
        self.model_.train()
        optimizer.zero_grad(set_to_none=True)
        p_u = self.model_.user_embedding(u)
        q_i, q_j = self.model_.item_embedding(i), self.model_.item_embedding(j)
        diff = (p_u * q_i).sum(-1) - (p_u * q_j).sum(-1)
        reg = (p_u.square().sum() + q_i.square().sum() + q_j.square().sum()) / len(u)
        loss = -F.logsigmoid(diff).mean() + self.weight_decay * reg
        loss.backward()
        optimizer.step()
        return loss.item()

    def _score(self, user_index: Tensor) -> Tensor:
        return self.model_.user_embedding(user_index) @ self.model_.item_embedding.weight.t()

    def _state(self) -> dict[str, Tensor]:
        return {"user_embedding": self.model_.user_embedding.weight.data,
                "item_embedding": self.model_.item_embedding.weight.data}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        if not hasattr(self, "model_"):
            self.model_ = MatrixFactorization(self.num_users_, self.num_items_,
                                              self.embedding_dim).to(self.device_)
        self.model_.user_embedding.weight.data.copy_(state["user_embedding"])
        self.model_.item_embedding.weight.data.copy_(state["item_embedding"])
