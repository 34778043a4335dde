import torch

from hybridrec.baselines import LightGCN
from hybridrec.baselines.lightgcn import normalized_adjacency, propagate
from hybridrec.scoring import UserItems
from hybridrec.testing import ScorerContract, checkerboard


class TestLightGCN(ScorerContract):
    def make_scorer(self, device):
        return LightGCN(embedding_dim=16, num_layers=2, lr=0.05, epochs=30, batch_size=64,
                        device=device)


def test_fast_propagation_equals_pyg_get_embedding():
    board = checkerboard(12)
    model = LightGCN(embedding_dim=8, num_layers=3, epochs=2, device="cpu")
    model.fit(board.train, board.n, board.n)
    adj = model.adjacency_
    torch.testing.assert_close(propagate(model.model_, adj), model.model_.get_embedding(adj))
    # ... and its gradient equals autograd's through torch.sparse.mm.
    x = model.model_.embedding.weight
    x.grad = None  # fit leaves the last step's gradient here
    propagate(model.model_, adj).square().sum().backward()
    ours = x.grad.clone()
    x.grad = None
    model.model_.get_embedding(adj).square().sum().backward()
    torch.testing.assert_close(ours, x.grad)


def test_adjacency_is_symmetric_normalised():
    board = checkerboard(6)
    history = UserItems.from_interactions(board.train, 6, 6)
    adj = normalized_adjacency(history, torch.device("cpu")).to_dense()
    torch.testing.assert_close(adj, adj.t())
    # User 0 and item 2 (index 6 + 2) both have degree 2 here.
    assert adj[0, 8].item() == 0.5
    assert adj[0, 6].item() == 0.0  # item 0 is user 0's held-out item


def test_loss_falls_on_checkerboard():
    board = checkerboard(20)
    model = LightGCN(embedding_dim=16, num_layers=2, lr=0.05, epochs=15, batch_size=64,
                     device="cpu")
    model.fit(board.train, board.n, board.n)
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]
