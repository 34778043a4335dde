"""The library side of a training run: split, text features, graph, fit, evaluation.

:mod:`hybridrec.train` (the CLI) and :class:`~hybridrec.Recommender` are thin shells over
these functions.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

from hybridrec import distributed
from hybridrec.baselines.search import validation_metric
from hybridrec.config import ModelConfig, RunConfig
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.split import Split, make_split, split_from_files
from hybridrec.device import pick_device, seed_everything
from hybridrec.evaluation import bucket_names, evaluate, item_popularity_buckets
from hybridrec.graph import build_graph
from hybridrec.graph import INTERACTS, REV_INTERACTS
from hybridrec.models.cold import ColdStart, fit_content_prior, search_cold_start
from hybridrec.models.gate import ScoreGate
from hybridrec.models.gnn_scorer import GNNScorer
from hybridrec.models.mix import Mix, Tower
from hybridrec.models.prepare import graph_inputs, prepare_graph
from hybridrec.run import json_ready
from hybridrec.text.cache import write_atomic
from hybridrec.trainer import TrainedGNN, TrainResult, train_gate, train_gnn, train_kwargs

log = logging.getLogger(__name__)

KS = (10, 20)


def load_split(config: RunConfig, dataset: Dataset) -> Split:
    """The split that ``config.data`` describes."""
    data = config.data
    if data.split == "files":
        if data.train_file is None or data.test_file is None:
            raise DataError("config", "split 'files' needs train_file and test_file",
                            field="data.split")
        return split_from_files(dataset, data.train_file, data.valid_file, data.test_file,
                                encoding=data.options.get("encoding", "utf-8"),
                                normalize_ids=data.options.get("normalize_ids") == "true")
    return make_split(dataset, data.split, ratios=data.ratios, seed=data.split_seed,
                      cold_fraction=data.cold_fraction)


def text_features(config: RunConfig, dataset: Dataset, split: Split,
                  device: torch.device) -> Any:
    """The :class:`~hybridrec.text.NodeFeatures` of the data set (``None`` with --no-text)."""
    if not config.model.use_text:
        return None
    from hybridrec.text import TextEncoder, embed_dataset

    encoder = TextEncoder(config.data.text_model, device=device,
                          show_progress=config.train.show_progress)
    return embed_dataset(dataset, split.train, encoder, user_history=config.data.user_history)


FINGERPRINT_FILE = "fingerprint.json"
# Settings a resumed run may change: they bound or show the training, not what it learns.
RESUMABLE_SETTINGS = ("show_progress", "epochs", "patience", "device", "num_threads")


def _digest(*parts: Any) -> str:
    """sha256 over arrays (dtype, shape and bytes) and strings, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            h.update(b"s%d:" % len(part.encode()) + part.encode())
        else:
            array = np.ascontiguousarray(part)
            h.update(f"a{array.dtype.str}{array.shape}:".encode() + array.tobytes())
    return h.hexdigest()


def _interaction_parts(inter: Interactions) -> list[Any]:
    return [inter.user_index, inter.item_index,
            "rating" if inter.rating is None else inter.rating,
            "timestamp" if inter.timestamp is None else inter.timestamp]


def fingerprint(config: RunConfig, dataset: Dataset, split: Split) -> dict[str, Any]:
    """What a training run depends on: sha256 digests of the data set (ids, tables, KG,
    interactions) and of each part of the split, with their sizes, and the settings that
    change what is learned (every model and train setting but :data:`RESUMABLE_SETTINGS`, the
    text model and user texts)."""
    strings = [json.dumps(list(m.ids)) for m in (dataset.users, dataset.items,
                                                 dataset.entities, dataset.relations)]
    strings += [json.dumps([k, [str(x) for x in v]]) for table in (dataset.user_table,
                                                                   dataset.item_table)
                for k, v in sorted(table.items())]
    data = _digest(*strings, json.dumps(list(dataset.entity_text)), dataset.kg_triples,
                   dataset.item_attributes, dataset.user_attributes, dataset.item_entity,
                   *_interaction_parts(dataset.interactions))
    settings = config.to_dict()
    for key in RESUMABLE_SETTINGS:
        settings["train"].pop(key, None)
    return {
        "data": data, "sizes": {"users": dataset.num_users, "items": dataset.num_items,
                                "interactions": len(dataset.interactions),
                                **split.sizes()},
        **{part: _digest(*_interaction_parts(getattr(split, part)), split.cold_items,
                         split.cold_users) for part in ("train", "valid", "test")},
        "settings": {"model": settings["model"], "train": settings["train"],
                     "data": {k: settings["data"][k] for k in ("text_model", "user_history")}},
    }


