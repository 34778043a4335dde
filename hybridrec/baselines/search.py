"""A small validation search: every combination of a short grid, best by a validation metric.

Iterative scorers (``iterative = True``) also stop early: the validation metric is computed
every ``eval_every`` epochs, the best epoch's state is kept, and training stops after
``patience`` evaluations without gain. The chosen ``epochs`` is then the best epoch, so the
reported parameters refit to the same model.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from hybridrec.baselines.base import BaseScorer, Callback
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.split import Split
from hybridrec.evaluation import evaluate
from hybridrec.scoring import Scorer

log = logging.getLogger(__name__)

#: ``fit(scorer, callback)`` fits a fresh scorer on the training data (``callback`` is ``None``
#: for non-iterative scorers) and returns it.
FitFn = Callable[[BaseScorer, Callback | None], BaseScorer]


_CAPPED_LOGGED: set[tuple[str, int]] = set()


def capped_metric(metric: str, num_items: int) -> tuple[str, int]:
    """``(name, k)`` of a validation metric such as ``"ndcg@20"`` on a catalogue of
    ``num_items``: a cut-off larger than the catalogue ranks all of it (``"ndcg@13"``), as the
    final evaluation does."""
    from hybridrec.metrics import METRICS

    base, sep, cut = metric.rpartition("@")
    if not sep:
        return metric, min(20, num_items)
    names = (*METRICS, "avg_popularity", "long_tail_share")
    if base not in names:
        raise ValueError(f"valid_metric {metric!r}: expected one of {', '.join(names)} with a "
                         f"cut-off, such as ndcg@20")
    try:
        k = int(cut)
    except ValueError:
        raise ValueError(f"valid_metric {metric!r}: expected a name and a cut-off such as "
                         f"ndcg@20") from None
    if k < 1:
        raise ValueError(f"valid_metric {metric!r}: the cut-off must be at least 1")
    if k > num_items:
        if (metric, num_items) not in _CAPPED_LOGGED:  # once: every scorer's validation asks
            _CAPPED_LOGGED.add((metric, num_items))
            log.info("valid_metric %s on %d items: using @%d", metric, num_items, num_items)
        return f"{base}@{num_items}", num_items
    return metric, k


def validation_metric(
    data: Dataset | tuple[int, int], split: Split, metric: str = "ndcg@20", **kwargs: Any
) -> Callable[[Scorer], float]:
    """``scorer -> metric`` on the validation part, with the one evaluator; a cut-off larger
    than the catalogue is capped to it (:func:`capped_metric`).

    Args:
        data / split: as for :func:`~hybridrec.evaluation.evaluate`.
        metric: a key of its result (default: ``"ndcg@20"``).
        **kwargs: more :func:`~hybridrec.evaluation.evaluate` arguments (``ks`` is derived).
    """
    num_items = data.num_items if isinstance(data, Dataset) else int(data[1])
    metric, k = capped_metric(metric, num_items)
    ks = sorted({k, *(min(int(x), num_items) for x in kwargs.pop("ks", ()))})

    def score(scorer: Scorer) -> float:
        values = evaluate(scorer, data, split, part="valid", ks=ks, **kwargs)
        if metric not in values:
            numeric = sorted(key for key, v in values.items() if isinstance(v, (int, float)))
            raise ValueError(f"valid_metric {metric!r} is not among the validation metrics "
                             f"({', '.join(numeric)})")
        return float(values[metric])

    return score


class EarlyStopping:
    """A fit callback that keeps the best epoch by a validation metric.

    Args:
        metric: ``scorer -> value`` (higher is better).
        eval_every: epochs between evaluations (default: 5).
        patience: evaluations without gain before stopping (default: 3).
    """

    def __init__(self, metric: Callable[[Scorer], float], eval_every: int = 5,
                 patience: int = 3) -> None:
        self.metric = metric
        self.eval_every = eval_every
        self.patience = patience
        self.best_value = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, Tensor] | None = None
        self.last_epoch = 0
        self.last_evaluated = 0
        self.history: list[tuple[int, float]] = []
        self._bad = 0

    def _check(self, epoch: int, scorer: BaseScorer) -> None:
        value = self.metric(scorer)
        self.history.append((epoch, value))
        self.last_evaluated = epoch
        if value > self.best_value:
            self.best_value, self.best_epoch = value, epoch
            self.best_state = scorer.state_tensors()
            self._bad = 0
        else:
            self._bad += 1

    def __call__(self, epoch: int, scorer: BaseScorer) -> bool:
        self.last_epoch = epoch
        if epoch % self.eval_every:
            return False
        self._check(epoch, scorer)
        return self._bad >= self.patience

    def fit(self, scorer: BaseScorer, train: Interactions, num_users: int,
            num_items: int) -> BaseScorer:
        """Fit ``scorer`` on ``train`` with this callback and :meth:`finish`: the scorer ends
        in its best epoch's state, not its last one's."""
        scorer.fit(train, num_users, num_items, callback=self)
        self.finish(scorer)
        return scorer

    def finish(self, scorer: BaseScorer) -> None:
        """Evaluate the last epoch if it was not, then put the best state back."""
        if self.last_epoch != self.last_evaluated:
            self._check(self.last_epoch, scorer)
        if self.best_state is not None:
            scorer.load_state_tensors(self.best_state)


@dataclass
class SearchResult:
    """What :func:`grid_search` found.

    Args:
        best: the fitted scorer with the best validation metric.
        params: its parameters (for iterative scorers ``epochs`` is the best epoch).
        value: its validation metric.
        trials: one record per combination: params, value, best_epoch, seconds.
    """

    best: BaseScorer
    params: dict[str, Any]
    value: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def grid_search(
    estimator: BaseScorer,
    fit: FitFn,
    metric: Callable[[Scorer], float],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    eval_every: int = 5,
    patience: int = 3,
) -> SearchResult:
    """Fit every combination of ``grid`` and keep the best by ``metric``.

    Args:
        estimator: a scorer whose parameters are the base of every trial.
        fit: fits a fresh clone (see :data:`FitFn`).
        metric: ``scorer -> value`` on validation data, e.g. :func:`validation_metric`.
        grid: parameter -> values (default: ``estimator.search_space``).
        eval_every / patience: early stopping of iterative scorers (default: 5 / 3).
    """
    grid = dict(type(estimator).search_space if grid is None else grid)
    names = list(grid)
    best: SearchResult | None = None
    trials = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values))
        trial = estimator.clone(**params)
        start = time.perf_counter()
        if type(trial).iterative:
            stopper = EarlyStopping(metric, eval_every, patience)
            fit(trial, stopper)
            stopper.finish(trial)
            value, best_epoch = stopper.best_value, stopper.best_epoch
            trial.set_params(epochs=best_epoch)
        else:
            fit(trial, None)
            value, best_epoch = metric(trial), None
        seconds = time.perf_counter() - start
        record = {"params": params, "value": value, "best_epoch": best_epoch,
                  "seconds": round(seconds, 3)}
        trials.append(record)
        log.info("search %s %s: %.4f (%.1fs)", type(trial).__name__, params, value, seconds)
        if best is None or value > best.value:
            best = SearchResult(trial, trial.get_params(), value)
    if best is None:
        raise ValueError(f"grid_search: empty grid for {type(estimator).__name__}")
    best.trials = trials
    return best
