"""The sparse item-item scorers' shared half: ``s(u, ·) = x_u W`` for a sparse ``W`` built by
the subclass (:class:`~hybridrec.baselines.ItemKNN`, :class:`~hybridrec.baselines.RP3beta`),
stored, scored, saved and checked alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hybridrec.baselines.base import BaseScorer, check_history, sparse_csr
from hybridrec.data.errors import DataError
from hybridrec.scoring import UserItems


class ItemItemScorer(BaseScorer):
    r"""A scorer :math:`s(u, \cdot) = \mathbf{x}_u W` with :math:`\mathbf{x}_u` the user's
    binary training history and :math:`W` a sparse ``num_items x num_items`` matrix of
    (source item :math:`i`, target item :math:`j`) weights. A subclass's ``fit`` computes
    the kept weights and hands them to :meth:`_set_weights`."""

    state_layout = {"similarity_index": ("I64", (2, "nnz")), "similarity_value": ("F32", ("nnz",)),
                    "history_indptr": ("I64", (None,)), "history_indices": ("I64", (None,))}

    def _set_weights(self, rows: list[np.ndarray], cols: list[np.ndarray],
                     vals: list[np.ndarray], history: UserItems) -> None:
        """Keep the weights ``W[rows, cols] = vals`` (blocks, concatenated) and the
        histories they are applied to."""
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        val = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        self._load_state({
            "similarity_index": torch.from_numpy(np.stack([row, col]).astype(np.int64)),
            "similarity_value": torch.from_numpy(val.astype(np.float32)),
            "history_indptr": history.indptr,
            "history_indices": history.indices,
        })

    def _score(self, user_index: Tensor) -> Tensor:
        x_u = self.history_.dense(user_index, torch.float32)  # [B, num_items]
        # (W^T x_u^T)^T: sparse-times-dense with the sparse factor on the left.
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
                                        (n, n), dev)  # W^T