def check_checkpoint(checkpoint_dir: str | os.PathLike[str], config: RunConfig,
                     dataset: Dataset, split: Split, resume: bool) -> None:
    """Resume only what was started: with ``resume``, the checkpoint folder's fingerprint
    (:func:`fingerprint`) must be this run's, else a :class:`DataError` says what changed (a
    checkpoint of other data would leak: its training pairs may be this split's test pairs).
    Then the folder records this run's fingerprint; without ``resume`` an earlier checkpoint
    there is discarded first."""
    folder = Path(checkpoint_dir)
    path = folder / FINGERPRINT_FILE
    now = fingerprint(config, dataset, split)
    started = [p.name for p in (folder / "checkpoint.safetensors", folder / "als",
                                folder / "lightgcn") if p.exists()]
    if resume and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            changes = _changes(saved, now)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DataError(path, "a fingerprint written by python -m hybridrec.train; start "
                                  "without --resume") from None
        if changes:
            raise DataError(path, f"the data, split and settings of the interrupted run; "
                                  f"--resume with changed {'; '.join(changes)}. Start without "
                                  f"--resume (or with another --out)")
    elif resume and started:
        raise DataError(path, "the fingerprint of the interrupted run beside its checkpoint "
                              f"({', '.join(started)}); it is missing, so this run cannot be "
                              "checked against it. Start without --resume")
    if not resume:  # A fresh start: an earlier checkpoint here must never be resumed into it.
        for name in started:
            if (folder / name).is_dir():
                shutil.rmtree(folder / name)
            else:
                (folder / name).unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(now, indent=1) + "\n",
                                                  encoding="utf-8"))


