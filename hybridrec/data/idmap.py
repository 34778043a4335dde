"""IdMap: the user's own ids (exact strings) <-> contiguous integer indices."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class IdMap:
    """A frozen bijection between raw ids and ``0..n-1``.

    Raw ids are kept as exact strings: ``"01"``, ``"1.0"`` and ``"1"`` are three ids.
    Indices follow the order of first appearance.

    Args:
        ids: raw ids, unique.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids: tuple[str, ...] = tuple(str(i) for i in ids)
        self._index: dict[str, int] = {raw: k for k, raw in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(i for i in self._ids if i in seen or seen.add(i))
            raise ValueError(f"IdMap: duplicate id {dup!r}")

    @classmethod
    def from_values(cls, values: Iterable[str]) -> IdMap:
        """Build from values that may repeat, keeping first-appearance order."""
        return cls(dict.fromkeys(str(v) for v in values))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return raw_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"IdMap({len(self)} ids)"

    @property
    def ids(self) -> tuple[str, ...]:
        """All raw ids, by index."""
        return self._ids

    def index(self, raw_id: str) -> int:
        """Index of one raw id; ``KeyError`` if unknown."""
        return self._index[raw_id]

    def get(self, raw_id: str, default: int = -1) -> int:
        """Index of one raw id, or ``default`` if unknown."""
        return self._index.get(raw_id, default)

    def indices(self, raw_ids: Iterable[str], default: int = -1) -> np.ndarray:
        """Indices of many raw ids as ``int64``; unknown ids get ``default``."""
        get = self._index.get
        return np.fromiter((get(str(r), default) for r in raw_ids), dtype=np.int64)

    def to_ids(self, index: Sequence[int] | np.ndarray) -> list[str]:
        """Raw ids of many indices."""
        return [self._ids[int(k)] for k in index]

    def to_list(self) -> list[str]:
        """JSON-ready form; ``IdMap(m.to_list()) == m``."""
        return list(self._ids)
