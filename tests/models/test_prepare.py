"""prepare_graph: ablations, duplicate relations, leaf entities."""
import torch
from torch_geometric.data import HeteroData

from hybridrec.models import prepare_graph
from hybridrec.graph import INTERACTS, REV_INTERACTS


def _data() -> HeteroData:
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes, data["entity"].num_nodes = 2, 4, 5
    data["user"].x, data["item"].x = torch.randn(2, 3), torch.randn(4, 3)
    data["entity"].x = torch.randn(5, 3)
    ui = torch.tensor([[0, 0, 1], [0, 1, 3]])
    data[INTERACTS].edge_index, data[REV_INTERACTS].edge_index = ui, ui.flip(0)
    # Entity 1 links items 0 and 2 (kept); entity 3 only item 1 (a leaf); entities 0, 2, 4 none.
    ie = torch.tensor([[0, 2, 1], [1, 1, 3]])
    data["item", "genre", "entity"].edge_index = ie
    data["entity", "rev_genre", "item"].edge_index = ie.flip(0)
    # The same pairs stated again by an inverse relation.
    data["item", "rev_genre_films", "entity"].edge_index = ie.clone()
    data["entity", "genre_films", "item"].edge_index = ie.flip(0).clone()
    return data


def test_duplicates_and_leaves_are_dropped_and_entities_renumbered():
    has_text = torch.tensor([False, True, False, False, True])
    data = _data()
    out = prepare_graph(data, entity_has_text=has_text)
    assert ("item", "rev_genre_films", "entity") not in out.edge_types
    assert ("entity", "genre_films", "item") not in out.edge_types
    # Each dropped duplicate names its kept twin (items added later travel on it).
    assert out.edge_aliases == {("item", "rev_genre_films", "entity"): ("item", "genre", "entity"),
                                ("entity", "genre_films", "item"): ("entity", "rev_genre", "item")}
    assert out["entity"].num_nodes == 1 and out["entity"].n_id.tolist() == [1]
    assert out["item", "genre", "entity"].edge_index.tolist() == [[0, 2], [0, 0]]
    assert out["entity"].has_text.tolist() == [True]
    torch.testing.assert_close(out["entity"].x, data["entity"].x[[1]])


def test_without_pruning_every_entity_stays():
    out = prepare_graph(_data(), prune_leaf_entities=False)
    assert out["entity"].num_nodes == 5 and out["entity"].n_id.tolist() == [0, 1, 2, 3, 4]
    assert out["item", "genre", "entity"].edge_index.size(1) == 3


def test_ablations_drop_text_and_kg():
    no_text = prepare_graph(_data(), use_text=False)
    assert all("x" not in no_text[t] for t in no_text.node_types)
    no_kg = prepare_graph(_data(), use_kg=False)
    assert no_kg.node_types == ["user", "item"]
    assert set(no_kg.edge_types) == {INTERACTS, REV_INTERACTS}
