"""fit / train_step on the tiny example graph: the loss falls, gradients are per batch, the best
state is kept, and a killed run resumes to the same weights."""
import math

import pytest
import torch

from hybridrec.config import ModelConfig
from hybridrec.data.split import random_split
from hybridrec.evaluate import evaluate
from hybridrec.graph import build_graph
from hybridrec.models import HybridModel, prepare_graph
from hybridrec.models.hybrid import INTERACTS
from hybridrec.trainer import Batch, compute_loss, fit, sample_batch, train_step


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(example_dataset):
    dataset = example_dataset
    split = random_split(dataset, (0.6, 0.2, 0.2), seed=0)
    g = torch.Generator().manual_seed(0)
    graph = build_graph(dataset, split.train,
                        user_x=torch.randn(dataset.num_users, 16, generator=g),
                        item_x=torch.randn(dataset.num_items, 16, generator=g),
                        entity_x=torch.randn(dataset.num_entities, 16, generator=g))
    return dataset, split, prepare_graph(graph, prune_leaf_entities=False)


def _model(graph, **kwargs):
    torch.manual_seed(0)
    return HybridModel.from_config(ModelConfig(hidden_channels=8, **kwargs), graph)


def _inputs(graph):
    return ({t: graph[t].x for t in graph.node_types if "x" in graph[t]},
            dict(graph.edge_index_dict))


def _batch(graph, rows, seed, loss="softmax"):
    positives = graph[INTERACTS].edge_index
    degree = torch.bincount(positives[1], minlength=graph["item"].num_nodes)
    return sample_batch(positives, rows, degree, graph["item"].num_nodes, loss=loss,
                        num_negatives=6, cold_start_fraction=0.2,
                        generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_a_few_steps_lower_the_loss(tiny, loss):
    _, _, graph = tiny
    model = _model(graph)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, edges = _inputs(graph)
    batch = _batch(graph, torch.arange(graph[INTERACTS].edge_index.size(1)), 0, loss)
    losses = [train_step(model, optimizer, x, edges, batch, loss=loss, weight_decay=1e-4,
                         clip_grad_norm=5.0) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_gradients_hold_only_the_last_batch(tiny):
    _, _, graph = tiny
    x, edges = _inputs(graph)
    first, second = _batch(graph, torch.arange(0, 10), 1), _batch(graph, torch.arange(10, 20), 2)
    model = _model(graph)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, optimizer, x, edges, first)
    before_second = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model, optimizer, x, edges, second)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # The gradient of the second batch alone, at the weights the second step started from.
    fresh = _model(graph)
    fresh.load_state_dict(before_second)
    probe = torch.optim.SGD(fresh.parameters(), lr=0.0)
    train_step(fresh, probe, x, edges, second)
    expected = {n: p.grad for n, p in fresh.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and got
    for name in got:
        torch.testing.assert_close(got[name], expected[name], msg=name)


def _validate(dataset, split):
    return lambda scorer: evaluate(scorer, dataset, split, part="valid", ks=(5,))


def test_fit_keeps_the_best_state_and_re_evaluates_to_its_score(tiny):
    dataset, split, graph = tiny
    model = _model(graph)
    seen = []
    result = fit(model, graph, validate=_validate(dataset, split), epochs=4, gate_epochs=3,
                 batch_size=8, lr=0.01, num_negatives=6, valid_metric="ndcg@5", patience=10,
                 show_progress=False, callback=seen.append)
    assert [r["epoch"] for r in result.history] == list(range(1, 8)) and seen == result.history
    assert [r["phase"] for r in result.history] == ["branches"] * 4 + ["gate"] * 3
    branch_scores = [r["valid_ndcg@5"] for r in result.history[:4]]
    assert result.best_epoch == 1 + branch_scores.index(max(branch_scores))
    assert result.best_score == max(r["valid_ndcg@5"] for r in result.history)
    x, edges = _inputs(graph)
    again = evaluate(model.scorer(x, edges), dataset, split, part="valid", ks=(5,))["ndcg@5"]
    assert again == pytest.approx(result.best_score)


@pytest.mark.parametrize("gate_scores, gate_epoch, best", [
    ([0.25, 0.28], 0, 0.3),   # the gate never beats the fixed mix's 0.3: g = 1/2 is kept
    ([0.35, 0.2], 4, 0.35),   # it does at its first epoch: that gate is kept
])
def test_a_trained_gate_is_kept_only_where_it_beats_the_fixed_mix(tiny, gate_scores, gate_epoch,
                                                                  best):
    _, _, graph = tiny
    scores = iter([0.1, 0.3, 0.2] + gate_scores)
    model = _model(graph, mf_lightgcn_channels=0)  # no LightGCN checks to script; g0 = 1/2
    result = fit(model, graph, validate=lambda scorer: {"ndcg@5": next(scores)}, epochs=3,
                 gate_epochs=2, batch_size=8, lr=0.01, num_negatives=6, valid_metric="ndcg@5",
                 patience=10, show_progress=False)
    assert (result.best_epoch, result.gate_epoch, result.best_score) == (2, gate_epoch, best)
    x, edges = _inputs(graph)
    gate = model.scorer(x, edges).mean_gate()
    if gate_epoch:
        assert result.gate_candidate is None and not bool((gate == 0.5).all())
    else:
        assert bool((gate == 0.5).all())  # the fresh gate: exactly the fixed mix
        assert result.gate_candidate_epoch == 5 and result.gate_candidate_score == 0.28
        assert set(result.gate_candidate) == {f"gate.{k}" for k in model.gate.state_dict()}


def test_the_gate_phase_starts_from_the_best_branches_and_leaves_them_alone(tiny):
    dataset, split, graph = tiny
    x, edges = _inputs(graph)
    model, branches = _model(graph), {}

    def keep_branches(record):
        if record["phase"] == "branches":  # the state after each branch epoch
            branches[record["epoch"]] = {k: v.clone() for k, v in model.gnn.state_dict().items()}

    result = fit(model, graph, validate=_validate(dataset, split), epochs=4, gate_epochs=2,
                 batch_size=8, lr=0.01, num_negatives=6, valid_metric="ndcg@5", patience=10,
                 show_progress=False, callback=keep_branches)
    for key, value in branches[result.best_epoch].items():
        torch.testing.assert_close(model.gnn.state_dict()[key], value, msg=key)


def test_unknown_valid_metric_is_named(tiny):
    dataset, split, graph = tiny
    with pytest.raises(ValueError, match="ndcg@50.*recall@5"):
        fit(_model(graph), graph, validate=_validate(dataset, split), epochs=1, batch_size=64,
            num_negatives=4, valid_metric="ndcg@50", show_progress=False)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [2, 4])  # in the branches' phase, in the gate's
