"""The synthetic catalogue (benchmarks/synthetic_catalog.py) loads through the project's own
loaders with the example data's flags, is deterministic, and carries the structure it claims."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.synthetic_catalog import (
    FORMAT,
    CatalogConfig,
    data_flags,
    main,
    make_catalog,
)
from hybridrec.cli_args import add_data_arguments, load_dataset_from_args
from hybridrec.data.split import make_split
from hybridrec.testing import EXAMPLE_DATA

SMALL = CatalogConfig(num_users=600, num_items=900, num_interactions=12000, seed=3)
FILES = ("interactions.csv", "items.csv", "users.csv", "links.csv", "graph.ttl", "truth.json",
         "catalog.json")


def load(folder: Path):
    """The folder loaded exactly as the CLIs load it, from the flags of :func:`data_flags`."""
    parser = add_data_arguments(argparse.ArgumentParser())
    return load_dataset_from_args(parser.parse_args(data_flags(folder)))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalog")
    manifest = make_catalog(folder, SMALL)
    truth = json.loads((folder / "truth.json").read_text())
    return folder, manifest, truth, load(folder)


def test_flags_are_the_example_flags_with_other_paths(tmp_path):
    flags = data_flags(tmp_path)
    assert len(flags) == len(EXAMPLE_DATA)
    for ours, example in zip(flags, EXAMPLE_DATA):
        if example.startswith("kg/examples/"):
            assert ours == str(tmp_path / Path(example).name)
        else:
            assert ours == example


def test_counts_match_the_manifest_and_the_request(catalog):
    folder, manifest, _, data = catalog
    counts = manifest["counts"]
    assert manifest["format"] == FORMAT
    assert CatalogConfig.from_dict(manifest["config"]) == SMALL  # the parameters round-trip
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no tmp files left
    assert (data.num_users, data.num_items) == (SMALL.num_users, SMALL.num_items)
    assert len(data.interactions) == counts["interactions"] == SMALL.num_interactions
    assert counts["new_releases"] == round(SMALL.new_release_fraction * SMALL.num_items)
    assert len(data.kg_triples) == counts["kg_triples"]
    assert data.interactions.timestamp is not None and data.interactions.rating is not None
    assert set(np.unique(data.interactions.rating)) <= {1, 2, 3, 4, 5}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    config = CatalogConfig(num_users=60, num_items=80, num_interactions=900, seed=11)
    make_catalog(tmp_path / "a", config)
    make_catalog(tmp_path / "b", config)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert main(["--out", str(tmp_path / "c"), "--users", "60", "--items", "80",
                 "--interactions", "900", "--seed", "12"]) == 0
    for name in ("interactions.csv", "items.csv", "graph.ttl"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_every_item_has_its_entity_with_author_publisher_and_text(catalog):
    _, _, _, data = catalog
    assert sorted(data.item_entity[:, 0].tolist()) == list(range(data.num_items))
    relation = {name: data.relations.index(name) for name in
                ("schema:author", "schema:publisher", "schema:isPartOf", "dcterms:subject")}
    kg = data.kg_triples
    entity_of = dict(data.item_entity[:, ::-1].tolist())  # entity -> item
    for name in ("schema:author", "schema:publisher"):
        heads = kg[kg[:, 1] == relation[name], 0]
        books = {entity_of[h] for h in heads.tolist() if h in entity_of}
        assert books == set(range(data.num_items))
    in_series = {entity_of[h] for h in kg[kg[:, 1] == relation["schema:isPartOf"], 0].tolist()}
    with_subject = {entity_of[h] for h in kg[kg[:, 1] == relation["dcterms:subject"], 0].tolist()}
    assert 0.3 < len(in_series) / data.num_items < 0.8
    assert 0.8 < len(with_subject) / data.num_items < 1.0  # some headings are missing
    titled = [data.entity_text[e] for e in data.item_entity[:, 1]]
    assert all(titled)  # every book has its schema:name
    assert all(data.item_table["title"]) and all(data.item_table["year"])


def test_subject_hierarchy(catalog):
    _, manifest, truth, data = catalog
    broader = data.kg_triples[data.kg_triples[:, 1] == data.relations.index("skos:broader")]
    assert len(broader) == len(truth["topics"]) == 24
    parents = set(broader[:, 2].tolist())
    assert len(parents) == manifest["counts"]["broad_subjects"] == 6
    labels = {data.entity_text[e] for e in parents}
    assert {"History", "Science"} <= labels
    narrow = {data.entity_text[e] for e in broader[:, 0].tolist()}
    assert narrow == {topic["label"] for topic in truth["topics"]}


def test_new_releases_are_read_only_late_and_take_a_share_of_late_reads(catalog):
    _, manifest, _, data = catalog
    late_start = manifest["window"]["late_start_epoch"]
    new = np.zeros(data.num_items, bool)
    new[data.items.indices(manifest["new_releases"])] = True
    inter = data.interactions
    read_new = new[inter.item_index]
    assert read_new.any()
    assert (inter.timestamp[read_new] >= late_start).all()
    late = inter.timestamp >= late_start
    assert 0.12 < read_new[late].mean() < 0.3
    # Their publication years are the latest of the catalogue.
    years = data.item_table["year"].astype(int)
    assert years[new].min() >= years[~new].max()


def test_user_activity_is_heavy_tailed_and_items_skewed(catalog):
    _, _, _, data = catalog
    per_user = np.bincount(data.interactions.user_index, minlength=data.num_users)
    assert per_user.min() >= SMALL.min_user_items
    assert per_user.max() >= 5 * np.median(per_user)
    per_item = np.sort(np.bincount(data.interactions.item_index, minlength=data.num_items))[::-1]
    assert per_item[: data.num_items // 10].sum() > 0.25 * per_item.sum()  # uniform: 0.1


def _share_read_again(user_item: np.ndarray, group: np.ndarray) -> float:
    """Over (user, group) pairs where the user read one book of a group of 2+ books: the mean
    share of the group's other books the user also read."""
    num_groups = group.max() + 1
    size = np.bincount(group[group >= 0], minlength=num_groups)
    rows = user_item[group[user_item[:, 1]] >= 0]
    pairs, reads = np.unique(rows[:, 0] * num_groups + group[rows[:, 1]], return_counts=True)
    g = pairs % num_groups
    ok = size[g] >= 2
    return float(((reads[ok] - 1) / (size[g][ok] - 1)).mean())


