"""The hybrid is a scorer like every baseline: the whole training story (ALS, LightGCN, the
GNN, the mix) on the checkerboard passes ScorerContract."""
import dataclasses

import numpy as np
import pytest
import torch

from hybridrec.config import ModelConfig, RunConfig, TrainConfig
from hybridrec.data.dataset import Dataset
from hybridrec.data.idmap import IdMap
from hybridrec.models import Mix
from hybridrec.pipeline import fit_hybrid
from hybridrec.testing import Checkerboard, ScorerContract
from hybridrec.text.features import NodeFeatures

pytestmark = pytest.mark.usefixtures("one_thread")


def board_data(board: Checkerboard) -> tuple[Dataset, NodeFeatures]:
    """The checkerboard as a data set, its text-like embeddings as features."""
    n = board.n
    dataset = Dataset("checkerboard", IdMap(f"u{i}" for i in range(n)),
                      IdMap(f"i{i}" for i in range(n)), board.train)
    dim = board.item_embeddings.size(1)
    features = NodeFeatures(board.user_embeddings.float(), board.item_embeddings.float(),
                            torch.zeros(0, dim), torch.zeros(0, dtype=torch.bool),
                            ("",) * n, ("",) * n, (), "checkerboard")
    return dataset, features


class TestHybrid(ScorerContract):
    def make_scorer(self, device):
        return RunConfig(model=ModelConfig(hidden_channels=8, mf_channels=8,
                                           mf_lightgcn_channels=8, mf_lightgcn_epochs=20),
                         train=TrainConfig(epochs=5, batch_size=64, num_negatives=20,
                                           valid_metric="ndcg@5", device=device,
                                           show_progress=False))

    def fit(self, config, board):
        dataset, features = board_data(board)
        split = dataclasses.replace(board.split, valid=board.split.test)  # early stopping
        return fit_hybrid(config, dataset, split, features).mix

    def save(self, scorer, path):
        scorer.save(path)

    def load(self, path, device):
        return Mix.load(path, device)


def test_the_story_fits_each_scorer_once_and_mixes_them(tmp_path):
    from hybridrec.testing import checkerboard

    board = checkerboard(12)
    dataset, features = board_data(board)
    config = TestHybrid().make_scorer("cpu")
    split = dataclasses.replace(board.split, valid=board.split.test)
    fit = fit_hybrid(config, dataset, split, features, checkpoint_dir=tmp_path)
    assert fit.mix.names == ["gnn", "als", "lightgcn"] and fit.gate is None
    # The GNN keeps its best validation epoch (the first of equals), not its last one.
    scores = [(h["valid"], -h["epoch"]) for h in fit.result.history if "valid" in h]
    assert len(scores) == len(fit.result.history) >= 1  # validated every epoch
    best_valid, best_epoch = max(scores)
    assert (fit.result.best_epoch, fit.result.best_score) == (-best_epoch, best_valid)
    # LightGCN's epochs are one its early stopping evaluated (every 5, at most 20).
    assert fit.lightgcn_epochs in (5, 10, 15, 20)
    # The fitted CF scorers are kept beside the GNN's checkpoint, so a resume does not refit.
    assert {p.name for p in tmp_path.iterdir()} >= {"als", "lightgcn", "checkpoint.safetensors"}
    again = fit_hybrid(config, dataset, split, features, checkpoint_dir=tmp_path, resume=True)
    users = torch.arange(board.n)
    torch.testing.assert_close(again.mix.score(users), fit.mix.score(users))

    # Resuming on other data, another split or other settings is refused, saying what changed
    # (the checkpoint's training pairs could be the new split's test pairs).
    from hybridrec.data.errors import DataError

    kept = np.arange(len(dataset.interactions)) != 0
    other = dataclasses.replace(dataset, interactions=dataset.interactions.select(kept))
    with pytest.raises(DataError, match="--resume with changed data: the data set differs "
                                        r"\(12 users, 12 items, \d+ interactions at the "
                                        r"checkpoint; 12, 12, \d+ now\)"):
        fit_hybrid(config, other, split, features, checkpoint_dir=tmp_path, resume=True)
    swapped = dataclasses.replace(split, train=split.test, test=split.train)
    with pytest.raises(DataError, match="split: the training pairs differ.*split: the test pairs"):
        fit_hybrid(config, dataset, swapped, features, checkpoint_dir=tmp_path, resume=True)
    faster = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=0.5,
                                                                   epochs=99))
    with pytest.raises(DataError, match="--resume with changed settings train.lr. Start"):
        fit_hybrid(config=faster, dataset=dataset, split=split, features=features,
                   checkpoint_dir=tmp_path, resume=True)
    # A checkpoint without its fingerprint cannot be checked: refused too.
    (tmp_path / "fingerprint.json").unlink()
    with pytest.raises(DataError, match="fingerprint of the interrupted run.*missing"):
        fit_hybrid(config, dataset, split, features, checkpoint_dir=tmp_path, resume=True)


