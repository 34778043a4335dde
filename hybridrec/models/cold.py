"""Items without ID signal in the mix: cold items of the split and items added after training.

The collaborative towers know nothing of such an item (its rows are zero), so in the plain
mix its score is the content tower's share plus the others' per-user constant: it sits below
the warm items the collaborative towers like, and never reaches a top-20 list. The
:class:`ColdStart` stage scores these items on their own terms instead:

.. math::
    s(u, i) = a\\, \\tilde s_1(u, i) + b + c\\, p_i, \\qquad p_i = x_i^\\top \\beta + \\beta_0

with :math:`\\tilde s_1` the content tower's standardised score (the GNN with its text
channel), :math:`p_i` a *content prior*: a ridge regression, on the items with training
interactions, of the item's mean mixed score over users on its text features :math:`x_i`
(the general appeal that text can predict: what the collaborative towers would have added),
and :math:`a, b, c` chosen on validation (:func:`search_cold_start`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: The validation grid of :func:`search_cold_start`, searched one coordinate at a time.
GRID: dict[str, tuple[float, ...]] = {
    "scale": (0.25, 0.5, 0.75, 1.0, 1.5),
    "shift": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "prior_scale": (0.0, 0.5, 1.0, 2.0, 4.0),
}
#: Ridge penalties of the content prior, chosen by leave-one-out (generalised) cross-validation.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


@dataclass
class ColdStart:
    """The score of items without ID signal: ``scale * z_content + shift + prior_scale * p``
    (see the module docstring); ``weight`` ``[D]`` and ``bias`` make the content prior ``p``
    of an item from its text features."""

    scale: float
    shift: float
    prior_scale: float
    weight: Tensor
    bias: float

    def prior(self, x: Tensor) -> Tensor:
        """The content prior ``[N]`` of items with text features ``x`` ``[N, D]``."""
        return x.float().to(self.weight.device) @ self.weight + self.bias

    def to(self, device: torch.device | str) -> ColdStart:
        return replace(self, weight=self.weight.to(device))

    def settings(self) -> dict[str, float]:
        return {"scale": self.scale, "shift": self.shift, "prior_scale": self.prior_scale,
                "bias": self.bias}


def fit_content_prior(mean_scores: Tensor, x: Tensor, warm: Tensor) -> tuple[Tensor, float]:
    """``(weight [D], bias)`` of the ridge regression of ``mean_scores`` ``[I]`` on ``x``
    ``[I, D]`` over the ``warm`` items, its penalty by leave-one-out cross-validation."""
    from sklearn.linear_model import RidgeCV

    if int(warm.sum()) < 2:
        return torch.zeros(x.size(1), device=x.device), float(mean_scores[warm].mean()) \
            if bool(warm.any()) else 0.0
    keep = warm.cpu().numpy()
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(x.float().cpu().numpy()[keep],
                                             mean_scores.float().cpu().numpy()[keep])
    log.debug("content prior: ridge penalty %g", ridge.alpha_)
    return (torch.as_tensor(ridge.coef_, dtype=torch.float32, device=x.device),
            float(ridge.intercept_))


def search_cold_start(
    validate: Callable[[ColdStart | None], float],
    weight: Tensor,
    bias: float,
    rounds: int = 2,
) -> tuple[ColdStart | None, dict[str, object]]:
    """Coordinate search of ``scale``, ``shift`` and ``prior_scale`` over :data:`GRID`.

    ``validate(stage)`` is the validation metric of the mix with that stage (``None``: the
    plain mix). The stage is kept only where it beats the plain mix. Returns the stage (or
    ``None``) and a report: the plain and best validation values and every trial.
    """
    plain = validate(None)
    best = ColdStart(1.0, 0.0, 0.0, weight, bias)
    best_value = validate(best)
    trials = [{**best.settings(), "valid": best_value}]
    for _ in range(rounds):
        moved = False
        for name, values in GRID.items():
            for value in values:
                if value == getattr(best, name):
                    continue
                stage = replace(best, **{name: value})
                score = validate(stage)
                trials.append({**stage.settings(), "valid": score})
                if score > best_value:
                    best, best_value, moved = stage, score, True
        if not moved:
            break
    kept = best_value > plain
    report = {"kept": kept, "valid_plain": plain, "valid": best_value, **best.settings(),
              "trials": trials}
    log.info("Cold-start stage %s: valid %.4f against the plain mix's %.4f (scale %g, shift %g,"
             " prior %g)", "kept" if kept else "not kept", best_value, plain, best.scale,
             best.shift, best.prior_scale)
    return (best if kept else None), report
