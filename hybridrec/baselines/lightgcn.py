"""LightGCN through PyG: full-graph propagation, BPR on mini-batches of training edges."""
from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch_geometric.nn.models import LightGCN as PyGLightGCN
from tqdm.auto import tqdm

from hybridrec.baselines._sampling import sample_negatives
from hybridrec.baselines.base import BaseScorer, Callback, sparse_csr
from hybridrec.data.dataset import Interactions
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)


def normalized_adjacency(history: UserItems, device: torch.device) -> Tensor:
    r"""The symmetric normalised user-item graph as a sparse CSR matrix.

    Users are nodes ``0..U-1``, items ``U..U+I-1``; every training pair is an edge both ways.

    .. math::
        \hat{A}_{ij} = \frac{1}{\sqrt{\deg(i)\deg(j)}}

    Shapes:
        - **output:** ``[U + I, U + I]`` sparse CSR.
    """
    num_users, num_items = history.num_users, history.num_items
    lengths = history.indptr[1:] - history.indptr[:-1]
    users = torch.repeat_interleave(torch.arange(num_users), lengths)
    items = history.indices + num_users
    row = torch.cat([users, items])
    col = torch.cat([items, users])
    n = num_users + num_items
    deg = torch.bincount(row, minlength=n).float()
    weight = (deg[row] * deg[col]).rsqrt()
    return sparse_csr(torch.stack([row, col]), weight, (n, n), device)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``, whose gradient is ``A @ grad`` again.

    torch's generic sparse backward transposes ``A`` on every call; on CPU that makes a
    LightGCN step several times slower than the propagation itself.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.sparse.mm(ctx.adj, grad)


def propagate(model: PyGLightGCN, adj: Tensor) -> Tensor:
    r"""``model.get_embedding(adj)`` for a symmetric normalised ``adj`` (and
    ``normalize=False`` convolutions), with the cheap backward of :class:`_SymmetricSpMM`.

    .. math::
        \mathbf{e} = \sum_{l=0}^{L} \alpha_l \hat{A}^l \mathbf{E}^{(0)}
    """
    x = model.embedding.weight
    out = x * model.alpha[0]
    for layer in range(model.num_layers):
        x = _SymmetricSpMM.apply(adj, x)
        out = out + x * model.alpha[layer + 1]
    return out