def test_the_gate_is_cross_fitted_on_every_pair_and_gates_the_scorers_fitted_on_all():
    from torch_geometric.utils import degree

    from hybridrec.graph import INTERACTS
    from hybridrec.models import ScoreGate
    from hybridrec.pipeline import cross_fit
    from hybridrec.testing import checkerboard

    board = checkerboard(12)
    dataset, features = board_data(board)
    config = TestHybrid().make_scorer("cpu")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, use_gate=True),
                                 train=dataclasses.replace(config.train, gate_folds=2,
                                                           gate_epochs=2))
    split = dataclasses.replace(board.split, valid=board.split.test)
    fit = fit_hybrid(config, dataset, split, features)
    history, fixed = fit.gate
    assert len(history.history) >= 1 and np.isfinite(fixed)
    assert (fit.mix.gate is not None) == fit.gate_kept
    # The scorers it gates are the fixed mix's, fitted on every training pair.
    plain = fit_hybrid(dataclasses.replace(config, model=dataclasses.replace(
        config.model, use_gate=False)), dataset, split, features)
    for name, tower in plain.mix.towers.items():
        torch.testing.assert_close(fit.mix.towers[name].item, tower.item)
    assert int(fit.mix.item_degree.sum()) == len(board.train)
    # The folds: every training pair once, each fold's mix fitted without its pairs.
    gate = ScoreGate(3, 8, fit.mix.fixed_gate)
    folds = cross_fit(config, fit.graph, fit.gnn, plain.mix, gate, seed=0, device="cpu",
                      gnn_epochs=1, lightgcn_epochs=1, warm_negatives=False)
    every = fit.graph[INTERACTS].edge_index
    held = torch.cat([pairs for _, pairs in folds], 1)
    assert sorted(map(tuple, held.t().tolist())) == sorted(map(tuple, every.t().tolist()))
    n = dataset.num_items
    for mix, pairs in folds:
        assert mix.gate is gate
        rest = degree(every[1], n) - degree(pairs[1], n)
        torch.testing.assert_close(mix.item_degree, rest * 2)  # scaled by K / (K - 1)
        assert float(mix.towers["als"].item[rest == 0].abs().sum()) == 0
        assert not torch.allclose(mix.towers["als"].item, plain.mix.towers["als"].item)
        assert not torch.allclose(mix.towers["gnn"].item, plain.mix.towers["gnn"].item)


def test_a_resume_refits_what_a_kill_left_half_saved(tmp_path):
    """ALS's and LightGCN's saves end with the file that marks them complete; a kill before it
    leaves a folder that a resume fits again (to the same vectors) instead of failing."""
    from hybridrec.testing import checkerboard

    board = checkerboard(12)
    dataset, features = board_data(board)
    config = TestHybrid().make_scorer("cpu")
    split = dataclasses.replace(board.split, valid=board.split.test)
    fit = fit_hybrid(config, dataset, split, features, checkpoint_dir=tmp_path)
    (tmp_path / "als" / "scorer.json").unlink()
    (tmp_path / "lightgcn" / "epochs.json").unlink()
    again = fit_hybrid(config, dataset, split, features, checkpoint_dir=tmp_path, resume=True)
    for name in ("als", "lightgcn"):
        torch.testing.assert_close(again.mix.towers[name].item, fit.mix.towers[name].item)
    assert (tmp_path / "als" / "scorer.json").is_file()
    assert (tmp_path / "lightgcn" / "epochs.json").is_file()
    # A fresh start (no resume) discards the earlier checkpoint before anything else: a kill
    # right after it must not leave the old fits to be resumed into the new run.
    from hybridrec.pipeline import check_checkpoint

    check_checkpoint(tmp_path, config, dataset, split, resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fingerprint.json"]



def _cold_config():
    config = TestHybrid().make_scorer("cpu")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, cold_start=True))