def _changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words."""
    was, size = saved["sizes"], now["sizes"]
    out = []
    if saved["data"] != now["data"]:
        out.append(f"data: the data set differs ({was['users']} users, {was['items']} items, "
                   f"{was['interactions']} interactions at the checkpoint; {size['users']}, "
                   f"{size['items']}, {size['interactions']} now)")
    for part, name in (("train", "training"), ("valid", "validation"), ("test", "test")):
        if saved[part] != now[part]:
            out.append(f"split: the {name} pairs differ ({was[part]} at the checkpoint, "
                       f"{size[part]} now)")
    keys = [f"{section}.{key}" for section in now["settings"]
            for key in sorted(set(now["settings"][section]) | set(saved["settings"][section]))
            if now["settings"][section].get(key) != saved["settings"][section].get(key)]
    if keys:
        out.append("settings " + ", ".join(keys))
    return out


@dataclass
class HybridFit:
    """What :func:`fit_hybrid` returns.

    Attributes:
        gnn: the trained GNN scorer (its weights; fold-in runs it on new nodes).
        mix: the hybrid as a scorer: the frozen towers of every scorer, mixed (under
            ``torchrun``, on ranks other than 0, the GNN's tower alone: those ranks only
            help train it).
        graph: the prepared training graph (with features).
        result: the GNN's training history, best epoch and validation score.
        gate: the gate's history and the fixed mix's validation score (``None`` without).
        gate_kept: whether validation kept the trained gate (else the mix is the fixed one).
        lightgcn_epochs: the LightGCN's epochs (0 without).
        seconds: wall time of each phase: ``graph``, ``als``, ``lightgcn``, ``gnn`` (its
            epochs and their validation), ``gate_folds`` (the gate's cross-fit), ``gate``,
            ``cold`` (the cold-start stage's search).
        cold_start: the cold-start stage's search (:func:`fit_cold_start`; ``None``: none).
        collaborative: the fitted ALS and LightGCN behind the mix's towers, on every training
            pair (``"als"``, ``"lightgcn"``; each a scorer of its own, as the baselines are).
    """

    gnn: GNNScorer
    mix: Mix
    graph: HeteroData
    result: TrainResult
    gate: tuple[TrainResult, float] | None = None
    gate_kept: bool = False
    lightgcn_epochs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    cold_start: dict[str, Any] | None = None
    collaborative: dict[str, Any] = field(default_factory=dict)


def training_graph(config: ModelConfig, dataset: Dataset, train: Interactions,
                   features: Any = None) -> HeteroData:
    """The graph the GNN trains on: ``train``'s interactions, the KG and the text features
    (:class:`~hybridrec.text.NodeFeatures`, unused when ``config.use_text`` is off) on every
    node, with ``config``'s ablations applied (:func:`~hybridrec.models.prepare_graph`)."""
    text = features if config.use_text else None
    graph = build_graph(dataset, train, **({} if text is None else {
        "user_x": text.user, "item_x": text.item, "entity_x": text.entity}))
    return prepare_graph(graph, entity_has_text=None if text is None else text.entity_has_text,
                         use_text=config.use_text, use_kg=config.use_kg,
                         prune_leaf_entities=config.prune_leaf_entities)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start


def fit_hybrid(
    config: RunConfig,
    dataset: Dataset,
    split: Split,
    features: Any = None,
    *,
    device: torch.device | str | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> HybridFit:
    """The training story, top to bottom: fit each scorer once, then mix them.

    1. The graph: training interactions, KG and text features, ablations applied.
    2. ALS (closed form) and LightGCN (BPR, early-stopped on validation like the baseline),
       fitted and frozen: the collaborative towers.
    3. The GNN scorer, trained by link prediction and early-stopped on the validation metric
       of the *fixed* mix with the frozen towers of step 2 (with ``mix_search``: on its own
       validation metric, and then its share of the mix is chosen on validation,
       :data:`MIX_SHARES`). Where validation has positives on cold items, their text boost
       is chosen on ranking them among themselves (:func:`choose_text_boost`).
    4. With the learned gate: every scorer is fitted again on ``gate_folds - 1`` of
       ``gate_folds`` folds of the training pairs (for the epochs of steps 2 and 3), and the
       gate learns on each left-out fold's scores (:func:`cross_fit`); it is kept only where
       it beats the fixed mix of steps 2 and 3 on validation.
    5. With ``cold_start``: the stage for items without ID signal (:func:`fit_cold_start`),
       kept only where it beats the plain mix on validation.

    Under ``torchrun`` (:mod:`hybridrec.distributed`) every rank trains the GNN on its share
    of the pairs; rank 0 alone fits the collaborative scorers, validates and mixes, and the
    other ranks return after step 3.

    Args:
        config: the run configuration (its ``data`` part is not read here).
        dataset / split: the data and the split to train on (``split.train``).
        features: :class:`~hybridrec.text.NodeFeatures` (required unless
            ``config.model.use_text`` is off).
        device: where to train (default: ``config.train.device``).
        checkpoint_dir / resume: the GNN's checkpoints (see
            :func:`~hybridrec.trainer.train_gnn`); the fitted ALS and LightGCN are kept
            there too, so a resumed run does not refit them. The folder records the
            fingerprint of the data, split and settings (:func:`check_checkpoint`); resuming
            on anything else raises a :class:`~hybridrec.data.errors.DataError`.
    """
    model_cfg, train_cfg = config.model, config.train
    device = pick_device(device if device is not None else train_cfg.device)
    if model_cfg.use_text and features is None:
        raise ValueError("fit_hybrid: config.model.use_text is on but no features were given")
    if checkpoint_dir is not None:
        check_checkpoint(checkpoint_dir, config, dataset, split, resume)

    # 1. The graph.
    seconds: dict[str, float] = {}
    with _timed(seconds, "graph"):
        graph = training_graph(model_cfg, dataset, split.train, features)
    generator = seed_everything(train_cfg.seed)
    # Built first, so that its initial weights depend on the seed alone, not on which other
    # scorers were fitted before it (ablations then start the GNN from the same weights).
    gnn = GNNScorer.from_config(model_cfg, graph)
    num_users, num_items = dataset.num_users, dataset.num_items
    every_pair = graph[INTERACTS].edge_index
    metric = _validation_metric(dataset, split, train_cfg.valid_metric, device)

    use_gate = model_cfg.use_gate and model_cfg.use_mf
    if use_gate and metric is None:
        log.warning("gate: no learned gate without a validation part to keep it by")
        use_gate = False
    if use_gate and train_cfg.gate_folds < 2:
        raise ValueError(f"fit_hybrid: the gate's cross-fit needs gate_folds >= 2, got "
                         f"{train_cfg.gate_folds}")
    ranks = distributed.current()
    if use_gate and ranks.active:
        raise ValueError("fit_hybrid: the learned gate is single-process (its cross-fit trains "
                         "the GNN again in one process)")

    # 2. The collaborative towers, fitted once and frozen.
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    towers: dict[str, Tower] = {}
    scorers: dict[str, Any] = {}
    lightgcn_epochs = 0
    # Under torchrun the other ranks only help train the GNN: rank 0 validates and mixes.
    if model_cfg.use_mf and ranks.is_main:
        with _timed(seconds, "als"):
            towers["als"], scorers["als"] = _als_tower(
                model_cfg, every_pair, num_users, num_items, seed, device, checkpoint_dir, resume)
        if model_cfg.mf_lightgcn_channels:
            with _timed(seconds, "lightgcn"):
                towers["lightgcn"], lightgcn_epochs, scorers["lightgcn"] = _lightgcn_tower(
                    model_cfg, every_pair, num_users, num_items, seed, device, metric,
                    checkpoint_dir, resume)
    user_degree = degree(every_pair[0], num_users)
    item_degree = degree(every_pair[1], num_items)

    # 3. The GNN scorer, early-stopped on the fixed mix; with mix_search, on its own
    # validation metric, and the mix's weights are chosen on validation afterwards.
    search = model_cfg.mix_search and bool(towers) and not use_gate and metric is not None

    def mix_with(gnn_tower: Tower, gate: ScoreGate | None = None,
                 share: float | None = None) -> Mix:
        weights = None if share is None else _weights(share, list(towers))
        return Mix({"gnn": gnn_tower, **(towers if share != 1.0 else {})},
                   user_degree.to(device), item_degree.to(device),
                   weights=None if share == 1.0 else weights, gate=gate).to(device)

    validate = None if metric is None else (lambda tower: metric(
        mix_with(tower, share=1.0 if search else None)))
    negatives = train_cfg.negatives
    warm = negatives == "warm" or (negatives == "auto" and len(split.cold_items) > 0)
    with _timed(seconds, "gnn"):
        result = train_gnn(gnn, graph, validate=validate, generator=generator,
                           device=device, checkpoint_dir=checkpoint_dir, resume=resume,
                           warm_negatives=warm, **train_kwargs(train_cfg))
        tower = TrainedGNN(gnn, *graph_inputs(graph, device)).tower()
        if not ranks.is_main:
            return HybridFit(gnn, mix_with(tower), graph, result, None, False, 0, seconds,
                             None, {})
        cold = item_degree == 0
        if gnn.text_channel and metric is not None \
                and bool(cold.cpu().numpy()[split.valid.item_index].any()):
            # Validation has positives on cold items: how far they lean on text is chosen
            # on ranking them among themselves.
            cold_metric = validation_metric(dataset, split, train_cfg.valid_metric,
                                            device=device, item_subset="cold")
            tower = choose_text_boost(gnn, tower, cold,
                                      lambda t: cold_metric(mix_with(t, share=1.0)))
        share = _best_share(metric, mix_with, tower, MIX_SHARES)[1] if search else None
        mix = mix_with(tower, share=share)

    # 4. The optional gate, learned on out-of-fold scores of every training pair.
    gate_fit, kept = None, False
    if use_gate:
        gate = ScoreGate(3, model_cfg.gate_hidden, mix.fixed_gate).to(device)
        with _timed(seconds, "gate_folds"):
            folds = cross_fit(config, graph, gnn, mix, gate, seed=seed, device=device,
                              gnn_epochs=result.best_epoch or len(result.history),
                              lightgcn_epochs=lightgcn_epochs, warm_negatives=warm)
        mix = mix_with(mix.towers["gnn"], gate)
        with _timed(seconds, "gate"):
            gate_fit = train_gate(mix, folds, every_pair, validate=metric,
                                  epochs=train_cfg.gate_epochs,
                                  lr=train_cfg.lr * train_cfg.gate_lr_scale,
                                  num_negatives=train_cfg.num_negatives,
                                  cold_start_fraction=train_cfg.cold_start_fraction,
                                  generator=generator, show_progress=train_cfg.show_progress)
        kept = gate_fit[0].best_epoch > 0
        if not kept:
            log.info("The learned gate did not beat the fixed mix on validation (%.4f): "
                     "keeping the fixed mix", gate_fit[1])
            mix = mix_with(mix.towers["gnn"])

    # 5. Items without ID signal.
    cold_start = None
    if model_cfg.cold_start:
        missing = [what for what, ok in (("a validation part", metric is not None),
                                         ("collaborative scorers", len(mix.names) > 1),
                                         ("item text", "x" in graph["item"])) if not ok]
        if missing:
            log.warning("cold_start: no stage without %s", " and ".join(missing))
        else:
            with _timed(seconds, "cold"):
                cold_start = fit_cold_start(mix, gnn, graph, every_pair, split, metric)
    log.info("Hybrid fitted: %s", ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    return HybridFit(gnn, mix, graph, result, gate_fit, kept, lightgcn_epochs, seconds,
                     cold_start, scorers)


def cross_fit(config: RunConfig, graph: HeteroData, gnn: GNNScorer, mix: Mix, gate: ScoreGate,
              *, seed: int, device: torch.device, gnn_epochs: int, lightgcn_epochs: int,
              warm_negatives: bool) -> list[tuple[Mix, Tensor]]:
    r"""The gate's training data: for each of ``gate_folds`` folds of the training pairs
    (shuffled with a fixed seed), the fold's pairs ``[2, n_k]`` and a :class:`Mix` of the same
    scorers fitted without them, sharing ``gate``.

    The scorers are refitted as the run fitted them, without validation: the GNN (from fresh
    weights, ``gnn_epochs`` epochs, with ``gnn``'s cold items' text boost), ALS, and LightGCN
    for ``lightgcn_epochs``; the mix's weights are ``mix``'s. A fold's degrees are scaled by
    :math:`K / (K - 1)`, so that the gate reads the log-degrees of the model it will gate;
    its other signals, the norms of the GNN's and ALS's vectors, are read as they are (towers
    fitted on fewer pairs may be shorter). With ``data.user_history`` the users' texts name
    their training items, held-out ones included, and the folds' scores are optimistic (a
    warning says so).
    """
    model_cfg, train_cfg = config.model, config.train
    every_pair = graph[INTERACTS].edge_index
    k = train_cfg.gate_folds
    num_users, num_items = mix.num_users, mix.num_items
    if config.data.user_history:
        log.warning("gate: the users' texts name their training items (data.user_history), "
                    "held-out folds included, so the gate learns on optimistic scores")
    order = torch.randperm(every_pair.size(1), generator=torch.Generator().manual_seed(0))
    folds = []
    for fold in range(k):
        held = torch.zeros(every_pair.size(1), dtype=torch.bool)
        held[order[fold::k]] = True
        rest = every_pair[:, ~held]
        fold_graph = _with_interactions(graph, rest)
        with torch.random.fork_rng(devices=[]):  # fresh weights from the seed alone
            torch.manual_seed(seed + fold)
            scorer = GNNScorer.from_config(model_cfg, graph)
        train_gnn(scorer, fold_graph, generator=torch.Generator().manual_seed(seed + fold),
                  device=device, warm_negatives=warm_negatives,
                  **{**train_kwargs(train_cfg), "epochs": gnn_epochs, "show_progress": False})
        with torch.no_grad():
            scorer.cold_text_log_scale.copy_(gnn.cold_text_log_scale)
        towers = {"gnn": TrainedGNN(scorer, *graph_inputs(fold_graph, device)).tower()}
        towers["als"] = _als_tower(model_cfg, rest, num_users, num_items, seed, device,
                                   warn=False)[0]
        if "lightgcn" in mix.towers:
            towers["lightgcn"] = _lightgcn_tower(model_cfg, rest, num_users, num_items, seed,
                                                 device, None, epochs=lightgcn_epochs)[0]
        scale = k / (k - 1)
        folds.append((Mix(towers, degree(rest[0], num_users) * scale,
                          degree(rest[1], num_items) * scale, weights=mix.weights,
                          gate=gate).to(device), every_pair[:, held]))
        log.info("Gate cross-fit: fold %d of %d fitted", fold + 1, k)
    return folds


#: The factors of the cold items' text boost that :func:`choose_text_boost` tries. Capped:
#: a split's validation cold items are few, their curve flattens past about 4, and larger
#: factors chosen there lost cold-only recall on test.
TEXT_BOOSTS = (1.0, 1.5, 2.0, 3.0, 4.5)


def choose_text_boost(gnn: GNNScorer, tower: Tower, cold: Tensor,
                      metric: Callable[[Tower], float]) -> Tower:
    r"""Multiply the GNN scorer's text boost :math:`e^{\delta}` of items without interactions
    (1 after training) by the factor of :data:`TEXT_BOOSTS` whose GNN ``tower`` ranks best on
    ``metric`` (the validation metric among the cold items alone; the first of equals), and
    return the tower with it.

    Trained against the whole catalogue, the GNN weighs a cold item's text as it weighs a
    warm one's; ranking cold items among themselves can ask more of their text, and a split
    with validation positives on cold items can say how much more.

    Args:
        gnn: the trained scorer (its ``cold_text_log_scale`` is set).
        tower: its tower (:meth:`TrainedGNN.tower`).
        cold: ``bool [I]``: the items without training interactions (their rows carry the
            boost).
    """
    text = slice(gnn.hidden_channels, tower.item.size(1))
    rows = cold.to(tower.item.device)

    def boosted(factor: float) -> Tower:
        item = tower.item.clone()
        item[rows, text] *= factor
        return Tower(tower.user, item)

    values = [metric(boosted(factor)) for factor in TEXT_BOOSTS]
    best = max(range(len(values)), key=lambda n: (values[n], -n))
    factor = TEXT_BOOSTS[best]
    log.info("Cold items' text boost: x%g (validation among cold items %s)", factor,
             ", ".join(f"x{f:g} {v:.4f}" for f, v in zip(TEXT_BOOSTS, values)))
    with torch.no_grad():
        gnn.cold_text_log_scale.add_(math.log(factor))
    return boosted(factor)


#: The GNN's shares of the mix's weights that ``mix_search`` tries (the collaborative scorers
#: split the rest equally); the first, every scorer alike, wins ties.
MIX_SHARES = (1 / 3, 1 / 2, 2 / 3, 5 / 6, 19 / 20)


def _weights(share: float, others: list[str]) -> dict[str, float]:
    """The mix's weights: ``share`` for the GNN, the rest split equally among ``others``."""
    return {"gnn": share, **{name: (1 - share) / len(others) for name in others}}


def _best_share(metric: Callable[[Mix], float], mix_with: Callable[..., Mix], tower: Tower,
                shares: tuple[float, ...]) -> tuple[float, float]:
    """``(validation value, GNN share)`` of the best mix of the GNN ``tower`` over
    ``shares`` (the first of equals)."""
    best_value, best_share = float("-inf"), shares[0]
    for share in shares:
        value = metric(mix_with(tower, share=share))
        if value > best_value:
            best_value, best_share = value, share
    return best_value, best_share


def fit_cold_start(mix: Mix, gnn: GNNScorer, graph: HeteroData, pairs: Tensor, split: Split,
                   metric: Callable[[Mix], float], fraction: float = 0.1,
                   simulate: bool | None = None) -> dict[str, Any]:
    """Choose and set ``mix``'s :class:`~hybridrec.models.cold.ColdStart` stage on validation.

    Where the validation part has positives on items without training pairs (a cold-item
    split), the stage is chosen on the mix itself. Otherwise on a simulated cold start: a
    seeded ``fraction`` of the items with pairs lose them (the GNN tower is read off the
    graph without their pairs, the collaborative towers' rows are zeroed), and the stage is
    chosen on how the validation ranks those items against the others (``simulate=True``
    forces this). The content prior is then fitted on every item with pairs. Returns the
    search's report.
    """
    device = mix.device
    x = graph["item"].x.to(device)
    cold = (mix.item_degree == 0).cpu().numpy()
    simulated = 0
    probe = mix
    if simulate or (simulate is None and not cold[split.valid.item_index].any()):
        probe, simulated = _simulated_cold_start(mix, gnn, graph, pairs, fraction)

    def prior(target: Mix) -> tuple[Tensor, float]:
        return fit_content_prior(mean_item_scores(target), x, target.item_degree > 0)

    def validate(stage: ColdStart | None) -> float:
        probe.set_cold(stage, None if stage is None else stage.prior(x))
        return metric(probe)

    stage, report = search_cold_start(validate, *prior(probe))
    probe.set_cold(None)
    if stage is not None:
        if simulated:
            stage = replace(stage, **dict(zip(("weight", "bias"), prior(mix))))
        mix.set_cold(stage, stage.prior(x))
    report["simulated_cold_items"] = simulated
    return report


def _simulated_cold_start(mix: Mix, gnn: GNNScorer, graph: HeteroData, pairs: Tensor,
                          fraction: float) -> tuple[Mix, int]:
    """A copy of ``mix`` where a seeded ``fraction`` of the items with pairs have none (see
    :func:`fit_cold_start`), and how many."""
    warm = torch.nonzero(degree(pairs[1], mix.num_items) > 0).flatten()
    order = torch.randperm(len(warm), generator=torch.Generator().manual_seed(0))
    chosen = warm[order[:max(1, int(round(fraction * len(warm))))]]
    gone = torch.zeros(mix.num_items, dtype=torch.bool)
    gone[chosen] = True
    kept = pairs[:, ~gone[pairs[1].cpu()].to(pairs.device)]
    device = mix.device
    gnn_tower = TrainedGNN(gnn, *graph_inputs(_with_interactions(graph, kept), device)).tower()
    towers = {mix.names[0]: gnn_tower}
    for name in mix.names[1:]:
        t = mix.towers[name]
        towers[name] = Tower(t.user, t.item.masked_fill(gone.to(device).unsqueeze(-1), 0.0))
    probe = Mix(towers, degree(kept[0], mix.num_users).to(device),
                degree(kept[1], mix.num_items).to(device), mix.weights, mix.gate)
    return probe, len(chosen)


def mean_item_scores(mix: Mix, batch_size: int = 1024) -> Tensor:
    """Each item's mean score over the users ``[I]``."""
    total = torch.zeros(mix.num_items, device=mix.device)
    for start in range(0, mix.num_users, batch_size):
        users = torch.arange(start, min(start + batch_size, mix.num_users), device=mix.device)
        total += mix.score(users).sum(0)
    return total / max(1, mix.num_users)


def _validation_metric(dataset: Dataset, split: Split, name: str,
                       device: torch.device) -> Callable[[Any], float] | None:
    """``scorer -> the validation value named`` (``None`` without a validation part); a
    cut-off larger than the catalogue ranks all of it."""
    if not len(split.valid):
        log.warning("The split has no validation part: training without early stopping")
        return None
    return validation_metric(dataset, split, name, device=device)


def _with_interactions(graph: HeteroData, pairs: Tensor) -> HeteroData:
    """A shallow copy of ``graph`` whose user-item edges (both ways) are ``pairs``."""
    out = copy.copy(graph)
    out[INTERACTS].edge_index = pairs
    out[REV_INTERACTS].edge_index = pairs.flip(0)
    return out


def als_collapsed(als: Any) -> bool:
    """Whether a fitted ALS's factors collapsed to (numerically) zero: a regularisation far
    too strong for the data (the default, tuned on ml-100k, on a few dozen interactions gives
    factors of about 1e-10), so that every score is about 0 and ALS ranks nothing."""
    state = als.state_tensors()
    largest = max((float(t.abs().max()) for t in state.values() if t.numel()), default=0.0)
    return largest < 1e-4


def _warn_collapsed(als: Any, pairs: Interactions, num_users: int, num_items: int) -> None:
    """Warn about a collapsed ALS, with the largest regularisation (a power of ten below) that
    does not collapse on this data."""
    regularization, fits = als.regularization, None
    for _ in range(6):
        regularization /= 10
        if not als_collapsed(als.clone(regularization=regularization).fit(
                pairs, num_users, num_items)):
            fits = regularization
            break
    hint = (f"regularization {fits:g} does not: --set model.mf_regularization={fits:g}"
            if fits is not None else "lower --set model.mf_regularization")
    log.warning("ALS: regularization %g (tuned on ml-100k) collapses every factor to about 0 on "
                "this data (%d pairs, %d users, %d items), so ALS ranks nothing; %s",
                als.regularization, len(pairs), num_users, num_items, hint)


def _als_tower(cfg: ModelConfig, pairs: Tensor, num_users: int, num_items: int, seed: int,
               device: torch.device, checkpoint_dir: Path | None = None,
               resume: bool = False, warn: bool = True) -> tuple[Tower, Any]:
    """ALS with the hybrid's settings on ``pairs``: its tower (users and items without a pair
    get zero rows) and the fitted ALS. A fit whose factors collapse under the regularisation
    is warned about (:func:`als_collapsed`)."""
    from hybridrec.baselines import ALS, BaseScorer

    saved = None if checkpoint_dir is None else Path(checkpoint_dir) / "als"
    # scorer.json is written last: without it the save was killed, and ALS is fitted again.
    if resume and saved is not None and (saved / "scorer.json").is_file():
        als = BaseScorer.load(saved, device=str(device))
    else:
        als = ALS(factors=cfg.mf_channels, regularization=cfg.mf_regularization,
                  alpha=cfg.mf_alpha, random_state=seed, device=str(device))
        als.fit(_pairs(pairs), num_users, num_items)
        if warn and als_collapsed(als):
            _warn_collapsed(als, _pairs(pairs), num_users, num_items)
        if saved is not None:
            (saved / "scorer.json").unlink(missing_ok=True)  # incomplete until rewritten
            als.save(saved)
    state = als.state_tensors()
    return Tower.from_scorer(state["user_factors"], state["item_factors"],
                             degree(pairs[0], num_users) > 0,
                             degree(pairs[1], num_items) > 0), als


def _lightgcn_tower(cfg: ModelConfig, pairs: Tensor, num_users: int, num_items: int, seed: int,
                    device: torch.device, metric: Callable[[Any], float] | None,
                    checkpoint_dir: Path | None = None, resume: bool = False,
                    epochs: int | None = None) -> tuple[Tower, int, Any]:
    """A LightGCN (the baseline's settings, ``mf_lightgcn_channels`` wide) on ``pairs``,
    early-stopped on ``metric`` as the baseline is (every 5 epochs, patience 3), else run for
    ``epochs``; its tower (rows of nodes without a pair zeroed), its epochs and the fitted
    LightGCN."""
    from hybridrec.baselines import BaseScorer, EarlyStopping, LightGCN

    saved = None if checkpoint_dir is None else Path(checkpoint_dir) / "lightgcn"
    # epochs.json is written last: without it the save was killed, and LightGCN is refitted.
    if resume and saved is not None and (saved / "epochs.json").is_file():
        scorer = BaseScorer.load(saved, device=str(device))
        try:
            best = json.loads((saved / "epochs.json").read_text(encoding="utf-8"))
        except ValueError:
            best = None
        if isinstance(best, bool) or not isinstance(best, int) or best < 1:
            raise DataError(saved / "epochs.json", "the LightGCN's epoch count, a positive "
                                                   "integer; start without --resume")
    else:
        scorer = LightGCN(cfg.mf_lightgcn_channels, epochs=epochs or cfg.mf_lightgcn_epochs,
                          lr=cfg.mf_lightgcn_lr, batch_size=cfg.mf_lightgcn_batch_size,
                          random_state=seed, device=str(device))
        if metric is None:
            scorer.fit(_pairs(pairs), num_users, num_items)
            best = scorer.epochs
        else:
            stopper = EarlyStopping(metric, eval_every=5, patience=3)
            stopper.fit(scorer, _pairs(pairs), num_users, num_items)
            best = stopper.best_epoch or scorer.epochs
            log.info("LightGCN: %d epochs (early-stopped on validation; at most %d)", best,
                     scorer.epochs)
        if saved is not None:
            (saved / "epochs.json").unlink(missing_ok=True)  # incomplete until rewritten
            scorer.save(saved)
            write_atomic(saved / "epochs.json",
                         lambda tmp: tmp.write_text(json.dumps(best), encoding="utf-8"))
    state = scorer.state_tensors()
    tower = Tower.from_scorer(state["user_embedding"], state["item_embedding"],
                              degree(pairs[0], num_users) > 0, degree(pairs[1], num_items) > 0)
    return tower, best, scorer


def _pairs(edge_index: Tensor) -> Interactions:
    return Interactions(edge_index[0].cpu().numpy(), edge_index[1].cpu().numpy())


def gate_report(mix: Mix, split: Split, num_items: int) -> dict[str, float] | None:
    """Mean gate value (weight of the GNN score) per item popularity bucket and for cold items
    (``None`` for a fixed mix)."""
    gate = mix.mean_gate()
    if gate is None:
        return None
    gate = gate.float().cpu().numpy()
    popularity = np.bincount(split.train.item_index, minlength=num_items)
    bucket = item_popularity_buckets(popularity, 3)
    report = {name: float(gate[(bucket == b) & (popularity > 0)].mean())
              if ((bucket == b) & (popularity > 0)).any() else None
              for b, name in enumerate(bucket_names(3))}
    report["cold"] = float(gate[popularity == 0].mean()) if (popularity == 0).any() else None
    return report


def evaluate_run(scorer: Any, dataset: Dataset | tuple[int, int], split: Split,
                 device: torch.device | None = None) -> dict[str, Any]:
    """``{"test": ..., "valid": ..., "test_cold_only": ...}`` for any scorer on ``split``
    (cut-offs 10 and 20, or fewer on a catalogue of fewer items)."""
    ks = sorted({min(k, _num_items(dataset)) for k in KS})
    metrics: dict[str, Any] = {"test": evaluate(scorer, dataset, split, part="test", ks=ks,
                                                device=device)}
    if len(split.valid):
        metrics["valid"] = evaluate(scorer, dataset, split, part="valid", ks=ks, device=device)
    cold = np.bincount(split.train.item_index, minlength=_num_items(dataset)) == 0
    test_items = split.test.item_index
    if cold.any() and cold[test_items].any():
        metrics["test_cold_only"] = evaluate(scorer, dataset, split, part="test", ks=ks,
                                             item_subset="cold", device=device)
    return json_ready(metrics)


def _num_items(dataset: Dataset | tuple[int, int]) -> int:
    return dataset.num_items if isinstance(dataset, Dataset) else int(dataset[1])


BASELINES = ("BPR-MF", "ALS", "LightGCN")


def fit_baselines(dataset: Dataset, split: Split, device: torch.device | str | None = None,
                  valid_metric: str = "ndcg@20", als: dict[str, float] | None = None,
                  models: tuple[str, ...] = BASELINES) -> list[tuple[str, dict, float]]:
    """``models`` among BPR-MF, ALS and LightGCN on ``split``, BPR-MF and LightGCN
    early-stopped on ``valid_metric`` like the hybrid (checked every 5 epochs, patience 3);
    ALS with the ``als`` keyword arguments (the hybrid's MF-branch settings, so that the table
    compares the hybrid with the same ALS it contains). Returns ``(name, metrics, seconds)``
    with :func:`evaluate_run`'s metrics."""
    from hybridrec.baselines import ALS, BPRMF, EarlyStopping, LightGCN, validation_metric

    device = str(pick_device(device))
    metric = validation_metric(dataset, split, valid_metric) if len(split.valid) else None
    out = []
    for name, scorer in (("BPR-MF", BPRMF(epochs=300, device=device)),
                         ("ALS", ALS(device=device, **(als or {}))),
                         ("LightGCN", LightGCN(epochs=300, device=device))):
        if name not in models:
            continue
        start = time.perf_counter()
        if name == "ALS" or metric is None:
            scorer.fit(split.train, dataset.num_users, dataset.num_items)
        else:
            EarlyStopping(metric, eval_every=5, patience=3).fit(
                scorer, split.train, dataset.num_users, dataset.num_items)
        seconds = time.perf_counter() - start
        out.append((name, evaluate_run(scorer, dataset, split, device), seconds))
    return out


def text_only(dataset: Dataset, split: Split, features: Any, device: torch.device,
              valid_metric: str = "ndcg@20") -> tuple[str, dict, float]:
    """The text-only baseline on the same features (for cold-start splits), its user profile
    mode chosen on validation."""
    from hybridrec.baselines import TextOnly, validation_metric

    start = time.perf_counter()
    best, best_value = None, float("-inf")
    for mode in ("history", "user_text", "both"):
        scorer = TextOnly(mode, device=str(device)).fit(
            split.train, dataset.num_users, dataset.num_items, item_embeddings=features.item,
            user_embeddings=features.user)
        value = validation_metric(dataset, split, valid_metric)(scorer) if len(split.valid) else 0
        if best is None or value > best_value:
            best, best_value = scorer, value
    return "text-only", evaluate_run(best, dataset, split, device), time.perf_counter() - start
