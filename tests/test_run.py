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


def test_the_gnn_weights_reload_to_the_same_tower(fitted, tmp_path):
    dataset, *_, model, _, scorer, _ = fitted
    run = load_run(_save(fitted, tmp_path / "run"))
    for key, value in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[key], value.cpu()), key
    tower = TrainedGNN(run.model, *graph_inputs(run.graph)).tower()
    torch.testing.assert_close(tower.user, scorer.towers["gnn"].user)
    assert run.scorer.names == ["gnn", "als", "lightgcn"]
