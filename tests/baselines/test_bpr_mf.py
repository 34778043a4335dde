import torch

from hybridrec.baselines import BPRMF
from hybridrec.baselines._sampling import sample_negatives
from hybridrec.testing import ScorerContract, checkerboard


class TestBPRMF(ScorerContract):
    def make_scorer(self, device):
        return BPRMF(embedding_dim=8, lr=0.02, weight_decay=0.1, epochs=30, batch_size=64,
                     device=device)


def test_loss_falls_on_checkerboard():
    board = checkerboard(20)
    model = BPRMF(embedding_dim=16, lr=0.05, epochs=15, batch_size=64, device="cpu")
    model.fit(board.train, board.n, board.n)
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]


def test_gradient_holds_only_the_last_batch():
    # The LensKit LightGCN bug: without zero_grad, gradients pile up across batches.
    board = checkerboard(10)
    model = BPRMF(embedding_dim=4, epochs=1, batch_size=8, device="cpu")
    model.fit(board.train, board.n, board.n)
    opt = torch.optim.SGD(model.model_.parameters(), lr=0.0)
    u, i, j = torch.tensor([0]), torch.tensor([2]), torch.tensor([1])
    model.train_step(opt, torch.tensor([1]), torch.tensor([3]), torch.tensor([0]))
    model.train_step(opt, u, i, j)
    grad = model.model_.user_embedding.weight.grad
    assert grad[1].abs().sum() == 0  # user 1 was only in the first batch
    assert grad[0].abs().sum() > 0


def test_negatives_avoid_positives():
    # User 1 saw items 0..9 of 100; a clash survives five redraws with probability 1e-6.
    keys = torch.arange(10) + 1 * 100
    users = torch.ones(2000, dtype=torch.long)
    neg = sample_negatives(users, 100, keys, torch.Generator().manual_seed(0))
    assert int((neg < 10).sum()) == 0
    assert len(neg.unique()) > 80  # still spread over the other items


def test_early_stopping_callback_stops():
    board = checkerboard(10)
    seen = []

    def callback(epoch, scorer):
        seen.append(epoch)
        return epoch == 3

    BPRMF(epochs=50, device="cpu").fit(board.train, board.n, board.n, callback=callback)
    assert seen == [1, 2, 3]