def test_resume_after_a_kill_gives_the_same_weights(tiny, tmp_path, kill_at):
    dataset, split, graph = tiny
    kwargs = dict(validate=_validate(dataset, split), epochs=3, gate_epochs=2, batch_size=8,
                  lr=0.01, num_negatives=6, valid_metric="ndcg@5", patience=10,
                  show_progress=False)
    straight = _model(graph)
    fit(straight, graph, generator=torch.Generator().manual_seed(3), **kwargs)

    def kill(record):
        if record["epoch"] == kill_at:  # before that epoch's checkpoint is written
            raise _Killed

    with pytest.raises(_Killed):
        fit(_model(graph), graph, generator=torch.Generator().manual_seed(3),
            checkpoint_dir=tmp_path, callback=kill, **kwargs)
    # A new process: fresh model and generator; everything else comes from the checkpoint.
    resumed = _model(graph)
    torch.manual_seed(12345)
    result = fit(resumed, graph, generator=torch.Generator().manual_seed(99),
                 checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    assert not list(tmp_path.glob("*.tmp"))


def test_batch_moves_to_a_device(tiny):
    _, _, graph = tiny
    batch = _batch(graph, torch.arange(4), 0)
    assert isinstance(batch.to(torch.device("cpu")), Batch)


@pytest.mark.parametrize("warm, expected", [(True, {0, 3}), (False, set(range(6)))])
def test_warm_negatives_come_from_items_with_training_interactions(warm, expected):
    positives = torch.tensor([[0, 1, 2, 0], [0, 0, 3, 3]])
    degree = torch.bincount(positives[1], minlength=6)  # items 1, 2, 4, 5 never positive
    batch = sample_batch(positives, torch.arange(4), degree, 6, loss="softmax",
                         num_negatives=200, cold_start_fraction=0.0,
                         generator=torch.Generator().manual_seed(0), warm_negatives=warm)
    assert set(batch.negatives.flatten().tolist()) == expected


def test_each_phase_trains_its_own_parameters_on_its_own_pairs(tiny):
    _, _, graph = tiny
    x, edges = _inputs(graph)
    model = _model(graph)
    base = _batch(graph, torch.arange(0, 12), 5)

    def grads(phase, gate_users, gate_items):
        batch = Batch(base.users, base.items, base.negatives, base.cold_items,
                      gate_users=gate_users, gate_items=gate_items, gate_negatives=base.negatives)
        model.zero_grad()
        compute_loss(model, x, edges, batch, phase=phase).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    gate = grads("gate", torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert gate and all(name.startswith("gate.") for name in gate)
    other_pairs = grads("gate", torch.tensor([4, 5]), torch.tensor([6, 1]))
    assert not torch.allclose(gate["gate.item_mlp.2.weight"],
                              other_pairs["gate.item_mlp.2.weight"])
    branches = grads("branches", torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert branches and not any(name.startswith("gate.") for name in branches)
    # The held-out pairs reach no branch.
    for name, value in grads("branches", torch.tensor([4, 5]), torch.tensor([6, 1])).items():
        torch.testing.assert_close(value, branches[name], msg=name)


def test_held_out_pairs_are_negatives_for_the_branches_but_not_for_the_gate():
    from hybridrec.sampling import pair_keys

    branch = torch.tensor([[0, 0, 1], [1, 2, 3]])
    held_out = torch.tensor([[0], [4]])
    every = torch.cat([branch, held_out], dim=1)
    batch = sample_batch(branch, torch.arange(3), torch.bincount(branch[1], minlength=6), 6,
                         loss="softmax", num_negatives=6, cold_start_fraction=0.0,
                         generator=torch.Generator().manual_seed(0), held_out=held_out,
                         gate_batch_size=1,
                         known_keys=torch.unique(pair_keys(branch[0], branch[1], 6)),
                         gate_known_keys=torch.unique(pair_keys(every[0], every[1], 6)))
    assert batch.negatives.tolist() == [list(range(6))]  # the whole catalogue: full softmax
    assert batch.negative_mask[0].tolist() == [False, True, True, False, False, False]
    assert batch.gate_negative_mask[0].tolist() == [False, True, True, False, True, False]


def test_an_als_branch_is_solved_on_the_branch_pairs_and_ends_on_every_pair(tiny):
    from hybridrec.baselines.als import als_factors

    _, _, graph = tiny
    model = _model(graph)
    fit(model, graph, epochs=1, batch_size=16, num_negatives=6, gate_holdout=0.3,
        generator=torch.Generator().manual_seed(5), show_progress=False)
    seed = int(torch.randint(2**31 - 1, (1,), generator=torch.Generator().manual_seed(5)))
    pairs = graph[INTERACTS].edge_index
    users, items = als_factors(pairs[0], pairs[1], model.num_users, model.num_items,
                               factors=model.mf.embedding_dim, regularization=20.0, alpha=3.0,
                               random_state=seed)
    torch.testing.assert_close(model.mf.user_emb.weight, users)
    torch.testing.assert_close(model.mf.item_emb.weight, items)



def test_a_lightgcn_branch_is_early_stopped_then_refitted_on_every_pair(tiny):
    dataset, split, graph = tiny
    model = _model(graph, mf_lightgcn_channels=4)
    checked = []

    def validate(scorer):
        checked.append(type(scorer).__name__)
        return evaluate(scorer, dataset, split, part="valid", ks=(5,))

    result = fit(model, graph, validate=validate, valid_metric="ndcg@5", epochs=1,
                 batch_size=16, num_negatives=6, gate_holdout=0.3,
                 generator=torch.Generator().manual_seed(5), show_progress=False)
    assert "LightGCN" in checked and "HybridScorer" in checked
    # Stopped early, at a checked epoch.
    assert 5 <= result.lightgcn_epochs < model.mf.lightgcn_epochs
    assert result.lightgcn_epochs % 5 == 0
    seed = int(torch.randint(2**31 - 1, (1,), generator=torch.Generator().manual_seed(5)))
    users, items, epochs = model.mf.lightgcn_solution(graph[INTERACTS].edge_index, seed=seed,
                                                      epochs=result.lightgcn_epochs)
    assert epochs == result.lightgcn_epochs
    torch.testing.assert_close(model.mf.lightgcn_user, users)
    torch.testing.assert_close(model.mf.lightgcn_item, items)


def test_the_gate_phase_factors_never_saw_the_held_out_pairs(tiny):
    from hybridrec.trainer import _fit_frozen_factors

    _, _, graph = tiny
    model = _model(graph, mf_lightgcn_channels=4, mf_lightgcn_epochs=7)
    every_pair = graph[INTERACTS].edge_index
    branch_pairs = every_pair[:, ::2]
    train, final, epochs = _fit_frozen_factors(model, branch_pairs, every_pair, None, seed=3)
    assert epochs == 7  # no validation: every epoch
    for name, fit_on in (("als", model.mf.als_solution), ("lightgcn", model.mf.lightgcn_solution)):
        for factors, pairs in ((train[name], branch_pairs), (final[name], every_pair)):
            expected = fit_on(pairs, seed=3)[:2]
            torch.testing.assert_close(factors[0], expected[0], msg=name)
            torch.testing.assert_close(factors[1], expected[1], msg=name)
    assert not torch.allclose(train["lightgcn"][1], final["lightgcn"][1])
