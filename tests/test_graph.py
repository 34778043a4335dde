"""The graph builder: node/edge types and counts, merged entities, no leakage, networkx export."""
import numpy as np
import pytest
import torch
from torch_geometric.nn import SAGEConv, to_hetero

from hybridrec.data import Dataset, IdMap, Interactions
from hybridrec.data.split import random_split
from hybridrec.graph import (
    INTERACTS,
    REV_INTERACTS,
    build_graph,
    relation_names,
    reverse_edge_type,
    sanitize_relation,
    to_networkx,
)


def tiny() -> Dataset:
    """3 users, 4 items, 7 entities; e0 stands for i0, e1 for i1 and for i2."""
    entities = IdMap(["e0", "e1", "e2", "e3", "e4", "e5", "genre:Drama"])
    relations = IdMap(["film.film.actor", "film.actor.film", "film.film.sequel", "schema:genre",
                       "genre", "occupation"])
    r = {name: k for k, name in enumerate(relations.ids)}
    kg = [
        (0, r["film.film.actor"], 3),   # i0 -> e3
        (0, r["film.film.actor"], 3),   # duplicate
        (3, r["film.actor.film"], 1),   # e3 -> i1, e3 -> i2
        (0, r["film.film.sequel"], 1),  # i0 -> i1, i0 -> i2
        (4, r["schema:genre"], 5),      # e4 -> e5
    ]
    item_attributes = [(3, r["genre"], 6), (0, r["genre"], 6)]
    user_attributes = [(0, r["occupation"], 5), (2, r["occupation"], 5)]
    inter = Interactions([0, 0, 1, 1, 2, 2, 0], [0, 1, 1, 2, 3, 0, 0])  # (0, 0) twice
    return Dataset(
        "tiny", IdMap(["u1", "u2", "u3"]), IdMap(["i0", "i1", "i2", "i3"]), inter,
        entities=entities, relations=relations,
        item_table={"title": ["Heat", "Up", "Up", ""], "year": ["1995", "2009", "1989", ""]},
        kg_triples=kg, item_attributes=item_attributes, user_attributes=user_attributes,
        item_entity=[(0, 0), (1, 1), (2, 1)],
        entity_text=("", "", "", "Al Pacino", "", "", "Drama"),
    )


def edges(data, edge_type) -> set[tuple[int, int]]:
    return set(map(tuple, data[edge_type].edge_index.t().tolist()))


