"""fit(): link-prediction training of a HybridModel with negatives, early stopping and resuming."""
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
from typing import Literal, get_args

import torch
from safetensors.torch import save_file
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree
from tqdm.auto import tqdm

from hybridrec.config import TrainConfig
from hybridrec.device import pick_device
from hybridrec.models.hybrid import INTERACTS, HybridEmbeddings, HybridModel
from hybridrec.models.prepare import graph_inputs
from hybridrec.models.losses import bpr_loss, sampled_softmax_loss
from hybridrec.scoring import Scorer
from hybridrec.sampling import (
    cold_item_mask,
    drop_interactions,
    edge_batches,
    KnownPairs,
    known_pairs,
    uniform_items,
)
from hybridrec.tensor_files import read_tensors

log = logging.getLogger(__name__)

LossKind = Literal["softmax", "bpr"]
Phase = Literal["branches", "gate"]
CHECKPOINT_FILE = "checkpoint.safetensors"
_FORMAT = "hybridrec-checkpoint/5"  # 4: the final frozen factors; 5: centred text

# Scorer -> validation metrics; fit passes the hybrid's scorer, and its LightGCN's, if any.
Validate = Callable[[Scorer], dict[str, object]]


@dataclass
class Batch:
    """One training step's sample: positive pairs, negatives and the simulated cold items.

    ``users``/``items``: ``[B]``; ``negatives``: ``[1, K]`` shared (softmax) or ``[B]`` (BPR);
    ``cold_items``: ``bool [num_items]``; ``negative_mask``: ``True`` where a negative is a
    training item of the row's user (``[B, K]`` or ``[B]``, or ``None``); ``gate_users`` /
    ``gate_items`` / ``gate_negatives`` / ``gate_negative_mask``: held-out positives (and their
    negatives) that train the gate only, or ``None``.
    """

    users: Tensor
    items: Tensor
    negatives: Tensor
    cold_items: Tensor
    negative_mask: Tensor | None = None
    gate_users: Tensor | None = None
    gate_items: Tensor | None = None
    gate_negatives: Tensor | None = None
    gate_negative_mask: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        return Batch(*(None if t is None else t.to(device) for t in (
            self.users, self.items, self.negatives, self.cold_items, self.negative_mask,
            self.gate_users, self.gate_items, self.gate_negatives, self.gate_negative_mask)))


