"""The shipped example data set (kg/examples) loads, and loads the same in every form."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from hybridrec.data.tabular import load_csv

EXAMPLES = Path(__file__).resolve().parents[2] / "kg" / "examples"
EX = "http://example.org/kg/"
ROLES = dict(
    item_text_columns=("title", "year"),
    item_categorical_columns=("genre",),
    user_text_columns=("age",),
    user_categorical_columns=("gender", "occupation"),
)


def load(kg: str | None = None, **kwargs):
    paths = {name: EXAMPLES / f"{name}.csv" for name in ("interactions", "items", "users")}
    if kg is not None:
        kwargs["kg"] = EXAMPLES / kg
        kwargs.setdefault("item_iri_column", "iri")
    return load_csv(paths["interactions"], paths["items"], paths["users"], **ROLES, **kwargs)


def assert_same(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "interactions":
            for part in ("user_index", "item_index", "rating", "timestamp"):
                assert np.array_equal(getattr(x, part), getattr(y, part)), part
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y), field.name
        elif field.name.endswith("_table"):
            assert list(x) == list(y) and all(np.array_equal(x[c], y[c]) for c in x), field.name
        else:
            assert x == y, field.name


@pytest.fixture(scope="module")
def turtle():
    return load("graph.ttl")


@pytest.mark.parametrize("kg", ["graph.rdf", "graph.jsonld"])
def test_every_rdf_form_gives_the_same_dataset(turtle, kg):
    assert_same(turtle, load(kg))


def test_link_table_and_iri_column_give_the_same_dataset(turtle):
    assert_same(turtle, load("graph.ttl", item_iri_column=None, links=EXAMPLES / "links.csv"))


def test_the_example_holds_what_its_readme_says(turtle):
    data = turtle
    info = data.info()
    assert (data.num_users, data.num_items, len(data.interactions)) == (10, 13, 47)
    assert info["kg_triples"] == 72 and info["linked_items"] == 13
    assert info["items_without_interactions"] == 1
    assert data.item_degree()[data.items.index("m13")] == 0  # Lost in Translation: a cold item
    assert set(data.relations.ids) == {"genre", "gender", "occupation", "rdf:type", "schema:actor",
                                       "schema:director", "schema:parent"}
    godfather = data.entities.index(EX + "the_godfather")
    assert data.entity_text[godfather].startswith("The Godfather: The aging head")  # English label
    assert data.entity_text[data.entities.index(EX + "sofia_coppola")] == "Sofia Coppola"
    assert data.entity_text[data.entities.index("genre:Crime")] == "Crime"
    genres = data.item_attributes[data.item_attributes[:, 0] == data.items.index("m08")]
    assert sorted(data.entity_text[t] for t in genres[:, 2]) == ["Action", "Thriller"]
    assert data.item_table["title"][data.items.index("m08")] == "Mission: Impossible"
    assert data.interactions.rating.min() == 1 and data.interactions.rating.max() == 5
    # Cold item reached through the graph: Bill Murray acts in m12 (rated) and m13 (not).
    murray = data.entities.index(EX + "bill_murray")
    films = {h for h, _, t in data.kg_triples.tolist() if t == murray}
    linked = {e: i for i, e in data.item_entity.tolist()}
    assert {data.items.ids[linked[f]] for f in films} == {"m12", "m13"}


def test_the_csv_files_load_on_their_own():
    data = load()
    assert (data.num_users, data.num_items, len(data.interactions)) == (10, 13, 47)
    assert len(data.kg_triples) == 0 and len(data.item_entity) == 0
    assert set(data.relations.ids) == {"genre", "gender", "occupation"}
    assert all(e.split(":")[0] in ("genre", "gender", "occupation") for e in data.entities.ids)
    assert len(load_csv(EXAMPLES / "interactions.csv").interactions) == 47


def test_the_readme_example_runs(monkeypatch, capsys):
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(from hybridrec.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(EXAMPLES.parents[1])
    exec(compile(code, "kg/examples/README.md", "exec"), {})
    assert "72" in capsys.readouterr().out
