"""benchmarks.tail_tradeoff on tiny synthetic data: the re-rankers and the validation-only rule."""
import numpy as np
import pytest
import torch

from benchmarks.tail_tradeoff import (
    PopularityPenalty,
    TailQuota,
    choose,
    family_scorers,
    reweighted,
)
from hybridrec.data.dataset import Interactions
from hybridrec.data.split import Split
from hybridrec.evaluation import evaluate, item_popularity_buckets, recommend_topk
from hybridrec.models import Mix, Tower
from hybridrec.scoring import UserItems

NUM_USERS, NUM_ITEMS = 30, 50


def _split(seed=0):
    """Random pairs with a popularity skew (low item indices are popular), split 70/15/15."""
    gen = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, NUM_ITEMS + 1)
    mask = gen.random((NUM_USERS, NUM_ITEMS)) < np.minimum(1.0, 3 * weight)[None, :] + 0.05
    users, items = np.nonzero(mask)
    part = gen.choice(3, size=len(users), p=[0.7, 0.15, 0.15])
    inter = Interactions(users, items)
    return Split("manual", inter.select(part == 0), inter.select(part == 1),
                 inter.select(part == 2))


def _mix(split, seed=0):
    g = torch.Generator().manual_seed(seed)
    towers = {name: Tower(torch.randn(NUM_USERS, 4, generator=g),
                          torch.randn(NUM_ITEMS, 4, generator=g))
              for name in ("gnn", "als", "lightgcn")}
    degree = torch.from_numpy(np.bincount(split.train.item_index, minlength=NUM_ITEMS)).float()
    # Popular items score higher in every tower, as trained CF towers do.
    for t in towers.values():
        t.item[:, 0] += 0.5 * torch.log1p(degree)
        t.user[:, 0] = t.user[:, 0].abs() + 1
    return Mix(towers, torch.ones(NUM_USERS), degree)


def _degree(split):
    return torch.from_numpy(np.bincount(split.train.item_index, minlength=NUM_ITEMS))


def test_zero_penalty_is_the_mix_exactly():
    split = _split()
    mix = _mix(split)
    users = torch.arange(NUM_USERS)
    assert torch.equal(PopularityPenalty(mix, _degree(split), 0.0).score(users),
                       mix.score(users))
    assert torch.equal(reweighted(mix, "lightgcn", 1.0).score(users), mix.score(users))
    seen = UserItems.from_interactions(split.train, NUM_USERS, NUM_ITEMS)
    tail = torch.zeros(NUM_ITEMS, dtype=torch.bool)
    assert torch.equal(TailQuota(mix, tail, seen, 10, 0).score(users), mix.score(users))


def test_a_larger_penalty_recommends_less_popular_items():
    split = _split()
    mix = _mix(split)
    make = family_scorers("popularity_penalty", mix, split, "valid")
    popularity = [evaluate(make(lam), (NUM_USERS, NUM_ITEMS), split, part="valid", ks=[10],
                           device="cpu")["avg_popularity@10"] for lam in (0.0, 0.5, 2.0)]
    assert popularity[0] > popularity[1] > popularity[2]


def test_the_tail_quota_fills_slots_with_tail_items_in_the_mix_order():
    split = _split()
    mix = _mix(split)
    seen = UserItems.from_interactions(split.train, NUM_USERS, NUM_ITEMS)
    tail = torch.from_numpy(item_popularity_buckets(_degree(split).numpy(), 3) == 2)
    users = torch.arange(NUM_USERS)
    k = 10
    _, before = recommend_topk(mix, users, k, seen)
    _, after = recommend_topk(TailQuota(mix, tail, seen, k, 4), users, k, seen)
    assert bool((tail[after].sum(1) >= 4).all())
    assert bool((tail[after].sum(1) >= tail[before].sum(1)).all())
    # The head and torso items kept are the mix's best ones, in its order.
    for b, a in zip(before.tolist(), after.tolist()):
        kept = [i for i in a if not tail[i]]
        assert kept == [i for i in b if not tail[i]][:len(kept)]
    with pytest.raises(ValueError, match=r"min_tail must lie in \[0, 10\]"):
        TailQuota(mix, tail, seen, k, 11)


def test_the_choice_reads_validation_only():
    base = 0.30
    valid = [{"ndcg@20": 0.300, "tail_recall@20": 0.040},  # the mix
             {"ndcg@20": 0.299, "tail_recall@20": 0.050},  # within 1 %: chosen
             {"ndcg@20": 0.298, "tail_recall@20": 0.045},  # within 1 %, less tail on valid
             {"ndcg@20": 0.290, "tail_recall@20": 0.080}]  # best tail, below the floor
    # On test point 2 would win both ways and point 3 would hold the floor: neither counts.
    test = [{"ndcg@20": 0.350, "tail_recall@20": 0.040},
            {"ndcg@20": 0.340, "tail_recall@20": 0.050},
            {"ndcg@20": 0.352, "tail_recall@20": 0.070},
            {"ndcg@20": 0.349, "tail_recall@20": 0.090}]
    assert choose(valid, base) == 1
    assert choose(test, 0.350) != choose(valid, base)
    assert choose(valid, base, ratio=0.95) == 3
    with pytest.raises(ValueError, match="no point"):
        choose(valid[1:], 0.31)
