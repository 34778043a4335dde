"""The GNN branch: projected text features, relational message passing, dot-product scores."""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Embedding, Linear, ModuleDict, ModuleList
from torch_geometric.nn import GATConv, GraphConv, HeteroConv, HGTConv, SAGEConv
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import EdgeType, Metadata, NodeType
from torch_geometric.utils import degree

if TYPE_CHECKING:
    from hybridrec.models.sampled import SampledBlocks

log = logging.getLogger(__name__)

ConvKind = Literal["rgcn", "sage", "graph", "lightgcn", "gat", "hgt"]
Norm = Literal["mean", "sym"]


@dataclass
class RelationalPlan:
    """The edges of a heterogeneous graph arranged for :class:`RelationalLayer`.

    Per target node type ``t``: ``blocks[t]`` lists ``(relation position, source type,
    source nodes)``; ``adj_t[t]`` is a sparse CSR matrix ``[N_t, S_t]`` whose columns are the
    source nodes of all blocks, concatenated, with the normalisation in its values, and
    ``adj[t]`` its transpose (for the backward pass).
    """

    blocks: dict[NodeType, list[tuple[int, NodeType, Tensor]]]
    adj_t: dict[NodeType, Tensor]
    adj: dict[NodeType, Tensor]


def sparse_adjacency(row: Tensor, col: Tensor, value: Tensor, shape: tuple[int, int]
                     ) -> Tensor:
    """A CSR matrix of ``shape`` with ``value[e]`` at ``(row[e], col[e])`` (pairs need not be
    sorted; repeated pairs are kept as separate entries, whose products add up)."""
    order = torch.argsort(row * max(1, shape[1]) + col)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=row.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # "Sparse CSR support is in beta".
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col[order], value[order], shape,
                                       check_invariants=False)


class RelationalPlanner:
    r"""Builds :class:`RelationalPlan` objects, reusing the work for unchanged edge types.

    ``norm="mean"`` divides by the target's degree within each relation (R-GCN's
    :math:`1/c_{i,r}`); ``"sym"`` by :math:`\sqrt{\deg(i)\deg(j)}` within the relation.
    An edge type whose ``edge_index`` is the same tensor object as last time (and not changed
    in place) is not recomputed: during training only the interactions change between steps.

    Args:
        edge_types: the relations, in the order of :class:`RelationalLayer`'s weights.
        num_nodes_dict: nodes per node type.
        norm: ``"mean"`` or ``"sym"`` (default: ``"mean"``).
    """

    def __init__(self, edge_types: list[EdgeType], num_nodes_dict: dict[NodeType, int],
                 norm: Norm = "mean") -> None:
        self.edge_types = list(edge_types)
        self.num_nodes_dict = dict(num_nodes_dict)
        self.norm = norm
        self._blocks: dict[EdgeType, tuple[Tensor, int, tuple[Tensor, ...]]] = {}
        self._adj: dict[NodeType, tuple[tuple[int, ...], Tensor, Tensor, int]] = {}

    def _block(self, edge_type: EdgeType, edge_index: Tensor) -> tuple[Tensor, ...]:
        cached = self._blocks.get(edge_type)
        if cached is not None and cached[0] is edge_index and cached[1] == edge_index._version:
            return cached[2]
        src_type, _, dst_type = edge_type
        src, dst = edge_index[0], edge_index[1]
        nodes, column = torch.unique(src, return_inverse=True)
        deg_dst = degree(dst, self.num_nodes_dict[dst_type]).clamp_(min=1)
        if self.norm == "mean":
            value = deg_dst.reciprocal()[dst]
        else:
            deg_src = degree(src, self.num_nodes_dict[src_type]).clamp_(min=1)
            value = (deg_dst[dst] * deg_src[src]).rsqrt()
        block = (nodes, dst, column, value)
        self._blocks[edge_type] = (edge_index, edge_index._version, block)
        return block

    def __call__(self, edge_index_dict: dict[EdgeType, Tensor]) -> RelationalPlan:
        blocks: dict[NodeType, list[tuple[int, NodeType, Tensor]]] = {}
        parts: dict[NodeType, list[tuple[Tensor, ...]]] = {}
        keys: dict[NodeType, list[int]] = {}
        for r, edge_type in enumerate(self.edge_types):
            edge_index = edge_index_dict.get(edge_type)
            if edge_index is None or edge_index.size(1) == 0:
                continue
            nodes, dst, column, value = self._block(edge_type, edge_index)
            blocks.setdefault(edge_type[2], []).append((r, edge_type[0], nodes))
            parts.setdefault(edge_type[2], []).append((dst, column, value, nodes))
            keys.setdefault(edge_type[2], []).append(id(self._blocks[edge_type][2]))
        adj_t, adj = {}, {}
        for dst_type, chunks in parts.items():
            key = tuple(keys[dst_type])
            cached = self._adj.get(dst_type)
            if cached is not None and cached[0] == key:
                adj_t[dst_type], adj[dst_type] = cached[1], cached[2]
                continue
            adj_t[dst_type], adj[dst_type] = stacked_adjacency(
                chunks, self.num_nodes_dict[dst_type])
            self._adj[dst_type] = (key, adj_t[dst_type], adj[dst_type], 0)
        return RelationalPlan(blocks, adj_t, adj)


