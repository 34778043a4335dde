r"""One evaluator for every model: full ranking over all items, seen items masked.

For each user with at least one positive in the evaluated part, the scorer scores every item;
the user's training items (and, for ``part="test"``, validation items) are set to
:math:`-\infty`; the top ``max(ks)`` are compared with the user's positives in the part.
Feedback is implicit by default (every interaction in the part is a positive); with
``rating_threshold`` only interactions rated at least that much are. Metric definitions are in
:mod:`hybridrec.metrics` (RecBole's: recall over all of the user's positives, NDCG with
:math:`\min(|R_u|, K)` ideal hits). Means are over evaluated users.

**Popularity buckets.** Items are sorted by training interactions (descending, ties by index)
and cut where the running total crosses equal shares of all training interactions: with three
buckets, *head* is the few popular items holding the first third of training interactions,
*torso* the next third, *tail* the rest, including items never seen in training. Per bucket,
recall / NDCG / hit rate treat only that bucket's positives as relevant (on the same full
ranking): recall is the share of a user's test items in the bucket that are retrieved in the
top-K, averaged over users who have test items in the bucket. ``share@K`` is the bucket's share
of all recommendation slots.

**Cold items** are items with zero training interactions. ``cold`` in the result measures them
within the full ranking (only cold positives are relevant, users with a cold positive
averaged). ``item_subset="cold"`` instead ranks only among cold items (other items' scores set to
:math:`-\infty`): the cold-start question "given a new item, which users want it?".

**The catalogue as of validation** (splits cut by time: temporal, leave-last-out): validation
ranks only the items with an interaction in the training or validation part, the catalogue as
the log knows it by then. Items first interacted with later (new releases of the test period)
would otherwise all be cold items that cannot be relevant yet, and validation would teach model
selection to keep new items out of the lists. Test ranks every item. The rule reads nothing of
the test part; it is a proxy for release dates (each user's history is cut at its own time),
and items no one interacted with are left out of validation too, though test ranks them. Other
splits rank every item in both parts (:func:`released_items`).

**Ties** (equal scores) are ordered per user by a seeded hash (:func:`tie_keys`), so a model
that scores many items alike gets chance-level credit, not credit for item-index order.

Scoring is batched over users, so memory is about ``batch_size x num_items`` floats a few times
(plus one float64 matrix of that size for tie keys when ties occur).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from hybridrec import metrics as M
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.split import Split
from hybridrec.device import pick_device
from hybridrec.scoring import Scorer, UserItems

log = logging.getLogger(__name__)

Part = Literal["valid", "test"]
ItemSubset = Literal["cold"]

_SUBSET_METRICS = ("recall", "ndcg", "hit")


def bucket_names(num_buckets: int) -> tuple[str, ...]:
    """``head / torso / tail`` for three buckets, ``head / tail`` for two, else numbered."""
    if num_buckets == 3:
        return ("head", "torso", "tail")
    if num_buckets == 2:
        return ("head", "tail")
    return tuple(f"bucket{b + 1}" for b in range(num_buckets))


def item_popularity_buckets(
    item_popularity: np.ndarray | Tensor, num_buckets: int = 3
) -> np.ndarray:
    r"""Bucket of each item (0 = most popular) by equal shares of training interactions.

    With items sorted by popularity :math:`\phi` (descending, ties by index) and
    :math:`c_j = \sum_{j' < j} \phi_{(j')}` the interactions of the items before the
    :math:`j`-th, item :math:`(j)` goes to bucket
    :math:`\min(\lfloor n\, c_j / \sum_i \phi_i \rfloor,\; n - 1)`. Items with no interactions
    land in the last bucket.

    Args:
        item_popularity: training interactions per item ``[num_items]``.
        num_buckets: :math:`n` (default: 3).

    Returns:
        ``int64 [num_items]``.
    """
    pop = np.asarray(item_popularity, dtype=np.float64)
    if num_buckets < 1:
        raise ValueError(f"popularity_buckets: num_buckets must be >= 1, got {num_buckets}")
    total = pop.sum()
    out = np.full(len(pop), num_buckets - 1, dtype=np.int64)
    if total <= 0:
        return out
    order = np.argsort(-pop, kind="stable")
    before = np.cumsum(pop[order]) - pop[order]
    bucket = np.floor(num_buckets * before / total).astype(np.int64)
    out[order] = np.minimum(bucket, num_buckets - 1)
    return out


def tie_keys(user_index: Tensor, num_items: int, seed: int) -> Tensor:
    r"""Pseudo-random tie-break keys in :math:`[0, 1)`, one per (user, item), from a hash.

    .. math::
        t(u, i) = \operatorname{frac}\big(43758.5453 \sin(12.9898\,u + 78.233\,i
        + 37.719\,s)\big)

    The same user, item and seed always give the same key, whatever the batch.

    Shapes:
        - **output:** ``float64 [B, num_items]`` on ``user_index``'s device.
    """
    u = user_index.to(torch.float64)[:, None]
    i = torch.arange(num_items, device=user_index.device, dtype=torch.float64)[None, :]
    x = torch.sin(u * 12.9898 + i * 78.233 + seed * 37.719) * 43758.5453
    return x - x.floor()


def _first_by_key(mask: Tensor, key: Tensor | None, need: Tensor) -> Tensor:
    """``need`` entries of each row of ``mask``, lowest ``key`` first, then lowest column."""
    if key is None:
        return mask & (torch.cumsum(mask, 1) <= need)
    key = key.masked_fill(~mask, math.inf)
    k = int(need.max())
    kth_key = key.topk(k, dim=1, largest=False).values.gather(1, need - 1)  # [B, 1]
    below = mask & (key < kth_key)
    at = mask & (key == kth_key)  # usually one entry; a hash collision falls back to columns
    return below | (at & (torch.cumsum(at, 1) <= need - below.sum(1, keepdim=True)))


def topk_stable(
    scores: Tensor, k: int, tie_key: Tensor | Callable[[], Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """``scores.topk(k)`` with a defined order among equal scores, on any device.

    ``torch.topk`` leaves the order of equal values unspecified. Here equal scores are ordered
    by ``tie_key`` (lowest first) and then by column. Every value above the ``k``-th is kept,
    the rest is filled from the values equal to it, and the ``k`` are sorted. ``tie_key`` may be
    a callable, only called when ties matter. Cost: a few passes over ``[B, N]``, no full sort.

    Args:
        scores: ``[B, N]``.
        k: list length.
        tie_key: ``[B, N]`` keys, or a callable returning them (default: ``None``, by column).

    Shapes:
        - **output:** ``([B, k], [B, k])`` values and columns, best first.
    """
    if scores.size(0) == 0:
        return scores.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=scores.device)
    kth = scores.topk(k, dim=1).values[:, -1:]  # [B, 1]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(1, keepdim=True)  # >= 1
    key = None
    if tie_key is not None and bool((tied.sum(1, keepdim=True) > need).any()):
        key = tie_key() if callable(tie_key) else tie_key
    keep = above | _first_by_key(tied, key, need)  # exactly k per row
    columns = keep.nonzero()[:, 1].view(-1, k)  # ascending within each row
    values = scores.gather(1, columns)
    if tie_key is not None and key is None:
        # Ties inside the top k still need the key for their order.
        ordered = values.sort(dim=1, descending=True).values
        if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
            key = tie_key() if callable(tie_key) else tie_key
    if key is not None:
        by_key = key.gather(1, columns).sort(dim=1, stable=True).indices
        columns, values = columns.gather(1, by_key), values.gather(1, by_key)
    order = values.sort(dim=1, descending=True, stable=True).indices
    return values.gather(1, order), columns.gather(1, order)


def recommend_topk(
    scorer: Scorer,
    user_index: Tensor,
    k: int,
    exclude: UserItems | None = None,
    candidates: Tensor | None = None,
    device: torch.device | None = None,
    tie_seed: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Top-``k`` items for some users, excluded items set to :math:`-\infty` first.

    Args:
        scorer: any :class:`~hybridrec.scoring.Scorer`.
        user_index: ``int64 [B]``.
        k: list length.
        exclude: items never to recommend per user (their training items).
        candidates: optional ``bool [num_items]``; other items are never recommended.
        device: where to rank (default: where the scores are).
        tie_seed: if set, equal scores are ordered by :func:`tie_keys` with this seed, a
            different pseudo-random order per user (default: ``None``, by item index).

    Returns:
        ``(scores, index)``, both ``[B, k]``, best first. Slots whose score is
        :math:`-\infty` hold no real recommendation (fewer than ``k`` items were allowed).
    """
    scores = scorer.score(user_index)  # [B, num_items]
    name = type(scorer).__name__
    num_items = (exclude.num_items if exclude is not None else
                 candidates.numel() if candidates is not None else scores.size(-1))
    if scores.dim() != 2 or tuple(scores.shape) != (len(user_index), num_items):
        raise ValueError(f"{name}.score returned shape {tuple(scores.shape)} for "
                         f"{len(user_index)} users; expected [{len(user_index)}, {num_items}]")
    scores = scores.to(device=device or scores.device, dtype=torch.float32)
    if bool(torch.isnan(scores).any()):
        bad = user_index[torch.isnan(scores).any(1).cpu()][:5].tolist()
        raise ValueError(f"{name}.score returned NaN for users {bad}")
    neg_inf = torch.tensor(-math.inf, device=scores.device)
    # Exclude seen items (out of place: a scorer may return a view of its own state).
    if exclude is not None:
        row, item = exclude.pairs(user_index.to(exclude.indptr.device))
        scores = scores.index_put((row.to(scores.device), item.to(scores.device)), neg_inf)
    if candidates is not None:
        scores = scores.masked_fill(~candidates.to(scores.device)[None, :], -math.inf)
    if tie_seed is None:
        return topk_stable(scores, k)
    users = user_index.to(scores.device)
    return topk_stable(scores, k, lambda: tie_keys(users, scores.size(1), tie_seed))


