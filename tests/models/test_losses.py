"""Ranking losses against their formulas."""
import math

import torch

from hybridrec.models.losses import bpr_loss, sampled_softmax_loss, shared_softmax_loss


def test_bpr_loss():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(1)))) / 2
    assert abs(float(bpr_loss(pos, neg)) - expected) < 1e-6
    # Several negatives per positive are averaged.
    many = bpr_loss(pos, torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    assert abs(float(many) - expected) < 1e-6


def test_sampled_softmax_is_cross_entropy_with_the_positive_first():
    torch.manual_seed(0)
    pos, neg = torch.randn(5), torch.randn(5, 7)
    logits = torch.cat([pos[:, None], neg], 1) / 0.5
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(sampled_softmax_loss(pos, neg, 0.5), expected)


def test_masked_negatives_are_ignored():
    pos, neg = torch.tensor([1.0]), torch.tensor([[1.0, 100.0]])
    masked = sampled_softmax_loss(pos, neg, 1.0, torch.tensor([[False, True]]))
    torch.testing.assert_close(masked, torch.tensor(math.log(2.0)))


def test_bpr_masked_pairs_leave_the_mean():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    masked = bpr_loss(pos, neg, torch.tensor([False, True]))
    assert abs(float(masked) - math.log(1 + math.exp(-1))) < 1e-6


def test_shared_softmax_equals_the_per_row_softmax_with_each_rows_user_negatives():
    g = torch.Generator().manual_seed(0)
    users, k = 5, 7
    row = torch.tensor([0, 0, 1, 3, 3, 3, 4, 2, 1])
    pos = torch.randn(len(row), generator=g, requires_grad=True)
    neg = torch.randn(users, k, generator=g, requires_grad=True)
    mask = torch.rand(users, k, generator=g) < 0.3
    mask[4] = True  # a user whose every negative is masked costs 0 and stays finite
    shared = shared_softmax_loss(pos, neg, row, 0.5, mask)
    shared.backward()
    grads = pos.grad.clone(), neg.grad.clone()
    pos.grad = neg.grad = None
    per_row = sampled_softmax_loss(pos, neg[row], 0.5, mask[row])
    per_row.backward()
    torch.testing.assert_close(shared, per_row)
    torch.testing.assert_close(grads[0], pos.grad)
    torch.testing.assert_close(grads[1], neg.grad)
    assert torch.isfinite(grads[1]).all() and bool((grads[1][4] == 0).all())
