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

log = logging.getLogger(__name__)


def als_factors(
    user_index: Tensor | np.ndarray,
    item_index: Tensor | np.ndarray,
    num_users: int,
    num_items: int,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int = 15,
    random_state: int = 0,
    num_threads: int = 0,
    device: torch.device | None = None,
    show_progress: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""User and item factors ``[U, f]``, ``[I, f]`` (float32, CPU) of the binary matrix of the
    pairs ``(user_index, item_index)``, by ``implicit``'s ALS (see :class:`ALS` for the
    objective). Repeated pairs count once. On CUDA the GPU solver is used when ``implicit``
    was built with it."""
    import implicit.cpu.als
    import implicit.gpu

    user_index, item_index = (np.asarray(i.cpu() if isinstance(i, Tensor) else i)
                              for i in (user_index, item_index))
    user_items = sp.csr_matrix((np.ones(len(user_index), np.float32), (user_index, item_index)),
                               shape=(num_users, num_items))
    user_items.sum_duplicates()
    user_items.data[:] = 1.0
    kwargs = dict(factors=factors, regularization=regularization, alpha=alpha,
                  iterations=iterations, random_state=random_state)
    if device is not None and device.type == "cuda" and implicit.gpu.HAS_CUDA:
        import implicit.gpu.als

        model = implicit.gpu.als.AlternatingLeastSquares(**kwargs)
        model.fit(user_items, show_progress=show_progress)
        model = model.to_cpu()
    else:
        if device is not None and device.type == "cuda":
            log.warning("ALS: implicit was built without CUDA; fitting on CPU")
        # implicit asks for single-threaded BLAS (it parallelises itself, and warns).
        with threadpool_limits(1, "blas"):
            model = implicit.cpu.als.AlternatingLeastSquares(num_threads=num_threads, **kwargs)
            model.fit(user_items, show_progress=show_progress)
    return (torch.from_numpy(np.asarray(model.user_factors)).float(),
            torch.from_numpy(np.asarray(model.item_factors)).float())


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

    state_layout = {"user_factors": ("F32", ("U", "f")), "item_factors": ("F32", ("I", "f"))}

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
        self._start_fit(num_users, num_items, self.device)
        users, items = als_factors(
            train.user_index, train.item_index, num_users,
            num_items, factors=self.factors, regularization=self.regularization,
            alpha=self.alpha, iterations=self.iterations, random_state=self.random_state,
            num_threads=self.num_threads, device=self.device_, show_progress=self.show_progress)
        self._load_state({"user_factors": users, "item_factors": items})
        return self

    def _score(self, user_index: Tensor) -> Tensor:
        return self.user_factors_[user_index] @ self.item_factors_.t()  # [B, num_items]

    def _state(self) -> dict[str, Tensor]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _load_state(self, state: dict[str, Tensor]) -> None:
        self.user_factors_ = state["user_factors"].float().to(self.device_)  # [num_users, f]
        self.item_factors_ = state["item_factors"].float().to(self.device_)  # [num_items, f]