def stacked_adjacency(chunks: list[tuple[Tensor, Tensor, Tensor, Tensor]], num_targets: int
                      ) -> tuple[Tensor, Tensor]:
    """One target type's relations as one CSR matrix ``[num_targets, S]`` and its transpose:
    each chunk ``(target rows [E], column into its source nodes [E], value [E], source nodes
    [S_r])`` of one relation, the relations' source nodes side by side (``S = sum S_r``)."""
    sizes = torch.tensor([0] + [len(c[3]) for c in chunks]).cumsum(0)
    row = torch.cat([c[0] for c in chunks])
    col = torch.cat([c[1] + int(sizes[k]) for k, c in enumerate(chunks)])
    value = torch.cat([c[2] for c in chunks])
    n_src = int(sizes[-1])
    return (sparse_adjacency(row, col, value, (num_targets, n_src)),
            sparse_adjacency(col, row, value, (n_src, num_targets)))


class _SpMM(torch.autograd.Function):
    """``adj_t @ x`` whose backward uses the given transpose ``adj`` (torch would transpose the
    CSR matrix again on every backward call, a sort per step). Computed in the matrix's dtype
    (float32), so it also runs under bf16 autocast, where sparse kernels lack half types."""

    @staticmethod
    def forward(ctx, adj_t: Tensor, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj, ctx.dtype = adj, x.dtype
        return torch.sparse.mm(adj_t, x.to(adj_t.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.adj, grad.to(ctx.adj.dtype)).to(ctx.dtype)


class RelationalLayer(torch.nn.Module):
    r"""One R-GCN layer over every relation at once
    (`Schlichtkrull et al. <https://arxiv.org/abs/1703.06103>`_), without its self term:

    .. math::
        \mathbf{h}^{\prime}_i = \sum_{r} \sum_{j \in \mathcal{N}_r(i)}
        \frac{1}{c_{i,r}} \mathbf{W}_r \mathbf{h}_j

    It computes exactly what ``HeteroConv({r: SAGEConv(root_weight=False)})`` does, but fused
    per target type: each relation transforms only its own source nodes, and one sparse matmul per target
    type aggregates all relations. ``HeteroConv`` instead materialises a dense
    :math:`(|\mathcal{V}_t|, F)` output per relation and stacks them (on ml-100k, ~20 outputs of
    8k entity rows per layer); this is about 3x faster there. With ``weight=False`` it is
    LightGCN's parameter-free propagation (use ``norm="sym"`` in the plan).

    Args:
        num_relations: relations (edge types), indexed as in the plan.
        channels: input and output width.
        weight: learn :math:`\mathbf{W}_r` (default: :obj:`True`).

    Shapes:
        - **input:** ``{t: (|\mathcal{V}_t|, F)}`` and a :class:`RelationalPlan`
        - **output:** ``{t: (|\mathcal{V}_t|, F)}`` for every target type of the plan
    """

    def __init__(self, num_relations: int, channels: int, weight: bool = True) -> None:
        super().__init__()
        self.num_relations = num_relations
        self.channels = channels
        self.weight = (torch.nn.Parameter(torch.empty(num_relations, channels, channels))
                       if weight else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            bound = 1.0 / math.sqrt(self.channels)
            torch.nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, h_dict: dict[NodeType, Tensor],
                plan: RelationalPlan) -> dict[NodeType, Tensor]:
        out = {}
        for dst_type, blocks in plan.blocks.items():
            parts = []
            for r, src_type, nodes in blocks:
                x = h_dict[src_type].index_select(0, nodes)
                parts.append(x @ self.weight[r] if self.weight is not None else x)
            out[dst_type] = _SpMM.apply(plan.adj_t[dst_type], plan.adj[dst_type],
                                        torch.cat(parts))
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, num_relations={self.num_relations}, "
                f"weight={self.weight is not None})")


def _relation_conv(kind: ConvKind, channels: int) -> MessagePassing:
    if kind == "sage":
        # W_r times the mean on the target side; the root term is shared per node type.
        return SAGEConv(channels, channels, aggr="mean", root_weight=False, bias=False)
    if kind == "graph":
        return GraphConv(channels, channels, aggr="mean", bias=False)
    if kind == "gat":
        return GATConv(channels, channels, heads=1, add_self_loops=False, bias=False)
    raise ValueError(f"_relation_conv: no per-relation operator for {kind!r}")


class HeteroGNN(torch.nn.Module):
    r"""The GNN branch: text-initialised heterogeneous message passing over every edge type.

    Each node type starts from a learned projection of its text features (rows marked in
    :obj:`text_mask_dict`), plus an ID embedding for the nodes that :obj:`id_mask_dict` marks
    (users; entities without text; every node of a type without features). Each layer is
    relational (R-GCN with mean aggregation,
    `Schlichtkrull et al. <https://arxiv.org/abs/1703.06103>`_, for :obj:`conv="rgcn"`):

    .. math::
        \mathbf{h}^{(0)}_v = t_v \mathbf{W}^{\text{in}}_{\tau(v)} \mathbf{x}_v
            + m_v \, \mathbf{e}_v, \qquad
        \mathbf{h}^{(\ell+1)}_v = \sigma\Big(\mathbf{W}^{\ell}_{0,\tau(v)} \mathbf{h}^{(\ell)}_v
            + \sum_{r} \mathbf{W}^{\ell}_r \,\mathrm{mean}_{u \in \mathcal{N}_r(v)}
            \mathbf{h}^{(\ell)}_u\Big)

    (no :math:`\sigma` after the last layer), and the output is the mean of all layers,
    :math:`\mathbf{z}_v = \frac{1}{L+1}\sum_\ell \mathbf{h}^{(\ell)}_v`, as LightGCN combines
    its layers. Link scores are :math:`s_{\text{gnn}}(u, i) = \mathbf{z}_u^\top \mathbf{z}_i`.

    Args:
        metadata: node types and edge types of the graph (``HeteroData.metadata()``).
        num_nodes_dict: number of nodes per node type.
        in_channels_dict: text-feature width per node type (missing or ``0`` = no features).
        id_mask_dict: per node type, a boolean ``[num_nodes]`` mask of nodes that get an ID
            embedding, or a bool for all of them; a type without features always gets them
            (default: none).
        text_mask_dict: per node type, a boolean ``[num_nodes]`` mask of the rows of ``x`` that
            hold a real text embedding (default: all rows).
        hidden_channels: width of every layer (default: :obj:`64`).
        num_layers: message-passing layers (default: :obj:`2`).
        conv: the operator: ``"rgcn"`` (:class:`RelationalLayer`, the math above),
            ``"lightgcn"`` (:class:`RelationalLayer` without weights, sym-normalised, no
            self term), or one PyG conv per relation inside
            :class:`~torch_geometric.nn.conv.HeteroConv`: ``"sage"`` (``SAGEConv``, the same
            math as ``"rgcn"``, slower), ``"graph"`` (``GraphConv``), ``"gat"`` (``GATConv``);
            or ``"hgt"`` (``HGTConv``) (default: :obj:`"rgcn"`).
        dropout: dropout on hidden layers during training (default: :obj:`0.0`).

    Shapes:
        - **input:** ``x_dict[t]`` :math:`(|\mathcal{V}_t|, F_t)`, ``edge_index_dict[r]``
          :math:`(2, |\mathcal{E}_r|)`
        - **output:** ``{t: (|\mathcal{V}_t|, H)}``
    """

    def __init__(
        self,
        metadata: Metadata,
        num_nodes_dict: dict[NodeType, int],
        in_channels_dict: dict[NodeType, int],
        id_mask_dict: dict[NodeType, Tensor | bool] | None = None,
        text_mask_dict: dict[NodeType, Tensor] | None = None,
        hidden_channels: int = 64,
        num_layers: int = 2,
        conv: ConvKind = "rgcn",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if conv not in get_args(ConvKind):
            raise ValueError(f"HeteroGNN: conv must be one of {get_args(ConvKind)}, got {conv!r}")
        if num_layers < 0:
            raise ValueError(f"HeteroGNN: num_layers must be >= 0, got {num_layers}")
        self.node_types, self.edge_types = list(metadata[0]), [tuple(e) for e in metadata[1]]
        self.num_nodes_dict = {t: int(num_nodes_dict[t]) for t in self.node_types}
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.conv = conv
        self.dropout = dropout
        id_mask_dict, text_mask_dict = id_mask_dict or {}, text_mask_dict or {}

        self.lin_in = ModuleDict()
        self.emb = ModuleDict()
        for t in self.node_types:
            n, f = self.num_nodes_dict[t], int(in_channels_dict.get(t, 0))
            ids = True if not f else id_mask_dict.get(t, False)
            # Masks on the CPU, also while the model is built on the "meta" device (a loaded
            # run checks the shapes a config implies before allocating anything).
            ids = (torch.full((n,), ids, device="cpu") if isinstance(ids, bool)
                   else ids.bool().cpu())
            if ids.shape != (n,):
                raise ValueError(f"HeteroGNN: id_mask_dict[{t!r}] has shape {tuple(ids.shape)}, "
                                 f"expected ({n},)")
            self.register_buffer(f"id_mask_{t}", ids.clone())
            if bool(ids.any()):
                self.emb[t] = Embedding(n, hidden_channels)
            if f:
                self.lin_in[t] = Linear(f, hidden_channels)
                text = text_mask_dict.get(t)
                text = (torch.ones(n, dtype=torch.bool, device="cpu") if text is None
                        else text.bool().cpu())
                if text.shape != (n,):
                    raise ValueError(f"HeteroGNN: text_mask_dict[{t!r}] has shape "
                                     f"{tuple(text.shape)}, expected ({n},)")
                # Only the rows with text are projected (ml-100k: 42 of 8k entities).
                self.register_buffer(f"text_rows_{t}", torch.nonzero(text).flatten())

        self.planner = RelationalPlanner(self.edge_types, self.num_nodes_dict,
                                         "mean" if conv == "rgcn" else "sym")
        self.convs = ModuleList()
        self.lin_root = ModuleList()
        for _ in range(num_layers):
            if conv == "hgt":
                self.convs.append(HGTConv(hidden_channels, hidden_channels,
                                          (self.node_types, self.edge_types), heads=2))
            elif conv in ("rgcn", "lightgcn"):
                self.convs.append(RelationalLayer(len(self.edge_types), hidden_channels,
                                                  weight=conv == "rgcn"))
            else:
                self.convs.append(HeteroConv(
                    {e: _relation_conv(conv, hidden_channels) for e in self.edge_types},
                    aggr="sum"))
            if conv in ("rgcn", "sage", "gat"):
                self.lin_root.append(ModuleDict(
                    {t: Linear(hidden_channels, hidden_channels) for t in self.node_types}))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.lin_in.values():
            lin.reset_parameters()
        for emb in self.emb.values():
            torch.nn.init.normal_(emb.weight, std=0.1)
        for conv in self.convs:
            conv.reset_parameters()
        for roots in self.lin_root:
            for lin in roots.values():
                lin.reset_parameters()

    def id_mask(self, node_type: NodeType) -> Tensor:
        """``bool [num_nodes]``: the nodes of ``node_type`` that have an ID embedding."""
        return getattr(self, f"id_mask_{node_type}")

    def input_embeddings(
        self,
        x_dict: dict[NodeType, Tensor],
        masked_dict: dict[NodeType, Tensor] | None = None,
        nodes: dict[NodeType, Tensor] | None = None,
    ) -> dict[NodeType, Tensor]:
        """Layer 0: projected features plus ID embeddings; IDs of ``masked_dict`` nodes zeroed.
        With ``nodes`` (global ids per type), only those rows, in that order."""
        out = {}
        for t in self.node_types:
            n, h = self.num_nodes_dict[t], None
            index = None if nodes is None else nodes[t].to(next(self.parameters()).device)
            size = n if index is None else len(index)
            if t in self.emb:
                keep = self.id_mask(t)
                if masked_dict is not None and t in masked_dict:
                    keep = keep & ~masked_dict[t].to(keep.device)
                weight = self.emb[t].weight
                if index is not None:
                    keep, weight = keep[index], self.emb[t](index)
                h = weight * keep.unsqueeze(-1).to(weight.dtype)
            if t in self.lin_in:
                x = x_dict.get(t)
                if x is None or x.size(0) != n:
                    raise ValueError(f"HeteroGNN: x_dict[{t!r}] must have {n} rows, got "
                                     f"{None if x is None else tuple(x.shape)}")
                rows = getattr(self, f"text_rows_{t}")
                if len(rows) == n:  # every row has text
                    text = self.lin_in[t](x if index is None else x.index_select(0, index))
                    h = text if h is None else h + text
                else:
                    if index is not None:  # the chosen rows that have text, and where
                        has_text = torch.zeros(n, dtype=torch.bool, device=rows.device)
                        has_text[rows] = True
                        where = torch.nonzero(has_text[index]).flatten()
                        rows = index[where]
                    text = self.lin_in[t](x.index_select(0, rows))
                    base = text.new_zeros(size, text.size(1)) if h is None else h
                    h = base.index_add(0, rows if index is None else where,
                                       text.to(base.dtype))  # bf16 under autocast
            if h is None:  # No nodes of this type (a data set without a KG): nothing to embed.
                h = next(self.parameters()).new_zeros(size, self.hidden_channels)
            out[t] = h
        return out

    def forward(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        masked_dict: dict[NodeType, Tensor] | None = None,
    ) -> dict[NodeType, Tensor]:
        layers = self.layer_outputs(x_dict, edge_index_dict, masked_dict)
        return {t: torch.stack([layer[t] for layer in layers]).mean(0) for t in self.node_types}

    def layer_outputs(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        masked_dict: dict[NodeType, Tensor] | None = None,
    ) -> list[dict[NodeType, Tensor]]:
        r"""Every layer's node states :math:`\mathbf{h}^{(0)}, \dots, \mathbf{h}^{(L)}`
        (:meth:`forward` returns their mean); :meth:`fold_in` reads them."""
        h = self.input_embeddings(x_dict, masked_dict)
        layers = [h]
        graph: dict[EdgeType, Tensor] | RelationalPlan = {
            e: v for e, v in edge_index_dict.items() if e in self.edge_types}
        if self.conv in ("rgcn", "lightgcn"):
            graph = self.planner(graph)
        for k in range(self.num_layers):
            h = self._next_layer(k, h, graph)
            layers.append(h)
        return layers

    def _next_layer(self, k: int, h: dict[NodeType, Tensor],
                    graph: dict[EdgeType, Tensor] | RelationalPlan,
                    targets: dict[NodeType, int] | None = None) -> dict[NodeType, Tensor]:
        """Layer ``k``'s states from layer ``k - 1``'s ``h``: messages, self term, activation.
        With ``targets`` (sampled blocks) only the first ``targets[t]`` nodes of each type are
        computed; their own states are the first rows of ``h``."""
        out = self.convs[k](h, graph)
        new = {}
        for t in self.node_types:
            own = h[t] if targets is None else h[t][:targets[t]]
            msg = out.get(t)
            if msg is None:  # No incoming edge type: only the self term.
                msg = own if self.conv in ("lightgcn", "hgt") else 0
            if self.lin_root:
                msg = msg + self.lin_root[k][t](own)
            if self.conv != "lightgcn" and k < self.num_layers - 1:
                msg = F.leaky_relu(msg, 0.2)
                msg = F.dropout(msg, self.dropout, self.training)
            new[t] = msg
        return new

    def forward_blocks(
        self,
        x_dict: dict[NodeType, Tensor],
        blocks: SampledBlocks,
        masked_dict: dict[NodeType, Tensor] | None = None,
    ) -> dict[NodeType, Tensor]:
        r""":meth:`forward`'s math on sampled blocks
        (:class:`~hybridrec.models.sampled.NeighborSampler`): the output rows of the seed
        nodes ``blocks.nodes[-1]`` only, each layer over the nodes it needs. Layer ``k`` maps
        ``nodes[k]`` to ``nodes[k + 1]``, whose states are the first rows of ``nodes[k]``'s
        (the self term reads them). Only the ``"rgcn"`` operator is supported."""
        if self.conv != "rgcn":
            raise ValueError(f"HeteroGNN.forward_blocks: 'rgcn' only, not {self.conv!r}")
        seeds = {t: len(v) for t, v in blocks.nodes[-1].items()}
        h = self.input_embeddings(x_dict, masked_dict, blocks.nodes[0])
        layers = [{t: v[:seeds[t]] for t, v in h.items()}]
        for k in range(self.num_layers):
            h = self._next_layer(k, h, blocks.plans[k],
                                 {t: len(v) for t, v in blocks.nodes[k + 1].items()})
            layers.append({t: v[:seeds[t]] for t, v in h.items()})
        return {t: torch.stack([layer[t] for layer in layers]).mean(0) for t in self.node_types}

    def text_input(self, node_type: NodeType, x: Tensor | None, num_nodes: int) -> Tensor:
        r""":math:`\mathbf{h}^{(0)}` of ``num_nodes`` nodes that are not in the trained graph:
        the projection of their text ``x`` (``[N, F]``), no ID embedding (none was trained for
        them); zeros for a node type without text features. Shape ``[N, H]``."""
        weight = next(self.parameters())
        if node_type not in self.lin_in or x is None:
            return weight.new_zeros(num_nodes, self.hidden_channels)
        return self.lin_in[node_type](x.to(weight.dtype))

    def fold_in(
        self,
        node_type: NodeType,
        h0: Tensor,
        in_edges: dict[EdgeType, Tensor],
        layers: list[dict[NodeType, Tensor]],
        return_layers: bool = False,
    ) -> Tensor | list[Tensor]:
        r"""Output embeddings :math:`\mathbf{z}_v` of ``N`` nodes from their own input state and
        their in-neighbours, with the neighbours' states read from ``layers`` (a
        :meth:`layer_outputs` of the trained graph) instead of being recomputed.

        The nodes' own layers follow the forward math exactly; the neighbours do not see the
        new edges (the usual fold-in approximation: adding one user or item does not move the
        rest of the graph). For a node already in the graph with its own edges, the result
        equals :meth:`forward`'s row. Only the ``"rgcn"`` operator is supported.

        Args:
            node_type: the type of the ``N`` nodes.
            h0: their input states ``[N, H]`` (see :meth:`text_input`).
            in_edges: per edge type ``(src, rel, node_type)``, ``[2, E]`` pairs of
                (row in ``0..N-1``, source node index). A source index ``M + j`` past the
                ``M`` trained nodes of ``node_type`` names new row ``j``: new nodes that link
                to each other (a sequel added with its film) read each other's states.
            layers: the trained graph's per-layer states.
            return_layers: return the nodes' per-layer states instead of their mean
                (default: :obj:`False`).
        Returns:
            ``[N, H]``, or ``L + 1`` such states.
        """
        if self.conv != "rgcn":
            raise ValueError(f"HeteroGNN.fold_in: supported for conv='rgcn' only, not "
                             f"{self.conv!r}; retrain with the default operator")
        n, h = h0.size(0), h0
        outputs = [h]
        for k, conv in enumerate(self.convs):
            msg = h.new_zeros(n, self.hidden_channels)
            for edge_type, pairs in in_edges.items():
                if edge_type not in self.edge_types or pairs.size(1) == 0:
                    continue
                r = self.edge_types.index(edge_type)
                row, src = pairs[0], pairs[1]
                table = layers[k][edge_type[0]]
                if edge_type[0] == node_type and int(src.max()) >= table.size(0):
                    table = torch.cat([table, h])
                x = table.index_select(0, src)  # [E, H]
                total = x.new_zeros(n, x.size(1)).index_add_(0, row, x)
                count = torch.bincount(row, minlength=n).clamp_(min=1).unsqueeze(-1)
                msg = msg + (total / count) @ conv.weight[r]  # mean within the relation
            msg = msg + self.lin_root[k][node_type](h)
            if k < self.num_layers - 1:
                msg = F.leaky_relu(msg, 0.2)
            h = msg
            outputs.append(h)
        return outputs if return_layers else torch.stack(outputs).mean(0)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden_channels}, num_layers={self.num_layers}, "
                f"conv={self.conv!r}, edge_types={len(self.edge_types)})")
