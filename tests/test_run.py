"""save_run / load_run: JSON + safetensors only, atomic, and loading gives the same scores."""
import json

import pytest
import torch

from hybridrec.config import ModelConfig, RunConfig
from hybridrec.data.errors import DataError
from hybridrec.data.split import random_split
from hybridrec.graph import build_graph
from hybridrec.models import HybridModel, prepare_graph
from hybridrec.run import FILES, load_embeddings, load_run, save_run
from hybridrec.pipeline import evaluate_run
from hybridrec.trainer import fit


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(example_dataset):
    dataset = example_dataset
    split = random_split(dataset, (0.6, 0.2, 0.2), seed=1)
    g = torch.Generator().manual_seed(0)
    entity_has_text = torch.rand(dataset.num_entities, generator=g) > 0.5
    graph = prepare_graph(build_graph(dataset, split.train,
                                      user_x=torch.randn(dataset.num_users, 8, generator=g),
                                      item_x=torch.randn(dataset.num_items, 8, generator=g),
                                      entity_x=torch.randn(dataset.num_entities, 8, generator=g)),
                          entity_has_text=entity_has_text)
    config = RunConfig(model=ModelConfig(hidden_channels=8, mf_layers=1, mf_solver="gradient"))
    torch.manual_seed(0)
    model = HybridModel.from_config(config.model, graph)
    fit(model, graph, epochs=2, batch_size=16, num_negatives=4, show_progress=False)
    ids = {"users": dataset.users, "items": dataset.items, "entities": dataset.entities,
           "relations": dataset.relations}
    x = {t: graph[t].x for t in graph.node_types if "x" in graph[t]}
    scorer = model.scorer(x, dict(graph.edge_index_dict))
    metrics = evaluate_run(scorer, dataset, split)
    return dataset, split, graph, config, model, ids, scorer, metrics


def _save(fitted, folder):
    dataset, split, graph, config, model, ids, scorer, metrics = fitted
    return save_run(folder, config=config, model=model, graph=graph, split=split, ids=ids,
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
    assert torch.equal(load_embeddings(folder).score(users), scorer.score(users))
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
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "stale.txt").write_text("old")
    _save(fitted, folder)
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_loading_a_broken_folder_names_the_file(fitted, tmp_path):
    folder = _save(fitted, tmp_path / "run")
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataError, match="model.safetensors"):
        load_run(folder)
    (folder / "run.json").write_text("{")
    with pytest.raises(DataError, match="run.json"):
        load_run(folder)


def test_a_run_with_a_lightgcn_loads_to_the_same_scores(fitted, tmp_path):
    dataset, split, graph, _, _, ids, _, _ = fitted
    config = RunConfig(model=ModelConfig(hidden_channels=8, mf_lightgcn_channels=4,
                                         use_gate=False))
    torch.manual_seed(0)
    model = HybridModel.from_config(config.model, graph)
    g = torch.Generator().manual_seed(2)
    model.mf.load_lightgcn(torch.randn(dataset.num_users, 4, generator=g),
                           torch.randn(dataset.num_items, 4, generator=g))
    x = {t: graph[t].x for t in graph.node_types if "x" in graph[t]}
    scorer = model.eval().scorer(x, dict(graph.edge_index_dict))
    folder = save_run(tmp_path / "run", config=config, model=model, graph=graph, split=split,
                      ids=ids, dataset=dataset, metrics=evaluate_run(scorer, dataset, split), info={},
                      log_text="")
    users = torch.arange(dataset.num_users)
    assert torch.equal(load_run(folder).scorer.score(users), scorer.score(users))
    served = load_embeddings(folder)
    assert served.emb.fixed_gate == pytest.approx(1 / 3)
    assert torch.equal(served.score(users), scorer.score(users))
