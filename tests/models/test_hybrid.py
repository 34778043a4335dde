"""HybridModel: score shapes agree, cold items lean on the GNN, ablations, from_config."""
import dataclasses

import pytest
import torch
from torch_geometric.data import HeteroData

from hybridrec.baselines import TextOnly
from hybridrec.config import ModelConfig
from hybridrec.data.dataset import Interactions
from hybridrec.models import HybridModel, prepare_graph
from hybridrec.models.hybrid import INTERACTS

NUM_USERS, NUM_ITEMS, NUM_ENTITIES = 6, 8, 5

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for t, n in (("user", NUM_USERS), ("item", NUM_ITEMS), ("entity", NUM_ENTITIES)):
        data[t].num_nodes = n
        data[t].x = torch.randn(n, 12, generator=g)
    # Item 7 is cold: no interaction, but a KG edge.
    ui = torch.unique(torch.stack([torch.randint(NUM_USERS, (30,), generator=g),
                                   torch.randint(NUM_ITEMS - 1, (30,), generator=g)]), dim=1)
    ie = torch.tensor([[0, 1, 2, 3, 7, 7, 4], [0, 0, 1, 1, 0, 1, 2]])
    data[INTERACTS].edge_index = ui
    data["item", "rev_interacts", "user"].edge_index = ui.flip(0)
    data["item", "genre", "entity"].edge_index = ie
    data["entity", "rev_genre", "item"].edge_index = ie.flip(0)
    return data


def _model(data: HeteroData, **kwargs) -> HybridModel:
    torch.manual_seed(0)
    return HybridModel.from_config(dataclasses.replace(ModelConfig(hidden_channels=8), **kwargs),
                                   prepare_graph(data, prune_leaf_entities=False))


def _inputs(data: HeteroData):
    return ({t: data[t].x for t in data.node_types},
            {e: data[e].edge_index for e in data.edge_types})


def test_score_modes_agree():
    data = _data()
    model = _model(data)
    x, edges = _inputs(data)
    emb = model.embed(x, edges)
    users = torch.tensor([0, 3, 5])
    full = model.score(emb, users).score  # [3, I]
    assert full.shape == (3, NUM_ITEMS)
    pairs = model.score(emb, users, torch.tensor([1, 7, 2])).score
    torch.testing.assert_close(pairs, full[torch.arange(3), torch.tensor([1, 7, 2])])
    per_user = model.score(emb, users, torch.tensor([[1, 2], [3, 4], [5, 6]])).score
    torch.testing.assert_close(per_user, torch.stack([full[0, [1, 2]], full[1, [3, 4]],
                                                      full[2, [5, 6]]]))
    shared = model.score(emb, users, torch.tensor([[4, 0]])).score
    torch.testing.assert_close(shared, full[:, [4, 0]])
    forward = model(x, edges, torch.stack([users, torch.tensor([1, 7, 2])]))
    torch.testing.assert_close(forward, pairs)
    scorer = model.scorer(x, edges)
    torch.testing.assert_close(scorer.score(users), full.detach())


def test_cold_items_have_no_id_signal_and_the_gate_sees_degree_zero():
    data = _data()
    model = _model(data)
    emb = model.embed(*_inputs(data))
    assert float(emb.item_degree[7]) == 0.0
    assert not emb.item_mf[7].any() and float(emb.item_bias[7]) == 0.0
    parts = model.score(emb, torch.arange(NUM_USERS))
    assert torch.equal(parts.mf[:, 7], torch.zeros(NUM_USERS))
    assert bool(((parts.gate > 0) & (parts.gate < 1)).all())
    # Its GNN embedding is still informative: it comes from text and KG.
    assert float(emb.item_gnn[7].norm()) > 0


def test_ablations():
    data = _data()
    x, edges = _inputs(data)
    users = torch.arange(NUM_USERS)
    no_mf = _model(data, use_mf=False)
    parts = no_mf.score(no_mf.embed(x, edges), users)
    assert parts.mf is None and parts.gate is None and torch.equal(parts.score, parts.gnn)
    fixed = _model(data, use_gate=False, mf_lightgcn_channels=0)  # ALS alone: 1/2 each
    parts = fixed.score(fixed.embed(x, edges), users)
    def standard(s):  # per user over the catalogue
        return (s - s.mean(-1, keepdim=True)) / s.std(-1, keepdim=True)

    torch.testing.assert_close(parts.score, 0.5 * standard(parts.gnn) + 0.5 * standard(parts.mf))
    assert fixed.gate is None
    no_text = HybridModel.from_config(ModelConfig(hidden_channels=8),
                                      prepare_graph(data, use_text=False))
    assert len(no_text.gnn.lin_in) == 0 and "item" in no_text.gnn.emb
    no_kg = HybridModel.from_config(ModelConfig(hidden_channels=8),
                                    prepare_graph(data, use_kg=False))
    assert no_kg.gnn.node_types == ["user", "item"]
    assert no_kg.gnn.edge_types == [INTERACTS, ("item", "rev_interacts", "user")]


