"""RP3beta: three-step random walks item -> user -> item, damped by the target's popularity."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from hybridrec.baselines.item_item import ItemItemScorer
from hybridrec.data.dataset import Interactions
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)


class RP3beta(ItemItemScorer):
    r"""Random walks of length three on the user-item graph with popularity re-weighting
    (`Paudel et al., 2017 <https://doi.org/10.1145/2955101>`_, with the :math:`\alpha` of
    Cooper et al.'s :math:`P^3_\alpha`, as in `Dacrema et al., 2019
    <https://arxiv.org/abs/1907.06902>`_).

    With the binary user-item matrix :math:`X` of the training interactions, the transition
    probabilities user -> item and item -> user, each raised element-wise to :math:`\alpha`,

    .. math::
        P_{ui} = \Big(\frac{x_{ui}}{\sum_{i'} x_{ui'}}\Big)^{\alpha}, \qquad
        P_{iu} = \Big(\frac{x_{ui}}{\sum_{u'} x_{u'i}}\Big)^{\alpha},

    give the item-item weights, each column divided by the target's popularity to the power
    :math:`\beta`,

    .. math::
        W_{ij} = \frac{\big(P_{iu} P_{ui}\big)_{ij}}{\mathrm{pop}(j)^{\beta}}
        \quad (i \ne j,\ W_{ii} = 0), \qquad s(u, \cdot) = \mathbf{x}_u W^{(k)},

    where :math:`\mathrm{pop}(j)` counts item :math:`j`'s training users and :math:`W^{(k)}`
    keeps the ``k`` largest weights of each row :math:`i` (the neighbours an item of the
    user's history passes its score to), as Dacrema et al.'s reference code does; no row
    normalisation. :math:`\alpha = 1, \beta = 0` is the plain random walk :math:`P^3`. Rows
    are built in blocks, so memory stays at ``block x num_items`` floats.

    Search space: ``alpha`` in (0.5, 0.75, 1.0, 1.25), ``beta`` in (0.0, 0.25, 0.5, 0.75),
    ``k`` in (100, 200). (On ml-100k validation picks :math:`\alpha = 1, \beta = 0.5`, inside
    the grid; l1-normalising the rows of :math:`W`, an option in Dacrema et al.'s code, changed
    validation NDCG@20 by less than 0.003, so it is left out.)

    Args:
        alpha: :math:`\alpha > 0`, sharpens (> 1) or flattens (< 1) the transition
            probabilities (default: 1.0).
        beta: :math:`\beta \ge 0`, the popularity penalty of the target item (default: 0.5).
        k: weights kept per source item, :math:`k \ge 1` (default: 100).
        block_size: source items per block while building (default: 2048).
        device: where scores live (default: ``None``, automatic).
    """

    search_space = {"alpha": (0.5, 0.75, 1.0, 1.25), "beta": (0.0, 0.25, 0.5, 0.75),
                    "k": (100, 200)}


    def __init__(self, alpha: float = 1.0, beta: float = 0.5, k: int = 100,
                 block_size: int = 2048, device: str | None = None) -> None:
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.block_size = block_size
        self.device = device

    def _check_params(self) -> None:
        def number(value: object) -> bool:
            return not isinstance(value, bool) and isinstance(value, (int, float, np.number))

        if not number(self.alpha) or not self.alpha > 0:
            raise ValueError(f"RP3beta: need alpha > 0, got alpha={self.alpha!r}")
        if not number(self.beta) or not self.beta >= 0:
            raise ValueError(f"RP3beta: need beta >= 0, got beta={self.beta!r}")
        for name in ("k", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"RP3beta: need an integer {name} >= 1, got {name}={value!r}")

    def fit(self, train: Interactions, num_users: int, num_items: int) -> RP3beta:
        """Build the top-``k`` random-walk weights."""
        self._check_params()
        self._start_fit(num_users, num_items, self.device)
        history = UserItems.from_interactions(train, num_users, num_items)
        x = sp.csr_matrix(
            (np.ones(len(history), np.float64), history.indices.numpy(), history.indptr.numpy()),
            shape=(num_users, num_items))
        user_degree = np.asarray(x.sum(1)).ravel()  # [num_users]
        item_degree = np.asarray(x.sum(0)).ravel()  # [num_items], pop(j)
        # Every stored entry has degree >= 1 on both sides, so the divisions are safe.
        p_ui = sp.diags(1.0 / np.maximum(user_degree, 1)) @ x  # [num_users, num_items]
        p_iu = (sp.diags(1.0 / np.maximum(item_degree, 1)) @ x.T).tocsr()  # [num_items, num_users]
        p_ui.data **= self.alpha
        p_iu.data **= self.alpha
        # Items nobody interacted with are never reached; give them 0, not 0 ** -beta.
        penalty = np.zeros(num_items)
        seen = item_degree > 0
        penalty[seen] = item_degree[seen] ** -float(self.beta)
        k = min(int(self.k), num_items - 1)
        rows, cols, vals = [], [], []
        for start in range(0, num_items if k > 0 else 0, self.block_size):
            stop = min(start + self.block_size, num_items)
            w = (p_iu[start:stop] @ p_ui).toarray() * penalty[None, :]  # [block, num_items]
            w[np.arange(stop - start), np.arange(start, stop)] = 0.0  # Not its own neighbour.
            top = np.argpartition(-w, k - 1, axis=1)[:, :k]  # [block, k]
            top_val = np.take_along_axis(w, top, axis=1)
            keep = top_val > 0
            rows.append(np.broadcast_to(np.arange(start, stop)[:, None], top.shape)[keep])
            cols.append(top[keep])
            vals.append(top_val[keep])
        log.debug("RP3beta: %d weights kept for %d items", sum(map(len, vals)), num_items)
        self._set_weights(rows, cols, vals, history)
        return self
