"""Ranking losses for implicit feedback."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos: Tensor, neg: Tensor, neg_mask: Tensor | None = None) -> Tensor:
    r"""Bayesian personalised ranking (`Rendle et al. <https://arxiv.org/abs/1205.2618>`_).

    .. math::
        \mathcal{L} = -\frac{1}{B} \sum_{b} \log \sigma\big(s_{b}^{+} - s_{b}^{-}\big)

    Args:
        pos: positive scores.
        neg: negative scores.
        neg_mask: ``True`` where a negative must be ignored (the mean runs over the rest).

    Shapes:
        - **input:** positive scores :math:`(B,)`, negative scores :math:`(B,)` or
          :math:`(B, K)` (averaged over :math:`K`), mask of ``neg``'s shape
        - **output:** scalar
    """
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)
    losses = -F.logsigmoid(pos - neg)
    if neg_mask is None:
        return losses.mean()
    keep = (~neg_mask).to(losses.dtype)
    return (losses * keep).sum() / keep.sum().clamp(min=1)


def sampled_softmax_loss(pos: Tensor, neg: Tensor, temperature: float = 1.0,
                         neg_mask: Tensor | None = None) -> Tensor:
    r"""Sampled softmax: cross-entropy of the positive against :math:`K` uniform negatives
    (`Jean et al. <https://arxiv.org/abs/1412.2007>`_; with uniform sampling the logQ
    correction is a constant and drops out).

    .. math::
        \mathcal{L} = -\frac{1}{B} \sum_b \log
        \frac{\exp(s_b^{+}/\tau)}{\exp(s_b^{+}/\tau) + \sum_k \exp(s_{bk}^{-}/\tau)}

    Args:
        pos: positive scores.
        neg: negative scores.
        temperature: :math:`\tau` (default: :obj:`1.0`).
        neg_mask: ``True`` where a negative must be ignored (it is the row's positive).

    Shapes:
        - **input:** :math:`(B,)`, :math:`(B, K)`, mask :math:`(B, K)`
        - **output:** scalar
    """
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1) / temperature  # [B, 1 + K]
    if neg_mask is not None:
        mask = torch.cat([torch.zeros_like(neg_mask[:, :1]), neg_mask], dim=-1)
        logits = logits.masked_fill(mask, float("-inf"))
    return -torch.log_softmax(logits.float(), dim=-1)[:, 0].mean()
