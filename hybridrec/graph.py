"""Dataset + training interactions -> a typed graph (PyG ``HeteroData``, or networkx to inspect).

Node types are ``"user"``, ``"item"`` and ``"entity"``, each over the data set's own index space
(``num_nodes = num_users / num_items / num_entities``). Edge types:

* ``("user", "interacts", "item")`` from the **training** interactions only (valid and test rows
  never enter the graph), with its reverse ``("item", "rev_interacts", "user")``;
* one edge type per KG relation and node-type pair, named by the relation's sanitised name:
  ``kg_triples`` are entity -> entity, ``item_attributes`` item -> entity, ``user_attributes``
  user -> entity;
* every edge type has a reverse ``rev_<name>`` with source and target swapped.

**Merged entities.** An entity linked to an item by ``item_entity`` stands for that item: in
every triple it is replaced by the item node (an entity linked to several items by each of
them), so a KG relation can give item -> entity, entity -> item and item -> item edges. The
entity index space is kept unchanged, so a merged entity remains an entity node with no edges;
text features of entities can therefore be computed once, without knowing the links.

**Relation names.** PyG edge types become ``ModuleDict`` keys in ``to_hetero``, which forbid
dots, so relation names are sanitised to ``[A-Za-z0-9_]`` (``"film.film.actor"`` ->
``"film_film_actor"``, ``"schema:genre"`` -> ``"schema_genre"``); clashes get ``_2``, ``_3``;
a name that would read as a reverse (``rev_...``) or as ``interacts`` gets a ``kg_`` prefix.
The map sanitised -> original is ``data.relation_names`` (see :func:`relation_names`).

Every edge type is deduplicated and its ``edge_index`` sorted by (source, target).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import HeteroData

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.idmap import IdMap

log = logging.getLogger(__name__)

NODE_TYPES: tuple[str, str, str] = ("user", "item", "entity")
INTERACTS = ("user", "interacts", "item")
REV_INTERACTS = ("item", "rev_interacts", "user")
REVERSE_PREFIX = "rev_"

_USER, _ITEM, _ENTITY = 0, 1, 2
_RESERVED = {"interacts"}


def sanitize_relation(name: str) -> str:
    """A relation name as ``[A-Za-z0-9_]+``: runs of other characters become one ``_``."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_") or "relation"


def relation_names(relations: IdMap) -> dict[str, str]:
    """Sanitised edge-type name -> original relation name, in relation-index order.

    Names are unique, never start with ``rev_`` (reserved for reverses) and never equal
    ``interacts``.
    """
    out: dict[str, str] = {}
    for original in relations.ids:
        base = sanitize_relation(original)
        if base.startswith(REVERSE_PREFIX) or base in _RESERVED:
            base = "kg_" + base
        name, k = base, 1
        while name in out:
            k += 1
            name = f"{base}_{k}"
        out[name] = original
    return out


@dataclass(frozen=True)
class _TypedEdges:
    """Deduplicated forward edges, grouped by edge type (``[2, E]`` int64 arrays)."""

    edges: dict[tuple[str, str, str], np.ndarray]
    relation_names: dict[str, str]  # sanitised -> original
    merged_entities: np.ndarray  # entity indices merged into items


