"""HybridModel: GNN branch (text + KG + interactions) and MF branch mixed by a learned gate."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType, Metadata, NodeType
from torch_geometric.utils import degree

from hybridrec.config import ModelConfig
from hybridrec.models.gate import ScoreGate
from hybridrec.models.gnn import ConvKind, HeteroGNN
from hybridrec.models.mf import MatrixFactorization, Solver

INTERACTS: EdgeType = ("user", "interacts", "item")
REV_INTERACTS: EdgeType = ("item", "rev_interacts", "user")
GateKind = Literal["learned", "fixed"]


def fixed_gate(with_lightgcn: bool) -> float:
    """The GNN's weight in the fixed mix, where every scorer weighs the same: 1/2 beside ALS,
    1/3 beside ALS and LightGCN (which share the MF side)."""
    return 1 / 3 if with_lightgcn else 1 / 2


@dataclass
class HybridEmbeddings:
    """Everything scoring needs, computed once per graph by :meth:`HybridModel.embed`.

    ``*_gnn`` / ``*_mf``: ``[U, H]`` and ``[I, H]`` branch embeddings (``None`` when the branch
    is off); ``item_bias``: ``[I]``; ``user_gate`` / ``item_gate``: gate logits ``[U]`` / ``[I]``
    (``None`` for a fixed mix); ``user_degree`` / ``item_degree``: training-graph degrees;
    ``user_text`` / ``item_text``: the GNN branch's raw text channel ``[U, D]`` / ``[I, D]`` and
    ``text_scale`` its weight ``[1]`` (``None`` without it); ``user_lightgcn`` /
    ``item_lightgcn``: the MF branch's LightGCN embeddings (``None`` without).
    """

    user_gnn: Tensor
    item_gnn: Tensor
    user_mf: Tensor | None
    item_mf: Tensor | None
    item_bias: Tensor | None
    user_gate: Tensor | None
    item_gate: Tensor | None
    user_degree: Tensor
    item_degree: Tensor
    user_text: Tensor | None = None
    item_text: Tensor | None = None
    text_scale: Tensor | None = None
    user_lightgcn: Tensor | None = None
    item_lightgcn: Tensor | None = None

    @property
    def fixed_gate(self) -> float:
        """The GNN's weight in the fixed mix (see :func:`fixed_gate`)."""
        return fixed_gate(self.user_lightgcn is not None)

    def detach_branches(self) -> HybridEmbeddings:
        """A copy whose branch outputs are detached and gate outputs are not: a loss on its
        mixed scores trains the gate alone."""
        gate_fields = ("user_gate", "item_gate")
        return HybridEmbeddings(**{
            f.name: (value if value is None or f.name in gate_fields else value.detach())
            for f in fields(self) for value in (getattr(self, f.name),)})

    def to_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, tensors: dict[str, Tensor]) -> HybridEmbeddings:
        return cls(**{f.name: tensors.get(f.name) for f in fields(cls)})


@dataclass
class ScoreParts:
    """The mixed score and its parts (raw branch scores), all of one shape."""

    score: Tensor
    gnn: Tensor
    mf: Tensor | None
    gate: Tensor | None


class HybridModel(torch.nn.Module):
    r"""The hybrid recommender: a heterogeneous GNN over text features and the KG, an MF branch
    over IDs, and a gate that mixes their scores.

    .. math::
        s(u, i) &= g(u, i)\, \tilde s_{\text{gnn}}(u, i)
            + \big(1 - g(u, i)\big)\, \tilde s_{\text{mf}}(u, i), \qquad
        \tilde s(u, i) = \frac{s(u, i) - \mu_u}{\sigma_u}
        \\
        s_{\text{gnn}}(u, i) &= \mathbf{z}_u^\top \mathbf{z}_i
            + e^{\gamma}\, \bar{\mathbf{t}}_u^\top \hat{\mathbf{t}}_i, \qquad
        s_{\text{mf}}(u, i) = \mathbf{p}_u^\top \mathbf{q}_i + b_i
        \quad \Big(\text{with LightGCN: } \tilde s_{\text{mf}} = \tfrac12
            \big(\tilde s_{\text{als}} + \tilde s_{\text{lgcn}}\big)\Big)

    with :math:`\mathbf{z}` from :class:`~hybridrec.models.HeteroGNN`,
    :math:`\mathbf{p}, \mathbf{q}, b` from :class:`~hybridrec.models.MatrixFactorization`,
    :math:`g` from :class:`~hybridrec.models.ScoreGate`, and the optional parameter-free text
    channel: :math:`\hat{\mathbf{t}}_i` the centred unit text vector of item :math:`i` and
    :math:`\bar{\mathbf{t}}_u` the normalised mean over the user's training items (the
    text-only baseline's score), weighted by a learned :math:`e^{\gamma}`. Each branch's score
    is standardised per user, :math:`\mu_u, \sigma_u` its mean and deviation over every item,
    before the mix: the raw ranges differ by branch and user, and a per-item gate on raw scores
    would lift or sink items by the range of the branch it leans on.

    Cold start is read off the graph: an item (user) with no ``interacts`` edge in the
    ``edge_index_dict`` given to :meth:`embed` has its MF embedding and bias zeroed and its
    degree signal at zero. Training with the edges of random items removed (see
    :func:`hybridrec.sampling.drop_interactions`) is therefore the same situation the model
    meets for truly cold items, and teaches the gate to lean on the GNN there.

    Args:
        metadata: node and edge types of the graph; it must hold ``("user", "interacts",
            "item")``.
        num_nodes_dict: nodes per node type.
        in_channels_dict: text-feature width per node type (``0`` = none).
        id_mask_dict: which nodes get a GNN ID embedding (see :class:`HeteroGNN`)
            (default: every user).
        text_mask_dict: which rows of ``x`` hold text (default: all).
        hidden_channels: embedding width of both branches (default: :obj:`64`).
        num_layers: GNN layers (default: :obj:`2`).
        conv: the GNN operator (default: :obj:`"rgcn"`).
        dropout: GNN dropout (default: :obj:`0.0`).
        use_mf: build the MF branch; without it :math:`s = s_{\text{gnn}}` (default: :obj:`True`).
        mf_channels: MF embedding width (default: ``hidden_channels``).
        mf_layers: LightGCN propagation steps on the MF branch (default: :obj:`0`).
        mf_bias: item bias in the MF branch (default: :obj:`False`).
        mf_solver / mf_regularization / mf_alpha: how the MF branch is fitted (see
            :class:`MatrixFactorization`; ``"als"`` is solved by
            :func:`~hybridrec.trainer.fit`) (default: :obj:`"als"`, :obj:`20.0`, :obj:`3.0`).
        mf_lightgcn_channels: width of a frozen LightGCN beside the ALS factors in the MF
            branch, ``0`` = none, and its most epochs (see :class:`MatrixFactorization`)
            (default: :obj:`0`, :obj:`300`).
        gate: ``"learned"`` or ``"fixed"`` (every scorer weighs the same: :math:`g = 1/2`, or
            :math:`1/3` with LightGCN) (default: :obj:`"learned"`).
        gate_hidden: width of the gate's MLPs (default: :obj:`16`).
        text_channel: add the text channel (needs item features) (default: :obj:`True`).
        content_items: leave ``("user", "interacts", "item")`` out of the GNN, so its item
            embeddings come from text and KG alone (users still read their items)
            (default: :obj:`False`).

    Shapes:
        - **input:** ``x_dict``, ``edge_index_dict`` of the graph; ``edge_label_index``
          :math:`(2, B)` of (user, item) pairs
        - **output:** scores :math:`(B,)`
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
        use_mf: bool = True,
        mf_channels: int | None = None,
        mf_layers: int = 0,
        mf_bias: bool = False,
        mf_solver: Solver = "als",
        mf_regularization: float = 20.0,
        mf_alpha: float = 3.0,
        mf_lightgcn_channels: int = 0,
        mf_lightgcn_epochs: int = 300,
        gate: GateKind = "learned",
        gate_hidden: int = 16,
        text_channel: bool = True,
        content_items: bool = False,
    ) -> None:
        super().__init__()
        if gate not in get_args(GateKind):
            raise ValueError(f"HybridModel: gate must be one of {get_args(GateKind)}, got {gate!r}")
        if INTERACTS not in [tuple(e) for e in metadata[1]]:
            raise ValueError(f"HybridModel: the graph has no {INTERACTS} edge type")
        self.num_users = num_nodes_dict["user"]
        self.num_items = num_nodes_dict["item"]
        self.hidden_channels = hidden_channels
        self.use_mf = use_mf
        self.gate_kind = gate
        self.content_items = content_items
        if content_items:  # Items read text and KG only; users still read their items.
            metadata = (list(metadata[0]), [e for e in metadata[1] if tuple(e) != INTERACTS])
        self.gnn = HeteroGNN(metadata, num_nodes_dict, in_channels_dict,
                             {"user": True} if id_mask_dict is None else id_mask_dict,
                             text_mask_dict, hidden_channels, num_layers, conv, dropout)
        self.mf = (MatrixFactorization(self.num_users, self.num_items,
                                       mf_channels or hidden_channels, mf_layers, mf_bias,
                                       mf_solver, mf_regularization, mf_alpha,
                                       mf_lightgcn_channels, mf_lightgcn_epochs)
                   if use_mf else None)
        self.gate = (ScoreGate(3, gate_hidden, fixed_gate(mf_lightgcn_channels > 0))
                     if use_mf and gate == "learned" else None)
        self.text_channel = text_channel and bool(in_channels_dict.get("item"))
        self.text_log_scale = Parameter(torch.zeros(1)) if self.text_channel else None
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: ModelConfig, data: HeteroData) -> HybridModel:
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
                   in_channels, id_mask, text_mask, text_channel=config.text_channel,
                   content_items=config.content_items,
                   hidden_channels=config.hidden_channels,
                   num_layers=config.num_layers, conv=config.conv, dropout=config.dropout,
                   use_mf=config.use_mf, mf_channels=config.mf_channels,
                   mf_layers=config.mf_layers, mf_bias=config.mf_bias,
                   mf_solver=config.mf_solver, mf_regularization=config.mf_regularization,
                   mf_alpha=config.mf_alpha, mf_lightgcn_channels=config.mf_lightgcn_channels,
                   mf_lightgcn_epochs=config.mf_lightgcn_epochs,
                   gate="learned" if config.use_gate else "fixed",
                   gate_hidden=config.gate_hidden)

    def reset_parameters(self) -> None:
        self.gnn.reset_parameters()
        if self.mf is not None:
            self.mf.reset_parameters()
        if self.gate is not None:
            self.gate.reset_parameters()
        if self.text_log_scale is not None:
            torch.nn.init.zeros_(self.text_log_scale)

    def embed(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        interactions: Tensor | None = None,
    ) -> HybridEmbeddings:
        """Run both branches over the whole graph once.

        Args:
            x_dict / edge_index_dict: the graph the GNN branch reads.
            interactions: the ``(user, item)`` edges that define degrees, cold nodes and the
                MF branch's propagation, when they differ from ``edge_index_dict``'s (training
                leaves a batch's label edges out of the GNN's graph only) (default: ``None``).
        """
        ui = edge_index_dict[INTERACTS] if interactions is None else interactions
        user_degree = degree(ui[0], self.num_users)
        item_degree = degree(ui[1], self.num_items)
        user_cold, item_cold = user_degree == 0, item_degree == 0
        z = self.gnn(x_dict, edge_index_dict, {"user": user_cold, "item": item_cold})
        user_gnn, item_gnn = z["user"], z["item"]
        user_mf = item_mf = bias = user_gate = item_gate = None
        user_lightgcn = item_lightgcn = None
        if self.mf is not None:
            user_mf, item_mf, bias = self.mf(ui, item_cold, user_cold)
            user_lightgcn, item_lightgcn = self.mf.lightgcn(item_cold, user_cold) or (None, None)
        if self.gate is not None:
            user_gate, item_gate = self.gate(
                ScoreGate.signals(user_degree, user_gnn, user_mf),
                ScoreGate.signals(item_degree, item_gnn, item_mf))
        user_text = item_text = scale = None
        if self.text_channel:
            user_text, item_text = self.text_profiles(x_dict["item"], ui)
            scale = self.text_log_scale.exp()
        return HybridEmbeddings(user_gnn, item_gnn, user_mf, item_mf, bias, user_gate,
                                item_gate, user_degree, item_degree, user_text, item_text, scale,
                                user_lightgcn, item_lightgcn)

    @torch.no_grad()
    def text_profiles(self, item_x: Tensor, interactions: Tensor) -> tuple[Tensor, Tensor]:
        r"""The parameter-free text channel, as the text-only baseline builds it: centred unit
        item text vectors :math:`\hat{\mathbf{t}}_i = (\mathbf{t}_i - \bar{\mathbf{t}}) /
        \lVert \mathbf{t}_i - \bar{\mathbf{t}} \rVert`, :math:`\bar{\mathbf{t}}` the mean
        over items, and user profiles, the normalised mean of :math:`\hat{\mathbf{t}}` over the
        user's training items; ``[U, D]`` and ``[I, D]``.

        Centring removes the direction every sentence embedding shares (here from the common
        "Title. Year: ... Genre: ..." layout), which otherwise dominates the cosines: on the
        cold-item split it lifts the channel's test cold-only Recall@20 from 0.20 to 0.36."""
        item_x = item_x.float()
        item_text = F.normalize(item_x - item_x.mean(0), dim=-1)
        profile = item_text.new_zeros(self.num_users, item_text.size(1))
        profile.index_add_(0, interactions[0], item_text.index_select(0, interactions[1]))
        return F.normalize(profile, dim=-1), item_text

    def embedding_penalty(self, user_index: Tensor, item_index: Tensor) -> Tensor:
        r"""The L2 penalty of the ID embeddings a batch uses, as BPR and LightGCN regularise:
        :math:`\frac{1}{2B} \sum (\|\mathbf{p}_u\|^2 + \|\mathbf{q}_i\|^2 + \|\mathbf{e}_u\|^2)`
        over the batch's users and items (with repeats), :math:`B` = ``len(user_index)``."""
        tables: list[tuple[Tensor, Tensor]] = []
        if self.mf is not None:
            tables += [(self.mf.user_emb.weight, user_index), (self.mf.item_emb.weight, item_index)]
        for node_type, index in (("user", user_index), ("item", item_index)):
            if node_type in self.gnn.emb:
                tables.append((self.gnn.emb[node_type].weight, index))
        total = sum(w.index_select(0, i.reshape(-1)).float().pow(2).sum() for w, i in tables
                    if w.requires_grad)  # not the frozen ALS factors
        return total / (2 * max(1, user_index.numel()))

    def score(self, emb: HybridEmbeddings, user_index: Tensor,
              item_index: Tensor | None = None) -> ScoreParts:
        """Scores of users against items.

        ``item_index`` of shape ``[B]`` scores pairs (output ``[B]``), ``[B, K]`` scores each
        user against its own items (``[B, K]``), ``[1, K]`` scores every user against the same
        items (``[B, K]``), and ``None`` scores every item (``[B, num_items]``). With the MF
        branch each branch is standardised per user over every item before the mix, so
        scoring pairs also scores the whole catalogue once per distinct user.
        """
        return _score(emb, user_index, item_index, self.use_mf, self.gate_kind)

    def branch_scores(self, emb: HybridEmbeddings, user_index: Tensor,
                      item_index: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The raw GNN and (ALS or gradient) MF scores alone (``None`` without MF), shaped as
        :meth:`score`'s; cheaper than :meth:`score`, which normalises each over every item to
        mix them. (The frozen LightGCN's, if any, are left out: nothing trains them.)"""
        return _branch_scores(emb, user_index, item_index, with_lightgcn=False)[:2]

    def forward(
        self,
        x_dict: dict[NodeType, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        edge_label_index: Tensor,
    ) -> Tensor:
        emb = self.embed(x_dict, edge_index_dict)
        return self.score(emb, edge_label_index[0], edge_label_index[1]).score

    @torch.no_grad()
    def scorer(self, x_dict: dict[NodeType, Tensor], edge_index_dict: dict[EdgeType, Tensor],
               gate_kind: GateKind | None = None) -> HybridScorer:
        """A frozen :class:`HybridScorer` over the embeddings of this graph (eval mode);
        ``gate_kind="fixed"`` scores the fixed mix even with a learned gate (default: the
        model's own)."""
        was_training = self.training
        self.eval()
        emb = self.embed(x_dict, edge_index_dict)
        self.train(was_training)
        # Copies: the scorer must not follow later changes of the parameters.
        emb = HybridEmbeddings.from_dict({k: v.detach().clone() for k, v in emb.to_dict().items()})
        return HybridScorer(emb, self.use_mf, gate_kind or self.gate_kind)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_users} users, {self.num_items} items, "
                f"gnn={self.gnn}, mf={self.mf}, gate={self.gate_kind if self.use_mf else None})")


def _gather(t: Tensor, index: Tensor) -> Tensor:
    return t.index_select(0, index.reshape(-1)).reshape(*index.shape, *t.shape[1:])


def _branch_scores(emb: HybridEmbeddings, user_index: Tensor, item_index: Tensor | None,
                   with_lightgcn: bool = True) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The raw GNN, MF and LightGCN scores (``None`` where absent, or for LightGCN when not
    ``with_lightgcn``) in the shape :meth:`HybridModel.score` describes."""
    def dot(users: Tensor, items: Tensor) -> Tensor:
        u = users.index_select(0, user_index)  # [B, H]
        if item_index is None:
            return u @ items.t()  # [B, I]
        i = _gather(items, item_index)
        if item_index.dim() == 1:
            return (u * i).sum(-1)  # [B]
        if item_index.size(0) == 1:
            return u @ i[0].t()  # [B, K], the same K items for every user
        return torch.einsum("bh,bkh->bk", u, i)  # [B, K]

    s_gnn = dot(emb.user_gnn, emb.item_gnn)
    if emb.user_text is not None:
        with torch.no_grad():  # constant features: only the scale learns
            s_text = dot(emb.user_text, emb.item_text)
        s_gnn = s_gnn + emb.text_scale * s_text.to(s_gnn.dtype)
    if emb.user_mf is None:
        return s_gnn, None, None
    bias = (emb.item_bias.unsqueeze(0) if item_index is None
            else _gather(emb.item_bias, item_index))
    s_lightgcn = (dot(emb.user_lightgcn, emb.item_lightgcn)
                  if with_lightgcn and emb.user_lightgcn is not None else None)
    return s_gnn, dot(emb.user_mf, emb.item_mf) + bias, s_lightgcn


def _score(emb: HybridEmbeddings, user_index: Tensor, item_index: Tensor | None,
           use_mf: bool, gate_kind: str) -> ScoreParts:
    s_gnn, s_mf, s_lightgcn = _branch_scores(emb, user_index, item_index)
    if not use_mf:
        return ScoreParts(s_gnn, s_gnn, None, None)
    if gate_kind == "fixed":
        gate = torch.full_like(s_gnn, emb.fixed_gate)
    else:
        users = emb.user_gate.index_select(0, user_index)
        if item_index is None:
            gate = torch.sigmoid(users.unsqueeze(-1) + emb.item_gate.unsqueeze(0))
        else:
            items = _gather(emb.item_gate, item_index)
            gate = torch.sigmoid((users if item_index.dim() == 1 else users.unsqueeze(-1)) + items)
        gate = gate.expand_as(s_gnn)
    # Each branch standardised per user over the whole catalogue: on one scale, so a per-item
    # gate weighs how far each branch lifts an item above its usual, not the branch's range.
    # Pairs: the statistics come from one full row per distinct user.
    if item_index is None:
        rows, (all_gnn, all_mf, all_lightgcn) = None, (s_gnn, s_mf, s_lightgcn)
    else:
        users, rows = user_index.unique(return_inverse=True)
        all_gnn, all_mf, all_lightgcn = _branch_scores(emb, users, None)

    def standard(s: Tensor, full: Tensor) -> Tensor:
        full = full.float()
        mean, std = full.mean(-1), full.std(-1).clamp(min=1e-6)  # [U']
        if rows is not None:
            mean, std = mean[rows], std[rows]  # [B]
        if s.dim() > 1:
            mean, std = mean.unsqueeze(-1), std.unsqueeze(-1)
        return ((s.float() - mean) / std).to(s.dtype)

    z_mf = standard(s_mf, all_mf)
    if s_lightgcn is not None:
        z_mf = (z_mf + standard(s_lightgcn, all_lightgcn)) / 2
    mixed = ScoreGate.mix(standard(s_gnn, all_gnn), z_mf, gate)
    return ScoreParts(mixed, s_gnn, s_mf, gate)


class HybridScorer:
    """Frozen embeddings of a fitted :class:`HybridModel`, with the evaluator's face.

    Args:
        emb: the embeddings from :meth:`HybridModel.embed`.
        use_mf / gate_kind: as the model was built.
    """

    def __init__(self, emb: HybridEmbeddings, use_mf: bool, gate_kind: str) -> None:
        self.emb = emb
        self.use_mf = use_mf
        self.gate_kind = gate_kind

    @property
    def num_users(self) -> int:
        return self.emb.user_gnn.size(0)

    @property
    def num_items(self) -> int:
        return self.emb.item_gnn.size(0)

    @property
    def device(self) -> torch.device:
        return self.emb.user_gnn.device

    @torch.no_grad()
    def score(self, user_index: Tensor) -> Tensor:
        """Scores of every item for each user: ``[B, num_items]`` float32 (on the CPU)."""
        user_index = torch.as_tensor(user_index, dtype=torch.long, device=self.device)
        return _score(self.emb, user_index, None, self.use_mf, self.gate_kind).score.float().cpu()

    @torch.no_grad()
    def parts(self, user_index: Tensor) -> ScoreParts:
        """The mixed score, both branch scores and the gate, ``[B, num_items]`` each."""
        user_index = torch.as_tensor(user_index, dtype=torch.long, device=self.device)
        return _score(self.emb, user_index, None, self.use_mf, self.gate_kind)

    @torch.no_grad()
    def mean_gate(self, batch_size: int = 1024) -> Tensor | None:
        """The gate averaged over users, per item: ``[num_items]`` (``None`` without a gate)."""
        if not self.use_mf:
            return None
        total = torch.zeros(self.num_items, device=self.device)
        for start in range(0, self.num_users, batch_size):
            users = torch.arange(start, min(start + batch_size, self.num_users), device=self.device)
            total += self.parts(users).gate.float().sum(0)
        return total / self.num_users