def test_node_and_edge_types_with_merged_entities():
    data_set = tiny()
    data = build_graph(data_set, data_set.interactions)
    assert data.node_types == ["user", "item", "entity"]
    assert (data["user"].num_nodes, data["item"].num_nodes, data["entity"].num_nodes) == (3, 4, 7)
    expected = {
        INTERACTS: {(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (2, 0)},  # deduplicated
        ("item", "film_film_actor", "entity"): {(0, 3)},
        ("entity", "film_actor_film", "item"): {(3, 1), (3, 2)},
        ("item", "film_film_sequel", "item"): {(0, 1), (0, 2)},
        ("entity", "schema_genre", "entity"): {(4, 5)},
        ("item", "genre", "entity"): {(3, 6), (0, 6)},
        ("user", "occupation", "entity"): {(0, 5), (2, 5)},
    }
    forward = [t for t in data.edge_types if not t[1].startswith("rev_")]
    assert set(forward) == set(expected)
    for edge_type, pairs in expected.items():
        assert edges(data, edge_type) == pairs, edge_type
        reverse = reverse_edge_type(edge_type)
        assert edges(data, reverse) == {(d, s) for s, d in pairs}
        assert data[edge_type].edge_index.dtype == torch.long
    assert len(data.edge_types) == 2 * len(expected)
    assert data.relation_names == {
        "film_film_actor": "film.film.actor", "film_actor_film": "film.actor.film",
        "film_film_sequel": "film.film.sequel", "schema_genre": "schema:genre",
        "genre": "genre", "occupation": "occupation"}
    # Merged entities (e0, e1) keep their index but have no edges.
    for edge_type in data.edge_types:
        for side, node_type in ((0, edge_type[0]), (1, edge_type[2])):
            if node_type == "entity":
                assert not {0, 1} & set(data[edge_type].edge_index[side].tolist())
    data.validate()


def test_only_training_interactions_become_edges():
    data_set = tiny()
    split_rows = np.array([True, True, False, True, False, True, True])
    train = data_set.interactions.select(split_rows)
    held_out = data_set.interactions.select(~split_rows)
    data = build_graph(data_set, train)
    graph_pairs = edges(data, INTERACTS)
    assert graph_pairs == {(0, 0), (0, 1), (1, 2), (2, 0)}
    assert not graph_pairs & set(zip(held_out.user_index.tolist(), held_out.item_index.tolist()))
    assert edges(data, REV_INTERACTS) == {(i, u) for u, i in graph_pairs}


def test_features_are_attached_and_checked():
    data_set = tiny()
    data = build_graph(data_set, data_set.interactions, item_x=torch.ones(4, 5),
                       entity_x=np.zeros((7, 2), np.float32))
    assert data["item"].x.shape == (4, 5) and data["entity"].x.shape == (7, 2)
    assert "x" not in data["user"]
    with pytest.raises(ValueError, match=r"user_x must have shape \[3, F\]"):
        build_graph(data_set, data_set.interactions, user_x=torch.ones(2, 5))


def test_relation_names_are_valid_module_keys_and_unique():
    assert sanitize_relation("film.film.actor") == "film_film_actor"
    assert sanitize_relation("http://schema.org/genre") == "http_schema_org_genre"
    assert sanitize_relation("::") == "relation"
    names = relation_names(IdMap(["a.b", "a:b", "rev_x", "interacts", "a_b"]))
    assert names == {"a_b": "a.b", "a_b_2": "a:b", "kg_rev_x": "rev_x",
                     "kg_interacts": "interacts", "a_b_3": "a_b"}


def test_graph_runs_through_to_hetero():
    data_set = tiny()
    data = build_graph(data_set, data_set.interactions, user_x=torch.randn(3, 4),
                       item_x=torch.randn(4, 4), entity_x=torch.randn(7, 4))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = SAGEConv((-1, -1), 8)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    model = to_hetero(Net(), data.metadata(), aggr="sum")
    out = model(data.x_dict, data.edge_index_dict)
    assert out["item"].shape == (4, 8) and out["user"].shape == (3, 8)


def test_to_networkx_names_and_relations():
    data_set = tiny()
    graph = to_networkx(data_set, data_set.interactions)
    nodes = set(graph.nodes)
    assert {"user:u1", "item:Heat (1995)", "item:Up (2009)", "item:Up (1989)", "item:i3",
            "entity:Al Pacino", "entity:Drama", "entity:e4"} <= nodes
    assert "entity:e0" not in nodes and "entity:e1" not in nodes  # merged into items
    assert graph.nodes["item:Heat (1995)"] == {"type": "item", "index": 0, "id": "i0",
                                               "label": "Heat (1995)"}
    sequel = graph.get_edge_data("item:Heat (1995)", "item:Up (2009)")
    assert [e["relation"] for e in sequel.values()] == ["film.film.sequel"]
    assert graph.get_edge_data("user:u1", "item:Heat (1995)")[0]["relation"] == "interacts"
    hetero = build_graph(data_set, data_set.interactions)
    forward = sum(e.size(1) for t, e in hetero.edge_index_dict.items() if not t[1].startswith("rev_"))
    assert graph.number_of_edges() == forward


def test_to_networkx_disambiguates_equal_titles():
    data_set = Dataset("dup", IdMap(["u"]), IdMap(["a", "b"]), Interactions([0, 0], [0, 1]),
                       item_table={"title": ["Hamlet", "Hamlet"]})
    assert {"item:Hamlet [a]", "item:Hamlet [b]"} <= set(to_networkx(data_set, data_set.interactions))


@pytest.mark.slow
def test_ml100k_graph(ml100k):
    split = random_split(ml100k, seed=0)
    data = build_graph(ml100k, split.train)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (943, 1682)
    assert data["entity"].num_nodes == ml100k.num_entities
    assert data[INTERACTS].edge_index.size(1) == len(split.train)
    assert not edges(data, INTERACTS) & set(zip(split.test.user_index.tolist(),
                                                 split.test.item_index.tolist()))
    assert data[("item", "film_film_actor", "entity")].edge_index.size(1) > 10_000
    assert data[("item", "genre", "entity")].edge_index.size(1) == len(ml100k.item_attributes)
    assert data.relation_names["film_film_actor"] == "film.film.actor"
    assert set(data.relation_names.values()) == set(ml100k.relations.ids)
    # Links are one-to-one in ml-100k, so each distinct KG triple gives exactly one edge.
    kg = sum(e.size(1) for t, e in data.edge_index_dict.items() if t[1].startswith("film_"))
    assert kg == len(np.unique(ml100k.kg_triples, axis=0)) == 91_631
    data.validate()
