"""The learned gate that mixes the GNN and MF scores per (user, item)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import Linear, Sequential, Tanh


class ScoreGate(torch.nn.Module):
    r"""A gate :math:`g(u, i) \in (0, 1)` over node-level signals, mixing two scores.

    .. math::
        g(u, i) = \sigma\big(\phi_U(\mathbf{z}_u) + \phi_I(\mathbf{z}_i)\big), \qquad
        s(u, i) = g(u, i)\, \tilde s_{\text{gnn}}(u, i)
            + \big(1 - g(u, i)\big)\, \tilde s_{\text{mf}}(u, i)

    where :math:`\phi_U, \phi_I` are small MLPs and the signals :math:`\mathbf{z}` of a node are
    its log-degree in the training graph, :math:`\log(1 + \deg)`, and the norms of its GNN and
    MF embeddings (detached: the gate reads the branches, it does not reshape them). The sum
    form keeps full ranking cheap: a :math:`(B, I)` gate is one broadcast add. The scores
    :math:`\tilde s` it mixes are each branch's scores standardised per user over the catalogue
    (see :class:`~hybridrec.models.Mix`), so :math:`g` weighs the branches on one
    scale. A fresh gate is the fixed mix, :math:`g = g_0` (zero output layers plus the constant
    :math:`\operatorname{logit} g_0` in :math:`\phi_I`), and it carries the temperature of its
    own training loss (:meth:`temperature`).

    Args:
        num_signals: signals per node (default: :obj:`3`).
        hidden_channels: width of each MLP (default: :obj:`16`).
        prior: :math:`g_0`, the fixed mix a fresh gate starts from (default: :obj:`0.5`).

    Shapes:
        - **input:** user signals :math:`(B, S)`, item signals :math:`(I, S)`
        - **output:** gate logits :math:`(B,)` and :math:`(I,)`
    """

    def __init__(self, num_signals: int = 3, hidden_channels: int = 16,
                 prior: float = 0.5) -> None:
        super().__init__()
        if not 0 < prior < 1:
            raise ValueError(f"ScoreGate: prior must lie in (0, 1), got {prior}")
        self.prior = prior
        self.num_signals = num_signals
        self.hidden_channels = hidden_channels
        self.user_mlp = Sequential(Linear(num_signals, hidden_channels), Tanh(),
                                   Linear(hidden_channels, 1))
        self.item_mlp = Sequential(Linear(num_signals, hidden_channels), Tanh(),
                                   Linear(hidden_channels, 1))
        self.log_scale = torch.nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for mlp in (self.user_mlp, self.item_mlp):
            mlp[0].reset_parameters()
            # Zero output layers: g = prior everywhere, the fixed mix, until the gate learns.
            torch.nn.init.zeros_(mlp[2].weight)
            torch.nn.init.zeros_(mlp[2].bias)
        torch.nn.init.zeros_(self.log_scale)

    def temperature(self) -> Tensor:
        r"""The learned softmax temperature :math:`\tau_g = e^{-\gamma}` of the gate's training
        loss (``[1]``; 1 at the start)."""
        return self.log_scale.neg().exp()

    @staticmethod
    def signals(degree: Tensor, *embeddings: Tensor) -> Tensor:
        """Stack ``log1p(degree)`` and the (detached) row norms of ``embeddings``: ``[N, S]``."""
        cols = [torch.log1p(degree.float())]
        cols += [e.detach().float().norm(dim=-1) for e in embeddings]
        return torch.stack(cols, dim=-1)

    def forward(self, user_signals: Tensor, item_signals: Tensor) -> tuple[Tensor, Tensor]:
        """Per-user and per-item gate logits; :math:`g = \\sigma(a_u + b_i)`."""
        offset = math.log(self.prior / (1 - self.prior))
        return (self.user_mlp(user_signals).squeeze(-1),
                self.item_mlp(item_signals).squeeze(-1) + offset)

    @staticmethod
    def mix(s_gnn: Tensor, s_mf: Tensor, gate: Tensor) -> Tensor:
        return gate * s_gnn + (1 - gate) * s_mf

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_signals}, hidden={self.hidden_channels}"
                + (f", prior={self.prior:.3g}" if self.prior != 0.5 else "") + ")")