class _SubsetMetrics:
    """Running sums of recall / NDCG / hit when only some items count as relevant."""

    def __init__(self, item_mask: Tensor, ks: Sequence[int]) -> None:
        self.item_mask = item_mask  # bool [num_items]
        self.ks = ks
        self.users = 0
        self.positives = 0
        self.sums = {f"{m}@{k}": 0.0 for m in _SUBSET_METRICS for k in ks}

    def add(self, truth: Tensor, topk: Tensor) -> None:
        truth = truth & self.item_mask[None, :]
        n_rel = truth.sum(1)
        keep = n_rel > 0
        if not bool(keep.any()):
            return
        hits = M.hit_matrix(topk[keep], truth[keep])
        self.users += int(keep.sum())
        self.positives += int(n_rel.sum())
        for name, values in M.ranking_metrics(hits, n_rel[keep], self.ks, _SUBSET_METRICS).items():
            self.sums[name] += float(values.double().sum())

    def result(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            "items": int(self.item_mask.sum()), "users": self.users, "positives": self.positives}
        for name, total in self.sums.items():
            out[name] = total / self.users if self.users else None
        return out


def _sizes(data: Dataset | tuple[int, int]) -> tuple[int, int]:
    if isinstance(data, Dataset):
        return data.num_users, data.num_items
    num_users, num_items = data
    return int(num_users), int(num_items)


