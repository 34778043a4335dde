"""Uniform negative sampling for the BPR-trained baselines."""
from __future__ import annotations

import torch
from torch import Tensor


def sample_negatives(
    user_index: Tensor,
    num_items: int,
    positive_keys: Tensor,
    generator: torch.Generator,
    max_rounds: int = 5,
) -> Tensor:
    """One uniformly drawn item per user that (almost always) is not one of its positives.

    Draws are redrawn up to ``max_rounds`` times while they hit a training positive; what is
    left after that (only for users who saw nearly every item) is kept.

    Args:
        user_index: ``int64 [B]`` on CPU.
        num_items: the catalogue size.
        positive_keys: sorted ``int64`` keys ``user * num_items + item`` of training pairs.
        generator: a CPU ``torch.Generator``.
        max_rounds: redraw rounds (default: 5).

    Shapes:
        - **output:** ``int64 [B]`` on CPU.
    """
    neg = torch.randint(num_items, user_index.shape, generator=generator)
    if positive_keys.numel() == 0:
        return neg
    last = positive_keys.numel() - 1
    for _ in range(max_rounds):
        # Membership by binary search (torch.isin is far slower here).
        query = user_index * num_items + neg
        clash = positive_keys[torch.searchsorted(positive_keys, query).clamp(max=last)] == query
        n = int(clash.sum())
        if n == 0:
            break
        neg[clash] = torch.randint(num_items, (n,), generator=generator)
    return neg
