"""The MF branch: shapes, cold masking, LightGCN propagation against PyG's LightGCN."""
import pytest
import torch
from torch_geometric.nn.models import LightGCN

from hybridrec.models.mf import MatrixFactorization


def test_shapes_and_bias():
    mf = MatrixFactorization(4, 6, 8)
    users, items, bias = mf()
    assert users.shape == (4, 8) and items.shape == (6, 8) and bias.shape == (6,)
    assert "embedding_dim=8" in str(mf) and "num_layers" not in str(mf)  # only what is on
    assert "num_layers=2" in str(MatrixFactorization(4, 6, 8, num_layers=2))
    users, items, bias = MatrixFactorization(4, 6, 8, bias=False)()
    assert torch.equal(bias, torch.zeros(6))


def test_masked_items_and_users_lose_their_id_signal():
    mf = MatrixFactorization(4, 6, 8)
    with torch.no_grad():
        mf.item_bias.fill_(1.0)
    item_mask = torch.tensor([False, True, False, False, False, True])
    user_mask = torch.tensor([True, False, False, False])
    users, items, bias = mf(item_mask=item_mask, user_mask=user_mask)
    assert torch.equal(items[item_mask], torch.zeros(2, 8))
    assert torch.equal(bias[item_mask], torch.zeros(2))
    assert torch.equal(users[0], torch.zeros(8))
    assert torch.equal(items[~item_mask], mf.item_emb.weight[~item_mask])


def test_propagation_equals_pyg_lightgcn():
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 0, 1, 2, 3, 3], [0, 2, 1, 1, 4, 5]])  # users x items
    mf = MatrixFactorization(4, 6, 8, num_layers=2, bias=False)
    reference = LightGCN(4 + 6, 8, num_layers=2)
    with torch.no_grad():
        reference.embedding.weight.copy_(torch.cat([mf.user_emb.weight, mf.item_emb.weight]))
    full = torch.cat([torch.stack([edge_index[0], edge_index[1] + 4]),
                      torch.stack([edge_index[1] + 4, edge_index[0]])], dim=1)
    expected = reference.get_embedding(full)
    users, items, _ = mf(edge_index)
    torch.testing.assert_close(torch.cat([users, items]), expected)


def test_propagation_needs_the_graph():
    with pytest.raises(ValueError, match="edge_index"):
        MatrixFactorization(2, 2, 4, num_layers=1)()


def test_als_solver_matches_the_als_baseline_and_freezes():
    from hybridrec.baselines.als import als_factors

    g = torch.Generator().manual_seed(0)
    edges = torch.stack([torch.randint(5, (30,), generator=g), torch.randint(7, (30,), generator=g)])
    mf = MatrixFactorization(5, 7, 4, bias=False, solver="als", regularization=1.0, alpha=2.0)
    users, items = mf.als_solution(edges, seed=3)
    expected = als_factors(edges[0], edges[1], 5, 7, factors=4, regularization=1.0, alpha=2.0,
                           random_state=3)
    torch.testing.assert_close(users, expected[0])
    torch.testing.assert_close(items, expected[1])
    mf.load_factors(users, items)
    assert not mf.user_emb.weight.requires_grad and not mf.item_emb.weight.requires_grad
    torch.testing.assert_close(mf()[0] @ mf()[1].t(), users @ items.t())
    with pytest.raises(ValueError, match="solver='gradient'"):
        MatrixFactorization(5, 7, 4).als_solution(edges)