def test_mf_layers_and_every_conv_build_and_score():
    data = _data()
    x, edges = _inputs(data)
    for conv in ("rgcn", "lightgcn", "sage"):
        model = _model(data, conv=conv, mf_layers=2, mf_solver="gradient")
        emb = model.embed(x, edges)
        assert torch.isfinite(model.score(emb, torch.arange(3)).score).all()


def test_graph_without_interactions_is_rejected():
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = 2, 2
    data["user", "likes", "item"].edge_index = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="interacts"):
        HybridModel.from_config(ModelConfig(), data)


def test_embedding_penalty_counts_the_batch_rows():
    data = _data()
    users, items = torch.tensor([0, 0]), torch.tensor([1, 2])
    model = _model(data, mf_solver="gradient")
    expected = (model.mf.user_emb.weight[users].pow(2).sum()
                + model.mf.item_emb.weight[items].pow(2).sum()
                + model.gnn.emb["user"].weight[users].pow(2).sum()) / 4
    torch.testing.assert_close(model.embedding_penalty(users, items), expected)
    als = _model(data)  # frozen ALS factors are not penalised
    expected = als.gnn.emb["user"].weight[users].pow(2).sum() / 4
    torch.testing.assert_close(als.embedding_penalty(users, items), expected)


def test_text_channel_is_the_text_only_cosine_with_a_learned_weight():
    data = _data()
    data["item"].x = data["item"].x + 2.0  # a direction every text shares, as sentence embeddings
    model = _model(data)
    x, edges = _inputs(data)
    emb = model.embed(x, edges)
    ui = edges[INTERACTS]
    baseline = TextOnly(center=True).fit(
        Interactions(ui[0].numpy(), ui[1].numpy()), NUM_USERS, NUM_ITEMS,
        item_embeddings=x["item"])
    text = emb.user_text @ emb.item_text.t()
    torch.testing.assert_close(text, baseline.score(torch.arange(NUM_USERS)))
    parts = model.score(emb, torch.arange(NUM_USERS))
    expected = emb.user_gnn @ emb.item_gnn.t() + emb.text_scale * text
    torch.testing.assert_close(parts.gnn, expected)
    parts.score.sum().backward()
    assert model.text_log_scale.grad is not None
    off = _model(data, text_channel=False)
    assert off.embed(x, edges).user_text is None


def test_content_items_keep_interactions_out_of_item_embeddings():
    data = _data()
    model = _model(data, content_items=True)
    assert INTERACTS not in model.gnn.edge_types
    x, edges = _inputs(data)
    fewer = dict(edges)
    fewer[INTERACTS] = edges[INTERACTS][:, :5]
    torch.testing.assert_close(model.embed(x, edges).item_gnn, model.embed(x, fewer).item_gnn)


def test_a_lightgcn_beside_als_is_averaged_in_and_each_scorer_weighs_alike():
    data = _data()
    x, edges = _inputs(data)
    users = torch.arange(NUM_USERS)
    g = torch.Generator().manual_seed(1)
    lightgcn = torch.randn(NUM_USERS, 4, generator=g), torch.randn(NUM_ITEMS, 4, generator=g)

    def standard(s):  # per user over the catalogue
        return (s - s.mean(-1, keepdim=True)) / s.std(-1, keepdim=True)

    fixed = _model(data, mf_lightgcn_channels=4, use_gate=False)
    fixed.mf.load_lightgcn(*lightgcn)
    emb = fixed.embed(x, edges)
    assert emb.fixed_gate == pytest.approx(1 / 3)
    assert not emb.item_lightgcn[7].any() and emb.item_lightgcn[0].any()  # 7 is cold
    parts = fixed.score(emb, users)
    s_lightgcn = emb.user_lightgcn @ emb.item_lightgcn.t()
    torch.testing.assert_close(parts.score, standard(parts.gnn) / 3 + standard(parts.mf) / 3
                               + standard(s_lightgcn) / 3)
    # A fresh learned gate starts at the same fixed mix.
    learned = _model(data, mf_lightgcn_channels=4)
    learned.mf.load_lightgcn(*lightgcn)
    gate = learned.score(learned.embed(x, edges), users).gate
    torch.testing.assert_close(gate, torch.full_like(gate, 1 / 3))
    assert _model(data, mf_lightgcn_channels=0).embed(x, edges).fixed_gate == 0.5  # ALS alone


def test_lightgcn_settings_are_checked():
    data = _data()
    with pytest.raises(ValueError, match="lightgcn_channels must be >= 0"):
        _model(data, mf_lightgcn_channels=-1)
    plain = _model(data, mf_lightgcn_channels=0)
    assert plain.mf.lightgcn() is None
    with pytest.raises(ValueError, match="built with lightgcn_channels=0"):
        plain.mf.lightgcn_solution(data[INTERACTS].edge_index)
