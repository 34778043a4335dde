"""The library side of a training run: split, text features, graph, fit, evaluation.

:mod:`hybridrec.train` (the CLI) and :class:`~hybridrec.Recommender` are thin shells over
these functions.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hybridrec.config import RunConfig
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.split import Split, make_split, split_from_files
from hybridrec.device import pick_device, seed_everything
from hybridrec.evaluate import bucket_names, evaluate, item_popularity_buckets
from hybridrec.graph import build_graph
from hybridrec.models.hybrid import HybridModel, HybridScorer
from hybridrec.models.prepare import graph_inputs, prepare_graph
from hybridrec.run import json_ready
from hybridrec.trainer import FitResult, Validate, fit, fit_kwargs

log = logging.getLogger(__name__)

KS = (10, 20)


def load_split(config: RunConfig, dataset: Dataset) -> Split:
    """The split that ``config.data`` describes."""
    data = config.data
    if data.split == "files":
        if data.train_file is None or data.test_file is None:
            raise DataError("config", "split 'files' needs train_file and test_file",
                            field="data.split")
        return split_from_files(dataset, data.train_file, data.valid_file, data.test_file)
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


@dataclass
class HybridFit:
    """What :func:`fit_hybrid` returns: the model, its graph and scorer, and the fit result."""

    model: HybridModel
    graph: HeteroData
    scorer: HybridScorer
    result: FitResult


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
    """Config -> graph -> model -> :func:`~hybridrec.trainer.fit`, early-stopped on validation.

    Args:
        config: the run configuration (its ``data`` part is not read here).
        dataset / split: the data and the split to train on (``split.train``).
        features: :class:`~hybridrec.text.NodeFeatures` (required unless
            ``config.model.use_text`` is off).
        device: where to train (default: ``config.train.device``).
        checkpoint_dir / resume: see :func:`~hybridrec.trainer.fit`.
    """
    device = pick_device(device if device is not None else config.train.device)
    if config.model.use_text and features is None:
        raise ValueError("fit_hybrid: config.model.use_text is on but no features were given")
    text = features if config.model.use_text else None
    graph = build_graph(dataset, split.train,
                        **({} if text is None else {"user_x": text.user, "item_x": text.item,
                                                    "entity_x": text.entity}))
    graph = prepare_graph(graph, entity_has_text=None if text is None else text.entity_has_text,
                          use_text=config.model.use_text, use_kg=config.model.use_kg,
                          prune_leaf_entities=config.model.prune_leaf_entities)
    generator = seed_everything(config.train.seed)
    model = HybridModel.from_config(config.model, graph)
    validate: Validate | None = None
    if len(split.valid):
        metric = config.train.valid_metric
        k = int(metric.rsplit("@", 1)[1]) if "@" in metric else 20
        validate = functools.partial(evaluate, data=dataset, split=split, part="valid",
                                     ks=(k,), device=device)
    else:
        log.warning("The split has no validation part: training all %d epochs without early "
                    "stopping", config.train.epochs)
    negatives = config.train.negatives
    warm = negatives == "warm" or (negatives == "auto" and len(split.cold_items) > 0)
    result = fit(model, graph, validate=validate, generator=generator, device=device,
                 checkpoint_dir=checkpoint_dir, resume=resume, warm_negatives=warm,
                 **fit_kwargs(config.train))
    scorer = model.scorer(*graph_inputs(graph, device))
    return HybridFit(model, graph, scorer, result)


def gate_report(scorer: HybridScorer, split: Split, num_items: int) -> dict[str, float] | None:
    """Mean gate value (weight of the GNN score) per item popularity bucket and for cold items."""
    gate = scorer.mean_gate()
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


def candidate_gate_report(fitted: HybridFit, split: Split,
                          num_items: int) -> dict[str, float] | None:
    """:func:`gate_report` of the trained gate that validation turned down for the fixed mix
    (``None`` when the gate was kept or there is none): what the gate had learned."""
    candidate, model = fitted.result.gate_candidate, fitted.model
    if candidate is None:
        return None
    kept = {k: v.clone() for k, v in model.gate.state_dict().items()}
    model.gate.load_state_dict({k[len("gate."):]: v for k, v in candidate.items()})
    try:
        device = next(model.parameters()).device
        return gate_report(model.scorer(*graph_inputs(fitted.graph, device)), split, num_items)
    finally:
        model.gate.load_state_dict(kept)


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


def fit_baselines(dataset: Dataset, split: Split, device: torch.device | str | None = None,
                  valid_metric: str = "ndcg@20",
                  als: dict[str, float] | None = None) -> list[tuple[str, dict, float]]:
    """BPR-MF, ALS and LightGCN on ``split``, the first and last early-stopped on
    ``valid_metric`` like the hybrid (checked every 5 epochs, patience 3); ALS with the
    ``als`` keyword arguments (the hybrid's MF-branch settings, so that the table compares the
    hybrid with the same ALS it contains). Returns ``(name, metrics, seconds)`` with
    :func:`evaluate_run`'s metrics."""
    from hybridrec.baselines import ALS, BPRMF, EarlyStopping, LightGCN, validation_metric

    device = str(pick_device(device))
    metric = validation_metric(dataset, split, valid_metric) if len(split.valid) else None
    out = []
    for name, scorer in (("BPR-MF", BPRMF(epochs=300, device=device)),
                         ("ALS", ALS(device=device, **(als or {}))),
                         ("LightGCN", LightGCN(epochs=300, device=device))):
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