def _unique_pairs(src: np.ndarray, dst: np.ndarray, num_dst: int) -> np.ndarray:
    key = np.unique(src * max(1, num_dst) + dst)
    return np.stack([key // max(1, num_dst), key % max(1, num_dst)]).astype(np.int64)


def _resolve(entity: np.ndarray, link_item: np.ndarray, start: np.ndarray,
             count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace merged entities by their items.

    Returns ``(pos, node_type, node)``: row ``pos[j]`` of ``entity`` gives node ``node[j]`` of
    type ``node_type[j]``; a row whose entity links to ``c`` items appears ``c`` times.
    """
    c = count[entity]
    rep = np.maximum(c, 1)
    pos = np.repeat(np.arange(len(entity)), rep)
    offset = np.arange(len(pos)) - np.repeat(np.cumsum(rep) - rep, rep)
    is_item = c[pos] > 0
    node = entity[pos].copy()
    node[is_item] = link_item[start[node[is_item]] + offset[is_item]]
    node_type = np.where(is_item, _ITEM, _ENTITY).astype(np.int8)
    return pos, node_type, node


def _typed_edges(dataset: Dataset, train: Interactions) -> _TypedEdges:
    for what, index, n in (("user", train.user_index, dataset.num_users),
                           ("item", train.item_index, dataset.num_items)):
        if len(index) and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"build_graph: train {what}_index out of range [0, {n}) "
                             f"for data set {dataset.name!r}")
    names = relation_names(dataset.relations)
    name_of = list(names)  # relation index -> sanitised name
    sizes = (dataset.num_users, dataset.num_items, dataset.num_entities)
    edges: dict[tuple[str, str, str], np.ndarray] = {
        INTERACTS: _unique_pairs(train.user_index, train.item_index, dataset.num_items)}

    # 1. Links, sorted by entity: entity e -> items link_item[start[e]:start[e] + count[e]].
    links = dataset.item_entity[np.lexsort((dataset.item_entity[:, 0], dataset.item_entity[:, 1]))]
    link_item = links[:, 0]
    count = np.bincount(links[:, 1], minlength=dataset.num_entities)
    start = np.cumsum(count) - count

    # 2. All triples as (src type, src, relation, dst type, dst), merged entities resolved.
    parts = []
    for triples, head_type in ((dataset.kg_triples, _ENTITY), (dataset.item_attributes, _ITEM),
                               (dataset.user_attributes, _USER)):
        if not len(triples):
            continue
        head, rel, tail = triples[:, 0], triples[:, 1], triples[:, 2]
        if head_type == _ENTITY:
            pos, src_type, src = _resolve(head, link_item, start, count)
        else:
            pos, src_type, src = np.arange(len(head)), np.full(len(head), head_type, np.int8), head
        pos2, dst_type, dst = _resolve(tail[pos], link_item, start, count)
        parts.append(np.stack([src_type[pos2], src[pos2], rel[pos][pos2], dst_type, dst], axis=1))
    if parts:
        table = np.concatenate(parts).astype(np.int64)
        # 3. Group by (relation, src type, dst type); deduplicate inside each group.
        group = (table[:, 2] * 3 + table[:, 0]) * 3 + table[:, 3]
        order = np.argsort(group, kind="stable")
        table, group = table[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for rows in np.split(np.arange(len(table)), bounds):
            st, rel, dt = (int(v) for v in table[rows[0], [0, 2, 3]])
            key = (NODE_TYPES[st], name_of[rel], NODE_TYPES[dt])
            edges[key] = _unique_pairs(table[rows, 1], table[rows, 4], sizes[dt])
    merged = np.flatnonzero(count > 0)
    return _TypedEdges(edges, names, merged)


def reverse_edge_type(edge_type: tuple[str, str, str]) -> tuple[str, str, str]:
    """``(src, rel, dst)`` -> ``(dst, rev_rel, src)`` and back."""
    src, rel, dst = edge_type
    if rel.startswith(REVERSE_PREFIX):
        return dst, rel[len(REVERSE_PREFIX):], src
    return dst, REVERSE_PREFIX + rel, src


def _features(x: torch.Tensor | np.ndarray | None, n: int, what: str) -> torch.Tensor | None:
    if x is None:
        return None
    x = torch.as_tensor(x)
    if x.dim() != 2 or x.size(0) != n:
        raise ValueError(f"build_graph: {what} must have shape [{n}, F], got {tuple(x.shape)}")
    return x


def build_graph(
    dataset: Dataset,
    train: Interactions,
    *,
    user_x: torch.Tensor | np.ndarray | None = None,
    item_x: torch.Tensor | np.ndarray | None = None,
    entity_x: torch.Tensor | np.ndarray | None = None,
) -> HeteroData:
    """The heterogeneous training graph of ``dataset`` (see the module docstring for the rules).

    Args:
        dataset: the data set (ids, KG triples, item-entity links).
        train: the training interactions; the only interactions that become edges.
        user_x / item_x / entity_x: node features ``[num_*, F]``, stored as ``x`` when given
            (default: ``None``).

    Returns:
        ``HeteroData`` with node types ``user``, ``item``, ``entity`` (``num_nodes`` always set),
        an ``edge_index [2, E]`` per edge type (reverses included), and ``relation_names``:
        sanitised relation name -> original relation name.
    """
    typed = _typed_edges(dataset, train)
    data = HeteroData()
    sizes = (dataset.num_users, dataset.num_items, dataset.num_entities)
    for node_type, n, x in zip(NODE_TYPES, sizes, (user_x, item_x, entity_x)):
        data[node_type].num_nodes = n
        x = _features(x, n, f"{node_type}_x")
        if x is not None:
            data[node_type].x = x
    for edge_type, edge_index in typed.edges.items():
        edge_index = torch.from_numpy(edge_index)
        data[edge_type].edge_index = edge_index
        reverse = edge_index.flip(0)
        # Sorted by (source, target), like the forward edges.
        order = torch.from_numpy(np.lexsort((reverse[1].numpy(), reverse[0].numpy())))
        data[reverse_edge_type(edge_type)].edge_index = reverse[:, order]
    data.relation_names = dict(typed.relation_names)
    log.debug("Built graph of %s: %d edge types, %d edges", dataset.name, len(data.edge_types),
              sum(int(e.size(1)) for e in data.edge_index_dict.values()))
    return data


# ---------------------------------------------------------------------------------------------
# networkx, for inspection and explanation paths.


def _readable(prefix: str, labels: list[str], ids: tuple[str, ...]) -> list[str]:
    """``prefix:label`` per node, falling back to the raw id; clashes get `` [raw id]``."""
    names = [f"{prefix}:{label or raw}" for label, raw in zip(labels, ids)]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name} [{raw}]" for name, raw in zip(names, ids)]


def item_labels(dataset: Dataset) -> list[str]:
    """A readable label per item: its ``title`` (or ``name``), with `` (year)`` when the item
    table has a ``year`` column; ``""`` where there is none."""
    table = dataset.item_table
    title = next((table[c] for c in ("title", "name", "label") if c in table), None)
    if title is None:
        return [""] * dataset.num_items
    labels = [str(t).strip() for t in title]
    if "year" in table:
        labels = [f"{t} ({y})" if t and str(y).strip() and f"({str(y).strip()})" not in t else t
                  for t, y in zip(labels, table["year"])]
    return labels


def to_networkx(dataset: Dataset, train: Interactions) -> nx.MultiDiGraph:
    """The training graph as a networkx ``MultiDiGraph`` with readable node names.

    Nodes are named ``"user:<id>"``, ``"item:<title (year)>"`` (the raw id without a title) and
    ``"entity:<label>"`` (the raw id without a label); a name shared by several nodes gets
    `` [<raw id>]`` appended. Node attributes: ``type``, ``index``, ``id`` (raw id), ``label``.
    Entities merged into items are not nodes (their item stands for them).

    Edges are the forward edges of :func:`build_graph` (no ``rev_`` edges: walk the graph
    undirected to follow them backwards), each with ``relation`` (the original relation name, or
    ``"interacts"``) and ``edge_type`` (the PyG edge-type triple).
    """
    typed = _typed_edges(dataset, train)
    ilabels = item_labels(dataset)
    names = {
        "user": _readable("user", [""] * dataset.num_users, dataset.users.ids),
        "item": _readable("item", ilabels, dataset.items.ids),
        "entity": _readable("entity", list(dataset.entity_text), dataset.entities.ids),
    }
    labels = {"user": list(dataset.users.ids), "item": ilabels, "entity": list(dataset.entity_text)}
    ids = {"user": dataset.users.ids, "item": dataset.items.ids, "entity": dataset.entities.ids}
    graph = nx.MultiDiGraph(name=dataset.name)
    merged = set(typed.merged_entities.tolist())
    for node_type in NODE_TYPES:
        graph.add_nodes_from(
            (names[node_type][k], {"type": node_type, "index": k, "id": ids[node_type][k],
                                   "label": labels[node_type][k] or ids[node_type][k]})
            for k in range(len(ids[node_type]))
            if not (node_type == "entity" and k in merged))
    for edge_type, edge_index in typed.edges.items():
        src_type, rel, dst_type = edge_type
        relation = typed.relation_names.get(rel, rel)
        src_names, dst_names = names[src_type], names[dst_type]
        graph.add_edges_from(
            (src_names[s], dst_names[d], {"relation": relation, "edge_type": edge_type})
            for s, d in zip(edge_index[0].tolist(), edge_index[1].tolist()))
    return graph
