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


def shared_softmax_loss(pos: Tensor, neg: Tensor, row: Tensor, temperature: float = 1.0,
                        neg_mask: Tensor | None = None) -> Tensor:
    r""":func:`sampled_softmax_loss` for rows whose user's negatives (and mask) they share: the
    negatives' log-sum-exp is computed once per user, not once per row.

    .. math::
        \mathcal{L} = \frac{1}{B} \sum_b \Big[\log\Big(e^{s_b^{+}/\tau}
        + \sum_{k \notin M_{u_b}} e^{s_{u_b k}^{-}/\tau}\Big) - s_b^{+}/\tau\Big]

    Equal to :func:`sampled_softmax_loss` with row ``b``'s negatives ``neg[row[b]]`` and mask
    ``neg_mask[row[b]]`` (a row whose negatives are all masked costs 0 in both).

    Shapes:
        - **input:** positive scores :math:`(B,)`; each user's negative scores :math:`(U, K)`;
          ``row``: the user of each positive, :math:`(B,)` in :math:`[0, U)`; mask
          :math:`(U, K)`
        - **output:** scalar
    """
    logits = neg.float() / temperature
    if neg_mask is not None:
        # The smallest float, not -inf: a user with every negative masked keeps finite
        # gradients (its log-sum-exp is then ~ -3e38, and exp() of it 0 beside any positive).
        logits = logits.masked_fill(neg_mask, torch.finfo(logits.dtype).min)
    lse = torch.logsumexp(logits, dim=-1)  # [U]
    p = pos.float() / temperature
    return (torch.logaddexp(p, lse.index_select(0, row)) - p).mean()