def test_cold_start_on_a_split_without_cold_items_is_chosen_on_a_simulated_cold_start():
    from hybridrec.graph import INTERACTS
    from hybridrec.pipeline import _simulated_cold_start
    from hybridrec.testing import checkerboard

    board = checkerboard(20)
    dataset, features = board_data(board)
    split = dataclasses.replace(board.split, valid=board.split.test)
    fit = fit_hybrid(_cold_config(), dataset, split, features)
    report = fit.cold_start
    assert report["simulated_cold_items"] == 2  # a tenth of the 20 items with pairs
    assert len(report["trials"]) > 1 and report["valid_plain"] >= 0
    assert (fit.mix.cold is not None) == report["kept"]
    if report["kept"]:
        assert report["valid"] > report["valid_plain"]
    # The simulation: the chosen items lose their pairs, degree and collaborative rows;
    # the other items keep theirs.
    pairs = fit.graph[INTERACTS].edge_index
    probe, n = _simulated_cold_start(fit.mix, fit.gnn, fit.graph, pairs, 0.1)
    gone = probe.item_degree == 0
    assert n == int(gone.sum()) == 2 and bool((fit.mix.item_degree[gone] > 0).all())
    for name in ("als", "lightgcn"):
        assert bool((probe.towers[name].item[gone] == 0).all())
        torch.testing.assert_close(probe.towers[name].item[~gone], fit.mix.towers[name].item[~gone])
    assert not torch.allclose(probe.towers["gnn"].item[gone], fit.mix.towers["gnn"].item[gone])


def test_cold_start_on_a_cold_item_split_is_chosen_on_its_cold_items():
    from hybridrec.testing import checkerboard

    board = checkerboard(20)
    dataset, features = board_data(board)
    fit = fit_hybrid(_cold_config(), dataset, _cold_split(board), features)
    assert fit.cold_start["simulated_cold_items"] == 0
    assert (fit.mix.cold is not None) == fit.cold_start["kept"]
    assert fit.mix.item_degree[[3, 8]].tolist() == [0.0, 0.0]


def _cold_split(board):
    from hybridrec.data.split import Split

    train, test = board.split.train, board.split.test
    cold = np.isin(train.item_index, [3, 8])  # every training pair of two items to valid
    return Split("cold-items", train.select(~cold), train.select(cold), test,
                 cold_items=np.array([3, 8]))


def test_the_cold_items_text_boost_is_chosen_on_them_and_kept_in_the_model(caplog):
    """On a split with validation cold items the boost is chosen on ranking them among
    themselves, and lives in the model: its own tower (what a loaded run and add_items
    compute) is the mix's, cold rows boosted, warm rows not."""
    from hybridrec.models.prepare import graph_inputs
    from hybridrec.testing import checkerboard
    from hybridrec.trainer import TrainedGNN

    board = checkerboard(20)
    dataset, features = board_data(board)
    with caplog.at_level("INFO", logger="hybridrec.pipeline"):
        fit = fit_hybrid(TestHybrid().make_scorer("cpu"), dataset, _cold_split(board), features)
    assert "Cold items' text boost" in caplog.text
    tower = TrainedGNN(fit.gnn, *graph_inputs(fit.graph, "cpu")).tower()
    torch.testing.assert_close(tower.item, fit.mix.towers["gnn"].item)
    parts = fit.gnn.embed_parts(*graph_inputs(fit.graph, "cpu"))
    boost = fit.gnn.cold_text_log_scale.detach().exp()
    text = slice(fit.gnn.hidden_channels, None)
    torch.testing.assert_close(tower.item[[3, 8], text], boost * parts.item_text[[3, 8]])
    torch.testing.assert_close(tower.item[:3, text], parts.item_text[:3])