@dataclass
class FitResult:
    """What :func:`fit` returns: the model at its best validation check, and the history.

    ``best_epoch``: the branches' best epoch; ``gate_epoch``: the gate's (0 without a learned
    gate, or when no gate epoch beat the fixed mix on validation); ``best_score``: the
    validation score of the final model. ``gate_candidate`` / ``gate_candidate_epoch`` /
    ``gate_candidate_score``: the best trained gate (its ``gate.*`` parameters) when validation
    kept the fixed mix instead, else ``None`` / 0 / ``-inf``. ``lightgcn_epochs``: the epochs
    of the MF branch's LightGCN (0 without). Each history record names its phase.
    """

    model: HybridModel
    history: list[dict[str, float | str]] = field(default_factory=list)
    best_epoch: int = 0
    gate_epoch: int = 0
    best_score: float = float("-inf")
    stopped_early: bool = False
    seconds: float = 0.0
    gate_candidate: dict[str, Tensor] | None = None
    gate_candidate_epoch: int = 0
    gate_candidate_score: float = float("-inf")
    lightgcn_epochs: int = 0


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
    held_out: Tensor | None = None,
    gate_batch_size: int = 0,
    known_keys: KnownPairs | Tensor | None = None,
    gate_known_keys: KnownPairs | Tensor | None = None,
) -> Batch:
    """Draw negatives and the simulated cold items for the positive pairs ``positives[:, rows]``.

    With ``warm_negatives`` negatives are drawn among items with training interactions only:
    an item that is never a positive (a held-out cold item) would otherwise only ever be
    pushed down, and the model would learn to bury exactly the items whose text and KG it
    should rank. With ``held_out`` pairs ``[2, H]``, ``gate_batch_size`` of them are drawn for
    the gate. With ``known_keys`` (the pairs the branches train on: a
    :class:`~hybridrec.sampling.KnownPairs` or sorted :func:`~hybridrec.sampling.pair_keys`),
    negatives that are the user's training items are masked out of the loss;
    ``gate_known_keys`` does the same for the gate's negatives (every training pair).
    The held-out pairs must not be in ``known_keys``: masked in every step, the branches would
    learn that they are not negatives, which is the held-out answer.
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
    if known_keys is not None:
        batch.negative_mask = known_pairs(users, negatives, known_keys, num_items)
    if held_out is not None and held_out.size(1) and gate_batch_size:
        picks = torch.randint(held_out.size(1), (gate_batch_size,), generator=generator)
        batch.gate_users, batch.gate_items = held_out[0, picks], held_out[1, picks]
        batch.gate_negatives = (negatives if loss == "softmax" else
                                uniform_items(num_items, (gate_batch_size,), generator, warm))
        if gate_known_keys is not None:
            batch.gate_negative_mask = known_pairs(batch.gate_users, batch.gate_negatives,
                                                   gate_known_keys, num_items)
    return batch


def compute_loss(
    model: HybridModel,
    x_dict: dict[str, Tensor],
    edge_index_dict: dict[tuple[str, str, str], Tensor],
    batch: Batch,
    *,
    phase: Phase = "branches",
    loss: LossKind = "softmax",
    temperature: float = 0.5,
    weight_decay: float = 0.0,
    drop_label_edges: bool = False,
) -> Tensor:
    r"""The batch loss of one training phase (see :func:`fit`).

    ``"branches"``: each branch's ranking loss on the batch's pairs, plus the L2 penalty
    :math:`\lambda\,\Omega_{\text{batch}}` of the batch's trainable ID embeddings
    (:meth:`HybridModel.embedding_penalty`):

    .. math::
        \mathcal{L}_{\text{branches}} = \ell(s_{\text{gnn}}) + \ell(s_{\text{mf}})
            + \lambda\, \Omega_{\text{batch}}

    ``"gate"``: the ranking loss of the mixed score :math:`s` on the gate's pairs (the held-out
    ``gate_*`` pairs of the batch, else the batch's own), with the branch outputs detached, so
    only the gate learns; its softmax temperature is the gate's own, learned
    (:meth:`~hybridrec.models.ScoreGate.temperature`): a fixed sharp one lets the branch with
    the longer upper tail of standardised scores win every pair.

    Negatives that are the user's training items are masked out (``batch.negative_mask``).
    """
    if phase not in get_args(Phase):
        raise ValueError(f"compute_loss: phase must be one of {get_args(Phase)}, got {phase!r}")
    graph = drop_interactions(edge_index_dict, batch.cold_items)
    interactions = graph[INTERACTS]
    if drop_label_edges:
        # Only the GNN's graph loses the label edges; degrees and the MF branch keep them.
        graph = drop_interactions(graph, batch.cold_items,
                                  torch.stack([batch.users, batch.items]))
    emb = model.embed(x_dict, graph, interactions)
    if phase == "gate":
        if model.gate is None:
            raise ValueError("compute_loss: the gate phase needs a model with a learned gate")
        held_out = batch.gate_users is not None
        users, items, negatives, known = (
            (batch.gate_users, batch.gate_items, batch.gate_negatives, batch.gate_negative_mask)
            if held_out else (batch.users, batch.items, batch.negatives, batch.negative_mask))
        pos, neg = _mixed_scores(model, emb.detach_branches(), users, items, negatives)
        return _ranking_loss(pos, neg, items, negatives, known, loss, model.gate.temperature())

    def rank(p: Tensor, n: Tensor) -> Tensor:
        return _ranking_loss(p, n, batch.items, batch.negatives, batch.negative_mask, loss,
                             temperature)

    gnn_pos, mf_pos = model.branch_scores(emb, batch.users, batch.items)
    gnn_neg, mf_neg = model.branch_scores(emb, batch.users, batch.negatives)
    total = rank(gnn_pos, gnn_neg)
    if mf_pos is not None and model.mf.trainable:
        total = total + rank(mf_pos, mf_neg)
    if weight_decay:
        items = torch.cat([batch.items, batch.negatives.reshape(-1)])
        total = total + weight_decay * model.embedding_penalty(batch.users, items)
    return total


def _ranking_loss(pos: Tensor, neg: Tensor, items: Tensor, negatives: Tensor,
                  known: Tensor | None, loss: LossKind, temperature: float) -> Tensor:
    """BPR or sampled softmax of ``pos`` against ``neg``; a negative that is the row's own
    positive (softmax) or a known training item (``known``) is masked out."""
    if loss == "bpr":
        return bpr_loss(pos, neg, known)
    mask = negatives == items.unsqueeze(-1)  # [B, K]: the positive itself
    if known is not None:
        mask = mask | known
    return sampled_softmax_loss(pos, neg, temperature, mask)


def _mixed_scores(model: HybridModel, emb: HybridEmbeddings, users: Tensor, items: Tensor,
                  negatives: Tensor) -> tuple[Tensor, Tensor]:
    """Mixed scores of the positive pairs ``[B]`` and of the negatives (``[B, K]`` for shared
    ``[1, K]``, ``[B]`` for one per pair), read from one whole-catalogue row per distinct user:
    the mix standardises over every item, so that row is computed in any case."""
    distinct, rows = users.unique(return_inverse=True)
    full = model.score(emb, distinct).score  # [U', I]
    pos = full[rows, items]
    if negatives.dim() == 2:
        return pos, full.index_select(1, negatives[0]).index_select(0, rows)
    return pos, full[rows, negatives]


def train_step(
    model: HybridModel,
    optimizer: torch.optim.Optimizer,
    x_dict: dict[str, Tensor],
    edge_index_dict: dict[tuple[str, str, str], Tensor],
    batch: Batch,
    *,
    phase: Phase = "branches",
    loss: LossKind = "softmax",
    temperature: float = 0.5,
    weight_decay: float = 0.0,
    drop_label_edges: bool = False,
    clip_grad_norm: float = 0.0,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """One step: ``zero_grad -> forward -> loss -> backward -> clip -> step``; the loss value."""
    model.train()
    # Flush the previous step's gradients first, so p.grad is this batch's alone.
    optimizer.zero_grad(set_to_none=True)
    with autocast or contextlib.nullcontext():
        value = compute_loss(model, x_dict, edge_index_dict, batch, phase=phase, loss=loss,
                             temperature=temperature, weight_decay=weight_decay,
                             drop_label_edges=drop_label_edges)
    value.backward()
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return float(value.detach())


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager | None:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return None


def _metric(metrics: dict[str, object], name: str) -> float:
    if name not in metrics:
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
        raise ValueError(f"fit: valid_metric {name!r} is not among the validation metrics "
                         f"({', '.join(numeric)})")
    return float(metrics[name])  # type: ignore[arg-type]


def fit(
    model: HybridModel,
    data: HeteroData,
    *,
    validate: Validate | None = None,
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
    gate_holdout: float = 0.1,
    gate_epochs: int = 10,
    gate_lr_scale: float = 10.0,
    clip_grad_norm: float = 5.0,
    valid_metric: str = "ndcg@20",
    eval_every: int = 1,
    patience: int = 5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    show_progress: bool = True,
    callback: Callable[[dict[str, float | str]], None] | None = None,
) -> FitResult:
    """Fit ``model`` on the ``("user", "interacts", "item")`` edges of ``data``, in two phases.

    1. **Branches.** Each branch learns by its own ranking loss (:func:`compute_loss`,
       ``"branches"``) for up to ``epochs`` epochs; the state with the best ``valid_metric``
       of the *fixed* mix (or the GNN alone, without MF) is kept, and the phase stops after
       ``patience`` checks without improvement.
    2. **Gate** (a learned gate only). With the branches frozen, the gate learns on pairs the
       branches never saw for up to ``gate_epochs`` epochs, early-stopped on the gated mix.
       Trained together, the mix's validation peaked while the GNN was still weak (epoch
       2–5), and a gate chasing a moving branch kept the mix below a fixed one.

    Every step runs the branches over the whole graph (full-graph message passing over a
    mini-batch of label edges, as PyG's ``examples/lightgcn.py``), with the interactions of a
    random ``cold_start_fraction`` of items removed (simulated cold start, in both phases: it
    is how the gate learns to lean on the GNN where IDs are missing). The gate's pairs are a
    fixed ``gate_holdout`` share of the training pairs, left out of the branches' loss and
    graph; validation and the final scorer use the whole graph. An ALS-solved MF branch is
    solved before the first epoch, on the branch's pairs for training and on all pairs for
    validation and the final model (see
    :meth:`~hybridrec.models.MatrixFactorization.als_solution`); so is its LightGCN, if any
    (early-stopped on ``validate``, then refitted on all pairs for as many epochs, see
    :meth:`~hybridrec.models.MatrixFactorization.lightgcn_solution`). Without ``validate`` each
    phase runs all its epochs and keeps its last state.

    With ``checkpoint_dir`` the full training state (model, best model, optimizer, random
    state, history, the MF branch's final factors) is written there atomically after every
    epoch; ``resume=True`` continues from it after a kill, without refitting the factors.

    Args:
        model: the model (moved to ``device``).
        data: the prepared training graph (:func:`~hybridrec.models.prepare.prepare_graph`).
        validate: scorer -> metrics dict holding ``valid_metric`` (default: ``None``).
        epochs: upper bound on passes over the training edges (default: 60).
        batch_size: positive pairs per step (default: 4096).
        lr: Adam learning rate (default: 0.005).
        weight_decay: L2 penalty on the ID embeddings each batch uses (default: 0.01).
        loss: ``"softmax"`` (sampled softmax, ``num_negatives`` shared uniform negatives per
            batch; the full softmax when that covers the catalogue) or ``"bpr"`` (one uniform
            negative per positive) (default: ``"softmax"``).
        num_negatives: see ``loss`` (default: 4096).
        warm_negatives: draw negatives among items with training interactions only
            (default: ``False``).
        temperature: softmax temperature of the branches' losses (default: 0.5).
        cold_start_fraction: warm items masked per step (default: 0.1).
        drop_label_edges: leave each batch's positive pairs out of that step's message passing
            (default: ``False``).
        gate_holdout: share of the training pairs held out of the branches' training (loss
            and graph) to train the gate on unseen pairs (default: 0.1; ignored without a
            learned gate; 0: the gate learns on the branches' own pairs).
        gate_epochs: upper bound on the gate phase's epochs (default: 10).
        gate_lr_scale: the gate's learning rate as a multiple of ``lr`` (default: 10.0).
        clip_grad_norm: max gradient norm, 0 = off (default: 5.0).
        valid_metric / eval_every / patience: early stopping (default: ``"ndcg@20"``, 1, 5).
        generator: random source of batches, negatives and masks (default: seeded with 0).
        device: where to train (default: CUDA when present, else CPU).
        amp: bf16 autocast on CUDA (default: ``True``; ignored on CPU).
        checkpoint_dir / resume: see above.
        show_progress: progress bars (default: ``True``).
        callback: called with each epoch's history record.
    """
    # 1. Settings.
    if loss not in get_args(LossKind):
        raise ValueError(f"fit: loss must be one of {get_args(LossKind)}, got {loss!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("patience", patience), ("num_negatives", num_negatives),
                        ("gate_epochs", gate_epochs)):
        if value < 1:
            raise ValueError(f"fit: {name} must be >= 1, got {value}")
    device = pick_device(device)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    autocast = _autocast(device, amp)

    # 2. Data on the device; the positives are the training interactions.
    model.to(device)
    x_dict, edge_index_dict = graph_inputs(data, device)
    positives = data[INTERACTS].edge_index  # [2, N] on CPU: sampling happens there.
    train_graph, held_out, gate_batch_size = edge_index_dict, None, 0
    if gate_holdout > 0 and model.gate is not None:
        # A fixed share of pairs (seeded apart from the run, so a resumed run holds out the
        # same), out of the branches' loss and graph: the gate's unseen pairs.
        perm = torch.randperm(positives.size(1), generator=torch.Generator().manual_seed(0))
        n_held = int(round(gate_holdout * positives.size(1)))
        held_out, positives = positives[:, perm[:n_held]], positives[:, perm[n_held:]]
        no_items = torch.zeros(model.num_items, dtype=torch.bool, device=device)
        train_graph = drop_interactions(edge_index_dict, no_items, held_out.to(device))
        gate_batch_size = max(1, math.ceil(batch_size * n_held / max(1, positives.size(1))))
    item_degree = degree(positives[1], model.num_items).long()
    every_pair = data[INTERACTS].edge_index
    # Negatives that are a user's training items are masked out of every loss (the branches'
    # own pairs for the branches, all training pairs for the gate).
    known_keys = KnownPairs(positives, model.num_users, model.num_items)
    gate_known_keys = KnownPairs(every_pair, model.num_users, model.num_items)
    # The MF branch's frozen factors, fitted once (a resumed run reads them from its checkpoint).
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    resuming = resume and ckpt is not None and ckpt.is_file()
    final_factors: dict[str, tuple[Tensor, Tensor]] = {}
    lightgcn_epochs = 0
    if not resuming and model.mf is not None and (model.mf.solver == "als"
                                                  or model.mf.lightgcn_channels):
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        metric = (None if validate is None else
                  lambda scorer: _metric(validate(scorer), valid_metric))
        train_factors, final_factors, lightgcn_epochs = _fit_frozen_factors(
            model, positives, every_pair if held_out is not None else None, metric, seed)
        _load_factors(model, train_factors)
    gate_params = list(model.gate.parameters()) if model.gate is not None else []
    gate_ids = {id(p) for p in gate_params}
    other = [p for p in model.parameters() if id(p) not in gate_ids]
    groups = [{"params": other}] + ([{"params": gate_params, "lr": lr * gate_lr_scale}]
                                    if gate_params else [])
    optimizer = torch.optim.Adam(groups, lr=lr)
    result = FitResult(model, lightgcn_epochs=lightgcn_epochs)
    phases: list[Phase] = ["branches"] + (["gate"] if model.gate is not None else [])
    limits = {"branches": epochs, "gate": gate_epochs}
    state = _PhaseState(phase=phases[0])
    if resuming:
        state = _load_checkpoint(ckpt, model, optimizer, generator, result, final_factors)
        log.info("Resumed from %s after epoch %d (%s phase)", ckpt, state.epoch, state.phase)

    # 3. Epochs, phase by phase.
    started = time.perf_counter() - result.seconds
    while not state.finished:
        state.epoch, state.phase_epoch = state.epoch + 1, state.phase_epoch + 1
        epoch, phase = state.epoch, state.phase
        t0 = time.perf_counter()
        total, steps = 0.0, 0
        batches = list(edge_batches(positives.size(1), batch_size, generator))
        bar = tqdm(batches, desc=f"epoch {epoch} ({phase})", unit="step", leave=False,
                   disable=None if show_progress else True)  # None: on a terminal only
        for rows in bar:
            batch = sample_batch(positives, rows, item_degree, model.num_items, loss=loss,
                                 num_negatives=num_negatives,
                                 cold_start_fraction=cold_start_fraction, generator=generator,
                                 warm_negatives=warm_negatives,
                                 held_out=held_out if phase == "gate" else None,
                                 gate_batch_size=gate_batch_size, known_keys=known_keys,
                                 gate_known_keys=gate_known_keys)
            value = train_step(model, optimizer, x_dict, train_graph, batch.to(device),
                               phase=phase, loss=loss, temperature=temperature,
                               weight_decay=weight_decay, drop_label_edges=drop_label_edges,
                               clip_grad_norm=clip_grad_norm, autocast=autocast)
            if not math.isfinite(value):
                raise FloatingPointError(f"fit: loss became {value} at epoch {epoch}, step "
                                         f"{steps + 1}; lower lr (now {lr}) or temperature")
            total, steps = total + value, steps + 1
            bar.set_postfix(loss=f"{value:.4f}")
        record: dict[str, float | str] = {"epoch": epoch, "phase": phase,
                                          "loss": total / max(1, steps),
                                          "seconds": time.perf_counter() - t0}

        # 4. Validation, early stopping, best state; the next phase starts from the best.
        done = state.phase_epoch >= limits[phase]
        if validate is not None and (state.phase_epoch % eval_every == 0 or done):
            with _factors(model, final_factors):
                scorer = model.scorer(x_dict, edge_index_dict,
                                      gate_kind="fixed" if phase == "branches" else None)
            score = _metric(validate(scorer), valid_metric)
            record[f"valid_{valid_metric}"] = score
            if score > state.trained_score:
                state.trained_score, state.trained_epoch = score, epoch
                state.trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if score > state.best_score:
                state.best_score, state.best_epoch, state.bad_checks = score, epoch, 0
                state.best = state.trained
            else:
                state.bad_checks += 1
                done = done or state.bad_checks >= patience
        result.history.append(record)
        log.info("epoch %d (%s): loss %.4f%s (%.1fs)", epoch, phase, record["loss"],
                 "".join(f", {k} {v:.4f}" for k, v in record.items() if k.startswith("valid_")),
                 record["seconds"])
        if callback is not None:
            callback(record)
        if done:
            if state.bad_checks >= patience:
                result.stopped_early = True
                log.info("Early stop of the %s phase after epoch %d: best %s %.4f at epoch %d%s",
                         phase, epoch, valid_metric, state.best_score, state.best_epoch,
                         " (the fixed mix, before any gate step)"
                         if phase == "gate" and state.best_epoch == 0 else "")
            if state.best is not None:
                model.load_state_dict(state.best)
            if phase == "branches":
                result.best_epoch = state.best_epoch
            else:
                result.gate_epoch = state.best_epoch
                if state.best_epoch == 0 and state.trained is not None:
                    log.info("The learned gate (best valid %s %.4f, epoch %d) did not beat the "
                             "fixed mix (%.4f): keeping the fixed mix", valid_metric,
                             state.trained_score, state.trained_epoch, state.best_score)
                    result.gate_candidate = {k: v for k, v in state.trained.items()
                                             if k.startswith("gate.")}
                    result.gate_candidate_epoch = state.trained_epoch
                    result.gate_candidate_score = state.trained_score
            result.best_score = state.best_score
            state.next_phase(phases, {k: v.detach().clone() for k, v in model.state_dict().items()})
        result.seconds = time.perf_counter() - started
        if ckpt is not None:
            _save_checkpoint(ckpt, model, optimizer, generator, result, state, final_factors)

    _load_factors(model, final_factors)
    result.seconds = time.perf_counter() - started
    model.eval()
    return result


@dataclass
class _PhaseState:
    """Where :func:`fit` is: the phase, epochs so far (in all and in the phase), and the
    phase's best validation state."""

    phase: Phase
    epoch: int = 0
    phase_epoch: int = 0
    bad_checks: int = 0
    best_epoch: int = 0
    best_score: float = float("-inf")
    best: dict[str, Tensor] | None = None
    finished: bool = False
    trained_epoch: int = 0
    trained_score: float = float("-inf")
    trained: dict[str, Tensor] | None = None

    def next_phase(self, phases: list[Phase], start: dict[str, Tensor]) -> None:
        """Move on to the phase after this one (or finish). The new phase's best so far is
        its start, at the score the last phase ended with: a fresh gate is the fixed mix, so a
        trained gate is kept only where it beats that mix on validation. ``trained*`` track the
        best trained epoch alone."""
        position = phases.index(self.phase) + 1
        self.finished = position == len(phases)
        if not self.finished:
            self.phase = phases[position]
        self.phase_epoch, self.bad_checks, self.best_epoch = 0, 0, 0
        self.best = start if self.best is not None else None
        self.trained_epoch, self.trained_score, self.trained = 0, float("-inf"), None


def _fit_frozen_factors(
    model: HybridModel, positives: Tensor, every_pair: Tensor | None,
    metric: Callable[[Scorer], float] | None, seed: int,
) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, tuple[Tensor, Tensor]], int]:
    """The MF branch's frozen factors (``"als"``, ``"lightgcn"``, as it has them) for training,
    fitted on the branch's own ``positives`` so the gate's held-out pairs stay unseen, and for
    validation and the final model, on ``every_pair`` (``None``: the same pairs, one fit).
    Returns both and the LightGCN's epochs (0 without)."""
    train: dict[str, tuple[Tensor, Tensor]] = {}
    final: dict[str, tuple[Tensor, Tensor]] = {}
    mf, epochs = model.mf, 0
    if mf.solver == "als":
        # Closed form. The held-out share is worth 0.014 test NDCG@20 to ALS on ml-100k, hence
        # the final refit. (The gate reads the MF norms, so it meets slightly larger ones after
        # training than in it; the best state is chosen on validation with the final factors.)
        train["als"] = mf.als_solution(positives, seed=seed)
        final["als"] = train["als"] if every_pair is None else mf.als_solution(every_pair,
                                                                                seed=seed)
    if mf.lightgcn_channels:
        # Early-stopped as the baseline is (on validation, which sees the whole training graph,
        # as the ALS factors' check does), then refitted on every pair for as many epochs.
        users, items, epochs = mf.lightgcn_solution(positives, seed=seed, metric=metric)
        train["lightgcn"] = users, items
        final["lightgcn"] = (train["lightgcn"] if every_pair is None else
                             mf.lightgcn_solution(every_pair, seed=seed, epochs=epochs)[:2])
        log.info("LightGCN of the MF branch: %d epochs (early-stopped on validation; at most %d)",
                 epochs, mf.lightgcn_epochs)
    return train, final, epochs


