"""ALS: implicit-feedback matrix factorisation by alternating least squares (``implicit``)."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from hybridrec.baselines.base import BaseScorer
from hybridrec.data.dataset import Interactions
from hybridrec.scoring import UserItems

log = logging.getLogger(__name__)


class ALS(BaseScorer):
    r"""Weighted matrix factorisation for implicit feedback (`Hu, Koren and Volinsky, 2008
    <http://yifanhu.net/PUB/cf.pdf>`_), fitted by the ``implicit`` library.

    .. math::
        \min_{P, Q} \sum_{u, i} c_{ui} (p_{ui} - \mathbf{x}_u^\top \mathbf{y}_i)^2
        + \lambda \Big(\sum_u \lVert\mathbf{x}_u\rVert^2 + \sum_i \lVert\mathbf{y}_i\rVert^2\Big)

    with :math:`p_{ui} = 1` for training pairs (0 otherwise) and confidence
    :math:`c_{ui} = \alpha` on training pairs (1 otherwise; ``implicit`` uses the scaled matrix
    :math:`\alpha X` as the confidence itself, not :math:`1 + \alpha X`); :math:`s(u, i) =
    \mathbf{x}_u^\top \mathbf{y}_i`. ``implicit`` takes the user-item matrix as CSR
    (users in rows). On a CUDA device the GPU solver is used when ``implicit`` was built with
    CUDA; otherwise it fits on CPU (with a warning) and the factors move to the device.

    Search space: ``factors`` in (16, 32, 64), ``regularization`` in (1, 5, 10, 20), ``alpha``
    in (1, 3). (On ml-100k a strong :math:`\lambda \approx 10` with few factors wins;
    ``implicit``'s default :math:`\lambda = 0.01` loses 15% NDCG@20.)

    Args:
        factors: latent dimension (default: 32).
        regularization: :math:`\lambda` (default: 10.0).
        alpha: :math:`\alpha`, confidence of observed pairs (default: 1.0).
        iterations: ALS sweeps (default: 15).
        random_state: seed of the initial factors (default: 0).
        num_threads: CPU threads, 0 for all (default: 0).
        device: where to score (default: ``None``, automatic).
        show_progress: ``implicit``'s progress bar (default: ``False``).
    """

    search_space = {"factors": (16, 32, 64), "regularization": (1.0, 5.0, 10.0, 20.0),
                    "alpha": (1.0, 3.0)}

    def __init__(self, factors: int = 32, regularization: float = 10.0, alpha: float = 1.0,
                 iterations: int = 15, random_state: int = 0, num_threads: int = 0,
                 device: str | None = None, show_progress: bool = False) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.device = device
        self.show_progress = show_progress

    def fit(self, train: Interactions, num_users: int, num_items: int) -> ALS:
        """Factorise the binary training matrix."""
        import implicit.cpu.als
        import implicit.gpu

        self._start_fit(num_users, num_items, self.device)
        history = UserItems.from_interactions(train, num_users, num_items)
        user_items = sp.csr_matrix(
            (np.ones(len(history), np.float32), history.indices.numpy(), history.indptr.numpy()),
            shape=(num_users, num_items))
        kwargs = dict(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                      iterations=self.iterations, random_state=self.random_state)
        if self.device_.type == "cuda" and implicit.gpu.HAS_CUDA:
            import implicit.gpu.als

            model = implicit.gpu.als.AlternatingLeastSquares(**kwargs)
            model.fit(user_items, show_progress=self.show_progress)
            model = model.to_cpu()
        else:
            if self.device_.type == "cuda":
                log.warning("ALS: implicit was built without CUDA; fitting on CPU")
            # implicit asks for single-threaded BLAS (it parallelises itself, and warns).
            with threadpool_limits(1, "blas"):
                model = implicit.cpu.als.AlternatingLeastSquares(num_threads=self.num_threads,
                                                                 **kwargs)
                model.fit(user_items, show_progress=self.show_progress)
        self._load_state({"user_factors": torch.from_numpy(np.asarray(model.user_factors)),
                          "item_factors": torch.from_numpy(np.asarray(model.item_factors))})
        return self

    def _score(self, user_index: Tensor) -> Tensor:
        return self.user_factors_[user_index] @ self.item_factors_.t()  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        self.user_factors_ = state["user_factors"].float().to(self.device_)  # [num_users, f]
        self.item_factors_ = state["item_factors"].float().to(self.device_)  # [num_items, f]
