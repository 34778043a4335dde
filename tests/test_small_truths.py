"""Small truths a newcomer tripped on: what the CLIs suggest and say, what a run records, how
the benchmarks start, and short top-K lists."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrec.cli_args import run_cli
from hybridrec.run import load_run
from hybridrec.testing import EXAMPLE_DATA as DATA
from hybridrec.train import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EX = "kg/examples"
SMALL = ["--epochs", "2", "--quiet", "--no-baselines", "--no-text", "--ratios", "0.6,0.2,0.2",
         "--set", "train.batch_size=16", "--set", "train.num_negatives=4",
         "--set", "model.hidden_channels=8", "--set", "model.mf_lightgcn_epochs=5"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("truths") / "run"
    assert main(DATA + SMALL + ["--out", str(out)]) == 0
    return out


def test_a_missing_column_suggests_the_command_line_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--interactions", f"{EX}/users.csv", "--no-baselines"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "columns found: ['user_id', 'age', 'gender', 'occupation']" in err
    assert "--columns <file column>=item_id" in err


def test_help_says_what_epochs_bounds_and_gives_user_examples_for_users():
    text = " ".join(build_parser().format_help().split())
    assert "--epochs EPOCHS maximum epochs of the GNN" in text
    assert "train.gate_epochs=10" in text and "model.mf_lightgcn_epochs=300" in text
    assert "--user-categorical COL,... user columns whose values become KG entities " \
           "(e.g. gender,occupation)" in text
    assert "(e.g. genre)" in text


def test_run_json_records_every_library_the_readme_lists(run_folder):
    from importlib import metadata

    versions = json.loads((run_folder / "run.json").read_text())["versions"]
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Dependencies"):readme.index("## Layout")]
    rows = [line for line in table.splitlines()[4:] if line.startswith("| ")]
    assert len(rows) >= 10
    for line in rows:
        names = line.split("|")[1].split("(")[0]
        if "(serve)" in line or "(dev)" in line:
            continue
        for name in (n.strip() for n in names.split(",")):
            assert versions[name] == metadata.version(name), name
    assert versions["python"].count(".") == 2


def test_top_k_never_pads_a_short_list_with_seen_items(run_folder):
    from hybridrec import Recommender

    rec = Recommender.load(run_folder)
    user = rec.user_ids.ids[0]
    seen = {rec.item_ids.ids[i] for i in rec._seen[0]}
    ranking = rec.recommend(user, k=100)
    assert len(ranking.item_ids) == rec.num_items - len(seen)
    assert not seen & set(ranking.item_ids)
    assert all(abs(s) != float("inf") for s in ranking.scores)
    only = rec.recommend(user, k=10, candidates=sorted(seen)[:2] + [ranking.item_ids[-1]])
    assert only.item_ids == (ranking.item_ids[-1],)


def test_the_benchmarks_start_from_any_directory_by_path(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir()
                                        and Path(p).resolve() != ROOT)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Every model on the same split(s)" in " ".join(done.stdout.split())


def test_interactions_alone_train_without_text(tmp_path):
    """A CSV of interactions and nothing else (no KG: an entity type without nodes) trains
    with ID embeddings alone."""
    assert main(["--interactions", str(ROOT / EX / "interactions.csv"), "--no-text",
                 "--no-baselines", "--quiet", "--epochs", "2", "--set",
                 "model.mf_lightgcn_epochs=5", "--out", str(tmp_path / "run")]) == 0
    assert load_run(tmp_path / "run").graph["entity"].num_nodes == 0


def test_each_warning_is_printed_once(tmp_path, capfd):
    """Repeated rows are reported by the process that loads the data for the hybrid, not a
    second time by the baselines' worker process (which loads it again)."""
    lines = (ROOT / EX / "interactions.csv").read_text().splitlines(keepends=True)
    inter = tmp_path / "inter.csv"
    inter.write_text("".join(lines + lines[-2:]))
    assert main(["--interactions", str(inter), "--no-text", "--quiet", "--epochs", "2",
                 "--set", "model.mf_lightgcn_epochs=5", "--out", str(tmp_path / "run")]) == 0
    err = capfd.readouterr().err  # the worker process's stderr included
    assert err.count("2 repeated (user, item) rows dropped") == 1, err


@pytest.mark.parametrize("metric, message", [
    ("ndgc@5", "expected one of recall, ndcg"), ("ndcg@x", "a name and a cut-off"),
    ("ndcg@0", "at least 1")])
def test_a_bad_validation_metric_stops_before_anything_is_written(tmp_path, capsys, metric,
                                                                  message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, DATA + SMALL + ["--set", f"train.valid_metric={metric}", "--out",
                                      str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []
