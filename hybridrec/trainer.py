"""Training by gradient: the GNN scorer by link prediction (:func:`train_gnn`), and the optional
gate of the mix (:func:`train_gate`). Each is one straight loop, early-stopped on validation.

Nothing here fits another estimator: the ALS and LightGCN scorers are fitted before, by the
training story in :func:`hybridrec.pipeline.fit_hybrid`, and handed in frozen inside the
validation callback.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from safetensors.torch import save_file
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree
from tqdm.auto import tqdm

from hybridrec import distributed
from hybridrec.baselines.search import EarlyStopping
from hybridrec.config import TrainConfig
from hybridrec.device import pick_device
from hybridrec.graph import INTERACTS
from hybridrec.models.gnn_scorer import GNNScorer
from hybridrec.models.losses import bpr_loss, sampled_softmax_loss, shared_softmax_loss
from hybridrec.models.mix import Mix, Tower
from hybridrec.models.prepare import graph_inputs
from hybridrec.models.sampled import SampledLoss
from hybridrec.sampling import (
    KnownPairs,
    cold_item_mask,
    drop_interactions,
    edge_batches,
    known_pairs,
    uniform_items,
)
from hybridrec.data.errors import DataError
from hybridrec.tensor_files import (
    DTYPE_NAMES,
    Header,
    check_finite,
    check_layout,
    read_tensors,
)

log = logging.getLogger(__name__)

LossKind = Literal["softmax", "bpr"]
CHECKPOINT_FILE = "checkpoint.safetensors"
_FORMAT = "hybridrec-checkpoint/7"  # 7: the cold items' text boost


@dataclass
class Batch:
    """One training step's sample: positive pairs, negatives and the simulated cold items.

    ``users``/``items``: ``[B]``; ``negatives``: ``[1, K]`` shared (softmax) or ``[B]`` (BPR);
    ``cold_items``: ``bool [num_items]``; ``negative_mask``: ``True`` where a negative is a
    training item of the row's user (``[B, K]`` or ``[B]``, or ``None``). With shared
    negatives and a mask that holds every positive, the mask depends on the user alone: it is
    then kept once per user, ``[U', K]`` for ``distinct_users`` ``[U']``, and ``user_row``
    ``[B]`` gives each row's user among them (the loss is then computed per user too).
    """

    users: Tensor
    items: Tensor
    negatives: Tensor
    cold_items: Tensor
    negative_mask: Tensor | None = None
    distinct_users: Tensor | None = None
    user_row: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        return Batch(*(None if t is None else t.to(device) for t in (
            self.users, self.items, self.negatives, self.cold_items, self.negative_mask,
            self.distinct_users, self.user_row)))


@dataclass
class TrainResult:
    """What :func:`train_gnn` returns: the best epoch, its validation score, the history."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    stopped_early: bool = False
    seconds: float = 0.0


def sample_batch(
    positives: Tensor,
    rows: Tensor,
    item_degree: Tensor,
    num_items: int,
    *,
    loss: LossKind,
    num_negatives: int,
    cold_start_fraction: float,
    generator: torch.Generator,
    warm_negatives: bool = False,
    known_keys: KnownPairs | Tensor | None = None,
) -> Batch:
    """Draw negatives and the simulated cold items for the positive pairs ``positives[:, rows]``.

    With ``warm_negatives`` negatives are drawn among items with training interactions only:
    an item that is never a positive (a held-out cold item) would otherwise only ever be
    pushed down, and the model would learn to bury exactly the items whose text and KG it
    should rank. With ``known_keys`` (the training pairs), negatives that are the user's
    training items are masked out of the loss.
    """
    users, items = positives[0, rows], positives[1, rows]
    warm = torch.nonzero(item_degree.cpu() > 0).flatten() if warm_negatives else None
    if loss == "softmax" and num_negatives >= (num_items if warm is None else len(warm)):
        # The catalogue is no larger than the sample: the full softmax, every item once.
        negatives = (torch.arange(num_items) if warm is None else warm).unsqueeze(0)
    else:
        size = (1, num_negatives) if loss == "softmax" else (len(rows),)
        negatives = uniform_items(num_items, size, generator, warm)
    cold = cold_item_mask(item_degree, cold_start_fraction, generator)
    batch = Batch(users, items, negatives, cold)
    if known_keys is None:
        return batch
    if negatives.dim() == 2 and bool(known_pairs(users, items, known_keys, num_items).all()):
        # Every positive is a known pair, so it is masked as a negative by the user's mask
        # alone: one mask row per user (ml-100k: 943 users for 4,096 rows).
        batch.distinct_users, batch.user_row = users.unique(return_inverse=True)
        batch.negative_mask = known_pairs(batch.distinct_users, negatives, known_keys,
                                          num_items)
    else:
        batch.negative_mask = known_pairs(users, negatives, known_keys, num_items)
    return batch


def ranking_loss(pos: Tensor, neg: Tensor, items: Tensor, negatives: Tensor,
                 known: Tensor | None, loss: LossKind, temperature: float | Tensor) -> Tensor:
    """BPR or sampled softmax of ``pos`` against ``neg``; a negative that is the row's own
    positive (softmax) or a known training item (``known``) is masked out."""
    if loss == "bpr":
        return bpr_loss(pos, neg, known)
    mask = negatives == items.unsqueeze(-1)  # [B, K]: the positive itself
    if known is not None:
        mask = mask | known
    return sampled_softmax_loss(pos, neg, temperature, mask)


def compute_loss(
    model: GNNScorer,
    x_dict: dict[str, Tensor],
    edge_index_dict: dict[tuple[str, str, str], Tensor],
    batch: Batch,
    *,
    loss: LossKind = "softmax",
    temperature: float = 0.5,
    weight_decay: float = 0.0,
    drop_label_edges: bool = False,
    sampled: SampledLoss | None = None,
) -> Tensor:
    r"""The batch loss: the ranking loss of the GNN scorer's pair scores plus the L2 penalty
    of the batch's ID embeddings, :math:`\ell(s) + \lambda\, \Omega_{\text{batch}}`.

    The batch's simulated cold items lose their interaction edges (and so their ID signal);
    with ``drop_label_edges`` the batch's own pairs leave the GNN's graph too. With
    ``sampled`` the GNN runs on the batch's sampled neighbourhoods instead of the whole graph
    (:mod:`hybridrec.models.sampled`).
    """
    if sampled is None:
        graph = drop_interactions(edge_index_dict, batch.cold_items)
        interactions = graph[INTERACTS]
        if drop_label_edges:
            # Only the GNN's graph loses the label edges; cold masks and text profiles keep
            # them.
            graph = drop_interactions(graph, batch.cold_items,
                                      torch.stack([batch.users, batch.items]))
        parts, scored = model.embed_parts(x_dict, graph, interactions), batch
    else:  # the batch's own nodes only, on sampled neighbourhoods
        users = batch.users.unique()
        items = torch.cat([batch.items, batch.negatives.reshape(-1)]).unique()
        parts = sampled.embed(model, x_dict, users, items, batch.cold_items)
        scored = _local_batch(batch, users, items)
    per_user = batch.user_row is not None
    # The full softmax's negatives, every item in index order (ml-100k's default): the
    # negatives' score matrix [U', I] then holds each pair's score at [user_row, item].
    in_order = per_user and _in_index_order(scored.negatives[0], parts.item.size(0))

    def scores(users: Tensor, items: Tensor, gather: bool = False) -> tuple[Tensor, Tensor]:
        return (_user_scores(users, items, scored, in_order) if per_user
                else _pair_scores(users, items, scored, per_user=gather))

    pos, neg = scores(parts.user, parts.item)
    fused = per_user and loss == "softmax" and parts.user_text is not None
    if parts.user_text is not None:
        # The text part is constant but for its weight: scored without autograd (no
        # backward products), then scaled, so that only the weight's gradient flows.
        with torch.no_grad():
            text_pos, text_neg = _text_scores(parts.user_text, parts.item_text, scored,
                                              in_order, scores)
        pos = pos + parts.scale * text_pos.to(pos.dtype)
        if not fused:  # else shared_softmax_loss adds it, fused with the softmax
            neg = neg + parts.scale * text_neg.to(neg.dtype)
    if fused:
        total = shared_softmax_loss(pos, neg, batch.user_row, temperature, batch.negative_mask,
                                    text_neg=text_neg, text_scale=parts.scale)
    elif per_user and loss == "softmax":
        total = shared_softmax_loss(pos, neg, batch.user_row, temperature, batch.negative_mask)
    else:
        total = ranking_loss(pos, neg, batch.items, batch.negatives, batch.negative_mask, loss,
                             temperature)
    if weight_decay:
        seen = torch.cat([batch.items, batch.negatives.reshape(-1)])
        total = total + weight_decay * model.embedding_penalty(batch.users, seen)
    return total


def _text_scores(user_text: Tensor, item_text: Tensor, batch: Batch, in_order: bool,
                 scores: Callable[..., tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The text channel's ``scores``; with ``in_order`` negatives the positives are read from
    the negatives' matrix ``[U', I]`` at ``[user_row, item]``, with no ``[B, D]`` gather
    (unless autocast computed that matrix in lower precision than the profiles: the
    positives would then lose precision they had)."""
    if not in_order:
        return scores(user_text, item_text, gather=True)
    neg = user_text.index_select(0, batch.distinct_users) @ item_text.t()
    if neg.dtype == user_text.dtype:
        return neg[batch.user_row, batch.items], neg
    return (user_text.index_select(0, batch.users)
            * item_text.index_select(0, batch.items)).sum(-1), neg


def _local_batch(batch: Batch, users: Tensor, items: Tensor) -> Batch:
    """``batch`` with its user and item ids replaced by positions in ``users`` and ``items``
    (sorted ids, as ``unique`` returns them): rows of a sampled step's embeddings."""
    def local(ids: Tensor | None, among: Tensor) -> Tensor | None:
        return None if ids is None else torch.searchsorted(among, ids)

    return Batch(local(batch.users, users), local(batch.items, items),
                 local(batch.negatives, items), batch.cold_items, batch.negative_mask,
                 local(batch.distinct_users, users), batch.user_row)


def _in_index_order(ids: Tensor, num_items: int) -> bool:
    """Whether the shared negatives ``ids`` are ``arange(num_items)``: the whole catalogue."""
    return ids.numel() == num_items and torch.equal(
        ids, torch.arange(num_items, device=ids.device, dtype=ids.dtype))


def _user_scores(users: Tensor, items: Tensor, batch: Batch, in_order: bool = False
                 ) -> tuple[Tensor, Tensor]:
    """Dot products of the batch's pairs ``[B]`` and of its distinct users with the shared
    negatives ``[U', K]`` (``in_order``: the negatives are all ``items`` in index order, so
    ``items`` is used as it is, uncopied)."""
    pos = (users.index_select(0, batch.users) * items.index_select(0, batch.items)).sum(-1)
    negatives = (items if in_order else items.index_select(0, batch.negatives[0])).t()  # [H, K]
    return pos, users.index_select(0, batch.distinct_users) @ negatives


def _pair_scores(users: Tensor, items: Tensor, batch: Batch, per_user: bool = False
                 ) -> tuple[Tensor, Tensor]:
    """Dot products of the batch's pairs ``[B]`` and of its users with their negatives
    (``[B, K]`` for shared negatives, ``[B]`` for one per row). With ``per_user`` and fewer
    users than rows, shared negatives are scored once per user and gathered (ml-100k: 943
    users for 4,096 rows)."""
    u = users.index_select(0, batch.users)  # [B, H]
    pos = (u * items.index_select(0, batch.items)).sum(-1)
    if batch.negatives.dim() == 2:
        negatives = items.index_select(0, batch.negatives[0]).t()
        if per_user and users.size(0) < batch.users.numel():
            return pos, (users @ negatives).index_select(0, batch.users)
        return pos, u @ negatives
    return pos, (u * items.index_select(0, batch.negatives)).sum(-1)


class LinkLoss(torch.nn.Module):
    """:func:`compute_loss` as a module's ``forward``, so that
    :class:`~torch.nn.parallel.DistributedDataParallel` can wrap it (DDP synchronises the
    gradients of what runs inside its wrapped module's ``forward``)."""

    def __init__(self, model: GNNScorer, **settings: Any) -> None:
        super().__init__()
        self.model = model
        self.settings = settings

    def forward(self, x_dict: dict[str, Tensor],
                edge_index_dict: dict[tuple[str, str, str], Tensor], batch: Batch) -> Tensor:
        return compute_loss(self.model, x_dict, edge_index_dict, batch, **self.settings)


def train_step(
    model: GNNScorer,
    optimizer: torch.optim.Optimizer,
    x_dict: dict[str, Tensor],
    edge_index_dict: dict[tuple[str, str, str], Tensor],
    batch: Batch,
    *,
    loss: LossKind = "softmax",
    temperature: float = 0.5,
    weight_decay: float = 0.0,
    drop_label_edges: bool = False,
    clip_grad_norm: float = 0.0,
    autocast: contextlib.AbstractContextManager | None = None,
    loss_module: torch.nn.Module | None = None,
) -> float:
    """One step: ``zero_grad -> forward -> loss -> backward -> clip -> step``; the loss value.

    The loss is a :class:`LinkLoss` of ``model`` with these settings, or ``loss_module`` (one
    built already, or its DDP wrapper), which brings its own."""
    model.train()
    # Flush the previous step's gradients first, so p.grad is this batch's alone.
    optimizer.zero_grad(set_to_none=True)
    if loss_module is None:
        loss_module = LinkLoss(model, loss=loss, temperature=temperature,
                               weight_decay=weight_decay, drop_label_edges=drop_label_edges)
    with autocast or contextlib.nullcontext():
        value = loss_module(x_dict, edge_index_dict, batch)
    value.backward()
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return float(value.detach())


class TrainedGNN:
    """The GNN scorer as :class:`~hybridrec.baselines.EarlyStopping` sees it: state tensors
    to keep and restore, and :meth:`tower`, its frozen vectors over the training graph."""

    def __init__(self, model: GNNScorer, x_dict: dict[str, Tensor],
                 edge_index_dict: dict[tuple[str, str, str], Tensor]) -> None:
        self.model = model
        self.x_dict = x_dict
        self.edge_index_dict = edge_index_dict

    def state_tensors(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    @torch.no_grad()
    def tower(self) -> Tower:
        """User and item vectors over the training graph (eval mode), as a :class:`Tower`."""
        was_training = self.model.training
        self.model.eval()
        users, items = self.model.embed(self.x_dict, self.edge_index_dict)
        self.model.train(was_training)
        return Tower(users.detach().float().clone(), items.detach().float().clone())


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager | None:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return None


def train_gnn(
    model: GNNScorer,
    data: HeteroData,
    *,
    validate: Callable[[Tower], float] | None = None,
    epochs: int = 60,
    batch_size: int = 4096,
    lr: float = 0.005,
    weight_decay: float = 0.01,
    loss: LossKind = "softmax",
    num_negatives: int = 4096,
    warm_negatives: bool = False,
    temperature: float = 0.5,
    cold_start_fraction: float = 0.1,
    drop_label_edges: bool = False,
    clip_grad_norm: float = 5.0,
    eval_every: int = 1,
    patience: int = 3,
    fanouts: tuple[int, ...] | list[int] = (),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    show_progress: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` by link prediction on the ``("user", "interacts", "item")`` edges of
    ``data``, early-stopped by :class:`~hybridrec.baselines.EarlyStopping` on ``validate``.

    Every step runs the GNN over the whole graph (full-graph message passing over a
    mini-batch of label edges, as PyG's ``examples/lightgcn.py``), with the interactions of a
    random ``cold_start_fraction`` of items removed (simulated cold start). The model ends in
    its best validation state; without ``validate`` it runs all ``epochs``.

    With ``checkpoint_dir`` the training state (model, optimizer, random state, early
    stopping, history) is written there atomically after every epoch; ``resume=True``
    continues from it after a kill.

    Under ``torchrun`` (:mod:`hybridrec.distributed`) the loss runs inside
    :class:`~torch.nn.parallel.DistributedDataParallel`: each rank trains on its slice of every
    step's ``world_size x batch_size`` pairs, rank 0 alone validates and checkpoints, and
    every rank ends in rank 0's best state.

    Args:
        model: the GNN scorer (moved to ``device``).
        data: the prepared training graph (:func:`~hybridrec.models.prepare.prepare_graph`).
        validate: frozen :class:`~hybridrec.models.Tower` of the model -> validation value
            (higher is better); the pipeline mixes it with the frozen CF scorers.
        epochs: upper bound on passes over the training edges (default: 60).
        batch_size: positive pairs per step (default: 4096).
        lr: Adam learning rate (default: 0.005).
        weight_decay: L2 penalty on the ID embeddings each batch uses (default: 0.01).
        loss: ``"softmax"`` (sampled softmax, ``num_negatives`` shared uniform negatives per
            batch; the full softmax when that covers the catalogue) or ``"bpr"``
            (default: ``"softmax"``).
        num_negatives: see ``loss`` (default: 4096).
        warm_negatives: negatives among items with training interactions only
            (default: ``False``).
        temperature: softmax temperature (default: 0.5).
        cold_start_fraction: warm items masked per step (default: 0.1).
        drop_label_edges: leave each batch's positive pairs out of that step's message passing
            (default: ``False``).
        clip_grad_norm: max gradient norm, 0 = off (default: 5.0).
        eval_every / patience: early stopping (default: 1, 3).
        fanouts: neighbours per node and relation for each layer, outermost first: each step
            runs the GNN on its batch's sampled neighbourhoods only
            (:mod:`hybridrec.models.sampled`), so its cost does not grow with the graph;
            empty: every step runs the whole graph (default: ``()``).
        generator: random source of batches, negatives and masks (default: seeded with 0).
        device: where to train (default: CUDA when present, else CPU).
        amp: bf16 autocast on CUDA (default: ``True``; ignored on CPU).
        checkpoint_dir / resume: see above.
        show_progress: progress bars (default: ``True``).
        callback: called with each epoch's history record.
    """
    # 1. Settings.
    if loss not in get_args(LossKind):
        raise ValueError(f"train_gnn: loss must be one of {get_args(LossKind)}, got {loss!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("patience", patience), ("num_negatives", num_negatives)):
        if value < 1:
            raise ValueError(f"train_gnn: {name} must be >= 1, got {value}")
    device = pick_device(device)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    autocast = _autocast(device, amp)

    # 2. Data on the device; the positives are the training interactions.
    model.to(device)
    x_dict, edge_index_dict = graph_inputs(data, device)
    positives = data[INTERACTS].edge_index  # [2, N] on CPU: sampling happens there.
    item_degree = degree(positives[1], model.num_items).long()
    known_keys = KnownPairs(positives, model.num_users, model.num_items)
    optimizer = gnn_optimizer(model, lr)
    trained = TrainedGNN(model, x_dict, edge_index_dict)
    # Under torchrun: each rank a slice of every step's pairs, DDP averaging the gradients,
    # rank 0 alone validating and checkpointing (the others follow its stop).
    ranks = distributed.current()
    sampled = None
    if fanouts:
        if drop_label_edges:
            raise ValueError("train_gnn: drop_label_edges needs full-graph steps; not with "
                             "fanouts")
        # Its own stream (not checkpointed: a resumed run samples anew).
        sampled = SampledLoss(model, x_dict, edge_index_dict, fanouts, torch.Generator(
            ).manual_seed(generator.initial_seed() + 1_000_003 + ranks.rank))
    loss_module: torch.nn.Module = LinkLoss(model, loss=loss, temperature=temperature,
                                            weight_decay=weight_decay,
                                            drop_label_edges=drop_label_edges, sampled=sampled)
    draws = generator  # negatives and simulated cold items
    if ranks.active:
        # static_graph: the same parameters go unused at every step (the last layer's
        # transforms of entities, which no score reads).
        loss_module = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True)
        # The shuffles stay in step on every rank (the shared generator, drawn from as by one
        # process); the negatives and simulated cold items are each rank's own.
        draws = torch.Generator().manual_seed(generator.initial_seed() + 1 + ranks.rank)
    stopper = EarlyStopping(lambda t: validate(t.tower()), eval_every=eval_every,
                            patience=patience) if validate is not None else None
    if not ranks.is_main:
        stopper, checkpoint_dir = None, None
    result, first = TrainResult(), 1
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if resume and ranks.active:
        raise ValueError("train_gnn: resume is single-process; continue a torchrun run's "
                         "checkpoint with one process, or start it again")
    if resume and ckpt is not None and ckpt.is_file():
        first = _load_checkpoint(ckpt, model, optimizer, generator, result, stopper) + 1
        log.info("Resumed from %s after epoch %d", ckpt, first - 1)

    # 3. Epochs.
    started = time.perf_counter() - result.seconds
    for epoch in range(first, epochs + 1):
        if result.stopped_early:
            break
        t0, total, steps = time.perf_counter(), 0.0, 0
        # One step: batch_size pairs on every rank (a step with fewer pairs than ranks, the
        # last one's tail, is skipped everywhere alike).
        batches = [distributed.shard(rows, ranks) for rows in edge_batches(
            positives.size(1), batch_size * ranks.world_size, generator)
            if len(rows) >= ranks.world_size]
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="step", leave=False,
                   disable=None if show_progress and ranks.is_main else True)
        for rows in bar:  # (disable=None: a bar on a terminal only)
            batch = sample_batch(positives, rows, item_degree, model.num_items, loss=loss,
                                 num_negatives=num_negatives,
                                 cold_start_fraction=cold_start_fraction, generator=draws,
                                 warm_negatives=warm_negatives, known_keys=known_keys)
            value = train_step(model, optimizer, x_dict, edge_index_dict, batch.to(device),
                               clip_grad_norm=clip_grad_norm, autocast=autocast,
                               loss_module=loss_module)
            if not math.isfinite(value):
                raise FloatingPointError(f"train_gnn: loss became {value} at epoch {epoch}, "
                                         f"step {steps + 1}; lower lr (now {lr}) or temperature")
            total, steps = total + value, steps + 1
            bar.set_postfix(loss=f"{value:.4f}")
        record = {"epoch": epoch, "loss": total / max(1, steps),
                  "seconds": time.perf_counter() - t0}

        # 4. Validation and early stopping (the best state is kept by the stopper).
        if stopper is not None:
            stop = stopper(epoch, trained)
            if stopper.last_evaluated == epoch:
                record["valid"] = stopper.history[-1][1]
            result.stopped_early = stop
        if validate is not None:
            result.stopped_early = distributed.agree(result.stopped_early, ranks)
        result.history.append(record)
        log.info("epoch %d: loss %.4f%s (%.1fs)", epoch, record["loss"],
                 f", valid {record['valid']:.4f}" if "valid" in record else "",
                 record["seconds"])
        if callback is not None:
            callback(record)
        result.seconds = time.perf_counter() - started
        if ckpt is not None:
            _save_checkpoint(ckpt, model, optimizer, generator, result, stopper, epoch)

    # 5. The best state (rank 0's, on every rank).
    if stopper is not None:
        stopper.finish(trained)
        result.best_epoch, result.best_score = stopper.best_epoch, stopper.best_value
        if result.stopped_early:
            log.info("Early stop after epoch %d: best valid %.4f at epoch %d",
                     stopper.last_epoch, stopper.best_value, stopper.best_epoch)
    else:
        result.best_epoch = len(result.history)
    distributed.share_state(model, ranks)
    result.seconds = time.perf_counter() - started
    model.eval()
    return result


def train_gate(
    mix: Mix,
    folds: list[tuple[Mix, Tensor]],
    every_pair: Tensor,
    *,
    validate: Callable[[Mix], float] | None = None,
    epochs: int = 10,
    batch_size: int = 512,
    lr: float = 0.05,
    num_negatives: int = 4096,
    cold_start_fraction: float = 0.1,
    patience: int = 3,
    generator: torch.Generator | None = None,
    show_progress: bool = True,
) -> tuple[TrainResult, float]:
    r"""Train ``mix.gate`` on out-of-fold scores: ``folds`` pairs each fold's (user, item)
    pairs ``[2, n_k]`` with a mix of towers fitted without them and the same gate
    (:func:`~hybridrec.pipeline.cross_fit`; a single ``(mix, held_out)`` is a hold-out). The
    towers stay frozen; the gate is kept only where ``mix`` with it beats the fixed mix on
    ``validate``.

    The loss is the sampled softmax of the mixed score with the gate's own learned temperature
    (a fixed sharp one lets the tower with the longer upper tail of standardised scores win
    every pair), over uniform negatives with each user's training items (``every_pair``)
    masked. A random ``cold_start_fraction`` of items per step lose their ID signal (the ID
    towers' rows and their degree), so the gate learns where to lean on the GNN. Each step
    takes its pairs from one fold, the folds' steps shuffled together.

    Returns:
        The history, and the fixed mix's validation score (the gate is reset to the fixed mix
        when no trained epoch beats it).
    """
    gate = mix.gate
    if gate is None or any(fold.gate is not gate for fold, _ in folds):
        raise ValueError("train_gate: the mix and every fold's mix need the same gate")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    device = mix.device
    known = KnownPairs(every_pair, mix.num_users, mix.num_items)
    optimizer = torch.optim.Adam(gate.parameters(), lr=lr)
    result = TrainResult()
    fixed = validate(mix) if validate is not None else float("-inf")
    best_state = {k: v.detach().clone() for k, v in gate.state_dict().items()}
    result.best_score, bad = fixed, 0
    id_towers = mix.names[1:]
    for epoch in range(1, epochs + 1):
        t0, total, steps = time.perf_counter(), 0.0, 0
        batches = [(fold, rows) for fold, (_, pairs) in enumerate(folds)
                   for rows in edge_batches(pairs.size(1), batch_size, generator)]
        for n in torch.randperm(len(batches), generator=generator).tolist():
            fold, rows = batches[n]
            scorer, pairs = folds[fold]
            users, items = pairs[0, rows].to(device), pairs[1, rows].to(device)
            negatives = uniform_items(mix.num_items, (1, num_negatives), generator).to(device)
            cold = cold_item_mask(scorer.item_degree, cold_start_fraction, generator).to(device)
            gate.train()
            optimizer.zero_grad(set_to_none=True)
            with _masked_items(scorer, cold, id_towers):
                user_gate, item_gate = scorer.gate_logits()
                distinct, row = users.unique(return_inverse=True)
                full = scorer.mixed(distinct, user_gate, item_gate)  # [U', I]
            pos = full[row, items]
            neg = full.index_select(1, negatives[0]).index_select(0, row)  # [B, K]
            mask = known_pairs(users, negatives.cpu(), known, mix.num_items).to(device)
            value = ranking_loss(pos, neg, items, negatives, mask, "softmax", gate.temperature())
            value.backward()
            optimizer.step()
            total, steps = total + float(value.detach()), steps + 1
        gate.eval()
        mix.refresh_gate()
        record = {"epoch": epoch, "loss": total / max(1, steps),
                  "seconds": time.perf_counter() - t0}
        if validate is not None:
            record["valid"] = score = validate(mix)
            if score > result.best_score:
                result.best_score, result.best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in gate.state_dict().items()}
            else:
                bad += 1
        result.history.append(record)
        log.info("gate epoch %d: loss %.4f%s", epoch, record["loss"],
                 f", valid {record['valid']:.4f}" if "valid" in record else "")
        if validate is not None and bad >= patience:
            result.stopped_early = True
            break
    if validate is not None:
        gate.load_state_dict(best_state)
        mix.refresh_gate()
    return result, fixed


@contextlib.contextmanager
def _masked_items(mix: Mix, cold: Tensor, towers: list[str]):
    """The mix with the ID towers' rows and the degree of ``cold`` items zeroed, for a step."""
    saved = {name: mix.towers[name].item for name in towers}
    degree_saved = mix.item_degree
    for name in towers:
        mix.towers[name].item = saved[name] * (~cold).unsqueeze(-1).to(saved[name].dtype)
    mix.item_degree = degree_saved * (~cold).to(degree_saved.dtype)
    try:
        yield
    finally:
        for name in towers:
            mix.towers[name].item = saved[name]
        mix.item_degree = degree_saved


def train_kwargs(config: TrainConfig) -> dict[str, object]:
    """The :func:`train_gnn` keyword arguments that a :class:`~hybridrec.config.TrainConfig`
    sets."""
    names = ("epochs", "batch_size", "lr", "weight_decay", "loss", "num_negatives",
             "temperature", "cold_start_fraction", "drop_label_edges", "clip_grad_norm",
             "eval_every", "patience", "fanouts", "amp", "show_progress")
    return {name: getattr(config, name) for name in names}


def gnn_optimizer(model: GNNScorer, lr: float) -> torch.optim.Adam:
    """Adam over ``model``'s parameters on its device, fused where torch has the kernel there:
    one pass per parameter instead of a chain of whole-tensor temporaries, which matters for
    the ID-embedding tables, updated in full every step (they grow with the users, whatever a
    sampled step reads)."""
    params = list(model.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch
        return torch.optim.Adam(params, lr=lr)


# ---------------------------------------------------------------------------------------------
# Checkpoints: one safetensors file (tensors + JSON metadata), written to *.tmp then replaced.


def _save_checkpoint(path: Path, model: GNNScorer, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, result: TrainResult,
                     stopper: EarlyStopping | None, epoch: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if stopper is not None and stopper.best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().clone()
                        for k, v in stopper.best_state.items()})
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"epoch": epoch, "history": result.history, "seconds": result.seconds,
            "stopped_early": result.stopped_early, "param_groups": opt["param_groups"],
            "optim_scalars": scalars}
    if stopper is not None:
        meta["stopper"] = {"best_value": _finite(stopper.best_value),
                           "best_epoch": stopper.best_epoch, "last_epoch": stopper.last_epoch,
                           "last_evaluated": stopper.last_evaluated,
                           "history": stopper.history, "bad": stopper._bad}  # noqa: SLF001
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": _FORMAT, "state": json.dumps(meta)})
    os.replace(tmp, path)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _checkpoint_layout(model: GNNScorer, generator: torch.Generator
                       ) -> tuple[dict[str, tuple[str, tuple[int, ...]]], list[str]]:
    """The tensors a checkpoint of ``model`` holds (name -> dtype, shape) and the optional
    ones."""
    expected, optional = {}, []
    for k, v in model.state_dict().items():
        expected[f"model.{k}"] = expected[f"best.{k}"] = (DTYPE_NAMES[v.dtype], tuple(v.shape))
        optional.append(f"best.{k}")
    for index, p in enumerate(model.parameters()):  # Adam's state, for parameters it stepped
        names = {"step": ("F32", ()), "exp_avg": ("F32", tuple(p.shape)),
                 "exp_avg_sq": ("F32", tuple(p.shape))}
        for name, layout in names.items():
            expected[f"optim.{index}.{name}"] = layout
            optional.append(f"optim.{index}.{name}")
    expected["rng.generator"] = ("U8", tuple(generator.get_state().shape))
    expected["rng.torch"] = ("U8", tuple(torch.get_rng_state().shape))
    return expected, optional


def _load_checkpoint(path: Path, model: GNNScorer, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, result: TrainResult,
                     stopper: EarlyStopping | None) -> int:
    """Restore the training state of :func:`_save_checkpoint` in place; the last epoch.

    Raises:
        DataError: a checkpoint of another format or model, or a malformed file (checked
            before anything is restored).
    """
    expected, optional = _checkpoint_layout(model, generator)

    def check(header: Header) -> None:
        if header.metadata.get("format") != _FORMAT:
            raise DataError(path, f"a {_FORMAT} checkpoint, got format "
                            f"{str(header.metadata.get('format'))[:80]!r}; start without "
                            f"--resume", field="format", field_kind="field")
        check_layout(header, expected, optional=optional)
        present = {name.rsplit(".", 1)[0] for name in header.tensors if name.startswith("optim.")}
        for prefix in present:
            if not all(f"{prefix}.{n}" in header.tensors for n in ("step", "exp_avg",
                                                                   "exp_avg_sq")):
                raise header.error("step, exp_avg and exp_avg_sq together", prefix)
        best = [n for n in header.tensors if n.startswith("best.")]
        if best and len(best) != sum(1 for n in expected if n.startswith("best.")):
            raise header.error("every best.* tensor or none", best[0])

    tensors, metadata = read_tensors(path, check)
    check_finite(path, tensors)
    for name, buffer in model.named_buffers():  # Masks of the graph: they must be ours.
        if not torch.equal(tensors[f"model.{name}"], buffer.cpu()):
            raise DataError(path, "the mask of this graph (another data set or split?); start "
                                  "without --resume", field=f"model.{name}", field_kind="tensor")
    meta = _checkpoint_state(path, metadata, optimizer, stopper is not None)
    device = next(model.parameters()).device

    def section(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(section("model."))
    state: dict[int, dict[str, object]] = {}
    for key, value in section("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.to(device) if name != "step" else value
    for index, values in meta["optim_scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    result.history, result.seconds = list(meta["history"]), meta["seconds"]
    result.stopped_early = meta["stopped_early"]
    if stopper is not None and "stopper" in meta:
        s = meta["stopper"]
        stopper.best_value = float("-inf") if s["best_value"] is None else s["best_value"]
        stopper.best_epoch, stopper.last_epoch = s["best_epoch"], s["last_epoch"]
        stopper.last_evaluated = s["last_evaluated"]
        stopper.history = [tuple(h) for h in s["history"]]
        stopper._bad = s["bad"]  # noqa: SLF001
        best = section("best.")
        stopper.best_state = {k: v.to(device) for k, v in best.items()} if best else None
    return int(meta["epoch"])


def _checkpoint_state(path: Path, metadata: dict[str, str], optimizer: torch.optim.Optimizer,
                      with_stopper: bool) -> dict:
    """The checkpoint's JSON state, its types checked against what restoring it needs."""
    def bad(expected: str, key: str) -> DataError:
        return DataError(path, expected, field=key, field_kind="metadata")

    try:
        meta = json.loads(metadata["state"])
    except KeyError:
        raise bad("the training state; it is missing", "state") from None
    except (ValueError, RecursionError):
        raise bad("a JSON training state", "state") from None
    number = (int, float)
    kinds = {"epoch": int, "history": list, "seconds": number, "stopped_early": bool,
             "param_groups": list, "optim_scalars": dict}
    if not isinstance(meta, dict) or not all(
            isinstance(meta.get(k), t) and not (t is int and isinstance(meta.get(k), bool))
            for k, t in kinds.items()) or meta["epoch"] < 0:
        raise bad(f"an object with {', '.join(kinds)} of the right types", "state")
    if not all(isinstance(h, dict) for h in meta["history"]):
        raise bad("a history of epoch records", "state.history")
    groups = optimizer.state_dict()["param_groups"]
    loaded = meta["param_groups"]
    same = len(loaded) == len(groups) and all(
        isinstance(g, dict) and set(g) == set(mine) and all(
            _same_kind(g[k], mine[k]) for k in mine) and list(g["params"]) == list(mine["params"])
        for g, mine in zip(loaded, groups))
    if not same:
        raise bad("the optimizer settings of this training (Adam, one group)",
                  "state.param_groups")
    if not all(isinstance(v, dict) and all(isinstance(x, (int, float, bool)) for x in v.values())
               and k.isdigit() for k, v in meta["optim_scalars"].items()):
        raise bad("numbers per parameter", "state.optim_scalars")
    if with_stopper and "stopper" in meta:
        stop = meta["stopper"]
        kinds = {"best_value": (int, float, type(None)), "best_epoch": int, "last_epoch": int,
                 "last_evaluated": int, "history": list, "bad": int}
        if not isinstance(stop, dict) or not all(isinstance(stop.get(k), t)
                                                 for k, t in kinds.items()) or not all(
                isinstance(h, list) and len(h) == 2 and all(isinstance(x, (int, float))
                                                            for x in h)
                for h in stop["history"]):
            raise bad("the early-stopping state", "state.stopper")
    return meta


def _same_kind(value: object, like: object) -> bool:
    """Whether a JSON value can stand for the optimizer setting ``like`` (lists for tuples,
    ints for floats)."""
    if like is None or isinstance(like, bool):  # foreach / fused are None or a flag
        return value is None or isinstance(value, bool)
    if isinstance(like, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(like, (tuple, list)):
        return isinstance(value, list) and len(value) == len(like) and all(
            _same_kind(v, w) for v, w in zip(value, like))
    return isinstance(value, type(like))
