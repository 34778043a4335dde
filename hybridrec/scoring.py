"""The one face every model shows the evaluator: ``score(user_index) -> [B, num_items]``.

Also :class:`UserItems`, per-user item sets in CSR form, used to mask seen items before top-K
and to look up histories.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from hybridrec.data.dataset import Interactions


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores every item for a batch of known users.

    ``score`` takes contiguous user indices (``int64 [B]``, on any device) and returns a float
    tensor ``[B, num_items]`` where higher means more relevant. It raises ``IndexError`` for an
    index outside ``[0, num_users)`` and maps an empty batch to ``[0, num_items]``. The evaluator
    moves the scores to its own device, so a scorer may return them where it computed them.
    """

    def score(self, user_index: Tensor) -> Tensor: ...


def check_user_index(user_index: Tensor | Sequence[int], num_users: int, where: str) -> Tensor:
    """``user_index`` as ``int64``, or ``IndexError`` naming ``where`` and the bad value.

    Args:
        user_index: contiguous user indices ``[B]``.
        num_users: the number of users the scorer knows.
        where: the scorer's name, for the message.
    """
    index = torch.as_tensor(user_index)
    if index.dim() != 1:
        raise ValueError(f"{where}.score: user_index must be 1-D, got shape {tuple(index.shape)}")
    if index.numel() == 0:
        return index.to(torch.long)
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise TypeError(f"{where}.score: user_index must hold integers, got {index.dtype}")
    index = index.to(torch.long)
    bad = (index < 0) | (index >= num_users)
    if bool(bad.any()):
        first = int(index[bad][0])
        raise IndexError(f"{where}.score: unknown user_index {first}; this scorer was fitted "
                         f"on {num_users} users (indices 0..{num_users - 1})")
    return index


class UserItems:
    """The distinct items of each user, as a CSR structure of torch tensors.

    Args:
        indptr: ``int64 [num_users + 1]`` row pointers.
        indices: ``int64 [nnz]`` item indices, sorted and distinct within a row.
        num_items: the number of columns.
    """

    def __init__(self, indptr: Tensor, indices: Tensor, num_items: int) -> None:
        self.indptr = indptr
        self.indices = indices
        self.num_items = num_items

    @classmethod
    def from_interactions(
        cls,
        parts: Interactions | Sequence[Interactions],
        num_users: int,
        num_items: int,
    ) -> UserItems:
        """The union of the (user, item) pairs of one or more parts; repeats count once."""
        parts = [parts] if isinstance(parts, Interactions) else list(parts)
        users = np.concatenate([p.user_index for p in parts]) if parts else np.zeros(0, np.int64)
        items = np.concatenate([p.item_index for p in parts]) if parts else np.zeros(0, np.int64)
        return cls.from_pairs(users, items, num_users, num_items)

    @classmethod
    def from_pairs(
        cls, user_index: np.ndarray, item_index: np.ndarray, num_users: int, num_items: int
    ) -> UserItems:
        """From parallel index arrays; repeats count once."""
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        if len(user_index) and (user_index.min() < 0 or user_index.max() >= num_users):
            raise ValueError(f"UserItems: user_index out of range [0, {num_users})")
        if len(item_index) and (item_index.min() < 0 or item_index.max() >= num_items):
            raise ValueError(f"UserItems: item_index out of range [0, {num_items})")
        key = np.unique(user_index * num_items + item_index)  # sorted, distinct
        users, items = key // num_items, key % num_items
        indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=num_users), out=indptr[1:])
        return cls(torch.from_numpy(indptr), torch.from_numpy(items), num_items)

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def __len__(self) -> int:
        return int(self.indices.numel())

    def to(self, device: torch.device | str) -> UserItems:
        return UserItems(self.indptr.to(device), self.indices.to(device), self.num_items)

    def counts(self, user_index: Tensor | None = None) -> Tensor:
        """Items per user, ``int64 [B]`` (all users when ``user_index`` is ``None``)."""
        lengths = self.indptr[1:] - self.indptr[:-1]
        return lengths if user_index is None else lengths[user_index.to(lengths.device)]

    def pairs(self, user_index: Tensor) -> tuple[Tensor, Tensor]:
        """``(row, item)`` pairs of the given users; ``row`` is the position in ``user_index``."""
        user_index = user_index.to(self.indptr.device)
        starts = self.indptr[user_index]
        lengths = self.indptr[user_index + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(user_index), device=starts.device), lengths)
        # Position of every pair inside its row: 0, 1, ..., length - 1.
        first = torch.cumsum(lengths, 0) - lengths
        offset = torch.arange(int(lengths.sum()), device=starts.device) - first[row]
        return row, self.indices[starts[row] + offset]

    def dense(self, user_index: Tensor, dtype: torch.dtype = torch.bool) -> Tensor:
        """Rows of the given users as a dense ``[B, num_items]`` 0/1 matrix."""
        row, item = self.pairs(user_index)
        out = torch.zeros(len(user_index), self.num_items, dtype=dtype, device=self.indptr.device)
        out[row, item] = 1
        return out