@contextlib.contextmanager
def _factors(model: HybridModel, factors: dict[str, tuple[Tensor, Tensor]]):
    """Load the given frozen MF-branch factors (see :func:`_load_factors`) for the duration of
    the block."""
    mf = model.mf
    pairs = {"als": (mf.user_emb.weight, mf.item_emb.weight)} if "als" in factors else {}
    if "lightgcn" in factors:
        pairs["lightgcn"] = (mf.lightgcn_user, mf.lightgcn_item)
    saved = {k: (u.detach().clone(), i.detach().clone()) for k, (u, i) in pairs.items()}
    _load_factors(model, factors)
    try:
        yield
    finally:
        _load_factors(model, saved)


def _load_factors(model: HybridModel, factors: dict[str, tuple[Tensor, Tensor]]) -> None:
    """Set the MF branch's frozen factors that ``factors`` holds: ``"als"``, ``"lightgcn"``."""
    if "als" in factors:
        model.mf.load_factors(*factors["als"])
    if "lightgcn" in factors:
        model.mf.load_lightgcn(*factors["lightgcn"])


def fit_kwargs(config: TrainConfig) -> dict[str, object]:
    """The :func:`fit` keyword arguments that a :class:`~hybridrec.config.TrainConfig` sets."""
    names = ("epochs", "batch_size", "lr", "weight_decay", "loss", "num_negatives",
             "temperature", "cold_start_fraction", "drop_label_edges",
             "gate_holdout", "gate_epochs", "gate_lr_scale", "clip_grad_norm",
             "valid_metric", "eval_every", "patience", "amp", "show_progress")
    return {name: getattr(config, name) for name in names}


