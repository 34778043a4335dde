"""The model registry of the benchmarks: name -> factory(context) -> fitted scorer.

Adding a model takes one decorated function in any module listed in :data:`EXTENSIONS` (or
imported before :func:`benchmarks.run.main` runs)::

    from benchmarks.registry import ModelContext, register_model

    @register_model("hybrid")
    def hybrid(ctx: ModelContext) -> Scorer:
        model = ...  # fit on ctx.split.train, select on ctx.valid_metric (never on test)
        ctx.record["params"] = {...}
        return model

A factory fits on ``ctx.split.train`` only, picks hyperparameters or epochs on validation only
(``ctx.valid_metric``), and may fill ``ctx.record`` (``params``, ``valid_ndcg@20``, ``search``);
the runner times it, evaluates the returned scorer on test and writes everything down.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hybridrec.baselines import (
    ALS,
    BPRMF,
    EASE,
    BaseScorer,
    ItemKNN,
    LightGCN,
    MostPopular,
    RP3beta,
    TextOnly,
    grid_search,
    validation_metric,
)
from hybridrec.baselines.base import Callback
from hybridrec.data.dataset import Dataset
from hybridrec.data.split import Split
from hybridrec.scoring import Scorer

log = logging.getLogger(__name__)

#: Modules imported (when they exist) so that they can register models, e.g. the hybrid.
EXTENSIONS: tuple[str, ...] = ("benchmarks.hybrid_models",)

#: The metric every model is selected on (validation part, same evaluator as test).
SELECTION_METRIC = "ndcg@20"


class _Lazy:
    """A value computed on first use, then kept (text features are shared by the models)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None
        self._done = False

    def __call__(self) -> Any:
        if not self._done:
            self._value, self._done = self._make(), True
        return self._value


def _embed(dataset: Dataset, split: Split, device: torch.device, show_progress: bool) -> Any:
    from hybridrec.text import TextEncoder, embed_dataset

    encoder = TextEncoder(device=device, show_progress=show_progress)
    # User texts list training items only (no leakage from valid/test).
    return embed_dataset(dataset, split.train, encoder)


@dataclass
class ModelContext:
    """What a factory gets: data, split, device, seed, settings and a place to record.

    Args:
        dataset / split: the data and the split every model shares.
        device: the device picked once by the runner.
        seed: the model seed (``random_state``) of this run.
        tune: run each baseline's validation search (else its defaults, still early-stopped).
        show_progress: progress bars.
        eval_every / patience: early stopping of iterative models, in epochs / evaluations.
        max_epochs: the cap of iterative models.
        record: filled by the factory: ``params``, ``valid_ndcg@20``, ``search``.
    """

    dataset: Dataset
    split: Split
    device: torch.device
    seed: int = 0
    tune: bool = True
    show_progress: bool = False
    eval_every: int = 5
    patience: int = 3
    max_epochs: int = 200
    record: dict[str, Any] = field(default_factory=dict)
    _text: _Lazy | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._text is None:
            self._text = _Lazy(lambda: _embed(self.dataset, self.split, self.device,
                                              self.show_progress))

    def for_run(self, seed: int) -> ModelContext:
        """A copy for one model run: same data and text features, fresh ``record``."""
        return ModelContext(self.dataset, self.split, self.device, seed, self.tune,
                            self.show_progress, self.eval_every, self.patience,
                            self.max_epochs, {}, self._text)

    def text_features(self) -> Any:
        """:class:`hybridrec.text.NodeFeatures` of this split (embedded once, lazily)."""
        assert self._text is not None
        return self._text()

    def valid_metric(self, scorer: Scorer) -> float:
        """Validation NDCG@20 with the one evaluator."""
        # A catalogue smaller than 20 items is selected on NDCG over the whole list.
        metric = SELECTION_METRIC if self.dataset.num_items >= 20 else f"ndcg@{self.dataset.num_items}"
        return validation_metric(self.dataset, self.split, metric, device=self.device)(scorer)

    def fit_train(self, scorer: BaseScorer, callback: Callback | None = None,
                  **kwargs: Any) -> BaseScorer:
        """``scorer.fit`` on the training part (``callback`` only for iterative scorers)."""
        extra = {"callback": callback} if callback is not None else {}
        return scorer.fit(self.split.train, self.dataset.num_users, self.dataset.num_items,
                          **extra, **kwargs)

    def search(self, estimator: BaseScorer, **fit_kwargs: Any) -> BaseScorer:
        """The estimator's validation grid (or only its defaults when ``tune`` is off)."""
        result = grid_search(
            estimator, lambda est, cb: self.fit_train(est, cb, **fit_kwargs), self.valid_metric,
            grid=None if self.tune else {}, eval_every=self.eval_every, patience=self.patience)
        self.record.update({"params": result.params, f"valid_{SELECTION_METRIC}": result.value,
                            "search": result.trials})
        return result.best


Factory = Callable[[ModelContext], Scorer]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its factory and whether it runs when ``--models`` is not given."""

    name: str
    factory: Factory
    default: bool = True


REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, default: bool = True) -> Callable[[Factory], Factory]:
    """Register ``factory`` under ``name`` (lower-case; a repeated name is an error)."""
    def wrap(factory: Factory) -> Factory:
        if name in REGISTRY:
            raise ValueError(f"register_model: {name!r} is already registered")
        REGISTRY[name] = ModelSpec(name, factory, default)
        return factory

    return wrap


def load_extensions() -> None:
    """Import the modules of :data:`EXTENSIONS` that exist (their errors propagate)."""
    for module in EXTENSIONS:
        if module not in sys.modules and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def default_models() -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.default]


# The baselines.
@register_model("pop")
def _pop(ctx: ModelContext) -> Scorer:
    return ctx.search(MostPopular(device=str(ctx.device)))


@register_model("itemknn")
def _itemknn(ctx: ModelContext) -> Scorer:
    return ctx.search(ItemKNN(device=str(ctx.device)))


@register_model("ease")
def _ease(ctx: ModelContext) -> Scorer:
    return ctx.search(EASE(device=str(ctx.device)))


@register_model("rp3beta")
def _rp3beta(ctx: ModelContext) -> Scorer:
    return ctx.search(RP3beta(device=str(ctx.device)))


@register_model("bpr_mf")
def _bpr_mf(ctx: ModelContext) -> Scorer:
    return ctx.search(BPRMF(epochs=ctx.max_epochs, random_state=ctx.seed,
                            device=str(ctx.device), show_progress=ctx.show_progress))


@register_model("als")
def _als(ctx: ModelContext) -> Scorer:
    return ctx.search(ALS(random_state=ctx.seed, device=str(ctx.device)))


@register_model("lightgcn")
def _lightgcn(ctx: ModelContext) -> Scorer:
    return ctx.search(LightGCN(epochs=ctx.max_epochs, random_state=ctx.seed,
                               device=str(ctx.device), show_progress=ctx.show_progress))


@register_model("text_only")
def _text_only(ctx: ModelContext) -> Scorer:
    features = ctx.text_features()
    return ctx.search(TextOnly(device=str(ctx.device)), item_embeddings=features.item,
                      user_embeddings=features.user)
