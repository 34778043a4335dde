"""IdMap, Dataset and the table-assembly policies of build_dataset."""
import logging

import numpy as np
import pandas as pd
import pytest

from hybridrec.data import DataError, Dataset, IdMap, Interactions
from hybridrec.data.build import build_dataset


def frame(rows, columns):
    table = pd.DataFrame(rows, columns=columns)
    table.index = np.arange(1, len(table) + 1)
    return table


def test_idmap_keeps_exact_strings_and_order():
    ids = IdMap.from_values(["01", "1", "1.0", "01", "12345678901234567890"])
    assert ids.ids == ("01", "1", "1.0", "12345678901234567890")
    assert ids.indices(["1.0", "nope"]).tolist() == [2, -1]
    assert IdMap(ids.to_list()) == ids
    with pytest.raises(ValueError, match="duplicate id '1'"):
        IdMap(["1", "2", "1"])


def test_dataset_is_read_only_and_checks_ranges():
    data = Dataset("t", IdMap(["a"]), IdMap(["x", "y"]), Interactions([0, 0], [0, 1]))
    with pytest.raises(ValueError):
        data.interactions.item_index[0] = 1
    with pytest.raises(TypeError):
        data.item_table["title"] = np.array(["a", "b"])
    with pytest.raises(ValueError, match="item_index out of range"):
        Dataset("t", IdMap(["a"]), IdMap(["x"]), Interactions([0], [3]))


def test_build_policies_duplicates_keep_latest(caplog):
    inter = frame([("u1", "i1", 1.0, 10.0), ("u1", "i1", 5.0, 20.0), ("u2", "i2", 3.0, 5.0)],
                  ["user_id", "item_id", "rating", "timestamp"])
    with caplog.at_level(logging.WARNING):
        data = build_dataset("t", inter)
    assert len(data.interactions) == 2
    assert data.interactions.rating.tolist() == [5.0, 3.0]
    assert "1 repeated (user, item) rows dropped" in caplog.text


def test_build_categorical_columns_become_attribute_triples():
    items = frame([("i1", "Heat", "Action|Crime"), ("i2", "Up", "Animation")],
                  ["item_id", "title", "genre"])
    inter = frame([("u1", "i1"), ("u1", "i2")], ["user_id", "item_id"])
    data = build_dataset("t", inter, items=items, item_text_columns=("title",),
                         item_categorical_columns=("genre",), separators={"genre": "|"})
    assert data.relations.ids == ("genre",)
    assert data.entity_text == ("Action", "Crime", "Animation")
    triples = {(data.items.ids[h], data.entities.ids[t]) for h, _, t in data.item_attributes}
    assert triples == {("i1", "genre:Action"), ("i1", "genre:Crime"), ("i2", "genre:Animation")}
    assert data.item_table["title"].tolist() == ["Heat", "Up"]


@pytest.mark.parametrize("column,bad,expected", [
    ("user_id", "u9", "user listed in users.csv"),
    ("item_id", "i9", "item listed in items.csv"),
])
def test_build_rejects_unknown_ids_with_row(column, bad, expected):
    users = frame([("u1",)], ["user_id"])
    items = frame([("i1",)], ["item_id"])
    rows = [("u1", "i1"), ("u1", "i1")]
    rows[1] = ("u1", bad) if column == "item_id" else (bad, "i1")
    inter = frame(rows, ["user_id", "item_id"])
    with pytest.raises(DataError) as err:
        build_dataset("t", inter, users, items,
                      sources={"interactions": "ratings.csv", "users": "users.csv", "items": "items.csv"})
    assert str(err.value).startswith(f"ratings.csv row 2, column '{column}'")
    assert expected in str(err.value) and repr(bad) in str(err.value)


def test_build_rejects_links_to_unknown_entities_and_duplicate_table_ids():
    inter = frame([("u1", "i1")], ["user_id", "item_id"])
    links = frame([("i1", "m.1"), ("i1", "m.404")], ["item_id", "entity_id"])
    with pytest.raises(DataError, match=r"links.csv row 2, column 'entity_id'.*'m.404'"):
        build_dataset("t", inter, kg_triples=[("m.1", "r", "m.2")], item_links=links,
                      sources={"links": "links.csv"})
    items = frame([("i1",), ("i1",)], ["item_id"])
    with pytest.raises(DataError, match=r"items.csv row 2, column 'item_id': a unique id"):
        build_dataset("t", inter, items=items, sources={"items": "items.csv"})
    with pytest.raises(DataError, match="empty table"):
        build_dataset("t", frame([], ["user_id", "item_id"]))


def test_build_warns_when_the_kg_reaches_no_item(caplog):
    inter = frame([("u1", "i1")], ["user_id", "item_id"])
    with caplog.at_level(logging.WARNING):
        data = build_dataset("t", inter, kg_triples=[("m.1", "r", "m.2")])
    assert len(data.item_entity) == 0
    assert "linked to no item" in caplog.text
