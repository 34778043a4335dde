r"""Ranking metrics as pure, vectorised functions of a hit matrix.

Every accuracy metric takes ``hits``, a boolean ``[B, K]`` matrix whose entry ``(u, r)`` says
whether the item ranked at position ``r + 1`` for user ``u`` is relevant (see :func:`hit_matrix`),
and where needed ``num_relevant``, the number of relevant items of each user ``[B]``. Each returns
one value per user (``float [B]``); average over users to report. Relevance is binary. The
definitions follow RecBole's full-sort evaluator (and the LightGCN paper's code):

* recall divides by all of the user's relevant items, :math:`|R_u|`, not by
  :math:`\min(K, |R_u|)`, so a user with more than ``K`` relevant items cannot reach 1;
* NDCG's ideal DCG places :math:`\min(|R_u|, K)` relevant items at the top.

Users with ``num_relevant == 0`` get NaN from recall and NDCG; the evaluator skips such users.

Popularity and coverage measures take top-K item indices ``[B, K]``.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

#: The names :func:`ranking_metrics` computes, in report order.
METRICS = ("recall", "ndcg", "precision", "hit", "mrr")


def _check_k(hits: Tensor, k: int) -> None:
    if not 1 <= k <= hits.size(1):
        raise ValueError(f"metrics: k={k} must lie in [1, {hits.size(1)}] (the top-K width)")


def hit_matrix(topk_index: Tensor, truth: Tensor) -> Tensor:
    """Which recommended items are relevant.

    Args:
        topk_index: ``int64 [B, K]`` item indices, best first.
        truth: ``bool [B, num_items]``, ``True`` where the item is relevant to the user.

    Shapes:
        - **output:** ``bool [B, K]``
    """
    return truth.gather(1, topk_index)


def recall_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Recall@K, the share of a user's relevant items found in the top ``k``.

    .. math::
        \mathrm{Recall@}K(u) = \frac{\sum_{r=1}^{K} \mathrm{hit}_{u,r}}{|R_u|}
    """
    _check_k(hits, k)
    return hits[:, :k].sum(1).float() / num_relevant.float()


def precision_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Precision@K, the share of the top ``k`` that is relevant.

    .. math::
        \mathrm{Precision@}K(u) = \frac{1}{K} \sum_{r=1}^{K} \mathrm{hit}_{u,r}
    """
    _check_k(hits, k)
    return hits[:, :k].sum(1).float() / k


def hit_rate_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Hit rate (HR@K): 1 if any relevant item is in the top ``k``, else 0.

    .. math::
        \mathrm{HR@}K(u) = \mathbb{1}\Big[\sum_{r=1}^{K} \mathrm{hit}_{u,r} > 0\Big]
    """
    _check_k(hits, k)
    return hits[:, :k].any(1).float()


def _discounts(k: int, device: torch.device) -> Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def ndcg_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""NDCG@K with binary relevance and a :math:`\log_2` discount.

    .. math::
        \mathrm{DCG@}K(u) = \sum_{r=1}^{K} \frac{\mathrm{hit}_{u,r}}{\log_2(r + 1)}, \qquad
        \mathrm{IDCG@}K(u) = \sum_{r=1}^{\min(|R_u|, K)} \frac{1}{\log_2(r + 1)}, \qquad
        \mathrm{NDCG@}K(u) = \frac{\mathrm{DCG@}K(u)}{\mathrm{IDCG@}K(u)}
    """
    _check_k(hits, k)
    disc = _discounts(k, hits.device)  # [k]
    dcg = (hits[:, :k].double() * disc).sum(1)
    ideal = torch.cat([disc.new_zeros(1), torch.cumsum(disc, 0)])  # ideal[m] = IDCG with m hits
    idcg = ideal[num_relevant.clamp(max=k).to(hits.device)]
    return (dcg / idcg).float()


def mrr_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Reciprocal rank of the first relevant item in the top ``k`` (0 when there is none).

    .. math::
        \mathrm{MRR@}K(u) = \max_{1 \le r \le K} \frac{\mathrm{hit}_{u,r}}{r}
    """
    _check_k(hits, k)
    ranks = torch.arange(1, k + 1, device=hits.device, dtype=torch.float32)
    return (hits[:, :k].float() / ranks).max(1).values


