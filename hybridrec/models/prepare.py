"""The training graph as the GNN scorer sees it: ablations applied, dead weight removed."""
from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from hybridrec.graph import INTERACTS, REV_INTERACTS

log = logging.getLogger(__name__)


def graph_inputs(data: HeteroData, device: torch.device | str | None = None,
                 ) -> tuple[dict[str, Tensor], dict[tuple[str, str, str], Tensor]]:
    """The ``x_dict`` and ``edge_index_dict`` of a prepared graph, on ``device``: what
    :meth:`~hybridrec.models.GNNScorer.embed` reads."""
    x_dict = {t: data[t].x.to(device) for t in data.node_types if "x" in data[t]}
    return x_dict, {e: v.to(device) for e, v in data.edge_index_dict.items()}


def prepare_graph(
    data: HeteroData,
    *,
    entity_has_text: Tensor | None = None,
    use_text: bool = True,
    use_kg: bool = True,
    prune_leaf_entities: bool = True,
) -> HeteroData:
    """A copy of ``data`` ready for :class:`~hybridrec.models.GNNScorer`.

    1. ``use_text=False`` drops every ``x`` (all nodes then get ID embeddings).
    2. ``use_kg=False`` keeps only the user–item edges and the user and item nodes.
    3. Edge types whose edges repeat another type's exactly (a KG that states both
       ``film.genre`` and its inverse ``genre.films`` yields the same item -> entity pairs
       twice) are dropped: they double the cost and add nothing. ``data.edge_aliases`` maps
       each dropped type to its kept twin.
    4. ``prune_leaf_entities`` removes entities with fewer than two distinct neighbours: a leaf
       carries no signal between nodes (on ml-100k, 21k of the 34k Freebase entities), and the
       entities merged into items are isolated anyway. Entity nodes are renumbered; their
       original indices are kept in ``data["entity"].n_id``.

    Args:
        data: the graph from :func:`hybridrec.graph.build_graph`.
        entity_has_text: ``bool [num_entities]``, which entities have a text embedding;
            stored as ``data["entity"].has_text`` (default: all when ``x`` is present).
        use_text / use_kg / prune_leaf_entities: see above (default: all ``True``).
    """
    out = HeteroData()
    keep_types = ["user", "item"] + (["entity"] if use_kg and "entity" in data.node_types else [])
    edge_types = [e for e in data.edge_types
                  if use_kg or e in (INTERACTS, REV_INTERACTS)]
    # 3. Identical edge sets between the same node types.
    unique: list[tuple[str, str, str]] = []
    aliases: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for e in edge_types:
        ei = data[e].edge_index
        twin = next((u for u in unique if u[0] == e[0] and u[2] == e[2]
                     and data[u].edge_index.shape == ei.shape
                     and torch.equal(data[u].edge_index, ei)), None)
        if twin is not None:
            aliases[e] = twin
            continue
        unique.append(e)
    dropped = len(edge_types) - len(unique)
    edge_types = unique

    # 4. Entity neighbours, counted over forward and reverse types alike (distinct pairs).
    n_id = None
    if "entity" in keep_types:
        n_ent = data["entity"].num_nodes
        keep = torch.ones(n_ent, dtype=torch.bool)
        if prune_leaf_entities:
            pairs = []
            for src, _, dst in edge_types:
                ei = data[(src, _, dst)].edge_index
                if dst == "entity":
                    code = {"user": 0, "item": 1, "entity": 2}[src]
                    pairs.append(ei[1] * 3 * (1 + max(data[t].num_nodes for t in keep_types))
                                 + ei[0] * 3 + code)
            if pairs:
                key = torch.unique(torch.cat(pairs))
                ent = key // (3 * (1 + max(data[t].num_nodes for t in keep_types)))
                keep = torch.bincount(ent, minlength=n_ent) >= 2
            else:
                keep = torch.zeros(n_ent, dtype=torch.bool)
        n_id = torch.nonzero(keep).flatten()
        remap = torch.full((n_ent,), -1, dtype=torch.long)
        remap[n_id] = torch.arange(len(n_id))

    for t in keep_types:
        store = data[t]
        if t == "entity":
            out[t].num_nodes = len(n_id)
            out[t].n_id = n_id
            if use_text and "x" in store:
                out[t].x = store.x[n_id]
                has = (entity_has_text if entity_has_text is not None
                       else torch.ones(store.num_nodes, dtype=torch.bool))
                out[t].has_text = has[n_id].bool()
        else:
            out[t].num_nodes = store.num_nodes
            if use_text and "x" in store:
                out[t].x = store.x
    for e in edge_types:
        src, _, dst = e
        ei = data[e].edge_index
        if "entity" in (src, dst):
            ei = ei.clone()
            for row, t in ((0, src), (1, dst)):
                if t == "entity":
                    ei[row] = remap[ei[row]]
            ei = ei[:, (ei >= 0).all(0)]
        if ei.size(1):
            out[e].edge_index = ei
    # A dropped duplicate names its kept twin: an edge of the dropped type (an item added
    # later, say) travels on the twin's.
    out.edge_aliases = {e: t for e, t in aliases.items() if t in out.edge_types}
    log.info("Prepared graph: %d edge types (%d duplicates dropped), %s entities kept, %d edges",
             len(out.edge_types), dropped, "no" if n_id is None else len(n_id),
             sum(int(v.size(1)) for v in out.edge_index_dict.values()))
    return out
