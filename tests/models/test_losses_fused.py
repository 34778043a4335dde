"""shared_softmax_loss with the text channel fused in (``text_neg``, ``text_scale``) against
the straightforward formula: add the scaled text scores, then mask, temperature, log-sum-exp."""
import pytest
import torch

from hybridrec.models.losses import sampled_softmax_loss, shared_softmax_loss


def _inputs(seed: int, users: int = 6, k: int = 9):
    g = torch.Generator().manual_seed(seed)
    row = torch.tensor([0, 0, 1, 3, 3, 3, 4, 2, 1, 5, 5])
    pos = torch.randn(len(row), generator=g, requires_grad=True)
    neg = torch.randn(users, k, generator=g, requires_grad=True)
    text_neg = torch.randn(users, k, generator=g)
    log_scale = (0.3 * torch.randn(1, generator=g)).requires_grad_()
    mask = torch.rand(users, k, generator=g) < 0.3
    mask[4] = True  # every negative masked: the user's rows have their positive alone
    return pos, neg, text_neg, log_scale, row, mask


def _value_and_grads(fused: bool, mask: torch.Tensor | None, seed: int = 0):
    pos, neg, text_neg, log_scale, row, _ = inputs = _inputs(seed)
    scale = log_scale.exp()
    if fused:
        value = shared_softmax_loss(pos, neg, row, 0.5, mask, text_neg=text_neg,
                                    text_scale=scale)
    else:  # the reference: the formula as written before the fusion
        logits = (neg + scale * text_neg).float() / 0.5
        if mask is not None:
            logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
        lse = torch.logsumexp(logits, dim=-1)
        p = pos / 0.5
        value = (torch.logaddexp(p, lse[row]) - p).mean()
    value.backward()
    return value.detach(), pos.grad, neg.grad, log_scale.grad


@pytest.mark.parametrize("masked", [True, False])
def test_the_fused_text_softmax_gives_the_reference_loss_and_every_gradient(masked):
    mask = _inputs(0)[-1] if masked else None
    fused, reference = _value_and_grads(True, mask), _value_and_grads(False, mask)
    for name, a, b in zip(("loss", "pos", "neg", "text scale"), fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    assert fused[3].abs() > 1e-3  # the scale's gradient is there to compare
    if masked:
        neg_grad = fused[2]
        assert torch.isfinite(neg_grad).all()
        assert bool((neg_grad[mask] == 0).all())  # masked entries, the all-masked user too
        assert bool((neg_grad[4] == 0).all())


def test_the_fused_text_softmax_equals_the_per_row_softmax():
    pos, neg, text_neg, log_scale, row, mask = _inputs(1)
    scale = log_scale.exp()
    fused = shared_softmax_loss(pos, neg, row, 0.5, mask, text_neg=text_neg, text_scale=scale)
    per_row = sampled_softmax_loss(pos, (neg + scale * text_neg)[row], 0.5, mask[row])
    torch.testing.assert_close(fused, per_row, rtol=1e-5, atol=1e-7)
    # (user 4's negatives are all masked: its row costs 0 in both)


def test_the_fused_backward_refuses_a_second_run():
    pos, neg, text_neg, log_scale, row, mask = _inputs(2)
    value = shared_softmax_loss(pos, neg, row, 0.5, mask, text_neg=text_neg,
                                text_scale=log_scale.exp())
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        value.backward()
