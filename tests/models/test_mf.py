"""The MF branch: shapes, cold masking, LightGCN propagation against PyG's LightGCN."""
import pytest
import torch
from torch_geometric.nn.models import LightGCN

from hybridrec.models.mf import MatrixFactorization


def test_shapes_and_bias():
    mf = MatrixFactorization(4, 6, 8)
    users, items, bias = mf()
    assert users.shape == (4, 8) and items.shape == (6, 8) and bias.shape == (6,)
    assert "embedding_dim=8" in str(mf)
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
