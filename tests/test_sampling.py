"""Samplers: seeded, the right sizes, cold-start masks only warm items, edges dropped both ways."""
import torch

from hybridrec.graph import INTERACTS, REV_INTERACTS
from hybridrec.sampling import cold_item_mask, drop_interactions, edge_batches, uniform_items


def test_edge_batches_cover_every_edge_once():
    batches = list(edge_batches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


def test_same_seed_same_samples():
    a = uniform_items(50, (3, 4), torch.Generator().manual_seed(1))
    b = uniform_items(50, (3, 4), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 4) and int(a.max()) < 50


def test_cold_item_mask_picks_warm_items_only():
    degree = torch.tensor([0, 3, 1, 0, 5, 2, 2, 9, 1, 4, 0, 1])
    mask = cold_item_mask(degree, 0.5, torch.Generator().manual_seed(0))
    assert int(mask.sum()) == round(0.5 * 9)
    assert not bool(mask[degree == 0].any())
    again = cold_item_mask(degree, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    assert not bool(cold_item_mask(degree, 0.0, torch.Generator()).any())


def test_drop_interactions_both_directions_and_label_pairs():
    ui = torch.tensor([[0, 0, 1, 2], [1, 2, 2, 0]])
    kg = torch.tensor([[1], [0]])
    edges = {INTERACTS: ui, REV_INTERACTS: ui.flip(0), ("item", "genre", "entity"): kg}
    out = drop_interactions(edges, torch.tensor([False, False, True]), torch.tensor([[2], [0]]))
    assert out[INTERACTS].tolist() == [[0], [1]]
    assert out[REV_INTERACTS].tolist() == [[1], [0]]
    assert out[("item", "genre", "entity")] is kg
    assert drop_interactions(edges, torch.zeros(3, dtype=torch.bool))[INTERACTS] is ui


def test_uniform_items_from_candidates():
    picks = uniform_items(10, (500,), torch.Generator().manual_seed(0), torch.tensor([2, 7]))
    assert set(picks.tolist()) == {2, 7}


def test_known_pairs_flags_the_users_own_items():
    from hybridrec.sampling import KnownPairs, known_pairs, pair_keys

    known = torch.unique(pair_keys(torch.tensor([0, 0, 1]), torch.tensor([2, 3, 4]), 5))
    shared = known_pairs(torch.tensor([0, 1]), torch.tensor([[2, 4, 1]]), known, 5)
    assert shared.tolist() == [[True, False, False], [False, True, False]]
    one_each = known_pairs(torch.tensor([0, 1]), torch.tensor([3, 3]), known, 5)
    assert one_each.tolist() == [True, False]
    edges = torch.tensor([[0, 0, 1], [2, 3, 4]])
    for table in (KnownPairs(edges, 2, 5), KnownPairs(edges, 2, 5, max_dense=0)):
        assert torch.equal(known_pairs(torch.tensor([0, 1]), torch.tensor([[2, 4, 1]]), table, 5),
                           shared)
        assert torch.equal(known_pairs(torch.tensor([0, 1]), torch.tensor([3, 3]), table, 5),
                           one_each)


def test_known_pairs_sorted_index_matches_the_dense_table():
    """The CSR path of a big graph (shared negatives matched per user, repeats included, and
    per-row negatives) answers as the dense table does."""
    from hybridrec.sampling import KnownPairs

    g = torch.Generator().manual_seed(0)
    edges = torch.stack([torch.randint(300, (20000,), generator=g),
                         torch.randint(500, (20000,), generator=g)])
    dense, index = KnownPairs(edges, 300, 500), KnownPairs(edges, 300, 500, max_dense=0)
    assert index.table is None
    users = torch.randint(300, (50,), generator=g)
    for negatives in (torch.randint(500, (1, 700), generator=g),  # shared, with repeats
                      torch.randint(500, (50, 9), generator=g),  # one row each
                      torch.randint(500, (50,), generator=g)):  # one each
        expected = dense.lookup(users, negatives)
        assert expected.any() and not expected.all()
        assert torch.equal(index.lookup(users, negatives), expected)
        # No pairs at all: nothing is known, in every shape.
        none = KnownPairs(edges[:, :0], 300, 500, max_dense=0)
        assert not none.lookup(users, negatives).any()
        assert none.lookup(users, negatives).shape == expected.shape
