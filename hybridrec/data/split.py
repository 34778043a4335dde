"""Split: train / valid / test interactions, and the ways to make one."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hybridrec.data.dataset import Dataset, Interactions


@dataclass(frozen=True)
class Split:
    """Train / valid / test interactions of one :class:`Dataset`.

    Validation and test rows never enter the training graph. ``cold_items`` / ``cold_users``
    list the indices held out entirely from training by a cold-start split (empty otherwise).

    Args:
        kind: how it was made (``"random"``, ``"temporal"``, ``"cold-items"``, ...).
        train / valid / test: the interactions of each part.
        cold_items / cold_users: ``int64`` indices with no training interaction by design.
        seed: the seed that made it, if any.
    """

    kind: str
    train: Interactions
    valid: Interactions
    test: Interactions
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cold_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("cold_items", "cold_users"):
            array = np.array(getattr(self, name), dtype=np.int64, copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def random_split(
    dataset: Dataset,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Per-user random split by ``ratios`` (normalised to sum to 1).

    Each user's interactions are shuffled with a seeded generator and cut at
    ``round(n * r_train)`` and ``round(n * (r_train + r_valid))``. Users with fewer than three
    interactions keep them all in train (they cannot be evaluated without starving training).
    """
    r = np.asarray(ratios, dtype=float)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise ValueError(f"random_split: ratios must be three non-negative numbers, got {ratios}")
    r = r / r.sum()
    rng = np.random.default_rng(seed)
    inter = dataset.interactions
    part = np.zeros(len(inter), dtype=np.int8)  # 0 train, 1 valid, 2 test
    order = np.argsort(inter.user_index, kind="stable")
    bounds = np.flatnonzero(np.diff(inter.user_index[order])) + 1
    for rows in np.split(order, bounds):
        n = len(rows)
        if n < 3:
            continue
        rows = rng.permutation(rows)
        n_train = int(round(n * r[0]))
        n_valid = int(round(n * (r[0] + r[1]))) - n_train
        n_train = max(1, n_train)
        part[rows[n_train:n_train + n_valid]] = 1
        part[rows[n_train + n_valid:]] = 2
    return Split("random", inter.select(part == 0), inter.select(part == 1),
                 inter.select(part == 2), seed=seed)
