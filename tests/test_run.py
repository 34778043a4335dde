"""save_run / load_run: JSON + safetensors only, atomic, and loading gives the same scores."""
import json

import pytest
import torch

from hybridrec.config import ModelConfig, RunConfig, TrainConfig
from hybridrec.data.errors import DataError
from hybridrec.data.split import random_split
from hybridrec.models import graph_inputs
from hybridrec.pipeline import evaluate_run, fit_hybrid
from hybridrec.run import FILES, load_run, load_scorer, save_run
from hybridrec.text.features import NodeFeatures
from hybridrec.trainer import TrainedGNN


pytestmark = pytest.mark.usefixtures("one_thread")


def random_features(dataset, dim=8, seed=0):
    """Random unit text features with half the entities labelled (no encoder needed)."""
    g = torch.Generator().manual_seed(seed)

    def unit(n):
        return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)

    has_text = torch.rand(dataset.num_entities, generator=g) > 0.5
    return NodeFeatures(unit(dataset.num_users), unit(dataset.num_items),
                        unit(dataset.num_entities) * has_text.unsqueeze(-1), has_text,
                        ("",) * dataset.num_users, ("",) * dataset.num_items,
                        ("",) * dataset.num_entities, "random")


@pytest.fixture(scope="module")
def fitted(example_dataset):
    dataset = example_dataset
    split = random_split(dataset, (0.6, 0.2, 0.2), seed=1)
    config = RunConfig(model=ModelConfig(hidden_channels=8, mf_lightgcn_channels=4,
                                         mf_lightgcn_epochs=5),
                       train=TrainConfig(epochs=2, batch_size=16, num_negatives=4,
                                         valid_metric="ndcg@5", show_progress=False))
    fit = fit_hybrid(config, dataset, split, random_features(dataset))
    ids = {"users": dataset.users, "items": dataset.items, "entities": dataset.entities,
           "relations": dataset.relations}
    metrics = evaluate_run(fit.mix, dataset, split)
    return dataset, split, fit.graph, config, fit.gnn, ids, fit.mix, metrics


def _save(fitted, folder):
    dataset, split, graph, config, model, ids, scorer, metrics = fitted
    return save_run(folder, config=config, model=model, scorer=scorer, graph=graph, split=split,
                    ids=ids,
                    dataset=dataset,
                    metrics=metrics, info={"history": []}, log_text="epoch 1: ...\n")


def test_save_then_load_scores_the_same(fitted, tmp_path):
    dataset, split, *_, scorer, metrics = fitted
    folder = _save(fitted, tmp_path / "run")
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no *.tmp-* left behind
    run = load_run(folder)
    users = torch.arange(dataset.num_users)
    assert torch.equal(run.scorer.score(users), scorer.score(users))
    assert torch.equal(load_scorer(folder).score(users), scorer.score(users))
    assert run.config == fitted[3]
    assert run.ids["items"] == dataset.items
    assert (run.split.test.item_index == split.test.item_index).all()
    # Re-evaluating the loaded run, on its own stored split, gives the stored metrics.
    again = evaluate_run(run.scorer, (dataset.num_users, dataset.num_items), run.split)
    assert again == run.metrics == json.loads(json.dumps(metrics))
    assert (folder / "train.log").read_text() == "epoch 1: ...\n"


def test_metrics_are_strict_json_with_lower_case_keys(fitted, tmp_path):
    folder = _save(fitted, tmp_path / "run")
    text = (folder / "metrics.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert {"recall@10", "ndcg@10", "by_popularity", "cold"} <= set(metrics["test"])
    assert "valid" in metrics


def test_saving_over_an_old_run_replaces_it(fitted, tmp_path):
    folder = _save(fitted, tmp_path / "run")
    (folder / "stale.txt").write_text("old")
    _save(fitted, folder)
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_saving_never_replaces_what_is_not_a_run(fitted, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(DataError, match="holds other files"):
        _save(fitted, mine)
    assert (mine / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "report.txt"
    a_file.write_text("mine")
    with pytest.raises(DataError, match="an existing file"):
        _save(fitted, a_file)
    assert a_file.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "report.txt"]


def test_loading_a_broken_folder_names_the_file(fitted, tmp_path):
    folder = _save(fitted, tmp_path / "run")
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataError, match="model.safetensors"):
        load_run(folder)
    (folder / "run.json").write_text("{")
    with pytest.raises(DataError, match="run.json"):
        load_run(folder)


def test_the_gnn_weights_reload_to_the_same_tower(fitted, tmp_path):
    dataset, *_, model, _, scorer, _ = fitted
    run = load_run(_save(fitted, tmp_path / "run"))
    for key, value in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[key], value.cpu()), key
    tower = TrainedGNN(run.model, *graph_inputs(run.graph)).tower()
    torch.testing.assert_close(tower.user, scorer.towers["gnn"].user)
    assert run.scorer.names == ["gnn", "als", "lightgcn"]


