"""``python -m hybridrec.train`` on the tiny example data: table, run folder, flags -> config."""
import json
from pathlib import Path

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
    for row in ("| hybrid |", "| BPR-MF |", "| ALS |", "| LightGCN* |"):
        assert row in printed
    # 13 items: the table is at the cut-off the evaluation used, and filled.
    assert "| model | recall@13 | ndcg@13 |" in printed and "cut-off 13" in printed
    assert "| hybrid | -" not in printed
    assert "mix:    Mix(gnn 0.333, als 0.333, lightgcn 0.333" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test", "valid", "gate"} <= set(metrics)
    assert {"recall@10", "ndcg@10", "by_popularity", "cold"} <= set(metrics["test"])
    assert metrics["gate"] is None  # the fixed mix by default
    config = RunConfig.load(out / "config.json")
    assert config.data.ratios == (0.6, 0.2, 0.2) and config.train.epochs == 2
    # Paths are stored resolved: the config works from any working directory.
    assert config.data.options["kg"] == str(Path(f"{EXAMPLES}/graph.ttl").resolve())
    assert config.data.source == str(Path(f"{EXAMPLES}/interactions.csv").resolve())
    assert not (tmp_path / "run.ckpt").exists()
    assert "epoch 1" in (out / "train.log").read_text()
    # The hybrid's LightGCN is fitted faster than the baseline's, and the table says so.
    assert "* LightGCN: the hybrid's own tower, lr 0.01 (the baseline's 0.005)" in printed
    # The ALS and LightGCN rows are the hybrid's own fitted scorers (the same fit time), not a
    # second fit; BPR-MF is fitted apart.
    seconds = json.loads((out / "run.json").read_text())["seconds"]
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines()
            if line.startswith("| ")}
    for name, phase in (("ALS", "train.als"), ("LightGCN*", "train.lightgcn")):
        assert rows[name].rstrip(" |").endswith(f"| {seconds[phase]:.1f}")