class LightGCN(BaseScorer):
    r"""LightGCN (`He et al., 2020 <https://arxiv.org/abs/2002.02126>`_) via
    :class:`torch_geometric.nn.models.LightGCN`, trained as PyG's ``examples/lightgcn.py``:
    every step propagates over the whole training graph, then takes the BPR loss on a
    mini-batch of training edges with one uniform negative item each (redrawn when it is a
    training positive). The graph is the symmetric normalised adjacency, built once; training
    propagates with :func:`propagate` (equal to ``get_embedding``, with a cheaper backward),
    the final embeddings come from PyG's ``get_embedding``.

    .. math::
        \mathbf{e}^{(l+1)} = \hat{A}\,\mathbf{e}^{(l)}, \qquad
        \mathbf{e} = \frac{1}{L + 1}\sum_{l=0}^{L} \mathbf{e}^{(l)}, \qquad
        s(u, i) = \mathbf{e}_u^\top \mathbf{e}_i

    .. math::
        \mathcal{L} = -\frac{1}{|B|}\sum_{(u,i,j) \in B} \log\sigma(s(u,i) - s(u,j))
        + \frac{\lambda}{|B|} \lVert \mathbf{E}^{(0)}_{B} \rVert^2

    where :math:`\mathbf{E}^{(0)}_B` are the layer-0 embeddings of the batch's nodes (PyG's
    ``recommendation_loss``). Optimiser Adam.

    Search space: ``lr`` in (5e-3, 1e-2), ``lambda_reg`` in (1e-4, 1e-3); ``epochs`` by early
    stopping on validation NDCG@20. ``num_layers`` stays at the paper's 3.

    Args:
        embedding_dim: embedding size (default: 64).
        num_layers: propagation layers :math:`L` (default: 3).
        lr: Adam learning rate (default: 5e-3).
        lambda_reg: :math:`\lambda` (default: 1e-4).
        epochs: passes over the training edges (default: 100).
        batch_size: training edges per step (default: 4096).
        random_state: seed for initialisation and sampling (default: 0).
        device: where to train and score (default: ``None``, automatic).
        show_progress: progress bar over epochs (default: ``False``).
    """

    search_space = {"lr": (5e-3, 1e-2), "lambda_reg": (1e-4, 1e-3)}
    iterative = True

    state_layout = {"user_embedding": ("F32", ("U", "d")), "item_embedding": ("F32", ("I", "d"))}

    def __init__(self, embedding_dim: int = 64, num_layers: int = 3, lr: float = 5e-3,
                 lambda_reg: float = 1e-4, epochs: int = 100, batch_size: int = 4096,
                 random_state: int = 0, device: str | None = None,
                 show_progress: bool = False) -> None:
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.lr = lr
        self.lambda_reg = lambda_reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device
        self.show_progress = show_progress

    def fit(self, train: Interactions, num_users: int, num_items: int,
            callback: Callback | None = None) -> LightGCN:
        """Train for ``epochs`` (or until ``callback`` returns ``True``)."""
        self._start_fit(num_users, num_items, self.device)
        generator = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng(devices=[]):  # Seeded initialisation, global RNG untouched.
            torch.manual_seed(self.random_state)
            self.model_ = PyGLightGCN(num_users + num_items, self.embedding_dim,
                                      self.num_layers, normalize=False)
        self.model_.to(self.device_)
        history = UserItems.from_interactions(train, num_users, num_items)
        # Propagate over training edges only; normalised once, not per step.
        self.adjacency_ = normalized_adjacency(history, self.device_)
        lengths = history.counts()
        users = torch.repeat_interleave(torch.arange(num_users), lengths)
        items = history.indices
        keys = users * num_items + items  # sorted, since rows are sorted
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        self.loss_history_ = []
        for epoch in tqdm(range(1, self.epochs + 1), desc="LightGCN", unit="epoch",
                          disable=None if self.show_progress else True):
            order = torch.randperm(len(users), generator=generator)
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                u, i = users[rows], items[rows]
                j = sample_negatives(u, num_items, keys, generator)
                total += self.train_step(optimizer, u, i, j) * len(rows)
            self.loss_history_.append(total / max(1, len(order)))
            log.debug("LightGCN epoch %d: loss %.4f", epoch, self.loss_history_[-1])
            if callback is not None:
                self._refresh()
                if callback(epoch, self):
                    break
        self._refresh()
        return self

    def train_step(self, optimizer: torch.optim.Optimizer, u: Tensor, i: Tensor,
                   j: Tensor) -> float:
        """One step: zero_grad, forward (full propagation), BPR loss, backward, step."""
        self.model_.train()
        n_u = self.num_users_
        src = torch.cat([u, u]).to(self.device_)
        dst = torch.cat([i, j]).to(self.device_) + n_u
        edge_label_index = torch.stack([src, dst])  # [2, 2B]: positives, then negatives
        optimizer.zero_grad(set_to_none=True)
        emb = propagate(self.model_, self.adjacency_)  # [U + I, d], as model.get_embedding
        pos, neg = (emb[edge_label_index[0]] * emb[edge_label_index[1]]).sum(-1).chunk(2)
        loss = self.model_.recommendation_loss(pos, neg, node_id=edge_label_index.unique(),
                                               lambda_reg=self.lambda_reg)
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def _refresh(self) -> None:
        self.model_.eval()
        out = self.model_.get_embedding(self.adjacency_)  # [U + I, d]
        self.user_embedding_ = out[:self.num_users_].clone()
        self.item_embedding_ = out[self.num_users_:].clone()

    def _score(self, user_index: Tensor) -> Tensor:
        return self.user_embedding_[user_index] @ self.item_embedding_.t()  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"user_embedding": self.user_embedding_, "item_embedding": self.item_embedding_}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        self.user_embedding_ = state["user_embedding"].to(self.device_)  # [U, d]
        self.item_embedding_ = state["item_embedding"].to(self.device_)  # [I, d]