def test_series_and_authors_drive_choices_beyond_topics(catalog):
    """Readers of one book of a series (or author) read its other books far more often than
    those of a random group of the same size, and more often than those of a group drawn
    within the same topics: a signal that only the KG's schema:isPartOf / schema:author edges
    carry (in a small catalogue a topic's books are few, so topic-matched chance is high)."""
    _, _, truth, data = catalog
    item_of = dict(data.item_entity[:, ::-1].tolist())
    topic = np.asarray(truth["item_topic"])
    user_item = np.stack([data.interactions.user_index, data.interactions.item_index], axis=1)
    rng = np.random.default_rng(0)
    for name in ("schema:isPartOf", "schema:author"):
        group = np.full(data.num_items, -1)
        triples = data.kg_triples[data.kg_triples[:, 1] == data.relations.index(name)]
        for head, _, tail in triples.tolist():
            if head in item_of:  # books, not the series -> author edges
                group[item_of[head]] = tail
        _, group[group >= 0] = np.unique(group[group >= 0], return_inverse=True)
        members = np.flatnonzero(group >= 0)
        anywhere = group.copy()
        anywhere[members] = group[rng.permutation(members)]
        in_topic = group.copy()
        for t in np.unique(topic):
            members = np.flatnonzero((topic == t) & (group >= 0))
            in_topic[members] = group[rng.permutation(members)]
        real = _share_read_again(user_item, group)
        assert real > 3 * _share_read_again(user_item, anywhere), name
        assert real > 1.3 * _share_read_again(user_item, in_topic), name


@pytest.mark.parametrize("kind", ["cold-items", "temporal"])
def test_splits_work_on_it(catalog, kind):
    _, manifest, _, data = catalog
    split = make_split(data, kind, seed=0, cold_fraction=0.1)
    sizes = split.sizes()
    assert sizes["train"] > 0.6 * len(data.interactions) and sizes["test"] > 0
    if kind == "cold-items":
        assert len(split.cold_items) == round(0.1 * len(np.unique(data.interactions.item_index)))
        assert not np.isin(split.train.item_index, split.cold_items).any()
    else:
        # New releases, read late, are (nearly) unseen in training but asked for in test.
        new = data.items.indices(manifest["new_releases"])
        trained = np.isin(new, split.train.item_index)
        tested = np.isin(new, split.test.item_index)
        assert (tested & ~trained).any()
        last_train = np.full(data.num_users, -np.inf)
        np.maximum.at(last_train, split.train.user_index, split.train.timestamp)
        assert (split.test.timestamp >= last_train[split.test.user_index]).all()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="num_interactions"):
        CatalogConfig(num_users=100, num_items=100, num_interactions=100)
    with pytest.raises(ValueError, match="unknown keys"):
        CatalogConfig.from_dict({"num_user": 3})
