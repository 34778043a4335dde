"""EASE: a closed-form item-item linear autoencoder with a zero diagonal (Steck, 2019)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from hybridrec.baselines.base import BaseScorer, check_history
from hybridrec.data.dataset import Interactions
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)

#: The largest catalogue EASE accepts: fitting peaks at two dense float64 and one float32
#: ``[num_items, num_items]`` matrices, 20 x 30,000^2 bytes = 18 GB at the cap.
MAX_ITEMS = 30_000


class EASE(BaseScorer):
    r"""Embarrassingly Shallow Autoencoder (`Steck, 2019
    <https://arxiv.org/abs/1905.03375>`_): the item-item weights that best rebuild the binary
    user-item matrix :math:`X` of the training interactions from itself, no item predicting
    itself.

    .. math::
        \hat{B} = \operatorname*{arg\,min}_{B}\ \lVert X - XB \rVert_F^2
        + \lambda \lVert B \rVert_F^2 \quad \text{s.t.}\ \operatorname{diag}(B) = 0

    has the closed form

    .. math::
        P = (X^\top X + \lambda I)^{-1}, \qquad
        \hat{B} = I - P \,\operatorname{diagMat}\!\big(1 \oslash \operatorname{diag}(P)\big),
        \quad\text{i.e. } \hat{B}_{ij} = -\frac{P_{ij}}{P_{jj}}\ (i \ne j),\ \hat{B}_{jj} = 0,

    and the score is :math:`s(u, \cdot) = \mathbf{x}_u \hat{B}`. The inverse is taken by a
    float64 Cholesky factorisation on ``device``; :math:`\hat{B}` is kept in float32.

    Memory grows as ``num_items ** 2``: fitting peaks at two dense float64 and one float32
    ``[num_items, num_items]`` matrices (57 MB at ml-100k's 1,682 items), and the saved
    :math:`\hat{B}` is one float32 matrix. ``fit`` refuses catalogues above
    :data:`MAX_ITEMS` (30,000 items, about 18 GB while fitting) with a ``ValueError``.

    Search space: ``l2`` in (50, 100, 250, 500, 1000, 2000), around RecBole's default 250
    (Steck reports 200 to 1000 on ML-20M, Netflix and MSD).

    Args:
        l2: :math:`\lambda > 0`, the L2 penalty on :math:`B` (default: 250.0).
        device: where the inverse is taken and scores live (default: ``None``, automatic).

    Shapes:
        - **item_weights_:** ``float32 [num_items, num_items]``, :math:`\hat{B}`.
    """

    search_space = {"l2": (50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0)}

    state_layout = {"item_weights": ("F32", ("I", "I")),
                    "history_indptr": ("I64", (None,)), "history_indices": ("I64", (None,))}

    def __init__(self, l2: float = 250.0, device: str | None = None) -> None:
        self.l2 = l2
        self.device = device

    def fit(self, train: Interactions, num_users: int, num_items: int) -> EASE:
        """Solve for :math:`\\hat{B}` in closed form."""
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not self.l2 > 0:
            raise ValueError(f"EASE: need l2 > 0, got l2={self.l2!r}")
        if num_items > MAX_ITEMS:
            raise ValueError(f"EASE: {num_items} items is above the cap of MAX_ITEMS = "
                             f"{MAX_ITEMS} (memory grows as num_items^2: a dense "
                             f"[{num_items}, {num_items}] float64 matrix is "
                             f"{8 * num_items ** 2 / 1e9:.1f} GB); use RP3beta or ItemKNN")
        self._start_fit(num_users, num_items, self.device)
        history = UserItems.from_interactions(train, num_users, num_items)
        x = sp.csr_matrix(
            (np.ones(len(history), np.float64), history.indices.numpy(), history.indptr.numpy()),
            shape=(num_users, num_items))
        gram = torch.from_numpy((x.T @ x).toarray()).to(self.device_)  # [num_items, num_items]
        gram.diagonal().add_(float(self.l2))
        # X^T X + lambda I is symmetric positive definite: Cholesky is cheaper and steadier
        # than a general inverse.
        factor = torch.linalg.cholesky(gram)
        del gram  # At most two dense float64 matrices alive at once.
        weights = torch.cholesky_inverse(factor)  # P
        del factor
        weights.div_(-weights.diagonal().clone()[None, :])  # -P_ij / P_jj
        weights.diagonal().zero_()  # No item predicts itself.
        log.debug("EASE: solved %d items with l2=%s", num_items, self.l2)
        self._load_state({"item_weights": weights.float(),
                          "history_indptr": history.indptr,
                          "history_indices": history.indices})
        return self

    def _score(self, user_index: Tensor) -> Tensor:
        x_u = self.history_.dense(user_index, torch.float32)  # [B, num_items]
        return x_u @ self.item_weights_  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"item_weights": self.item_weights_,
                "history_indptr": self.history_.indptr,
                "history_indices": self.history_.indices}

    def _check_state(self, path: Path, state: dict[str, Tensor], num_users: int,
                     num_items: int) -> None:
        check_history(path, state["history_indptr"], state["history_indices"], num_users,
                      num_items)

    def _load_state(self, state: dict[str, Tensor]) -> None:
        dev = self.device_
        self.item_weights_ = state["item_weights"].float().to(dev)  # [num_items, num_items]
        self.history_ = UserItems(state["history_indptr"].to(dev),
                                  state["history_indices"].to(dev), self.num_items_)