def test_without_the_hybrids_lightgcn_the_table_fits_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(DATA + SMALL + ["--no-text", "--no-kg", "--no-lightgcn", "--ratios",
                                "0.6,0.2,0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| LightGCN |" in printed and "| ALS |" in printed and "| BPR-MF |" in printed


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
    assert "| text-only |" in printed and "cold recall@13 (cold only)" in printed
    assert "cold recall@13 (full ranking)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_cold_only"]["item_subset"] == "cold"
    cold = metrics["test"]["cold"]
    assert 0 < cold["positive_share"] <= 1 and 0 <= cold["share@13"] <= 1
    hybrid_row = next(line for line in printed.splitlines() if line.startswith("| hybrid |"))
    assert f"{cold['share@13']:.4f} / {cold['positive_share']:.4f}" in hybrid_row


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.lrr=1"], "unknown key 'lrr' in train; valid keys are"),
    (["--set", "train.epochs=many"], "expected an integer"),
])
def test_bad_settings_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(DATA + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _interrupted(argv, out):
    """The checkpoint folder as a run of ``argv`` leaves it when killed after its first step
    (the fingerprint of its data, split and settings), made by the CLI's own functions."""
    from hybridrec.cli_args import load_dataset
    from hybridrec.pipeline import check_checkpoint, load_split
    from hybridrec.train import _given, build_parser, config_from_args

    parser = build_parser()
    config = config_from_args(parser.parse_args(argv), _given(parser, argv))
    dataset = load_dataset(config.data.source, config.data.options)
    check_checkpoint(out.with_name(out.name + ".ckpt"), config, dataset,
                     load_split(config, dataset), resume=False)


def test_resume_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    _interrupted(DATA + SMALL + ["--no-text", "--set", "train.lr=0.5"], out)
    with pytest.raises(DataError, match="--resume with changed settings train.lr"):
        main(DATA + SMALL + ["--no-text", "--no-baselines", "--resume", "--out", str(out)])


def test_resume_on_changed_data_stops_before_training_and_says_what_changed(tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(EXAMPLES, data)
    argv = [a.replace(EXAMPLES, str(data)) for a in DATA] + SMALL + ["--no-text"]
    out = tmp_path / "run"
    _interrupted(argv, out)
    lines = (data / "interactions.csv").read_text().splitlines(keepends=True)
    (data / "interactions.csv").write_text("".join(lines[:-3]))  # three interactions fewer
    with pytest.raises(DataError) as err:
        main(argv + ["--no-baselines", "--resume", "--out", str(out)])
    message = str(err.value)
    assert "run.ckpt/fingerprint.json" in message
    assert "--resume with changed data: the data set differs" in message
    assert "47 interactions at the checkpoint; 10, 13, 44 now" in message
    assert "split: the training pairs differ" in message
    assert not out.exists()
    # The same data as the checkpoint's resumes.
    (data / "interactions.csv").write_text("".join(lines))
    assert main(argv + ["--no-baselines", "--resume", "--out", str(out)]) == 0


def test_a_catalogue_smaller_than_the_cut_off_trains_with_the_default_metric(tmp_path):
    # ndcg@20 on 13 items: early stopping ranks the whole catalogue instead of failing.
    out = tmp_path / "small"
    assert main(DATA + ["--epochs", "1", "--quiet", "--no-baselines", "--set",
                        "model.hidden_channels=8", "--set", "model.mf_lightgcn_epochs=5",
                        "--out", str(out)]) == 0
    assert load_run(out).config.train.valid_metric == "ndcg@20"


def test_the_readme_example_trains_with_default_settings_and_fills_the_table(tmp_path, capsys):
    """The example data with its data flags and nothing else (baselines included): the
    cut-offs fit the 13 items, the table is filled, and the ALS collapse is named once."""
    out = tmp_path / "example"
    assert main(DATA + ["--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | recall@13 | ndcg@13 | tail recall@13 |")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| hybrid", "| BPR-MF", "| ALS",
                                                       "| LightGCN*"]
    assert all(" - " not in row for row in rows)
    assert "valid ndcg@13 of the fixed mix" in captured.out
    # Regularization 20 (tuned on ml-100k) collapses ALS here: said once, with a value that
    # does not collapse.
    assert captured.err.count("ALS: regularization 20") == 1
    assert "--set model.mf_regularization=2" in captured.err


def _cli(argv, capsys):
    """``python -m hybridrec.train`` in this process: the exit code and stderr."""
    from hybridrec.cli_args import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda tmp: ["--config", str(tmp / "missing.json")],
     "missing.json: expected a config file (a run's config.json); it does not exist"),
    (lambda tmp: ["--config", str(tmp)], "it is a folder"),
    (lambda tmp: (tmp / "bad.json").write_bytes(b"\xff\xfe") and
     ["--config", str(tmp / "bad.json")], "expected a UTF-8 JSON config file"),
    (lambda tmp: (tmp / "list.json").write_text("[1]") and
     ["--config", str(tmp / "list.json")], "expected a JSON object with sections"),
])
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    code, err = _cli(DATA + SMALL + make(tmp_path), capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err and "Traceback" not in err


def test_out_never_replaces_a_file_or_a_folder_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "report.txt"
    mine.write_text("my report")
    code, err = _cli(DATA + SMALL + ["--no-baselines", "--out", str(mine)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "report.txt: a run folder for --out; it is an existing file" in err
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    code, err = _cli(DATA + SMALL + ["--no-baselines", "--out", str(folder)], capsys)
    assert code == 2 and "it holds other files (chapter1.tex)" in err
    # Untouched, and nothing written beside them (refused before training).
    assert mine.read_text() == "my report"
    assert [p.name for p in folder.iterdir()] == ["chapter1.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt", "thesis"]
    # A run folder is retrained in place, and an empty folder is fine.
    run = tmp_path / "run"
    for _ in range(2):
        assert main(DATA + SMALL + ["--no-text", "--no-baselines", "--out", str(run)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(DATA + SMALL + ["--no-text", "--no-baselines", "--out", str(empty)]) == 0


def test_a_bad_input_from_the_real_command_is_one_line_and_exit_2(tmp_path):
    """The installed entry point, end to end: no traceback, one line, code 2."""
    import subprocess
    import sys

    mine = tmp_path / "existing.txt"
    mine.write_text("keep")
    proc = subprocess.run([sys.executable, "-m", "hybridrec.train", *DATA, "--out", str(mine)],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ,
                               "HYBRIDREC_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {mine}: a run folder for --out; it is an "
                                        f"existing file, which a run would replace. Choose "
                                        f"another --out"]
    assert mine.read_text() == "keep"


def test_mix_search_stops_the_gnn_on_its_own_metric_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(DATA + SMALL + ["--mix-search", "--no-baselines", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of the GNN alone" in printed
    assert RunConfig.load(out / "config.json").model.mix_search


def test_a_gate_cross_fit_of_fewer_than_two_folds_stops_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(DATA + SMALL + ["--gate", "--set", "train.gate_folds=1", "--out",
                             str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert "train.gate_folds: 2 or more folds for the gate's cross-fit, got 1" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fanouts", ["5", "5,0", "5,5,5"])
def test_fanouts_that_do_not_fit_the_layers_stop_before_anything_runs(tmp_path, capsys, fanouts):
    with pytest.raises(SystemExit) as stopped:
        main(DATA + SMALL + ["--fanouts", fanouts, "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert "--fanouts: one number >= 1 per GNN layer (2)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
