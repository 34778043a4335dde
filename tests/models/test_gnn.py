"""The GNN branch: the fused relational layer against PyG's HeteroConv, masks, every operator."""
import pytest
import torch
from torch_geometric.nn import HeteroConv, SAGEConv

from hybridrec.models.gnn import HeteroGNN, RelationalLayer, RelationalPlanner

NUM = {"user": 5, "item": 7, "entity": 4}
EDGE_TYPES = [("user", "interacts", "item"), ("item", "rev_interacts", "user"),
              ("item", "genre", "entity"), ("entity", "rev_genre", "item"),
              ("item", "sequel", "item")]

pytestmark = pytest.mark.usefixtures("one_thread")


def _graph(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ui = torch.unique(torch.stack([torch.randint(5, (20,), generator=g),
                                   torch.randint(7, (20,), generator=g)]), dim=1)
    ie = torch.unique(torch.stack([torch.randint(7, (9,), generator=g),
                                   torch.randint(4, (9,), generator=g)]), dim=1)
    ii = torch.tensor([[0, 1, 2], [1, 2, 3]])
    return {EDGE_TYPES[0]: ui, EDGE_TYPES[1]: ui.flip(0), EDGE_TYPES[2]: ie,
            EDGE_TYPES[3]: ie.flip(0), EDGE_TYPES[4]: ii}


def test_relational_layer_equals_heteroconv_of_sage():
    torch.manual_seed(0)
    edges = _graph()
    h = {t: torch.randn(n, 8) for t, n in NUM.items()}
    reference = HeteroConv({e: SAGEConv(8, 8, root_weight=False, bias=False) for e in EDGE_TYPES},
                           aggr="sum")
    layer = RelationalLayer(len(EDGE_TYPES), 8)
    with torch.no_grad():
        for r, e in enumerate(EDGE_TYPES):
            layer.weight[r] = reference.convs[e].lin_l.weight.t()
    expected = reference(h, edges)
    got = layer(h, RelationalPlanner(EDGE_TYPES, NUM, "mean")(edges))
    assert set(got) == set(expected)
    for t in expected:
        torch.testing.assert_close(got[t], expected[t], rtol=1e-5, atol=1e-6)


def test_relational_layer_gradient_matches_dense():
    torch.manual_seed(1)
    edges = _graph(1)
    h = {t: torch.randn(n, 4, requires_grad=True) for t, n in NUM.items()}
    layer = RelationalLayer(len(EDGE_TYPES), 4)
    out = layer(h, RelationalPlanner(EDGE_TYPES, NUM)(edges))
    sum(v.square().sum() for v in out.values()).backward()
    fused = {t: v.grad.clone() for t, v in h.items()}
    for v in h.values():
        v.grad = None
    # The same layer by dense matrices.
    dense = {t: torch.zeros(n, 4) for t, n in NUM.items()}
    for r, (src, rel, dst) in enumerate(EDGE_TYPES):
        ei = edges[(src, rel, dst)]
        a = torch.zeros(NUM[dst], NUM[src])
        a[ei[1], ei[0]] = 1.0
        a = a / a.sum(1, keepdim=True).clamp(min=1)
        dense[dst] = dense[dst] + a @ h[src] @ layer.weight[r]
    sum(v.square().sum() for v in dense.values()).backward()
    for t in NUM:
        torch.testing.assert_close(fused[t], h[t].grad, rtol=1e-4, atol=1e-5)


def test_lightgcn_mode_is_symmetric_normalised_sum():
    edges = {EDGE_TYPES[0]: torch.tensor([[0, 0, 1], [0, 1, 1]])}
    h = {"user": torch.tensor([[1.0], [2.0]]), "item": torch.tensor([[3.0], [5.0]])}
    layer = RelationalLayer(1, 1, weight=False)
    out = layer(h, RelationalPlanner(EDGE_TYPES[:1], {"user": 2, "item": 2}, "sym")(edges))
    # item 0 <- user 0 (deg 2, deg 1); item 1 <- users 0 (deg 2) and 1 (deg 1), item deg 2.
    expected = torch.tensor([[1.0 / (2 ** 0.5)], [1.0 / 2 + 2.0 / (2 ** 0.5)]])
    torch.testing.assert_close(out["item"], expected)


def test_planner_reuses_unchanged_edge_types_only():
    edges = _graph()
    planner = RelationalPlanner(EDGE_TYPES, NUM)
    first = planner(edges)
    again = planner(edges)
    assert again.adj_t["entity"] is first.adj_t["entity"]
    changed = dict(edges)
    changed[EDGE_TYPES[0]] = edges[EDGE_TYPES[0]][:, :-1].clone()
    third = planner(changed)
    assert third.adj_t["entity"] is first.adj_t["entity"]  # untouched target type
    assert third.adj_t["item"] is not first.adj_t["item"]
    assert third.adj_t["item"]._nnz() == first.adj_t["item"]._nnz() - 1


@pytest.mark.parametrize("conv", ["rgcn", "sage", "graph", "lightgcn", "gat", "hgt"])
@pytest.mark.parametrize("num_layers", [0, 2])
def test_every_operator_gives_one_embedding_per_node(conv, num_layers):
    torch.manual_seed(0)
    gnn = HeteroGNN((list(NUM), EDGE_TYPES), NUM, {"user": 6, "item": 6},
                    {"user": True}, hidden_channels=8, num_layers=num_layers, conv=conv)
    x = {"user": torch.randn(5, 6), "item": torch.randn(7, 6)}
    out = gnn(x, _graph())
    assert {t: tuple(v.shape) for t, v in out.items()} == {t: (n, 8) for t, n in NUM.items()}
    assert all(torch.isfinite(v).all() for v in out.values())
    out["item"].sum().backward()
    assert gnn.lin_in["item"].weight.grad is not None
    assert f"conv={conv!r}" in str(gnn)


def test_unknown_operator_is_rejected():
    with pytest.raises(ValueError, match="conv must be one of"):
        HeteroGNN((list(NUM), EDGE_TYPES), NUM, {}, conv="gcn")


def test_text_rows_and_id_rows():
    torch.manual_seed(0)
    has_text = torch.tensor([True, False, True, False])
    gnn = HeteroGNN((list(NUM), EDGE_TYPES), NUM, {"user": 3, "item": 3, "entity": 3},
                    {"user": True, "entity": ~has_text}, {"entity": has_text},
                    hidden_channels=4, num_layers=0)
    x = {t: torch.randn(n, 3) for t, n in NUM.items()}
    x["entity"][~has_text] = 0.0
    h = gnn.input_embeddings(x)
    # Entities without text: their ID embedding only (no projection bias added).
    torch.testing.assert_close(h["entity"][1], gnn.emb["entity"].weight[1])
    # Entities with text: the projection only.
    torch.testing.assert_close(h["entity"][0], gnn.lin_in["entity"](x["entity"][0]))
    # Items have text and no IDs; masking a user zeroes its ID part.
    assert "item" not in gnn.emb
    masked = gnn.input_embeddings(x, {"user": torch.tensor([True, False, False, False, False])})
    torch.testing.assert_close(masked["user"][0], gnn.lin_in["user"](x["user"][0]))
