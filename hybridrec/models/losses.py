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
                        neg_mask: Tensor | None = None, text_neg: Tensor | None = None,
                        text_scale: Tensor | None = None) -> Tensor:
    r""":func:`sampled_softmax_loss` for rows whose user's negatives (and mask) they share: the
    negatives' log-sum-exp is computed once per user, not once per row.

    .. math::
        \mathcal{L} = \frac{1}{B} \sum_b \Big[\log\Big(e^{s_b^{+}/\tau}
        + \sum_{k \notin M_{u_b}} e^{s_{u_b k}^{-}/\tau}\Big) - s_b^{+}/\tau\Big]

    Equal to :func:`sampled_softmax_loss` with row ``b``'s negatives ``neg[row[b]]`` and mask
    ``neg_mask[row[b]]`` (a row whose negatives are all masked costs 0 in both).

    With ``text_neg`` and ``text_scale`` the negatives' scores are
    ``neg + text_scale * text_neg`` (``text_neg`` constant: only ``neg`` and the scale get
    gradients), combined, masked and log-sum-exp'ed in one fused pass
    (:class:`_SharedLogSumExp`) rather than through a chain of ``[U, K]`` temporaries.

    Shapes:
        - **input:** positive scores :math:`(B,)`; each user's negative scores :math:`(U, K)`;
          ``row``: the user of each positive, :math:`(B,)` in :math:`[0, U)`; mask
          :math:`(U, K)`
        - **output:** scalar
    """
    if text_neg is not None:
        lse = _SharedLogSumExp.apply(neg, text_neg.to(neg.dtype), text_scale, temperature,
                                     neg_mask)
        p = pos.float() / temperature
        return (torch.logaddexp(p, lse.index_select(0, row)) - p).mean()
    logits = neg.float() / temperature
    if neg_mask is not None:
        # The smallest float, not -inf: a user with every negative masked keeps finite
        # gradients (its log-sum-exp is then ~ -3e38, and exp() of it 0 beside any positive).
        logits = logits.masked_fill(neg_mask, torch.finfo(logits.dtype).min)
    lse = torch.logsumexp(logits, dim=-1)  # [U]
    p = pos.float() / temperature
    return (torch.logaddexp(p, lse.index_select(0, row)) - p).mean()


class _SharedLogSumExp(torch.autograd.Function):
    r"""Each user's masked log-sum-exp of ``(neg + scale * text_neg) / tau``, :math:`(U,)`:
    what ``shared_softmax_loss`` computes from ``neg + scale * text_neg`` with autograd, in
    fewer passes over the :math:`(U, K)` matrix. Forward: one ``addcmul`` into a fresh float32
    buffer, then division, mask, and the log-sum-exp in place:
    :math:`\mathrm{lse}_u = m_u + \log S_u` with :math:`m_u = \max_k L_{uk}` and
    :math:`S_u = \sum_k e^{L_{uk} - m_u}`, the buffer keeping :math:`e^{L_{uk} - m_u}`.
    Backward: the softmax :math:`e^{L_{uk} - m_u} g_u / (\tau S_u)` written over that same
    buffer (the graph cannot be run backward twice), masked entries 0; the scale's gradient
    is its dot product with ``text_neg``.
    """

    @staticmethod
    def forward(ctx, neg: Tensor, text_neg: Tensor, scale: Tensor, temperature: float,
                mask: Tensor | None) -> Tensor:
        # neg + scale * text_neg, as autograd's add and mul would type it: float32 at least.
        logits = torch.addcmul(neg.float(), text_neg.float(), scale.float())
        logits.div_(temperature)
        if mask is not None:
            # The smallest float, not -inf: see shared_softmax_loss.
            logits.masked_fill_(mask, torch.finfo(logits.dtype).min)
        top = logits.amax(-1, keepdim=True)
        total = logits.sub_(top).exp_().sum(-1)
        lse = top.squeeze(-1) + total.log()
        ctx.save_for_backward(logits, total, text_neg, mask)
        ctx.temperature, ctx.neg_dtype, ctx.spent = temperature, neg.dtype, False
        ctx.scale_shape, ctx.scale_dtype = scale.shape, scale.dtype
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.spent:
            raise RuntimeError("the fused softmax's backward reuses its buffer: it runs once")
        ctx.spent = True
        weight, total, text_neg, mask = ctx.saved_tensors
        weight.mul_((grad / (ctx.temperature * total)).unsqueeze(-1))
        if mask is not None:
            weight.masked_fill_(mask, 0.0)  # as masked_fill's backward: masked entries get none
        scale_grad = None
        if ctx.needs_input_grad[2]:
            scale_grad = torch.dot(weight.view(-1), text_neg.float().reshape(-1))
            scale_grad = scale_grad.reshape(ctx.scale_shape).to(ctx.scale_dtype)
        neg_grad = weight.to(ctx.neg_dtype) if ctx.needs_input_grad[0] else None
        return neg_grad, None, scale_grad, None, None
