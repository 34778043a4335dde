"""GNNScorer: a dot product of user and item vectors, the text channel inside them, cold
nodes without ID signal, and fold-in equal to the forward pass for nodes of the graph."""
import pytest
import torch
import torch.nn.functional as F

from hybridrec.config import ModelConfig
from hybridrec.data.split import random_split
from hybridrec.graph import INTERACTS, build_graph
from hybridrec.models import GNNScorer, prepare_graph


@pytest.fixture(scope="module")
def graph(example_dataset):
    split = random_split(example_dataset, (0.6, 0.2, 0.2), seed=0)
    g = torch.Generator().manual_seed(0)
    d = example_dataset
    return prepare_graph(build_graph(d, split.train,
                                     user_x=torch.randn(d.num_users, 8, generator=g),
                                     item_x=torch.randn(d.num_items, 8, generator=g),
                                     entity_x=torch.randn(d.num_entities, 8, generator=g)),
                         prune_leaf_entities=False)


def _inputs(graph):
    return ({t: graph[t].x for t in graph.node_types if "x" in graph[t]},
            dict(graph.edge_index_dict))


def test_scores_are_dot_products_with_the_text_channel_inside(graph):
    torch.manual_seed(0)
    model = GNNScorer.from_config(ModelConfig(hidden_channels=8), graph).eval()
    x, edges = _inputs(graph)
    users, items = model.embed(x, edges)
    assert users.shape == (graph["user"].num_nodes, 16) and items.shape[1] == 16
    pairs = torch.tensor([[0, 1, 2], [3, 4, 5]])
    torch.testing.assert_close(model(x, edges, pairs),
                               (users[pairs[0]] * items[pairs[1]]).sum(-1))
    # The text part is the text-only cosine of centred item texts, times e^gamma.
    item_text = F.normalize(x["item"] - x["item"].mean(0), dim=-1)
    torch.testing.assert_close(items[:, 8:], item_text)
    with torch.no_grad():
        model.text_log_scale.fill_(1.0)
    assert model.text_scale() == pytest.approx(torch.e)
    no_text = GNNScorer.from_config(ModelConfig(hidden_channels=8, text_channel=False), graph)
    assert no_text.embed(x, edges)[0].shape[1] == 8


def test_cold_users_lose_their_id_embedding(graph):
    torch.manual_seed(0)
    model = GNNScorer.from_config(ModelConfig(hidden_channels=8, text_channel=False),
                                  graph).eval()
    x, edges = _inputs(graph)
    layers = model.gnn.layer_outputs(x, edges, {"user": torch.ones(graph["user"].num_nodes,
                                                                   dtype=torch.bool)})
    text_only = model.gnn.text_input("user", x["user"], graph["user"].num_nodes)
    torch.testing.assert_close(layers[0]["user"], text_only)


def test_fold_in_of_every_item_equals_the_forward_pass(graph):
    torch.manual_seed(0)
    model = GNNScorer.from_config(ModelConfig(hidden_channels=8), graph).eval()
    x, edges = _inputs(graph)
    ui = edges[INTERACTS]
    cold = {"user": torch.bincount(ui[0], minlength=graph["user"].num_nodes) == 0,
            "item": torch.bincount(ui[1], minlength=graph["item"].num_nodes) == 0}
    with torch.no_grad():
        layers = model.gnn.layer_outputs(x, edges, cold)
        z = model.gnn(x, edges, cold)["item"]
        n = graph["item"].num_nodes
        in_edges = {e: ei.clone() for e, ei in edges.items() if e[2] == "item"}  # row = dst
        in_edges = {e: torch.stack([ei[1], ei[0]]) for e, ei in in_edges.items()}
        folded = model.gnn.fold_in("item", layers[0]["item"], in_edges, layers)
    assert folded.shape == (n, 8)
    torch.testing.assert_close(folded, z, rtol=1e-5, atol=1e-5)


def test_new_nodes_linked_to_each_other_read_each_others_states(graph):
    """Fold-in of every item at once, item -> item sources named as new rows (``M + j``):
    the new rows' states are then the trained ones, so the result is the forward pass."""
    linked = graph.clone()
    n = graph["item"].num_nodes
    sequel = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])  # a ring of items
    linked["item", "sequel", "item"].edge_index = sequel
    torch.manual_seed(0)
    model = GNNScorer.from_config(ModelConfig(hidden_channels=8), linked).eval()
    x, edges = _inputs(linked)
    ui = edges[INTERACTS]
    cold = {"user": torch.bincount(ui[0], minlength=graph["user"].num_nodes) == 0,
            "item": torch.bincount(ui[1], minlength=n) == 0}
    with torch.no_grad():
        layers = model.gnn.layer_outputs(x, edges, cold)
        z = model.gnn(x, edges, cold)["item"]
        in_edges = {e: torch.stack([ei[1], ei[0] + (n if e[0] == "item" else 0)])
                    for e, ei in edges.items() if e[2] == "item"}
        folded = model.gnn.fold_in("item", layers[0]["item"], in_edges, layers)
    torch.testing.assert_close(folded, z, rtol=1e-5, atol=1e-5)


def test_a_graph_without_interactions_is_rejected(graph):
    metadata = (graph.node_types, [e for e in graph.edge_types if e != INTERACTS])
    with pytest.raises(ValueError, match="no \\('user', 'interacts', 'item'\\)"):
        GNNScorer(metadata, {t: graph[t].num_nodes for t in graph.node_types}, {"item": 8})


def test_fold_in_supports_rgcn_only(graph):
    model = GNNScorer.from_config(ModelConfig(hidden_channels=8, conv="sage"), graph)
    with pytest.raises(ValueError, match="conv='rgcn' only"):
        model.gnn.fold_in("item", torch.zeros(1, 8), {}, [])
