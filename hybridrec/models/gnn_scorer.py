"""GNNScorer: the text-initialised heterogeneous GNN plus its text channel, a dot-product
scorer trained by link prediction."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType, Metadata, NodeType
from torch_geometric.utils import degree

from hybridrec.config import ModelConfig
from hybridrec.graph import INTERACTS
from hybridrec.models.gnn import ConvKind, HeteroGNN, sparse_adjacency



@dataclass
class EmbeddingParts:
    r""":meth:`GNNScorer.embed_parts`: the GNN's user and item vectors ``[U, H]``, ``[I, H]``,
    and the text channel's user profiles ``[U, D]``, centred item texts ``[I, D]``, weight
    :math:`e^{\gamma}` (``None`` without the channel), and each item's boost of its text in
    :meth:`GNNScorer.embed` ``[I]`` (:math:`e^{\delta}` for items without interactions, else
    1). Training scores ``user @ item.T + scale * user_text @ item_text.T``: the boost is
    set after training (:func:`~hybridrec.pipeline.choose_text_boost`)."""

    user: Tensor
    item: Tensor
    user_text: Tensor | None = None
    item_text: Tensor | None = None
    scale: Tensor | None = None
    item_boost: Tensor | None = None


class GNNScorer(torch.nn.Module):
    r"""The graph-and-text scorer of the hybrid.

    .. math::
        s(u, i) = \mathbf{z}_u^\top \mathbf{z}_i
            + e^{\gamma + \delta c_i}\, \bar{\mathbf{t}}_u^\top \hat{\mathbf{t}}_i
        = \big[\mathbf{z}_u, e^{\gamma}\bar{\mathbf{t}}_u\big]^\top
          \big[\mathbf{z}_i, e^{\delta c_i}\hat{\mathbf{t}}_i\big]

    with :math:`\mathbf{z}` from :class:`~hybridrec.models.HeteroGNN` and the optional
    parameter-free text channel: :math:`\hat{\mathbf{t}}_i` the centred unit text vector of
    item :math:`i` and :math:`\bar{\mathbf{t}}_u` the normalised mean over the user's training
    items (the text-only baseline's score), weighted by a learned :math:`e^{\gamma}`, and for
    an item without interactions (:math:`c_i = 1`: cold, or added later) by a further
    :math:`e^{\delta}`: such an item's GNN vector comes from text and KG alone, and ranking
    such items among themselves can ask more of their text than training against the whole
    catalogue does. :math:`\delta` is not trained (0 while training); it is chosen on
    validation's cold items where there are some
    (:func:`~hybridrec.pipeline.choose_text_boost`). So the scorer is a dot product of one
    user vector and one item vector (:meth:`embed`), which is what the mix, the evaluator and
    fold-in read.

    Cold start is read off the graph: a user or item with no ``interacts`` edge has its ID
    embedding masked. Training with the edges of random items removed (simulated cold start)
    is therefore the same situation the model meets for truly cold items.

    Args:
        metadata: node and edge types of the graph; it must hold ``("user", "interacts",
            "item")``.
        num_nodes_dict: nodes per node type.
        in_channels_dict: text-feature width per node type (``0`` = none).
        id_mask_dict: which nodes get a GNN ID embedding (see :class:`HeteroGNN`)
            (default: every user).
        text_mask_dict: which rows of ``x`` hold text (default: all).
        hidden_channels: embedding width (default: :obj:`64`).
        num_layers: GNN layers (default: :obj:`2`).
        conv: the GNN operator (default: :obj:`"rgcn"`).
        dropout: GNN dropout (default: :obj:`0.0`).
        text_channel: add the text channel (needs item features) (default: :obj:`True`).
        content_items: leave ``("user", "interacts", "item")`` out of the GNN, so its item
            embeddings come from text and KG alone (default: :obj:`False`).

    Shapes:
        - **input:** ``x_dict``, ``edge_index_dict``; ``edge_label_index`` :math:`(2, B)`
        - **output:** scores :math:`(B,)`; :meth:`embed`: :math:`(U, H')`, :math:`(I, H')`
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
        text_channel: bool = True,
        content_items: bool = False,
    ) -> None:
        super().__init__()
        if INTERACTS not in [tuple(e) for e in metadata[1]]:
            raise ValueError(f"GNNScorer: the graph has no {INTERACTS} edge type")
        self.num_users = num_nodes_dict["user"]
        self.num_items = num_nodes_dict["item"]
        self.hidden_channels = hidden_channels
        self.content_items = content_items
        if content_items:  # Items read text and KG only; users still read their items.
            metadata = (list(metadata[0]), [e for e in metadata[1] if tuple(e) != INTERACTS])
        self.gnn = HeteroGNN(metadata, num_nodes_dict, in_channels_dict,
                             {"user": True} if id_mask_dict is None else id_mask_dict,
                             text_mask_dict, hidden_channels, num_layers, conv, dropout)
        self.text_channel = text_channel and bool(in_channels_dict.get("item"))
        self.text_log_scale = Parameter(torch.zeros(1)) if self.text_channel else None
        # δ: a parameter so that it is saved with the model, but set, not trained.
        self.cold_text_log_scale = Parameter(torch.zeros(1), requires_grad=False) \
            if self.text_channel else None
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: ModelConfig, data: HeteroData) -> GNNScorer:
        """Build for a prepared graph (:func:`~hybridrec.models.prepare.prepare_graph`).

        Users always get GNN ID embeddings; entities get them where ``has_text`` is false; a
        node type without ``x`` gets them for every node.
        """
        in_channels = {t: int(data[t].x.size(1)) for t in data.node_types if "x" in data[t]}
        id_mask: dict[str, Tensor | bool] = {"user": True}
        text_mask: dict[str, Tensor] = {}
        if "entity" in data.node_types and "has_text" in data["entity"]:
            id_mask["entity"] = ~data["entity"].has_text
            text_mask["entity"] = data["entity"].has_text
        return cls(data.metadata(), {t: int(data[t].num_nodes) for t in data.node_types},
                   in_channels, id_mask, text_mask, hidden_channels=config.hidden_channels,
                   num_layers=config.num_layers, conv=config.conv, dropout=config.dropout,
                   text_channel=config.text_channel, content_items=config.content_items)

    def reset_parameters(self) -> None:
        self.gnn.reset_parameters()
        if self.text_log_scale is not None:
            torch.nn.init.zeros_(self.text_log_scale)
            torch.nn.init.zeros_(self.cold_text_log_scale)

    def embed(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        interactions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """User and item vectors ``[U, H']``, ``[I, H']`` whose dot products are the scores.

        Args:
            x_dict / edge_index_dict: the graph the GNN reads.
            interactions: the ``(user, item)`` edges that define cold nodes and the text
                profiles, when they differ from ``edge_index_dict``'s (training leaves a
                batch's label edges out of the GNN's graph only) (default: ``None``).
        """
        parts = self.embed_parts(x_dict, edge_index_dict, interactions)
        users, items = parts.user, parts.item
        if parts.user_text is not None:
            users = torch.cat([users, parts.scale * parts.user_text.to(users.dtype)], -1)
            items = torch.cat([items, parts.item_boost.unsqueeze(-1)
                               * parts.item_text.to(items.dtype)], -1)
        return users, items

    def embed_parts(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        interactions: Tensor | None = None,
    ) -> EmbeddingParts:
        r""":meth:`embed`'s vectors before they are joined: the GNN's :math:`\mathbf{z}`, and
        the text channel's constant profiles and learned scale. Training scores the two
        apart: the text part needs no gradient but the scale's, so its products need no
        backward pass (384 of the 448 columns)."""
        ui = edge_index_dict[INTERACTS] if interactions is None else interactions
        cold = self.cold_masks(ui)
        z = self.gnn(x_dict, edge_index_dict, cold)
        if not self.text_channel:
            return EmbeddingParts(z["user"], z["item"])
        user_text, item_text = self.text_profiles(x_dict["item"], ui)
        return EmbeddingParts(z["user"], z["item"], user_text, item_text,
                              self.text_log_scale.exp(), self.text_boost(cold["item"]))

    def cold_masks(self, interactions: Tensor) -> dict[NodeType, Tensor]:
        """The users and items without an ``interactions`` pair ``[2, E]``: their ID
        embeddings are masked (``bool [U]``, ``bool [I]``)."""
        return {"user": degree(interactions[0], self.num_users) == 0,
                "item": degree(interactions[1], self.num_items) == 0}

    @torch.no_grad()
    def text_profiles(self, item_x: Tensor, interactions: Tensor) -> tuple[Tensor, Tensor]:
        r"""The parameter-free text channel, as the text-only baseline builds it: centred unit
        item text vectors :math:`\hat{\mathbf{t}}_i = (\mathbf{t}_i - \bar{\mathbf{t}}) /
        \lVert \mathbf{t}_i - \bar{\mathbf{t}} \rVert`, :math:`\bar{\mathbf{t}}` the mean
        over items, and user profiles, the normalised mean of :math:`\hat{\mathbf{t}}` over the
        user's training items; ``[U, D]`` and ``[I, D]``.

        Centring removes the direction every sentence embedding shares (here from the common
        "Title. Year: ... Genre: ..." layout), which otherwise dominates the cosines."""
        item_x = item_x.float()
        item_text = F.normalize(item_x - item_x.mean(0), dim=-1)
        # A sparse product, not a gather of one text row per interaction and a scatter-add:
        # the same sums without materialising [E, D] (an order of magnitude less time).
        ones = item_text.new_ones(interactions.size(1))
        adjacency = sparse_adjacency(interactions[0], interactions[1], ones,
                                     (self.num_users, self.num_items))
        profile = torch.sparse.mm(adjacency, item_text)
        return F.normalize(profile, dim=-1), item_text

    def text_boost(self, cold: Tensor) -> Tensor:
        """Each item's boost of the text channel ``[N]``: :math:`e^{\\delta}` where ``cold``
        (``bool [N]``: no interactions), else 1."""
        delta = self.cold_text_log_scale
        return torch.exp(delta * cold.to(device=delta.device, dtype=delta.dtype))

    def text_scale(self) -> float:
        """:math:`e^{\\gamma}`, the text channel's weight (0 without the channel)."""
        return float(self.text_log_scale.detach().exp()) if self.text_channel else 0.0

    def embedding_penalty(self, user_index: Tensor, item_index: Tensor) -> Tensor:
        r"""The L2 penalty of the ID embeddings a batch uses, as BPR and LightGCN regularise:
        :math:`\frac{1}{2B} \sum \lVert\mathbf{e}\rVert^2` over the batch's users and items
        (with repeats), :math:`B` = ``len(user_index)``."""
        total = user_index.new_zeros((), dtype=torch.float)
        for node_type, index in (("user", user_index), ("item", item_index)):
            if node_type in self.gnn.emb:
                weight = self.gnn.emb[node_type].weight
                total = total + weight.index_select(0, index.reshape(-1)).float().pow(2).sum()
        return total / (2 * max(1, user_index.numel()))

    def forward(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_label_index: Tensor,
    ) -> Tensor:
        users, items = self.embed(x_dict, edge_index_dict)
        return (users[edge_label_index[0]] * items[edge_label_index[1]]).sum(-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_users} users, {self.num_items} items, "
                f"gnn={self.gnn}, text_channel={self.text_channel})")