#: Splits whose parts follow each user's time: validation ranks the catalogue as of then.
TIMED_SPLITS = ("temporal", "leave-last-out")


def released_items(split: Split, part: Part, num_items: int) -> np.ndarray | None:
    """``bool [num_items]``: the items validation ranks on a split cut by time (those with a
    training or validation interaction); ``None`` where every item is ranked (the test part,
    and other splits)."""
    if split.kind not in TIMED_SPLITS or part != "valid":
        return None
    return (np.bincount(split.train.item_index, minlength=num_items)
            + np.bincount(split.valid.item_index, minlength=num_items)) > 0


def _pair_keys(inter: UserItems) -> np.ndarray:
    lengths = (inter.indptr[1:] - inter.indptr[:-1]).numpy()
    users = np.repeat(np.arange(inter.num_users), lengths)
    return users * inter.num_items + inter.indices.numpy()


def evaluate(
    scorer: Scorer,
    data: Dataset | tuple[int, int],
    split: Split,
    *,
    part: Part = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    item_subset: ItemSubset | None = None,
    rating_threshold: float | None = None,
    popularity_buckets: int = 3,
    tie_seed: int | None = 0,
    show_progress: bool = False,
) -> dict[str, object]:
    """Full-ranking evaluation of ``scorer`` on one part of ``split``.

    Args:
        scorer: anything with ``score(user_index) -> [B, num_items]``.
        data: the :class:`Dataset`, or ``(num_users, num_items)``.
        split: the split the scorer was trained on (its ``train`` part).
        part: ``"valid"`` or ``"test"`` (default: ``"test"``). Testing masks training and
            validation items; validating masks training items (and, on a split cut by time,
            ranks only the items interacted with by then: :func:`released_items`).
        ks: cut-offs (default: ``(10, 20)``).
        batch_size: users scored at once (default: 1024).
        device: where to rank (default: CUDA when present, else CPU).
        item_subset: ``"cold"`` to rank only among items with no training interaction
            (default: ``None``, all items).
        rating_threshold: if set, only interactions with ``rating >= rating_threshold`` are
            positives (default: ``None``, every interaction is a positive). Masking always uses
            every training interaction.
        popularity_buckets: number of popularity buckets (default: 3, head/torso/tail).
        tie_seed: equal scores are ordered by a pseudo-random key per (user, item) with this
            seed (:func:`tie_keys`), so a model that cannot tell items apart (a CF model on cold
            items) scores at chance level, not by item index; ``None`` orders ties by item index
            (default: 0).
        show_progress: show a progress bar (default: ``False``).

    Returns:
        A JSON-ready dict: ``"recall@K"``, ``"ndcg@K"``, ``"precision@K"``, ``"hit@K"``,
        ``"mrr@K"``, ``"coverage@K"``, ``"gini@K"``, ``"avg_popularity@K"``,
        ``"long_tail_share@K"`` (share from the last popularity bucket), ``"by_popularity"``
        (bucket -> metrics, ``share@K``), ``"cold"`` (cold-item metrics in the full ranking,
        their ``share@K`` of the top-K slots, ``idle_share@K`` the slots of cold items
        without a positive in the part, and ``positive_share`` of the positives),
        ``"users_evaluated"``, ``"users_skipped"`` (users with no positive in the part),
        ``"positives"``, ``"positives_masked"`` (positives also seen in training, hence
        unrankable and dropped) and the settings used. In ``item_subset="cold"`` mode
        ``by_popularity`` and ``cold`` are ``None``. A mean over no users is ``None`` (so the
        result stays valid JSON).
    """
    # 1. Check the settings.
    if part not in get_args(Part):
        raise ValueError(f"evaluate: part must be one of {get_args(Part)}, got {part!r}")
    if item_subset is not None and item_subset not in get_args(ItemSubset):
        raise ValueError(f"evaluate: item_subset must be None or one of {get_args(ItemSubset)}, "
                         f"got {item_subset!r}")
    ks = sorted({int(k) for k in ks})
    num_users, num_items = _sizes(data)
    if not ks or ks[0] < 1 or ks[-1] > num_items:
        raise ValueError(f"evaluate: every k must lie in [1, {num_items}], got {ks}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    device = pick_device(device)
    max_k = ks[-1]

    # 2. Positives of the part, and what each user has already seen.
    target: Interactions = getattr(split, part)
    if rating_threshold is not None:
        if target.rating is None:
            raise ValueError(f"evaluate: rating_threshold={rating_threshold} but the {part} "
                             f"interactions carry no rating")
        target = target.select(target.rating >= rating_threshold)
    seen = UserItems.from_interactions(
        [split.train] + ([split.valid] if part == "test" else []), num_users, num_items)
    truth = UserItems.from_interactions(target, num_users, num_items)
    popularity = np.bincount(split.train.item_index, minlength=num_items)
    cold = popularity == 0
    truth_keys = _pair_keys(truth)
    keep = ~np.isin(truth_keys, _pair_keys(seen))
    masked = int((~keep).sum())
    if masked:
        log.warning("evaluate: %d %s positives were also seen in training%s; they cannot be "
                    "ranked and are dropped", masked, part, "/validation" if part == "test" else "")
    if item_subset == "cold":
        if not cold.any():
            raise ValueError("evaluate: item_subset='cold' but every item has training "
                             "interactions in this split")
        keep &= cold[truth_keys % num_items]
    truth_keys = truth_keys[keep]
    truth = UserItems.from_pairs(truth_keys // num_items, truth_keys % num_items,
                                 num_users, num_items)
    users = torch.nonzero(truth.counts() > 0).flatten()
    released = released_items(split, part, num_items)
    allowed = cold if item_subset == "cold" else None
    if released is not None:
        allowed = released if allowed is None else allowed & released
    candidates = None if allowed is None else torch.from_numpy(allowed).to(device)

    # 3. Rank batch by batch and accumulate.
    seen, truth = seen.to(device), truth.to(device)
    pop_t = torch.from_numpy(popularity).to(device)
    bucket = torch.from_numpy(item_popularity_buckets(popularity, popularity_buckets)).to(device)
    names = bucket_names(popularity_buckets)
    long_tail = bucket == popularity_buckets - 1
    sums = {f"{m}@{k}": 0.0 for m in M.METRICS + ("avg_popularity", "long_tail_share")
            for k in ks}
    exposure = {k: torch.zeros(num_items, dtype=torch.long, device=device) for k in ks}
    by_bucket = [_SubsetMetrics(bucket == b, ks) for b in range(popularity_buckets)]
    cold_metrics = _SubsetMetrics(torch.from_numpy(cold).to(device), ks)
    batches = range(0, len(users), batch_size)
    for start in tqdm(batches, desc="evaluate", unit="batch",
                      disable=None if show_progress else True):  # None: on a terminal only
        batch = users[start:start + batch_size].to(device)
        with torch.no_grad():
            top_scores, topk = recommend_topk(scorer, batch, max_k, seen, candidates, device,
                                              tie_seed)
        valid = top_scores > -math.inf  # [B, max_k]
        truth_dense = truth.dense(batch)  # [B, num_items]
        hits = M.hit_matrix(topk, truth_dense) & valid
        for name, values in M.ranking_metrics(hits, truth.counts(batch), ks).items():
            sums[name] += float(values.double().sum())
        for k in ks:
            sums[f"avg_popularity@{k}"] += float(
                M.average_popularity(topk[:, :k], pop_t, valid[:, :k]).double().sum())
            sums[f"long_tail_share@{k}"] += float(
                M.long_tail_share(topk[:, :k], long_tail, valid[:, :k]).double().sum())
            exposure[k] += M.item_exposure(topk[:, :k], num_items, valid[:, :k])
        if item_subset is None:
            for acc in [*by_bucket, cold_metrics]:
                acc.add(truth_dense, topk)

    # 4. Means over evaluated users.
    n = len(users)
    result: dict[str, object] = {name: (total / n if n else None)
                                 for name, total in sums.items()}
    for k in ks:
        result[f"coverage@{k}"] = M.catalogue_coverage(exposure[k])
        result[f"gini@{k}"] = M.exposure_gini(exposure[k])
    if item_subset is None:
        by_popularity = {}
        for b, acc in enumerate(by_bucket):
            entry = acc.result()
            entry["train_interactions"] = int(popularity[bucket.cpu().numpy() == b].sum())
            for k in ks:
                slots = max(1, int(exposure[k].sum()))
                entry[f"share@{k}"] = int(exposure[k][bucket == b].sum()) / slots
            by_popularity[names[b]] = entry
        result["by_popularity"] = by_popularity
        result["cold"] = cold_metrics.result()
        # What users are shown against what they took: the cold items' share of the top-k
        # slots and of the positives (1:1 would be exposure in proportion to demand).
        # ``idle_share``: the slots of cold items without a positive in the part (on a
        # cold-item split, the other part's cold items, which cannot be relevant here).
        cold_t = torch.from_numpy(cold).to(device)
        idle = cold_t & (torch.bincount(truth.indices, minlength=num_items) == 0)
        result["cold"]["positive_share"] = (cold_metrics.positives / len(truth)
                                            if len(truth) else None)
        for k in ks:
            slots = int(exposure[k].sum())
            result["cold"][f"share@{k}"] = (int(exposure[k][cold_t].sum()) / slots
                                            if slots else None)
            result["cold"][f"idle_share@{k}"] = (int(exposure[k][idle].sum()) / slots
                                                 if slots else None)
    else:
        result["by_popularity"] = None
        result["cold"] = None
    result.update({
        "users_evaluated": n,
        "users_skipped": num_users - n,
        "positives": int(len(truth)),
        "positives_masked": masked,
        "candidate_items": num_items if allowed is None else int(allowed.sum()),
        "part": part,
        "ks": ks,
        "item_subset": item_subset,
        "rating_threshold": rating_threshold,
        "tie_seed": tie_seed,
    })
    # Debug level: training evaluates every epoch, and its own log line says what it found.
    log.debug("evaluate %s on %s%s (%d users): recall@%d=%s ndcg@%d=%s", type(scorer).__name__,
              part, ", ranking cold items only" if item_subset == "cold" else "", n, max_k,
              _rounded(result[f"recall@{max_k}"]), max_k, _rounded(result[f"ndcg@{max_k}"]))
    return result


def _rounded(value: float | None) -> float | None:
    """``value`` to four decimals for a log line (``None``, a mean over no users, kept)."""
    return None if value is None else round(value, 4)