# ---------------------------------------------------------------------------------------------
# Checkpoints: one safetensors file (tensors + JSON metadata), written to *.tmp then replaced.


def _save_checkpoint(path: Path, model: HybridModel, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, result: FitResult, state: _PhaseState,
                     final_factors: dict[str, tuple[Tensor, Tensor]]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, (users, items) in final_factors.items():
        tensors[f"final.{name}.users"] = users.detach().cpu().clone()
        tensors[f"final.{name}.items"] = items.detach().cpu().clone()
    for prefix, tensor_dict in (("best.", state.best), ("trained.", state.trained),
                                ("candidate.", result.gate_candidate)):
        if tensor_dict is not None:  # copies: safetensors refuses tensors stored twice
            tensors.update({prefix + k: v.detach().cpu().clone() for k, v in tensor_dict.items()})
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
    meta = {
        "phase": state.phase, "epoch": state.epoch, "phase_epoch": state.phase_epoch,
        "bad_checks": state.bad_checks, "finished": state.finished,
        "phase_best_epoch": state.best_epoch,
        "phase_best_score": _finite(state.best_score),
        "best_epoch": result.best_epoch, "best_score": _finite(result.best_score),
        "gate_epoch": result.gate_epoch, "stopped_early": result.stopped_early,
        "seconds": result.seconds, "history": result.history,
        "param_groups": opt["param_groups"], "optim_scalars": scalars,
        "has_best": state.best is not None,
        "trained_epoch": state.trained_epoch, "trained_score": _finite(state.trained_score),
        "has_trained": state.trained is not None,
        "candidate_epoch": result.gate_candidate_epoch,
        "candidate_score": _finite(result.gate_candidate_score),
        "has_candidate": result.gate_candidate is not None,
        "lightgcn_epochs": result.lightgcn_epochs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": _FORMAT, "state": json.dumps(meta)})
    os.replace(tmp, path)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _load_checkpoint(path: Path, model: HybridModel, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, result: FitResult,
                     final_factors: dict[str, tuple[Tensor, Tensor]]) -> _PhaseState:
    """Restore ``model``, ``optimizer``, ``generator``, ``result`` and ``final_factors`` (in
    place) from a checkpoint of :func:`_save_checkpoint`; return the phase state."""
    tensors, metadata = read_tensors(path)
    if metadata.get("format") != _FORMAT:
        raise ValueError(f"{path}: expected a {_FORMAT} checkpoint, got format "
                         f"{metadata.get('format')!r}")
    meta = json.loads(metadata["state"])
    device = next(model.parameters()).device

    def section(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        model.load_state_dict(section("model."))
    except RuntimeError as err:
        raise ValueError(f"{path}: the checkpoint does not fit this model ({err}); "
                         f"start without resume or use the same configuration") from None
    best = {k: v.to(device) for k, v in section("best.").items()} if meta["has_best"] else None
    state: dict[int, dict[str, object]] = {}
    for key, value in section("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.to(device) if name != "step" else value
    for index, scalars in meta["optim_scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except ValueError as err:
        raise ValueError(f"{path}: the checkpoint's optimizer does not fit this model ({err}); "
                         f"start without resume or use the same configuration") from None
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    result.history = list(meta["history"])
    result.best_epoch, result.gate_epoch = meta["best_epoch"], meta["gate_epoch"]
    result.best_score = _or_minus_inf(meta["best_score"])
    result.stopped_early, result.seconds = meta["stopped_early"], meta["seconds"]
    if meta["has_candidate"]:
        result.gate_candidate = {k: v.to(device) for k, v in section("candidate.").items()}
        result.gate_candidate_epoch = meta["candidate_epoch"]
        result.gate_candidate_score = _or_minus_inf(meta["candidate_score"])
    trained = ({k: v.to(device) for k, v in section("trained.").items()}
               if meta["has_trained"] else None)
    final = section("final.")
    for name in {key.split(".")[0] for key in final}:
        final_factors[name] = (final[f"{name}.users"].to(device), final[f"{name}.items"].to(device))
    result.lightgcn_epochs = meta["lightgcn_epochs"]
    return _PhaseState(meta["phase"], meta["epoch"], meta["phase_epoch"], meta["bad_checks"],
                       meta["phase_best_epoch"], _or_minus_inf(meta["phase_best_score"]), best,
                       meta["finished"], meta["trained_epoch"],
                       _or_minus_inf(meta["trained_score"]), trained)


def _or_minus_inf(value: float | None) -> float:
    return float("-inf") if value is None else value
