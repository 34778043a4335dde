"""KnowledgePaths on the example graph: direct links first, then two hops through the rarest
shared node, the limit honoured, and items added later indexed both ways."""
from hybridrec.explain import KnowledgePaths


def test_paths_through_rarer_shared_nodes_come_first(example_dataset):
    paths = KnowledgePaths(example_dataset)
    item = example_dataset.items.index
    heat = item("m01")
    history = [item("m02"), item("m04")]  # The Godfather (Al Pacino), Goodfellas (De Niro)
    found = [p.text for p in paths.paths(history, heat, limit=5)]
    assert "Al Pacino" in found[0]  # shared by 2 films, before De Niro's 4 and the genres
    assert "Robert De Niro" in found[1]
    assert all("Heat" in text for text in found) and len(set(found)) == len(found)
    assert [p.text for p in paths.paths(history, heat, limit=1)] == found[:1]
    assert paths.paths([heat], heat) == []  # an item is no path to itself


def test_an_added_item_is_a_path_end_both_ways(example_dataset):
    paths = KnowledgePaths(example_dataset)
    item = example_dataset.items.index
    heat, new = item("m01"), example_dataset.num_items
    director = next(node for label, _, node in paths.facts[heat] if label == "Director")
    paths.add_item(new, "Thief", [(example_dataset.relations.index("schema:director"),
                                   director, False)])
    assert "Thief" in paths.paths([new], heat, limit=1)[0].text
    assert "Heat" in paths.paths([heat], new, limit=1)[0].text