def test_choose_text_boost_takes_the_best_factor_on_the_metric_and_moves_the_model(tiny_gnn):
    from hybridrec.models.mix import Tower
    from hybridrec.pipeline import TEXT_BOOSTS, choose_text_boost

    gnn, tower = tiny_gnn
    cold = torch.zeros(tower.item.size(0), dtype=torch.bool)
    cold[[0, 2]] = True
    text = slice(gnn.hidden_channels, None)
    before = gnn.cold_text_log_scale.item()

    def metric(t: Tower) -> float:  # best where the cold rows' text is 3 times as long
        ratio = t.item[0, text].norm() / tower.item[0, text].norm()
        return -float((ratio - 3.0) ** 2)

    chosen = choose_text_boost(gnn, tower, cold, metric)
    assert 3.0 in TEXT_BOOSTS
    torch.testing.assert_close(chosen.item[cold][:, text], 3.0 * tower.item[cold][:, text])
    torch.testing.assert_close(chosen.item[~cold], tower.item[~cold])
    torch.testing.assert_close(chosen.item[:, :gnn.hidden_channels],
                               tower.item[:, :gnn.hidden_channels])
    assert gnn.cold_text_log_scale.item() == pytest.approx(before + np.log(3.0), abs=1e-6)
    # Equals: the first factor, 1, wins: the tower and the model stay as they are.
    torch.testing.assert_close(choose_text_boost(gnn, chosen, cold, lambda t: 0.0).item,
                               chosen.item)
    assert gnn.cold_text_log_scale.item() == pytest.approx(before + np.log(3.0), abs=1e-6)


@pytest.fixture
def tiny_gnn():
    from hybridrec.models.prepare import graph_inputs
    from hybridrec.testing import checkerboard
    from hybridrec.trainer import TrainedGNN

    board = checkerboard(12)
    dataset, features = board_data(board)
    config = TestHybrid().make_scorer("cpu")
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1))
    fit = fit_hybrid(config, dataset, dataclasses.replace(board.split, valid=board.split.test),
                     features)
    return fit.gnn, TrainedGNN(fit.gnn, *graph_inputs(fit.graph, "cpu")).tower()


def test_with_mix_search_the_gnn_stops_on_its_own_metric_and_the_weights_on_validation():
    from hybridrec.pipeline import MIX_SHARES, _best_share, _weights
    from hybridrec.testing import checkerboard

    assert _weights(0.5, ["als", "lightgcn"]) == {"gnn": 0.5, "als": 0.25, "lightgcn": 0.25}
    made = []

    def mix_with(tower, share):
        made.append(share)
        return share

    assert _best_share(lambda s: -abs(s - 2 / 3), mix_with, None, MIX_SHARES) == (0.0, 2 / 3)
    assert made == list(MIX_SHARES)
    assert _best_share(lambda s: 1.0, mix_with, None, MIX_SHARES) == (1.0, MIX_SHARES[0])

    board = checkerboard(12)
    dataset, features = board_data(board)
    split = dataclasses.replace(board.split, valid=board.split.test)
    config = TestHybrid().make_scorer("cpu")
    assert fit_hybrid(config, dataset, split, features).mix.weights["gnn"] == pytest.approx(
        1 / 3)  # the default: every scorer alike
    searched = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                    mix_search=True))
    fit = fit_hybrid(searched, dataset, split, features)
    assert any(fit.mix.weights["gnn"] == pytest.approx(w) for w in MIX_SHARES)
    assert fit.mix.weights["als"] == pytest.approx(fit.mix.weights["lightgcn"])
    # The GNN was early-stopped on its own validation metric: the best epoch's score is the
    # GNN alone's.
    from hybridrec.baselines import validation_metric
    from hybridrec.models import Mix

    metric = validation_metric(dataset, split, config.train.valid_metric)
    alone = Mix({"gnn": fit.mix.towers["gnn"]}, fit.mix.user_degree, fit.mix.item_degree)
    assert metric(alone) == pytest.approx(fit.result.best_score)
