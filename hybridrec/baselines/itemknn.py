"""ItemKNN: item-item cosine similarity over co-interactions, k nearest neighbours kept."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from hybridrec.baselines.base import BaseScorer, check_history, sparse_csr
from hybridrec.data.dataset import Interactions
from hybridrec.data.errors import DataError
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)


class ItemKNN(BaseScorer):
    r"""Item-based nearest neighbours (Sarwar et al., 2001; Deshpande & Karypis, 2004).

    With the binary user-item matrix :math:`X` of the training interactions, the shrunk cosine
    similarity and the score are

    .. math::
        \mathrm{sim}(i, j) = \frac{x_i^\top x_j}{\lVert x_i \rVert \lVert x_j \rVert + \lambda},
        \qquad s(u, j) = \sum_{i \in I_u \cap N_k(j)} \mathrm{sim}(i, j)

    where :math:`N_k(j)` holds the ``k`` items most similar to :math:`j` (itself excluded) and
    :math:`I_u` the user's training items. The similarity matrix is built in column blocks, so
    memory stays at ``num_items x block`` floats.

    Search space: ``k`` in (50, 100, 200, 400), ``shrink`` in (0, 10, 100).

    Args:
        k: neighbours kept per item (default: 100).
        shrink: :math:`\lambda`, damps similarities resting on few co-interactions
            (default: 10.0).
        block_size: target items per block while building (default: 2048).
        device: where scores live (default: ``None``, automatic).
    """

    search_space = {"k": (50, 100, 200, 400), "shrink": (0.0, 10.0, 100.0)}

    state_layout = {"similarity_index": ("I64", (2, "nnz")), "similarity_value": ("F32", ("nnz",)),
                    "history_indptr": ("I64", (None,)), "history_indices": ("I64", (None,))}

    def __init__(self, k: int = 100, shrink: float = 10.0, block_size: int = 2048,
                 device: str | None = None) -> None:
        self.k = k
        self.shrink = shrink
        self.block_size = block_size
        self.device = device

    def fit(self, train: Interactions, num_users: int, num_items: int) -> ItemKNN:
        """Build the k-nearest-neighbour similarity matrix."""
        if self.k < 1 or self.shrink < 0:
            raise ValueError(f"ItemKNN: need k >= 1 and shrink >= 0, got k={self.k}, "
                             f"shrink={self.shrink}")
        self._start_fit(num_users, num_items, self.device)
        history = UserItems.from_interactions(train, num_users, num_items)
        x = sp.csr_matrix(
            (np.ones(len(history), np.float32), history.indices.numpy(), history.indptr.numpy()),
            shape=(num_users, num_items))
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(0)).ravel())  # [num_items]
        k = min(self.k, num_items - 1)
        rows, cols, vals = [], [], []
        for start in range(0, num_items, self.block_size):
            stop = min(start + self.block_size, num_items)
            co = (xt @ x[:, start:stop]).toarray()  # [num_items, block]
            sim = co / (norms[:, None] * norms[None, start:stop] + self.shrink + 1e-12)
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # Not its own neighbour.
            if k <= 0:
                continue
            top = np.argpartition(-sim, k - 1, axis=0)[:k]  # [k, block]
            top_val = np.take_along_axis(sim, top, axis=0)
            keep = top_val > 0
            rows.append(top[keep])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
            vals.append(top_val[keep])
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        val = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        log.debug("ItemKNN: %d similarities kept for %d items", len(val), num_items)
        self._load_state({
            "similarity_index": torch.from_numpy(np.stack([row, col]).astype(np.int64)),
            "similarity_value": torch.from_numpy(val.astype(np.float32)),
            "history_indptr": history.indptr,
            "history_indices": history.indices,
        })
        return self

    def _score(self, user_index: Tensor) -> Tensor:
        x_u = self.history_.dense(user_index, torch.float32)  # [B, num_items]
        # (S^T x_u^T)^T: sparse-times-dense with the sparse factor on the left.
        return torch.sparse.mm(self.similarity_t_, x_u.t()).t()  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"similarity_index": self.similarity_index_,
                "similarity_value": self.similarity_value_,
                "history_indptr": self.history_.indptr,
                "history_indices": self.history_.indices}

    def _check_state(self, path: Path, state: dict[str, Tensor], num_users: int,
                     num_items: int) -> None:
        index = state["similarity_index"]
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_items):
            raise DataError(path, f"item indices in [0, {num_items})",
                            field="similarity_index", field_kind="tensor")
        check_history(path, state["history_indptr"], state["history_indices"], num_users,
                      num_items)

    def _load_state(self, state: dict[str, Tensor]) -> None:
        dev = self.device_
        self.similarity_index_ = state["similarity_index"].to(dev)  # [2, nnz] (i, j)
        self.similarity_value_ = state["similarity_value"].to(dev)  # [nnz]
        self.history_ = UserItems(state["history_indptr"].to(dev),
                                  state["history_indices"].to(dev), self.num_items_)
        n = self.num_items_
        self.similarity_t_ = sparse_csr(self.similarity_index_.flip(0), self.similarity_value_,
                                        (n, n), dev)  # S^T
