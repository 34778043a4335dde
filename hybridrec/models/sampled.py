r"""Neighbour-sampled training of the GNN scorer: a step's cost is set by its batch and the
fan-outs, not by the size of the graph.

GraphSAGE-style (`Hamilton et al., 2017 <https://arxiv.org/abs/1706.02216>`_): a step
computes the embeddings of its own users, positives and negatives only, each layer reading at
most ``fanout`` neighbours per node and relation (all of them when it has no more; else drawn
uniformly with replacement, so the sampled mean is an unbiased estimate of the relation's
mean). Layer :math:`\ell` runs on the nodes within :math:`L - \ell` hops of the batch, as
PyG's ``NeighborLoader`` arranges them (each hop's nodes a prefix of the next one's), through
the same :class:`~hybridrec.models.gnn.RelationalLayer`; sampling is plain tensor code over a
CSR index per relation, so it needs neither ``pyg-lib`` nor ``torch-sparse``. Validation and
inference still run the full graph (one pass, linear in the edges).

Two simplifications against full-graph training, both per step: the simulated cold items
lose their sampled interaction edges (not their edges everywhere, which only the batch's
nodes would see anyway), and the text channel's user profiles are computed once, from every
training interaction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.typing import EdgeType, NodeType
from torch_geometric.utils import degree

from hybridrec.graph import INTERACTS, REV_INTERACTS
from hybridrec.models.gnn import RelationalPlan, stacked_adjacency
from hybridrec.models.gnn_scorer import EmbeddingParts, GNNScorer


@dataclass
class SampledBlocks:
    """The computation graph of one step: ``nodes[k][t]`` the global ids of type ``t`` whose
    layer-``k`` states are computed (``nodes[L]`` the seeds, each level a prefix of the one
    before), and ``plans[k]`` layer ``k``'s sampled edges from ``nodes[k]`` into
    ``nodes[k + 1]``, in those local positions."""

    nodes: list[dict[NodeType, Tensor]]
    plans: list[RelationalPlan]

    def plans_to(self, device: torch.device) -> SampledBlocks:
        """The blocks with their plans on ``device`` (the sampler works on the CPU; the node
        ids stay there, the layers read only their counts and the plans)."""
        plans = [RelationalPlan(
            {t: [(r, s, local.to(device)) for r, s, local in b] for t, b in p.blocks.items()},
            {t: a.to(device) for t, a in p.adj_t.items()},
            {t: a.to(device) for t, a in p.adj.items()}) for p in self.plans]
        return SampledBlocks(self.nodes, plans)


class NeighborSampler:
    """Samples :class:`SampledBlocks` for seed nodes over a fixed training graph.

    Args:
        edge_index_dict: the training graph's edges (the relations the GNN reads).
        edge_types: the GNN's relations, in the order of its weights.
        num_nodes_dict: nodes per node type.
        fanouts: neighbours per node and relation, one number per layer, outermost layer first
            (PyG's ``num_neighbors`` order).
        generator: the random source of the draws.
    """

    def __init__(self, edge_index_dict: dict[EdgeType, Tensor], edge_types: list[EdgeType],
                 num_nodes_dict: dict[NodeType, int], fanouts: list[int] | tuple[int, ...],
                 generator: torch.Generator) -> None:
        if any(f < 1 for f in fanouts):
            raise ValueError(f"NeighborSampler: every fan-out must be >= 1, got {list(fanouts)}")
        self.edge_types = list(edge_types)
        self.num_nodes_dict = dict(num_nodes_dict)
        self.fanouts = list(fanouts)
        self.generator = generator
        # Per relation, the sources of each destination: a CSR index (rowptr, col).
        self.csr: dict[EdgeType, tuple[Tensor, Tensor]] = {}
        for edge_type in self.edge_types:
            edge_index = edge_index_dict.get(edge_type)
            if edge_index is None or edge_index.size(1) == 0:
                continue
            src, dst = edge_index[0].cpu(), edge_index[1].cpu()
            order = torch.argsort(dst, stable=True)
            rowptr = torch.zeros(self.num_nodes_dict[edge_type[2]] + 1, dtype=torch.long)
            rowptr[1:] = torch.cumsum(degree(dst, rowptr.numel() - 1).long(), 0)
            self.csr[edge_type] = (rowptr, src[order])

    def _neighbours(self, edge_type: EdgeType, targets: Tensor, fanout: int,
                    cold_items: Tensor | None) -> tuple[Tensor, Tensor]:
        """Sampled ``(target position, source id)`` pairs of one relation."""
        rowptr, col = self.csr[edge_type]
        start = rowptr[targets]
        deg = (rowptr[targets + 1] - start).unsqueeze(1)  # [T, 1]
        slots = torch.arange(fanout).unsqueeze(0)  # [1, F]
        drawn = (torch.rand(len(targets), fanout, generator=self.generator) * deg).long()
        # All neighbours of a node that has at most `fanout`, else `fanout` drawn ones.
        offset = torch.where(deg <= fanout, slots, drawn)
        keep = offset < deg
        row = torch.arange(len(targets)).unsqueeze(1).expand(-1, fanout)[keep]
        source = col[(start.unsqueeze(1) + offset)[keep]]
        if cold_items is not None and edge_type in (INTERACTS, REV_INTERACTS):
            item = targets[row] if edge_type == INTERACTS else source  # user -> item
            warm = ~cold_items[item]
            row, source = row[warm], source[warm]
        return row, source

    def sample(self, seeds: dict[NodeType, Tensor],
               cold_items: Tensor | None = None) -> SampledBlocks:
        """The blocks of ``seeds`` (global ids per type, no repeats); interaction edges that
        touch a ``cold_items`` item are left out."""
        nodes = [{t: seeds.get(t, torch.empty(0, dtype=torch.long))
                  for t in self.num_nodes_dict}]
        plans = []
        for fanout in reversed(self.fanouts):  # from the seeds outwards
            targets = nodes[0]
            sampled: dict[EdgeType, tuple[Tensor, Tensor]] = {}
            for edge_type in self.edge_types:
                if edge_type in self.csr and len(targets[edge_type[2]]):
                    sampled[edge_type] = self._neighbours(edge_type, targets[edge_type[2]],
                                                          fanout, cold_items)
            level, position = {}, {}
            for t, known in targets.items():
                fresh = [s for (src_type, _, _), (_, s) in sampled.items() if src_type == t]
                level[t], position[t] = _extend(known, fresh, self.num_nodes_dict[t])
            blocks: dict[NodeType, list[tuple[int, NodeType, Tensor]]] = {}
            chunks: dict[NodeType, list[tuple[Tensor, Tensor, Tensor, Tensor]]] = {}
            for r, edge_type in enumerate(self.edge_types):
                if edge_type not in sampled:
                    continue
                row, source = sampled[edge_type]
                dst_type = edge_type[2]
                local, column = torch.unique(position[edge_type[0]][source], return_inverse=True)
                count = torch.bincount(row, minlength=len(targets[dst_type])).clamp_(min=1)
                value = count.float().reciprocal()[row]  # the sampled relation's mean
                blocks.setdefault(dst_type, []).append((r, edge_type[0], local))
                chunks.setdefault(dst_type, []).append((row, column, value, local))
            adjacency = {t: stacked_adjacency(c, len(targets[t])) for t, c in chunks.items()}
            plans.insert(0, RelationalPlan(blocks, {t: a[0] for t, a in adjacency.items()},
                                           {t: a[1] for t, a in adjacency.items()}))
            nodes.insert(0, level)
        return SampledBlocks(nodes, plans)


def _extend(known: Tensor, fresh: list[Tensor], num_nodes: int) -> tuple[Tensor, Tensor]:
    """``known`` followed by the ids of ``fresh`` not already in it (each once), and the map
    from a global id to its position there (-1 elsewhere)."""
    position = torch.full((num_nodes,), -1, dtype=torch.long)
    position[known] = torch.arange(len(known))
    if not fresh:
        return known, position
    candidates = torch.unique(torch.cat(fresh))
    new = candidates[position[candidates] < 0]
    position[new] = torch.arange(len(known), len(known) + len(new))
    return torch.cat([known, new]), position


class SampledLoss:
    """What :func:`~hybridrec.trainer.compute_loss` needs to score a batch on sampled blocks:
    the sampler, the constant text channel, and the nodes without training interactions.

    Args:
        model: the GNN scorer.
        x_dict / edge_index_dict: the training graph.
        fanouts: see :class:`NeighborSampler`.
        generator: the sampler's random source.
    """

    def __init__(self, model: GNNScorer, x_dict: dict[NodeType, Tensor],
                 edge_index_dict: dict[EdgeType, Tensor], fanouts: list[int] | tuple[int, ...],
                 generator: torch.Generator) -> None:
        if len(fanouts) != model.gnn.num_layers:
            raise ValueError(f"fanouts: one per GNN layer ({model.gnn.num_layers}), got "
                             f"{list(fanouts)}")
        if model.gnn.conv != "rgcn":
            raise ValueError(f"fanouts: neighbour sampling runs the 'rgcn' operator only, not "
                             f"{model.gnn.conv!r}")
        self.sampler = NeighborSampler(edge_index_dict, model.gnn.edge_types,
                                       model.gnn.num_nodes_dict, fanouts, generator)
        ui = edge_index_dict[INTERACTS]
        self.cold = {t: mask.cpu() for t, mask in model.cold_masks(ui).items()}
        self.text = (model.text_profiles(x_dict["item"], ui) if model.text_channel
                     else (None, None))

    def embed(self, model: GNNScorer, x_dict: dict[NodeType, Tensor], users: Tensor,
              items: Tensor, cold_items: Tensor) -> EmbeddingParts:
        """The scorer's parts for ``users`` and ``items`` (sorted global ids, no repeats),
        with the interactions of ``cold_items`` (``bool [num_items]``) left out."""
        device = x_dict["item"].device
        blocks = self.sampler.sample({"user": users.cpu(), "item": items.cpu()},
                                     cold_items.cpu())
        if device.type != "cpu":
            blocks = blocks.plans_to(device)
        masked = {"user": self.cold["user"], "item": self.cold["item"] | cold_items.cpu()}
        z = model.gnn.forward_blocks(x_dict, blocks, masked)
        if not model.text_channel:
            return EmbeddingParts(z["user"], z["item"])
        user_text, item_text = self.text
        return EmbeddingParts(z["user"], z["item"], user_text[users.to(device)],
                              item_text[items.to(device)], model.text_log_scale.exp())
