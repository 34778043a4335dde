"""Dataset: the one in-memory truth every loader produces and everything downstream reads."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from hybridrec.data.idmap import IdMap


def _frozen(array: np.ndarray, dtype: type | str) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


def _frozen_table(columns: Mapping[str, np.ndarray], n: int, what: str) -> Mapping[str, np.ndarray]:
    table = {}
    for name, values in columns.items():
        values = _frozen(np.asarray(values, dtype=object), object)
        if len(values) != n:
            raise ValueError(f"{what} column {name!r} has {len(values)} values for {n} rows")
        table[name] = values
    return MappingProxyType(table)


@dataclass(frozen=True)
class Interactions:
    """Interaction rows as read-only parallel arrays.

    Args:
        user_index: ``int64 [N]`` contiguous user indices.
        item_index: ``int64 [N]`` contiguous item indices.
        rating: ``float32 [N]`` rating or weight, or ``None`` for pure implicit data.
        timestamp: ``float64 [N]`` seconds since the epoch (UTC), or ``None``.
    """

    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.user_index)
        object.__setattr__(self, "user_index", _frozen(self.user_index, np.int64))
        object.__setattr__(self, "item_index", _frozen(self.item_index, np.int64))
        if len(self.item_index) != n:
            raise ValueError("Interactions: user_index and item_index differ in length")
        for name, dtype in (("rating", np.float32), ("timestamp", np.float64)):
            value = getattr(self, name)
            if value is not None:
                value = _frozen(value, dtype)
                if len(value) != n:
                    raise ValueError(f"Interactions: {name} has {len(value)} values for {n} rows")
                object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.user_index)

    def select(self, rows: np.ndarray) -> Interactions:
        """A subset by boolean mask or integer positions."""
        return Interactions(
            self.user_index[rows],
            self.item_index[rows],
            None if self.rating is None else self.rating[rows],
            None if self.timestamp is None else self.timestamp[rows],
        )

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        """Rows of several parts, in order; rating/timestamp kept only if every part has them."""
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return Interactions(
            np.concatenate([p.user_index for p in parts]),
            np.concatenate([p.item_index for p in parts]),
            cat("rating"),
            cat("timestamp"),
        )


@dataclass(frozen=True)
class Dataset:
    """Users, items, their interactions and a knowledge graph, over contiguous ids.

    The knowledge graph is kept in three typed triple arrays, all ``int64 [T, 3]`` as
    (head, relation, tail) with relation indices into :attr:`relations`:

    * ``kg_triples``: entity -> entity (RDF graphs, RecBole ``.kg``);
    * ``item_attributes``: item -> entity (categorical item columns, e.g. item -genre-> Drama);
    * ``user_attributes``: user -> entity (categorical user columns, e.g. user -occupation-> nurse).

    ``item_entity`` (``int64 [L, 2]``) links items to the KG entity that stands for them;
    the graph builder merges a linked entity into its item node.

    Tables hold one read-only ``object`` array per column, indexed by the contiguous index;
    missing cells are ``""``. Column roles are listed in ``*_text_columns`` (free text that feeds
    the text encoder) and ``*_categorical_columns`` (values that became attribute triples).

    Args:
        name: a short name (``"ml-100k"``, a file stem).
        users / items / entities / relations: id maps.
        interactions: every known interaction.
        user_table / item_table: column name -> values per user / item.
        user_text_columns / item_text_columns / user_categorical_columns / item_categorical_columns:
            column roles, in display order.
        kg_triples / item_attributes / user_attributes / item_entity: see above.
        entity_text: a label per entity, ``""`` where the KG has none.
    """

    name: str
    users: IdMap
    items: IdMap
    interactions: Interactions
    entities: IdMap = field(default_factory=lambda: IdMap(()))
    relations: IdMap = field(default_factory=lambda: IdMap(()))
    user_table: Mapping[str, np.ndarray] = field(default_factory=dict)
    item_table: Mapping[str, np.ndarray] = field(default_factory=dict)
    user_text_columns: tuple[str, ...] = ()
    item_text_columns: tuple[str, ...] = ()
    user_categorical_columns: tuple[str, ...] = ()
    item_categorical_columns: tuple[str, ...] = ()
    kg_triples: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    item_attributes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    user_attributes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    item_entity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    entity_text: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("user_table", _frozen_table(self.user_table, self.num_users, "user table"))
        set_("item_table", _frozen_table(self.item_table, self.num_items, "item table"))
        for name, width in (("kg_triples", 3), ("item_attributes", 3),
                            ("user_attributes", 3), ("item_entity", 2)):
            array = _frozen(np.asarray(getattr(self, name)).reshape(-1, width), np.int64)
            set_(name, array)
        if self.entity_text is None:
            set_("entity_text", ("",) * self.num_entities)
        set_("entity_text", tuple(self.entity_text))
        self._check()

    def _check(self) -> None:
        def within(values: np.ndarray, n: int, what: str) -> None:
            if len(values) and (values.min() < 0 or values.max() >= n):
                raise ValueError(f"Dataset {self.name!r}: {what} out of range [0, {n})")

        within(self.interactions.user_index, self.num_users, "interaction user_index")
        within(self.interactions.item_index, self.num_items, "interaction item_index")
        within(self.kg_triples[:, [0, 2]].ravel(), self.num_entities, "kg_triples entity")
        within(self.item_attributes[:, 0], self.num_items, "item_attributes item")
        within(self.user_attributes[:, 0], self.num_users, "user_attributes user")
        for triples, what in ((self.kg_triples, "kg_triples"), (self.item_attributes, "item_attributes"),
                              (self.user_attributes, "user_attributes")):
            within(triples[:, 1], self.num_relations, f"{what} relation")
        within(self.item_attributes[:, 2], self.num_entities, "item_attributes entity")
        within(self.user_attributes[:, 2], self.num_entities, "user_attributes entity")
        within(self.item_entity[:, 0], self.num_items, "item_entity item")
        within(self.item_entity[:, 1], self.num_entities, "item_entity entity")
        if len(self.entity_text) != self.num_entities:
            raise ValueError(f"Dataset {self.name!r}: entity_text has {len(self.entity_text)} "
                             f"labels for {self.num_entities} entities")

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def item_degree(self, interactions: Interactions | None = None) -> np.ndarray:
        """Interactions per item, ``int64 [num_items]`` (of ``interactions``, default all)."""
        inter = self.interactions if interactions is None else interactions
        return np.bincount(inter.item_index, minlength=self.num_items)

    def user_degree(self, interactions: Interactions | None = None) -> np.ndarray:
        """Interactions per user, ``int64 [num_users]`` (of ``interactions``, default all)."""
        inter = self.interactions if interactions is None else interactions
        return np.bincount(inter.user_index, minlength=self.num_users)

    def info(self) -> dict[str, object]:
        """A cheap summary: counts, density and degree statistics (JSON-ready)."""
        n = len(self.interactions)
        ideg, udeg = self.item_degree(), self.user_degree()

        def stats(deg: np.ndarray) -> dict[str, float]:
            if not len(deg):
                return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
            return {"min": int(deg.min()), "median": float(np.median(deg)),
                    "mean": round(float(deg.mean()), 3), "max": int(deg.max())}

        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": n,
            "density": n / max(1, self.num_users * self.num_items),
            "has_rating": self.interactions.rating is not None,
            "has_timestamp": self.interactions.timestamp is not None,
            "entities": self.num_entities,
            "relations": self.num_relations,
            "kg_triples": len(self.kg_triples),
            "item_attribute_triples": len(self.item_attributes),
            "user_attribute_triples": len(self.user_attributes),
            "linked_items": int(len(np.unique(self.item_entity[:, 0]))),
            "user_degree": stats(udeg),
            "item_degree": stats(ideg),
            "items_without_interactions": int((ideg == 0).sum()),
        }
