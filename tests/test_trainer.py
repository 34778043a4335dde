"""train_gnn / train_step / train_gate on the tiny example graph: the loss falls, gradients are
per batch, the best state is kept, a killed run resumes to the same weights, and the gate is
kept only where it beats the fixed mix."""
import math

import pytest
import torch

from hybridrec.config import ModelConfig
from hybridrec.evaluation import evaluate
from hybridrec.graph import INTERACTS
from hybridrec.models import GNNScorer, Mix, ScoreGate, Tower
from hybridrec.testing import random_feature_graph
from hybridrec.trainer import (
    Batch,
    TrainedGNN,
    sample_batch,
    train_gate,
    train_gnn,
    train_step,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(example_dataset):
    return example_dataset, *random_feature_graph(example_dataset)


def _model(graph, **kwargs):
    torch.manual_seed(0)
    return GNNScorer.from_config(ModelConfig(hidden_channels=8, **kwargs), graph)


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
    """Validation NDCG@5 of the GNN tower alone (a one-tower mix)."""
    def metric(tower):
        mix = Mix({"gnn": tower}, torch.zeros(tower.user.size(0)), torch.zeros(tower.item.size(0)))
        return evaluate(mix, dataset, split, part="valid", ks=(5,))["ndcg@5"]

    return metric


def test_train_gnn_keeps_the_best_state_and_re_evaluates_to_its_score(tiny):
    dataset, split, graph = tiny
    model = _model(graph)
    seen = []
    result = train_gnn(model, graph, validate=_validate(dataset, split), epochs=5, batch_size=8,
                       lr=0.05, num_negatives=6, patience=10, show_progress=False,
                       callback=seen.append)
    assert [r["epoch"] for r in result.history] == list(range(1, 6)) and seen == result.history
    scores = [r["valid"] for r in result.history]
    assert result.best_epoch == 1 + scores.index(max(scores))
    assert result.best_score == max(scores)
    again = _validate(dataset, split)(TrainedGNN(model, *_inputs(graph)).tower())
    assert again == pytest.approx(result.best_score)


def test_early_stopping_stops_after_patience_checks(tiny):
    dataset, split, graph = tiny
    calls = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    result = train_gnn(_model(graph), graph, validate=lambda tower: next(calls), epochs=6,
                       batch_size=8, num_negatives=6, patience=2, show_progress=False)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


class _Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_weights(tiny, tmp_path):
    dataset, split, graph = tiny
    kwargs = dict(validate=_validate(dataset, split), epochs=4, batch_size=8, lr=0.01,
                  num_negatives=6, patience=10, show_progress=False)
    straight = _model(graph)
    train_gnn(straight, graph, generator=torch.Generator().manual_seed(3), **kwargs)

    def kill(record):
        if record["epoch"] == 3:  # before that epoch's checkpoint is written
            raise _Killed

    with pytest.raises(_Killed):
        train_gnn(_model(graph), graph, generator=torch.Generator().manual_seed(3),
                  checkpoint_dir=tmp_path, callback=kill, **kwargs)
    # A new process: fresh model and generator; everything else comes from the checkpoint.
    resumed = _model(graph)
    torch.manual_seed(12345)
    result = train_gnn(resumed, graph, generator=torch.Generator().manual_seed(99),
                       checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    assert not list(tmp_path.glob("*.tmp"))


def test_sampled_steps_resume_their_adam_state_after_a_kill(tiny, tmp_path):
    """With fan-outs a resumed run samples anew, so it need not end in the same weights, but
    Adam's state (fused where torch has the kernel) continues: the step counts of the last
    checkpoint are those of every epoch's steps."""
    from safetensors.torch import load_file

    from hybridrec.trainer import CHECKPOINT_FILE

    dataset, split, graph = tiny
    kwargs = dict(validate=_validate(dataset, split), epochs=4, batch_size=8, lr=0.01,
                  num_negatives=6, patience=10, fanouts=(3, 3), show_progress=False)

    def kill(record):
        if record["epoch"] == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train_gnn(_model(graph), graph, generator=torch.Generator().manual_seed(3),
                  checkpoint_dir=tmp_path, callback=kill, **kwargs)
    result = train_gnn(_model(graph), graph, generator=torch.Generator().manual_seed(3),
                       checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    steps = math.ceil(graph[INTERACTS].edge_index.size(1) / 8)
    tensors = load_file(str(tmp_path / CHECKPOINT_FILE))
    assert {float(v) for k, v in tensors.items() if k.endswith(".step")} == {4 * steps}


def test_the_gnn_optimizer_is_adam_over_the_parameters(tiny):
    """gnn_optimizer steps as plain Adam does, fused or not (one step: after it the two
    differ in rounding, which Adam's normalisation magnifies where the gradient is only
    rounding noise)."""
    from hybridrec.trainer import gnn_optimizer

    _, _, graph = tiny
    models = [_model(graph, text_channel=True) for _ in range(2)]
    optimizers = [gnn_optimizer(models[0], 0.01),
                  torch.optim.Adam(models[1].parameters(), lr=0.01)]
    x, edges = _inputs(graph)
    batch = _batch(graph, torch.arange(graph[INTERACTS].edge_index.size(1)), 0)
    for model, optimizer in zip(models, optimizers):
        train_step(model, optimizer, x, edges, batch, weight_decay=1e-4)
    for key, value in models[1].state_dict().items():
        torch.testing.assert_close(models[0].state_dict()[key], value, msg=key)


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


def _gate_mix(n=12):
    """Two towers on ``n`` users and items: the "gnn" one knows the answer (user u likes item
    u) for the cold half of the items, the "als" one for the warm half."""
    eye = torch.eye(n)
    cold = torch.arange(n) < n // 2
    gnn = Tower(eye.clone(), eye * cold.unsqueeze(-1))
    als = Tower(eye.clone(), eye * (~cold).unsqueeze(-1))
    degree = torch.where(cold, 0.0, 50.0)
    return Mix({"gnn": gnn, "als": als}, torch.full((n,), 5.0), degree,
               gate=ScoreGate(3, 8, prior=0.5)), cold


@pytest.mark.parametrize("validate_value, kept", [(lambda mix: 0.0, False), (None, True)])
def test_train_gate_is_kept_only_where_it_beats_the_fixed_mix(validate_value, kept):
    torch.manual_seed(0)
    mix, cold = _gate_mix()
    pairs = torch.stack([torch.arange(12), torch.arange(12)])
    fixed_state = {k: v.clone() for k, v in mix.gate.state_dict().items()}
    # Without validate the trained gate is always kept; with a flat validation it never is.
    result, _ = train_gate(mix, [(mix, pairs)], pairs, validate=validate_value, epochs=30,
                           batch_size=12, lr=0.05, num_negatives=12, cold_start_fraction=0.0,
                           show_progress=False)
    same = all(torch.equal(v, fixed_state[k]) for k, v in mix.gate.state_dict().items())
    assert same is (not kept)
    if kept:  # it learned to lean on the GNN for cold items
        g = mix.mean_gate()
        assert float(g[cold].mean()) > float(g[~cold].mean())


def _spoil_checkpoint(path, change):
    from safetensors.torch import save_file

    from hybridrec.tensor_files import read_tensors

    tensors, metadata = read_tensors(path)
    change(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("spoil, message", [
    (lambda p: p.write_bytes(__import__("pickle").dumps({"model.x": 1})), "a pickle"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "header length|within the"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: t.pop("rng.generator")),
     "tensor 'rng.generator'"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: t.update(
        {"model.gnn.emb.user.weight": torch.zeros(1, 8)})), "shape"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: t["model.gnn.lin_in.item.weight"].fill_(
        float("nan"))), "finite"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: m.update({"state": "[]"})), "metadata 'state'"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: m.update({"state": m["state"].replace(
        '"lr": 0.01', '"lr": "fast"')})), "state.param_groups"),
    (lambda p: _spoil_checkpoint(p, lambda t, m: m.update({"format": "other"})), "format"),
])
def test_a_hostile_checkpoint_stops_resume_with_a_data_error(tiny, tmp_path, spoil, message):
    from hybridrec.data.errors import DataError
    from hybridrec.trainer import CHECKPOINT_FILE

    _, _, graph = tiny
    kwargs = dict(epochs=1, batch_size=8, lr=0.01, num_negatives=6, show_progress=False)
    train_gnn(_model(graph), graph, checkpoint_dir=tmp_path, **kwargs)
    spoil(tmp_path / CHECKPOINT_FILE)
    with pytest.raises(DataError, match=message) as err:
        train_gnn(_model(graph), graph, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert CHECKPOINT_FILE in str(err.value)


def test_the_per_user_softmax_batch_gives_the_per_row_loss_and_gradients(tiny):
    """Shared negatives masked by each user's training items: the loss computed once per
    user equals the loss computed row by row with each row's own mask and positive."""
    from hybridrec.sampling import KnownPairs, known_pairs
    from hybridrec.trainer import compute_loss

    _, _, graph = tiny
    model = _model(graph, text_channel=True)
    positives = graph[INTERACTS].edge_index
    known = KnownPairs(positives, graph["user"].num_nodes, graph["item"].num_nodes)
    degree = torch.bincount(positives[1], minlength=graph["item"].num_nodes)
    batch = sample_batch(positives, torch.arange(positives.size(1)), degree,
                         graph["item"].num_nodes, loss="softmax", num_negatives=6,
                         cold_start_fraction=0.2, generator=torch.Generator().manual_seed(1),
                         known_keys=known)
    assert batch.user_row is not None and batch.distinct_users.numel() < batch.users.numel()
    assert batch.negative_mask.shape == (batch.distinct_users.numel(), 6)
    per_row = Batch(batch.users, batch.items, batch.negatives, batch.cold_items,
                    known_pairs(batch.users, batch.negatives, known, graph["item"].num_nodes))
    values, grads = [], []
    for b in (batch, per_row):
        model.zero_grad()
        value = compute_loss(model, *_inputs(graph), b, temperature=0.5)
        value.backward()
        values.append(value.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(values[0], values[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _reference_loss(model, x, edges, batch, loss, temperature):
    """compute_loss's value by the plain formula: every row's scores ``z_u.z_i + scale *
    t_u.t_i`` against its negatives, row by row, with the row's own mask."""
    from hybridrec.models.losses import bpr_loss, sampled_softmax_loss
    from hybridrec.sampling import drop_interactions

    graph = drop_interactions(edges, batch.cold_items)
    parts = model.embed_parts(x, graph, graph[INTERACTS])

    def score(u, i):  # rows u [B], items i [B] or [B, K]
        gnn = (parts.user[u].unsqueeze(-2) * parts.item[i.reshape(len(u), -1)]).sum(-1)
        text = (parts.user_text[u].unsqueeze(-2)
                * parts.item_text[i.reshape(len(u), -1)]).sum(-1)
        return (gnn + parts.scale * text).reshape(i.shape)

    neg_ids = batch.negatives.expand(len(batch.users), -1) if batch.negatives.dim() == 2 \
        else batch.negatives
    mask = batch.negative_mask
    if batch.user_row is not None:
        mask = mask[batch.user_row]
    pos, neg = score(batch.users, batch.items), score(batch.users, neg_ids)
    if loss == "bpr":
        return bpr_loss(pos, neg, mask)
    return sampled_softmax_loss(pos, neg, temperature, mask)


@pytest.mark.parametrize("case", ["whole catalogue", "sampled negatives", "per row", "bpr"])
def test_compute_loss_gives_the_plain_formulas_loss_and_every_gradient(tiny, case):
    """The per-user path (text channel fused into the softmax; with the whole catalogue as
    negatives, text positives read from the negatives' matrix), the per-row softmax and BPR
    against the row-by-row formula: loss and every parameter's gradient, the text scale's
    included, with a user whose negatives are all masked."""
    from hybridrec.sampling import KnownPairs, known_pairs
    from hybridrec.trainer import _in_index_order, compute_loss

    _, _, graph = tiny
    model = _model(graph, text_channel=True)
    with torch.no_grad():
        model.text_log_scale.fill_(0.4)
    positives = graph[INTERACTS].edge_index
    num_items = graph["item"].num_nodes
    known = KnownPairs(positives, graph["user"].num_nodes, num_items)
    degree = torch.bincount(positives[1], minlength=num_items)
    loss = "bpr" if case == "bpr" else "softmax"
    batch = sample_batch(positives, torch.arange(positives.size(1)), degree, num_items,
                         loss=loss, num_negatives=num_items if case == "whole catalogue" else 6,
                         cold_start_fraction=0.2, generator=torch.Generator().manual_seed(3),
                         known_keys=known)
    if case == "per row":
        batch = Batch(batch.users, batch.items, batch.negatives, batch.cold_items,
                      known_pairs(batch.users, batch.negatives, known, num_items))
    per_user = case in ("whole catalogue", "sampled negatives")
    assert (batch.user_row is not None) == per_user
    assert _in_index_order(batch.negatives.reshape(-1), num_items) == (case == "whole catalogue")
    if per_user:
        batch.negative_mask[0] = True  # user 0 ranks its positives against nothing
    values, grads = [], []
    for reference in (False, True):
        model.zero_grad()
        value = (_reference_loss(model, *_inputs(graph), batch, loss, 0.5) if reference
                 else compute_loss(model, *_inputs(graph), batch, loss=loss, temperature=0.5))
        value.backward()
        values.append(value.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-7)
    assert grads[0].keys() == grads[1].keys() and "text_log_scale" in grads[0]
    assert grads[0]["text_log_scale"].abs() > 1e-4
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7,
                                   msg=name)


def test_text_positives_keep_their_precision_under_autocast():
    """Read from the negatives' matrix only when autocast left it in the profiles' dtype:
    under bfloat16 autocast the positives are still the float32 gathered dot products."""
    from hybridrec.trainer import _text_scores

    g = torch.Generator().manual_seed(0)
    user_text, item_text = torch.randn(4, 16, generator=g), torch.randn(7, 16, generator=g)
    users, items = torch.tensor([0, 2, 2, 3]), torch.tensor([1, 0, 6, 3])
    distinct, row = users.unique(return_inverse=True)
    batch = Batch(users, items, torch.arange(7).unsqueeze(0), torch.zeros(7, dtype=torch.bool),
                  None, distinct, row)
    exact = (user_text[users] * item_text[items]).sum(-1)
    pos, neg = _text_scores(user_text, item_text, batch, True, None)
    torch.testing.assert_close(pos, exact)
    torch.testing.assert_close(neg, user_text[distinct] @ item_text.t())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pos, neg = _text_scores(user_text, item_text, batch, True, None)
    assert neg.dtype == torch.bfloat16 and pos.dtype == torch.float32
    torch.testing.assert_close(pos, exact)

