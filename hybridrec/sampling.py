"""Negative sampling and simulated cold start; every sampler takes a ``torch.Generator``."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch_geometric.typing import EdgeType

from hybridrec.graph import INTERACTS, REV_INTERACTS
from hybridrec.scoring import UserItems


def edge_batches(num_edges: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled positions ``0..num_edges-1`` in chunks of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise ValueError(f"edge_batches: batch_size must be >= 1, got {batch_size}")
    perm = torch.randperm(num_edges, generator=generator)
    yield from perm.split(batch_size)


def uniform_items(num_items: int, size: tuple[int, ...], generator: torch.Generator,
                  candidates: Tensor | None = None) -> Tensor:
    """Item indices drawn uniformly with replacement, ``int64`` of shape ``size``, from
    ``0..num_items-1`` or from the ``candidates`` indices."""
    if candidates is None:
        return torch.randint(num_items, size, generator=generator)
    return candidates[torch.randint(len(candidates), size, generator=generator)]


def pair_keys(users: Tensor, items: Tensor, num_items: int) -> Tensor:
    """``user * num_items + item``: one int64 key per (user, item) pair (broadcasting)."""
    return users * num_items + items


def known_pairs(users: Tensor, negatives: Tensor, known_keys: Tensor | KnownPairs,
                num_items: int) -> Tensor:
    """``True`` where a sampled negative is one of the user's training items: ``[B, K]`` for
    negatives ``[1, K]`` shared by the batch's users ``[B]``, ``[B]`` for one per user.

    Such a negative is a false one: the evaluator masks training items, so pushing it down
    teaches nothing it is judged on, and it penalises exactly the model that remembers a
    user's items best (the gate learns to distrust the better branch).

    Args:
        known_keys: :func:`pair_keys` of the training pairs, or a :class:`KnownPairs`.
    """
    if isinstance(known_keys, KnownPairs):
        return known_keys.lookup(users, negatives)
    rows = users.unsqueeze(-1) if negatives.dim() == 2 else users
    return torch.isin(pair_keys(rows, negatives, num_items), known_keys)


class KnownPairs:
    """A set of (user, item) pairs for :func:`known_pairs`: a dense ``bool [U, I]`` table when
    that is small (a gather per lookup), else each user's sorted items (CSR): a shared row of
    ``K`` negatives is then matched against the batch users' own items only, at a cost linear
    in their interactions, not in ``users x K`` (``torch.isin`` on 4,000 x 4,096 keys took a
    second a step on a 10^6-pair graph).

    Args:
        edge_index: the pairs ``[2, N]`` (users in row 0).
        num_users / num_items: the table's shape.
        max_dense: the largest ``U * I`` kept dense (default: 50M, 50 MB).
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 max_dense: int = 50_000_000) -> None:
        self.num_items = num_items
        self.table: Tensor | None = None
        self.keys: Tensor | None = None
        self.user_items: UserItems | None = None
        if num_users * num_items <= max_dense:
            self.table = torch.zeros(num_users, num_items, dtype=torch.bool)
            self.table[edge_index[0], edge_index[1]] = True
        else:
            self.keys = torch.unique(pair_keys(edge_index[0], edge_index[1], num_items))
            # The same pairs by user (the keys are sorted: users in order, items within).
            indptr = torch.zeros(num_users + 1, dtype=torch.long)
            indptr[1:] = torch.cumsum(torch.bincount(self.keys // num_items,
                                                     minlength=num_users), 0)
            self.user_items = UserItems(indptr, self.keys % num_items, num_items)

    def lookup(self, users: Tensor, items: Tensor) -> Tensor:
        """``True`` where ``(users, items)`` is in the set; shapes as :func:`known_pairs`."""
        shared = items.dim() == 2 and items.size(0) == 1  # [1, K]: one row for every user
        if self.table is not None and shared:  # rows of the table, K columns
            return self.table.index_select(0, users).index_select(1, items[0])
        if shared and users.dim() == 1:
            return self._shared(users, items[0])
        rows = users.unsqueeze(-1) if items.dim() == 2 else users
        if self.table is not None:
            return self.table[rows, items]
        if len(self.keys) == 0:
            return torch.zeros(torch.broadcast_shapes(rows.shape, items.shape), dtype=torch.bool)
        queries = pair_keys(rows, items, self.num_items)
        found = torch.searchsorted(self.keys, queries).clamp_(max=len(self.keys) - 1)
        return self.keys[found] == queries

    def _shared(self, users: Tensor, negatives: Tensor) -> Tensor:
        """``bool [U', K]``: which of the shared ``negatives`` each of ``users`` has."""
        out = torch.zeros(len(users), len(negatives), dtype=torch.bool)
        row, item = self.user_items.pairs(users)
        # Each user item against the sorted negatives (a negative may be drawn twice).
        ordered, order = torch.sort(negatives)
        left = torch.searchsorted(ordered, item)
        hits = torch.searchsorted(ordered, item, right=True) - left
        row, left, hits = row[hits > 0], left[hits > 0], hits[hits > 0]
        out[torch.repeat_interleave(row, hits), order[_ranges(left, hits)]] = True
        return out


def _ranges(start: Tensor, count: Tensor) -> Tensor:
    """``start[0] .. start[0] + count[0] - 1``, then the next range, ..., concatenated."""
    offsets = torch.arange(int(count.sum())) - torch.repeat_interleave(
        torch.cumsum(count, 0) - count, count)
    return torch.repeat_interleave(start, count) + offsets


def cold_item_mask(item_degree: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Pick ``round(fraction * warm items)`` warm items to treat as cold for one step.

    DropoutNet (`Volkovs et al. <https://papers.nips.cc/paper/7081-dropoutnet>`_) drops the
    preference input of random items during training so that the model learns to score them
    from content alone; here the picked items lose their ID embedding and interaction edges.

    Args:
        item_degree: training interactions per item ``[num_items]``; items at 0 are cold
            already and never picked.
        fraction: share of warm items to mask, in ``[0, 1]``.
        generator: the random source.

    Returns:
        ``bool [num_items]``, ``True`` for the picked items.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"cold_item_mask: fraction must lie in [0, 1], got {fraction}")
    warm = torch.nonzero(item_degree.cpu() > 0).flatten()
    count = int(round(fraction * len(warm)))
    mask = torch.zeros(len(item_degree), dtype=torch.bool)
    if count:
        mask[warm[torch.randperm(len(warm), generator=generator)[:count]]] = True
    return mask.to(item_degree.device)


def drop_interactions(edge_index_dict: dict[EdgeType, Tensor], item_mask: Tensor,
                      pairs: Tensor | None = None) -> dict[EdgeType, Tensor]:
    """The same edges without the interactions of masked items (both directions), and
    without the given ``(user, item)`` ``pairs`` ``[2, B]`` (a batch's label edges, so that
    the model cannot score a pair by seeing its own edge).

    Other edge types (the KG) are untouched: a cold item still has its text and KG edges.
    """
    out = dict(edge_index_dict)
    num_items = item_mask.numel()
    drop_pairs = pairs is not None and pairs.numel() > 0
    if not bool(item_mask.any()) and not drop_pairs:
        return out
    label_keys = pairs[0] * num_items + pairs[1] if drop_pairs else None
    for edge_type, user_row in ((INTERACTS, 0), (REV_INTERACTS, 1)):
        if edge_type in out:
            edge_index = out[edge_type]
            users, items = edge_index[user_row], edge_index[1 - user_row]
            keep = ~item_mask[items]
            if label_keys is not None:
                keep &= ~torch.isin(users * num_items + items, label_keys)
            out[edge_type] = edge_index[:, keep]
    return out
