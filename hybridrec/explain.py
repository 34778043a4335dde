"""Why an item was recommended: knowledge-graph paths from the user's history, the nearest
history items, and each scorer's share of the score.

A KG path here has one or two hops between two items, over the data set's triples (KG
triples with linked entities resolved to their items, and the attribute triples of
categorical columns)::

    Heat --directed by--> Michael Mann <--directed by-- Collateral
    Taxi Driver --genre--> Drama <--genre-- Goodfellas
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from hybridrec.data.dataset import Dataset
from hybridrec.text.builders import relation_label


@dataclass(frozen=True)
class PathStep:
    """One hop of a path: ``relation`` read from ``source`` towards ``target``."""

    source: str
    relation: str
    target: str


@dataclass(frozen=True)
class KGPath:
    """A path from a history item to the recommended item; ``text`` reads it in one line."""

    from_item: str
    steps: tuple[PathStep, ...]
    text: str
    labelled: bool = True  # every node on it has a human label (not a bare KG id)


@dataclass(frozen=True)
class Explanation:
    """Structured reasons for one (user, item) pair; :meth:`to_dict` is JSON-ready.

    Attributes:
        user_id / item_id: the pair.
        score: the mixed score.
        shares: each scorer's contribution to ``score`` (weight × standardised score).
        gate: the GNN's weight in the mix (``None`` without an MF side).
        kg_paths: KG paths from the user's history items to the item, shortest first.
        similar_history: the history items closest to the item (raw id, title, cosine).
        sentence: one readable sentence.
    """

    user_id: str
    item_id: str
    score: float
    shares: dict[str, float]
    gate: float | None
    kg_paths: tuple[KGPath, ...]
    similar_history: tuple[dict[str, object], ...]
    sentence: str = field(default="")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class KnowledgePaths:
    """An index of item facts, ``item -> [(relation, node)]``, to find short paths between
    items. Nodes are ``("item", index)`` or ``("entity", index)``; linked entities count as
    their items.

    Args:
        dataset: the data set whose KG and attribute triples are indexed.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.item_titles = _titles(dataset)
        self.entity_labels = list(dataset.entity_text)
        self.entity_ids = list(dataset.entities.ids)
        self.relation_labels = [relation_label(r) for r in dataset.relations.ids]
        items_of: dict[int, list[int]] = defaultdict(list)
        for item, entity in dataset.item_entity:
            items_of[int(entity)].append(int(item))
        self._items_of = items_of
        # facts[item] = [(relation label, reversed?, node)], node = ("item"|"entity", index).
        self.facts: dict[int, list[tuple[str, bool, tuple[str, int]]]] = defaultdict(list)
        # holders[node] = items with a fact pointing at node.
        self.holders: dict[tuple[str, int], set[int]] = defaultdict(set)
        # first_label[item][node] = the relation label of the item's first fact about node.
        self.first_label: dict[int, dict[tuple[str, int], str]] = defaultdict(dict)
        for item, rel, entity in dataset.item_attributes:
            self._add(int(item), int(rel), ("entity", int(entity)), False)
        for head, rel, tail in dataset.kg_triples:
            self.add_triple(int(head), int(rel), int(tail))

    def _node(self, entity: int) -> list[tuple[str, int]]:
        items = self._items_of.get(entity)
        return [("item", i) for i in items] if items else [("entity", entity)]

    def _add(self, item: int, rel: int, node: tuple[str, int], reverse: bool) -> None:
        label = self.relation_labels[rel]
        self.facts[item].append((label, reverse, node))
        self.holders[node].add(item)
        self.first_label[item].setdefault(node, label)

    def add_triple(self, head: int, rel: int, tail: int) -> None:
        """Index one KG triple between entity indices (linked entities become items)."""
        for h in self._node(head):
            for t in self._node(tail):
                if h[0] == "item":
                    self._add(h[1], rel, t, False)
                if t[0] == "item":
                    self._add(t[1], rel, h, True)

    def add_item(self, item: int, title: str, facts: Iterable[tuple[int, tuple[str, int], bool]],
                 entity: int | None = None) -> None:
        """Index an item added after training: its title, its facts ``(relation index, node,
        reversed)`` and, if it stands for a KG entity, that entity."""
        while len(self.item_titles) <= item:
            self.item_titles.append("")
        self.item_titles[item] = title
        if entity is not None:
            self._items_of[entity].append(item)
        for rel, node, reverse in facts:
            self._add(item, rel, node, reverse)
            if node[0] == "item":
                self._add(node[1], rel, ("item", item), not reverse)

    def has_label(self, node: tuple[str, int]) -> bool:
        return node[0] == "item" or bool(self.entity_labels[node[1]])

    def label(self, node: tuple[str, int]) -> str:
        kind, index = node
        if kind == "item":
            return self.item_titles[index] if index < len(self.item_titles) else str(index)
        return self.entity_labels[index] or self.entity_ids[index]

    def paths(self, history: Sequence[int], item: int, limit: int = 5) -> list[KGPath]:
        """Up to ``limit`` paths from items of ``history`` to ``item``: direct relations
        first, then two hops through a shared node, labelled nodes before bare KG ids, and
        rarer shared nodes first (a shared director says more than a shared genre)."""
        history_set = set(int(h) for h in history)
        target = self.label(("item", item))
        direct: list[KGPath] = []
        # Two-hop paths in groups of equal rank, (bare KG id?, holders of the shared node):
        # only the best groups are spelled out, until ``limit`` paths are found.
        groups: dict[tuple[bool, int], list[tuple[str, tuple[str, int]]]] = defaultdict(list)
        for label, reverse, node in self.facts.get(item, ()):
            if node[0] == "item" and node[1] in history_set:
                step = PathStep(self.label(node), label, target) if reverse else \
                    PathStep(target, label, self.label(node))
                text = f"{step.source} --{label}--> {step.target}"
                direct.append(KGPath(self.label(node), (step,), text))
                continue
            holders = self.holders.get(node)
            if holders:
                groups[(not self.has_label(node), len(holders))].append((label, node))
        seen: set[str] = set()
        out: list[KGPath] = []

        def take(paths: list[KGPath]) -> bool:
            for path in sorted(paths, key=lambda p: p.text):
                if path.text not in seen:
                    seen.add(path.text)
                    out.append(path)
                if len(out) == limit:
                    return True
            return False

        if take(direct):
            return out
        for rank in sorted(groups):
            paths = []
            for label, node in groups[rank]:
                middle, labelled = self.label(node), self.has_label(node)
                for h in sorted(self.holders[node] & history_set):
                    if h == item:
                        continue
                    back = self.first_label[h].get(node, label)
                    first, second = PathStep(self.label(("item", h)), back, middle), \
                        PathStep(target, label, middle)
                    text = f"{first.source} --{back}--> {middle} <--{label}-- {target}"
                    paths.append(KGPath(first.source, (first, second), text, labelled))
            if take(paths):
                break
        return out


def _titles(dataset: Dataset) -> list[str]:
    """Display names of items: the first text column, else the raw id."""
    column = dataset.item_text_columns[0] if dataset.item_text_columns else None
    if column is not None and column in dataset.item_table:
        return [str(t) or dataset.items.ids[i] for i, t in enumerate(dataset.item_table[column])]
    return list(dataset.items.ids)


def explanation_sentence(title: str, paths: Sequence[KGPath],
                         similar: Sequence[dict[str, object]], leaning: str) -> str:
    """One readable sentence from the reasons."""
    if paths:
        reason = f"linked to what you liked: {paths[0].text}"
    elif similar:
        reason = f"close to {similar[0]['title']}, which you liked"
    else:
        reason = "popular with users like you"
    return f"Recommended {title}: {reason}; {leaning}."


def cosine_top(query: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` rows most cosine-similar to ``query``, as ``(position, cosine)``."""
    if not len(rows):
        return []
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    norms = np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
    sims = rows @ q / norms
    order = np.argsort(-sims, kind="stable")[:k]
    return [(int(p), float(sims[p])) for p in order]