def ranking_metrics(
    hits: Tensor,
    num_relevant: Tensor,
    ks: Iterable[int],
    metrics: Iterable[str] = METRICS,
) -> dict[str, Tensor]:
    """Several metrics at several cut-offs, keyed ``"recall@20"`` and so on.

    Args:
        hits: ``bool [B, K]`` with ``K >= max(ks)``.
        num_relevant: ``int64 [B]``.
        ks: cut-offs.
        metrics: names from :data:`METRICS` (default: all).

    Returns:
        name -> per-user values ``float [B]``.
    """
    funcs = {
        "recall": lambda k: recall_at_k(hits, num_relevant, k),
        "ndcg": lambda k: ndcg_at_k(hits, num_relevant, k),
        "precision": lambda k: precision_at_k(hits, k),
        "hit": lambda k: hit_rate_at_k(hits, k),
        "mrr": lambda k: mrr_at_k(hits, k),
    }
    out = {}
    for name in metrics:
        if name not in funcs:
            raise ValueError(f"ranking_metrics: unknown metric {name!r}; choose from {METRICS}")
        for k in ks:
            out[f"{name}@{k}"] = funcs[name](k)
    return out


def item_exposure(topk_index: Tensor, num_items: int, valid: Tensor | None = None) -> Tensor:
    """How often each item is recommended: ``int64 [num_items]``; sums over batches.

    Args:
        topk_index: ``int64 [B, K]``.
        num_items: the catalogue size.
        valid: optional ``bool [B, K]``; ``False`` slots (no real recommendation) are not counted.
    """
    flat = topk_index.reshape(-1) if valid is None else topk_index[valid]
    return torch.bincount(flat, minlength=num_items)


def catalogue_coverage(exposure: Tensor) -> float:
    r"""Share of the catalogue recommended to at least one user.

    .. math::
        \mathrm{Coverage@}K = \frac{|\bigcup_u \mathrm{top}K(u)|}{|I|}

    Args:
        exposure: ``[num_items]`` counts from :func:`item_exposure`.
    """
    return float((exposure > 0).sum()) / max(1, exposure.numel())


def exposure_gini(exposure: Tensor) -> float:
    r"""Gini index of how recommendations spread over the catalogue (0 even, 1 one item).

    .. math::
        G = \frac{\sum_{j=1}^{n} (2j - n - 1)\, e_{(j)}}{n \sum_j e_j}

    with :math:`e_{(j)}` the exposure counts in ascending order and :math:`n = |I|`.
    """
    e = exposure.double().sort().values
    n, total = e.numel(), float(e.sum())
    if n == 0 or total == 0:
        return 0.0
    j = torch.arange(1, n + 1, dtype=torch.float64, device=e.device)
    return float(((2 * j - n - 1) * e).sum() / (n * total))


def average_popularity(
    topk_index: Tensor, item_popularity: Tensor, valid: Tensor | None = None
) -> Tensor:
    r"""Average recommendation popularity (ARP) per user.

    .. math::
        \mathrm{ARP}(u) = \frac{1}{|L_u|} \sum_{i \in L_u} \phi(i)

    with :math:`L_u` the user's top-K and :math:`\phi(i)` the item's number of training
    interactions.

    Args:
        topk_index: ``int64 [B, K]``.
        item_popularity: ``[num_items]`` training interaction counts.
        valid: optional ``bool [B, K]`` of slots to count.
    """
    pop = item_popularity.to(topk_index.device).double()[topk_index]  # [B, K]
    mask = torch.ones_like(pop) if valid is None else valid.double()
    return ((pop * mask).sum(1) / mask.sum(1).clamp(min=1)).float()


def long_tail_share(
    topk_index: Tensor, is_long_tail: Tensor, valid: Tensor | None = None
) -> Tensor:
    r"""Share of a user's top-K that comes from the long tail (APLT).

    .. math::
        \mathrm{APLT}(u) = \frac{|\{i \in L_u : i \in \Gamma\}|}{|L_u|}

    Args:
        topk_index: ``int64 [B, K]``.
        is_long_tail: ``bool [num_items]``, the set :math:`\Gamma`.
        valid: optional ``bool [B, K]`` of slots to count.
    """
    tail = is_long_tail.to(topk_index.device)[topk_index].double()
    mask = torch.ones_like(tail) if valid is None else valid.double()
    return ((tail * mask).sum(1) / mask.sum(1).clamp(min=1)).float()
