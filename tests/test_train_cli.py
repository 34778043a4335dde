"""``python -m hybridrec.train`` on the tiny example data: table, run folder, flags -> config."""
import json

import pytest

from hybridrec.config import RunConfig
from hybridrec.data.errors import DataError
from hybridrec.run import load_run
from hybridrec.train import main

EXAMPLES = "kg/examples"
DATA = ["--interactions", f"{EXAMPLES}/interactions.csv", "--items", f"{EXAMPLES}/items.csv",
        "--users", f"{EXAMPLES}/users.csv", "--kg", f"{EXAMPLES}/graph.ttl", "--item-iri", "iri",
        "--item-text", "title,year", "--item-categorical", "genre", "--user-text", "age",
        "--user-categorical", "gender,occupation"]
SMALL = ["--epochs", "2", "--quiet", "--set", "train.valid_metric=ndcg@5",
         "--set", "train.batch_size=16", "--set", "train.num_negatives=4",
         "--set", "model.hidden_channels=8"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDREC_CACHE_DIR", str(tmp_path / "cache"))


def test_trains_saves_and_prints_the_table_with_baselines(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(DATA + SMALL + ["--ratios", "0.6,0.2,0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("| hybrid |", "| BPR-MF |", "| ALS |", "| LightGCN |"):
        assert row in printed
    assert "recall@20" in printed and "mix:    Mix(gnn 0.333, als 0.333, lightgcn 0.333" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test", "valid", "gate"} <= set(metrics)
    assert {"recall@10", "ndcg@10", "by_popularity", "cold"} <= set(metrics["test"])
    assert metrics["gate"] is None  # the fixed mix by default
    config = RunConfig.load(out / "config.json")
    assert config.data.ratios == (0.6, 0.2, 0.2) and config.train.epochs == 2
    assert config.data.options["kg"] == f"{EXAMPLES}/graph.ttl"
    assert not (tmp_path / "run.ckpt").exists()
    assert "epoch 1" in (out / "train.log").read_text()


def test_ablation_flags_reach_the_config_and_the_model(tmp_path):
    out = tmp_path / "ablated"
    assert main(DATA + SMALL + ["--no-text", "--no-kg", "--no-mf", "--no-baselines",
                                "--out", str(out)]) == 0
    run = load_run(out)
    model = run.config.model
    assert (model.use_text, model.use_kg, model.use_mf, model.use_gate) == (False,) * 4
    assert run.scorer.names == ["gnn"] and run.graph.node_types == ["user", "item"]
    assert run.metrics["gate"] is None


def test_the_learned_gate_is_an_opt_in_last_stage(tmp_path, capsys):
    out = tmp_path / "gated"
    assert main(DATA + SMALL + ["--gate", "--no-baselines", "--out", str(out)]) == 0
    assert "gate:" in capsys.readouterr().out
    run = load_run(out)
    assert run.config.model.use_gate is True
    info = json.loads((out / "run.json").read_text())["gate"]
    assert info["kept"] == (run.scorer.gate is not None)
    assert (run.metrics["gate"] is None) == (not info["kept"])


def test_config_file_then_flags_then_set(tmp_path):
    base = RunConfig.from_dict({"model": {"hidden_channels": 8, "use_kg": False},
                                "train": {"epochs": 5, "lr": 0.1, "batch_size": 16,
                                          "num_negatives": 4, "valid_metric": "ndcg@5"}})
    base.save(tmp_path / "base.json")
    out = tmp_path / "run"
    argv = DATA + ["--config", str(tmp_path / "base.json"), "--epochs", "1", "--set",
                   "train.lr=0.02", "--no-text", "--no-lightgcn", "--no-baselines", "--quiet",
                   "--out", str(out)]
    assert main(argv) == 0
    config = RunConfig.load(out / "config.json")
    assert config.model.hidden_channels == 8 and config.model.use_kg is False  # from the file
    assert config.train.epochs == 1 and config.train.lr == 0.02  # flag, then --set
    assert config.model.mf_lightgcn_channels == 0 and load_run(out).scorer.names == ["gnn", "als"]


def test_user_supplied_split_files(tmp_path):
    rows = (tmp_path / "all.csv")
    lines = open(f"{EXAMPLES}/interactions.csv").read().splitlines()
    header, body = lines[0], lines[1:]
    parts = {"train": body[::3] + body[1::3], "valid": body[2::6], "test": body[5::6]}
    for name, part in parts.items():
        (tmp_path / f"{name}.csv").write_text("\n".join([header] + part) + "\n")
    out = tmp_path / "run"
    assert main(DATA + SMALL + ["--train-file", str(tmp_path / "train.csv"),
                                "--valid-file", str(tmp_path / "valid.csv"),
                                "--test-file", str(tmp_path / "test.csv"),
                                "--no-text", "--no-baselines", "--out", str(out)]) == 0
    run = load_run(out)
    assert run.config.data.split == "files"
    assert len(run.split.train) == len(parts["train"]) and len(run.split.test) == len(parts["test"])
    assert not rows.exists()


def test_cold_item_split_reports_cold_ranking_and_text_only(tmp_path, capsys):
    out = tmp_path / "cold"
    assert main(DATA + SMALL + ["--split", "cold-items", "--cold-fraction", "0.3",
                                "--no-baselines", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| text-only |" in printed and "cold recall@20 (cold only)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_cold_only"]["item_subset"] == "cold"


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.lrr=1"], "unknown key 'lrr' in train; valid keys are"),
    (["--set", "train.epochs=many"], "expected an integer"),
])
def test_bad_settings_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(DATA + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_resume_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    checkpoint = tmp_path / "run.ckpt"
    checkpoint.mkdir()
    RunConfig.from_dict({"train": {"lr": 0.5}}).save(checkpoint / "config.json")
    with pytest.raises(DataError, match="--resume with changed .*train.lr"):
        main(DATA + SMALL + ["--no-text", "--no-baselines", "--resume", "--out", str(out)])


def test_a_catalogue_smaller_than_the_cut_off_trains_with_the_default_metric(tmp_path):
    # ndcg@20 on 13 items: early stopping ranks the whole catalogue instead of failing.
    out = tmp_path / "small"
    assert main(DATA + ["--epochs", "1", "--quiet", "--no-baselines", "--set",
                        "model.hidden_channels=8", "--set", "model.mf_lightgcn_epochs=5",
                        "--out", str(out)]) == 0
    assert load_run(out).config.train.valid_metric == "ndcg@20"
