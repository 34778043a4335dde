"""The hybrid model and its ablations in the benchmark registry.

Imported by :func:`benchmarks.registry.load_extensions`. ``hybrid`` runs by default; the
variants (``hybrid_no_text``, ``hybrid_no_kg``, ``hybrid_no_mf``, ``hybrid_gate`` (the learned
gate on), ``hybrid_no_lightgcn``) run when
named with ``--models`` (``benchmarks/ablation.py`` runs them all). Each trains with the
defaults of :class:`hybridrec.config.RunConfig` (no search: the defaults were chosen on the
validation part of the ml-100k random split), early-stopped on validation NDCG@20, and records
its config, best epochs and, with the gate, whether validation kept it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.registry import ModelContext, register_model
from hybridrec.config import ModelConfig, RunConfig, TrainConfig
from hybridrec.scoring import Scorer
from hybridrec.pipeline import fit_hybrid, gate_report, text_features

#: Name -> the ModelConfig fields it switches off.
ABLATIONS: dict[str, dict[str, Any]] = {
    "hybrid": {},
    "hybrid_no_text": {"use_text": False},
    "hybrid_no_kg": {"use_kg": False},
    "hybrid_no_mf": {"use_mf": False},
    "hybrid_gate": {"use_gate": True},
    "hybrid_no_lightgcn": {"mf_lightgcn_channels": 0},
}


def hybrid_config(ctx: ModelContext, **model: Any) -> RunConfig:
    """The default run config for this context's seed and device, with ``model`` overrides."""
    return RunConfig(model=dataclasses.replace(ModelConfig(), **model),
                     train=TrainConfig(seed=ctx.seed, device=str(ctx.device),
                                       show_progress=ctx.show_progress))


def fit_for_benchmark(ctx: ModelContext, **model: Any) -> Scorer:
    """Train one hybrid variant on ``ctx.split`` and record what was chosen."""
    config = hybrid_config(ctx, **model)
    # The hybrid's own text settings (profile-only user texts by default; served from the
    # on-disk text cache after the first variant).
    features = text_features(config, ctx.dataset, ctx.split, ctx.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.train.num_threads or threads)
    try:
        fitted = fit_hybrid(config, ctx.dataset, ctx.split, features, device=ctx.device)
    finally:
        torch.set_num_threads(threads)
    ctx.record.update({
        "params": {"model": dataclasses.asdict(config.model),
                   "train": dataclasses.asdict(config.train)},
        "valid_ndcg@20": fitted.result.best_score,
        "best_epoch": fitted.result.best_epoch,
        "lightgcn_epochs": fitted.lightgcn_epochs,
        "epochs_run": len(fitted.result.history),
        "gate_kept": fitted.gate_kept if fitted.gate is not None else None,
        "gate": gate_report(fitted.mix, ctx.split, ctx.dataset.num_items),
        "gate_valid": fitted.gate[0].best_score if fitted.gate is not None else None,
        "fixed_mix_valid": fitted.gate[1] if fitted.gate is not None else None,
    })
    return fitted.mix


def _factory(overrides: dict[str, Any]) -> Callable[[ModelContext], Scorer]:
    def factory(ctx: ModelContext) -> Scorer:
        return fit_for_benchmark(ctx, **overrides)

    return factory


def register_hybrid_models(register: Callable[..., Any] = register_model) -> None:
    """Register ``hybrid`` (default) and its ablations (on request) with ``register``."""
    for name, overrides in ABLATIONS.items():
        register(name, default=name == "hybrid")(_factory(overrides))


register_hybrid_models()