# Hostile run folders: every file is checked before anything is allocated, and load_run and
# Recommender.load let nothing but a DataError escape.


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """A run folder with a replayable update (a new user's interactions) to copy and spoil."""
    from hybridrec import Recommender

    folder = _save(fitted, tmp_path_factory.mktemp("hostile") / "base")
    rec = Recommender.load(folder)
    rec.add_interactions([("u01", "m05"), ("newbie", "m01")])
    return rec.save(folder)


def _rewrite(path, change):
    """Read a safetensors file, let ``change(tensors, metadata)`` spoil it, write it back."""
    from safetensors.torch import save_file

    from hybridrec.tensor_files import read_tensors

    tensors, metadata = read_tensors(path)
    change(tensors, metadata)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def _edit_json(path, change):
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def _first_kg_edge(tensors, metadata):
    key = next(k for k in tensors if k.startswith("edge_index.") and "entity" in k)
    return key


SPOILERS = {
    "model is a pickle": lambda f: (f / "model.safetensors").write_bytes(
        __import__("pickle").dumps({"gnn.emb.user.weight": [[0.0]]})),
    "model is a torch.save zip": lambda f: torch.save({"w": torch.zeros(2)},
                                                      f / "model.safetensors"),
    "model cut in half": lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:(f / "model.safetensors").stat().st_size // 2]),
    "model header length 2**62": lambda f: (f / "model.safetensors").write_bytes(
        (2**62).to_bytes(8, "little") + (f / "model.safetensors").read_bytes()[8:]),
    "model tensor renamed": lambda f: _rewrite(
        f / "model.safetensors",
        lambda t, m: t.update({"gnn.emb.user.weightX": t.pop("gnn.emb.user.weight")})),
    "model tensor reshaped": lambda f: _rewrite(
        f / "model.safetensors",
        lambda t, m: t.update({"gnn.emb.user.weight": torch.zeros(3, 5)})),
    "model mask flipped": lambda f: _rewrite(
        f / "model.safetensors",
        lambda t, m: t.update({"gnn.id_mask_user": ~t["gnn.id_mask_user"]})),
    "model weights NaN": lambda f: _rewrite(
        f / "model.safetensors",
        lambda t, m: t["gnn.emb.user.weight"].fill_(float("nan"))),
    "model of another format": lambda f: _rewrite(
        f / "model.safetensors", lambda t, m: m.update({"format": "hybridrec-run/1"})),
    "model is a folder": lambda f: ((f / "model.safetensors").unlink(),
                                    (f / "model.safetensors").mkdir()),
    "config hidden_channels huge": lambda f: _edit_json(
        f / "config.json", lambda c: c["model"].update({"hidden_channels": 10**9})),
    "config hidden_channels other": lambda f: _edit_json(
        f / "config.json", lambda c: c["model"].update({"hidden_channels": 16})),
    "config num_layers huge": lambda f: _edit_json(
        f / "config.json", lambda c: c["model"].update({"num_layers": 10**7})),
    "config missing": lambda f: (f / "config.json").unlink(),
    "ids not lists": lambda f: _edit_json(f / "ids.json", lambda i: i.update({"users": 5})),
    "ids shorter than the data set": lambda f: _edit_json(
        f / "ids.json", lambda i: i.update({"items": i["items"][:-1]})),
    "graph edge out of range": lambda f: _rewrite(
        f / "graph.safetensors",
        lambda t, m: t["edge_index.user__interacts__item"][1].fill_(10**6)),
    "graph node types garbage": lambda f: _rewrite(
        f / "graph.safetensors", lambda t, m: m.update({"node_types": "{]"})),
    "graph relation with a dot": lambda f: _rewrite(
        f / "graph.safetensors",
        lambda t, m: m.update({"edge_types": m["edge_types"].replace("interacts", "a.b")})),
    "graph node count off": lambda f: _rewrite(
        f / "graph.safetensors", lambda t, m: t["num_nodes.item"].fill_(10**9)),
    "features infinite": lambda f: _rewrite(
        f / "features.safetensors", lambda t, m: t["x.item"].fill_(float("inf"))),
    "features one row short": lambda f: _rewrite(
        f / "features.safetensors", lambda t, m: t.update({"x.item": t["x.item"][:-1]})),
    "scorers gate 10**9 wide": lambda f: _rewrite(
        f / "scorers.safetensors", lambda t, m: m.update({"mix": json.dumps(
            {**json.loads(m["mix"]), "gate": {"num_signals": 3, "hidden_channels": 10**9,
                                              "prior": 0.5}})})),
    "scorers tower missing": lambda f: _rewrite(
        f / "scorers.safetensors", lambda t, m: t.pop("tower.als.item")),
    "scorers negative weight": lambda f: _rewrite(
        f / "scorers.safetensors", lambda t, m: m.update({"mix": json.dumps(
            {**json.loads(m["mix"]), "weights": {"gnn": 1, "als": -1, "lightgcn": 1}})})),
    "scorers without the gnn": lambda f: _rewrite(
        f / "scorers.safetensors", lambda t, m: m.update({"mix": json.dumps(
            {**json.loads(m["mix"]), "names": ["als", "lightgcn"],
             "weights": {"als": 1, "lightgcn": 1}})})),
    "split item out of range": lambda f: _rewrite(
        f / "split.safetensors", lambda t, m: t["test.item_index"].fill_(-3)),
    "split seed not a number": lambda f: _rewrite(
        f / "split.safetensors", lambda t, m: m.update({"seed": "one"})),
    "dataset triples out of range": lambda f: _rewrite(
        f / "dataset.safetensors", lambda t, m: t["kg_triples"].fill_(10**6)),
    "dataset table not strings": lambda f: _edit_json(
        f / "dataset.json", lambda d: d.update({"item_table": {"title": [1, 2]}})),
    "run.json not JSON": lambda f: (f / "run.json").write_bytes(b"\xff\xfe{"),
    "metrics a list": lambda f: (f / "metrics.json").write_text("[]"),
    "updates with an unknown item": lambda f: _edit_json(
        f / "updates.json", lambda u: u["interactions"].append([["u01", "no-such-item"]])),
    "updates re-adding a known item": lambda f: _edit_json(
        f / "updates.json", lambda u: u["items"].append(
            {"rows": [{"item_id": "m01"}], "triples": [], "links": {}, "entity_text": {}})),
    "updates of the wrong shape": lambda f: (f / "updates.json").write_text(
        json.dumps({"format": "hybridrec-run/7", "items": {"rows": 1}})),
    "updates with vectors and no items": lambda f: _rewrite(
        f / "updates.safetensors", lambda t, m: t.update({"items.x": torch.zeros(2, 8)})),
}


