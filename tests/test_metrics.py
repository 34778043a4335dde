import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from hybridrec import metrics as M


def _hits(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_hand_computed_case():
    hits = _hits([[1, 0, 1, 0], [0, 0, 0, 1]])
    n_rel = torch.tensor([3, 1])
    assert M.recall_at_k(hits, n_rel, 4).tolist() == pytest.approx([2 / 3, 1.0])
    assert M.recall_at_k(hits, n_rel, 2).tolist() == pytest.approx([1 / 3, 0.0])
    assert M.precision_at_k(hits, 4).tolist() == pytest.approx([0.5, 0.25])
    assert M.hit_rate_at_k(hits, 3).tolist() == [1.0, 0.0]
    assert M.mrr_at_k(hits, 4).tolist() == pytest.approx([1.0, 0.25])
    assert M.mrr_at_k(hits, 3).tolist() == pytest.approx([1.0, 0.0])
    # User 0: DCG = 1 + 1/log2(4); IDCG over min(3, 4) = 3 ideal hits.
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    # User 1: one hit at rank 4; IDCG = 1 (one relevant item).
    assert M.ndcg_at_k(hits, n_rel, 4).tolist() == pytest.approx([dcg / idcg, 1 / math.log2(5)])


def test_recall_divides_by_all_relevant_not_by_k():
    # RecBole's definition: 2 hits in a top-2 list, 5 relevant items -> 0.4, not 1.0.
    hits = _hits([[1, 1]])
    assert M.recall_at_k(hits, torch.tensor([5]), 2).item() == pytest.approx(0.4)
    # NDCG's ideal list has min(5, 2) = 2 hits, so a perfect top-2 scores 1.
    assert M.ndcg_at_k(hits, torch.tensor([5]), 2).item() == pytest.approx(1.0)


def test_no_relevant_items_give_nan():
    hits = _hits([[0, 0]])
    assert math.isnan(M.recall_at_k(hits, torch.tensor([0]), 2).item())
    assert math.isnan(M.ndcg_at_k(hits, torch.tensor([0]), 2).item())


def test_k_outside_list_raises():
    with pytest.raises(ValueError, match="k=3"):
        M.recall_at_k(_hits([[1, 0]]), torch.tensor([1]), 3)


def test_empty_batch():
    hits = torch.zeros(0, 5, dtype=torch.bool)
    out = M.ranking_metrics(hits, torch.zeros(0, dtype=torch.long), (1, 5))
    assert all(v.shape == (0,) for v in out.values())


def test_ranking_metrics_names():
    out = M.ranking_metrics(_hits([[1, 0, 0]]), torch.tensor([1]), (1, 3))
    assert set(out) == {f"{m}@{k}" for m in M.METRICS for k in (1, 3)}
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        M.ranking_metrics(_hits([[1]]), torch.tensor([1]), (1,), ("auc",))


@pytest.mark.parametrize("k", [1, 3, 10, 30])
def test_ndcg_matches_sklearn(k):
    # Score every item, take our top-k, and compare with sklearn on the full score vector:
    # with binary relevance and no ties both use log2 discounts and an ideal list of
    # min(|R_u|, k) hits, so they must agree.
    gen = np.random.default_rng(k)
    num_users, num_items = 40, 30
    scores = gen.random((num_users, num_items))
    truth = gen.random((num_users, num_items)) < 0.2
    truth[np.arange(num_users), gen.integers(0, num_items, num_users)] = True
    topk = torch.from_numpy(scores).topk(k, dim=1).indices
    hits = M.hit_matrix(topk, torch.from_numpy(truth))
    ours = M.ndcg_at_k(hits, torch.from_numpy(truth.sum(1)), k).numpy()
    for u in range(num_users):
        expected = ndcg_score(truth[u:u + 1].astype(float), scores[u:u + 1], k=k)
        assert ours[u] == pytest.approx(expected, abs=1e-6)


def test_hit_matrix():
    truth = torch.tensor([[False, True, False, True]])
    assert M.hit_matrix(torch.tensor([[3, 0, 1]]), truth).tolist() == [[True, False, True]]


def test_exposure_coverage_and_gini():
    topk = torch.tensor([[0, 1], [0, 2]])
    exposure = M.item_exposure(topk, 5)
    assert exposure.tolist() == [2, 1, 1, 0, 0]
    assert M.catalogue_coverage(exposure) == pytest.approx(3 / 5)
    valid = torch.tensor([[True, True], [True, False]])
    assert M.item_exposure(topk, 5, valid).tolist() == [2, 1, 0, 0, 0]
    assert M.exposure_gini(torch.tensor([3, 3, 3])) == pytest.approx(0.0)
    # All exposure on one of n items: G = (n - 1) / n.
    assert M.exposure_gini(torch.tensor([0, 0, 0, 8])) == pytest.approx(3 / 4)
    assert M.exposure_gini(torch.zeros(4, dtype=torch.long)) == 0.0


def test_average_popularity_and_long_tail_share():
    topk = torch.tensor([[0, 1], [2, 3]])
    pop = torch.tensor([10, 0, 4, 2])
    assert M.average_popularity(topk, pop).tolist() == pytest.approx([5.0, 3.0])
    valid = torch.tensor([[True, False], [True, True]])
    assert M.average_popularity(topk, pop, valid).tolist() == pytest.approx([10.0, 3.0])
    tail = torch.tensor([False, True, True, False])
    assert M.long_tail_share(topk, tail).tolist() == pytest.approx([0.5, 0.5])
    assert M.long_tail_share(topk, tail, valid).tolist() == pytest.approx([0.0, 0.5])
