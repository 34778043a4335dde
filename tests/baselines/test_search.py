import pytest

from hybridrec.baselines import BPRMF, EarlyStopping, ItemKNN, grid_search, validation_metric
from hybridrec.testing import checkerboard


class _Values:
    """A fake metric: returns a scripted value per call (the scorer is ignored)."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, scorer):
        return self.values.pop(0)


def test_early_stopping_keeps_the_best_epoch():
    board = checkerboard(10)
    stopper = EarlyStopping(_Values([0.1, 0.3, 0.2, 0.25, 0.2]), eval_every=2, patience=3)
    model = BPRMF(embedding_dim=4, epochs=50, device="cpu")
    model.fit(board.train, board.n, board.n, callback=stopper)
    stopper.finish(model)
    assert stopper.history == [(2, 0.1), (4, 0.3), (6, 0.2), (8, 0.25), (10, 0.2)]
    assert stopper.best_epoch == 4 and stopper.best_value == 0.3
    assert stopper.last_epoch == 10  # stopped after three evaluations without gain


def test_early_stopping_restores_best_state():
    board = checkerboard(10)
    snapshots = {}

    def metric(scorer):
        epoch = len(snapshots) + 1
        snapshots[epoch] = scorer.state_tensors()
        return 1.0 if epoch == 1 else 0.0

    model = BPRMF(embedding_dim=4, epochs=4, device="cpu")
    stopper = EarlyStopping(metric, eval_every=1, patience=10)
    model.fit(board.train, board.n, board.n, callback=stopper)
    stopper.finish(model)
    for name, value in model.state_tensors().items():
        assert value.equal(snapshots[1][name])


def test_grid_search_picks_best_and_records_trials():
    board = checkerboard(20)
    # The checkerboard's held-out items as the validation part.
    metric = validation_metric((board.n, board.n), _with_valid(board.split), "ndcg@5",
                               device="cpu")
    result = grid_search(ItemKNN(device="cpu"),
                         lambda est, cb: est.fit(board.train, board.n, board.n),
                         metric, grid={"k": (1, 5), "shrink": (0.0,)})
    assert [t["params"] for t in result.trials] == [{"k": 1, "shrink": 0.0},
                                                   {"k": 5, "shrink": 0.0}]
    assert result.value == max(t["value"] for t in result.trials)
    assert result.params["k"] == result.best.k


def test_grid_search_sets_epochs_to_the_best_epoch():
    board = checkerboard(10)
    result = grid_search(BPRMF(embedding_dim=4, epochs=6, device="cpu"),
                         lambda est, cb: est.fit(board.train, board.n, board.n, callback=cb),
                         _Values([0.2, 0.5, 0.1]), grid={}, eval_every=2, patience=5)
    assert result.trials[0]["best_epoch"] == 4
    assert result.params["epochs"] == 4


def test_empty_grid_value_list_raises():
    board = checkerboard(10)
    with pytest.raises(ValueError, match="empty grid"):
        grid_search(ItemKNN(device="cpu"), lambda est, cb: est.fit(board.train, 10, 10),
                    _Values([]), grid={"k": ()})


def _with_valid(split):
    from hybridrec.data.dataset import Interactions
    from hybridrec.data.split import Split

    return Split("checkerboard-valid", split.train, split.test, Interactions([], []))