@pytest.mark.parametrize("spoil", sorted(SPOILERS))
def test_a_spoilt_run_folder_raises_only_data_error(saved, tmp_path, spoil):
    import shutil
    import time

    from hybridrec import Recommender

    folder = tmp_path / "run"
    shutil.copytree(saved, folder)
    Recommender.load(folder)  # unspoilt, it loads
    SPOILERS[spoil](folder)
    start = time.perf_counter()
    for load in (load_run, Recommender.load):
        with pytest.raises(DataError) as err:
            load(folder)
        assert str(folder) in str(err.value)
    assert time.perf_counter() - start < 4.0


def test_random_byte_flips_in_headers_raise_only_data_error(saved, tmp_path):
    """Flip bytes of each safetensors file's header, many times over: each load either
    succeeds or raises DataError; nothing else escapes."""
    import random
    import shutil

    from hybridrec import Recommender

    rng = random.Random(0)
    names = sorted(p.name for p in saved.iterdir() if p.suffix == ".safetensors")
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(60):
        folder = tmp_path / f"run{trial}"
        shutil.copytree(saved, folder)
        path = folder / names[trial % len(names)]
        raw = bytearray(path.read_bytes())
        header_end = 8 + int.from_bytes(raw[:8], "little")
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(header_end)] = rng.randrange(256)
        path.write_bytes(bytes(raw))
        try:
            Recommender.load(folder)
            outcomes["loaded"] += 1
        except DataError:
            outcomes["refused"] += 1
        shutil.rmtree(folder)
    assert outcomes["refused"] > 30
