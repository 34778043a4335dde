"""ItemKNN: item-item cosine similarity over co-interactions, k nearest neighbours kept."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from hybridrec.baselines.item_item import ItemItemScorer
from hybridrec.data.dataset import Interactions
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)


class ItemKNN(ItemItemScorer):
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
        log.debug("ItemKNN: %d similarities kept for %d items", sum(map(len, vals)),
                  num_items)
        self._set_weights(rows, cols, vals, history)
        return self
