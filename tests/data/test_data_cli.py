"""Shared CLI options (hybridrec.cli_args) and ``python -m hybridrec.data info``."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrec.cli_args import (
    add_data_arguments,
    add_split_arguments,
    data_source_from_args,
    load_dataset,
    load_dataset_from_args,
    parse_columns,
    run_cli,
    split_from_args,
)
from hybridrec.data import DataError
from hybridrec.data.__main__ import main
from hybridrec.data.split import write_split_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "kg" / "examples"
EXAMPLE_ARGS = [
    "--interactions", str(EXAMPLES / "interactions.csv"), "--items", str(EXAMPLES / "items.csv"),
    "--users", str(EXAMPLES / "users.csv"), "--kg", str(EXAMPLES / "graph.ttl"),
    "--links", str(EXAMPLES / "links.csv"), "--item-text", "title,year",
    "--item-categorical", "genre", "--user-categorical", "gender,occupation",
]


def parse(argv):
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    add_split_arguments(parser)
    return parser.parse_args(argv)


def run_module(*argv):
    return subprocess.run([sys.executable, "-m", "hybridrec.data", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_info_json_on_the_example_files():
    done = run_module("info", *EXAMPLE_ARGS, "--split", "cold-items", "--cold-fraction", "0.2",
                      "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["users"], report["items"], report["interactions"]) == (10, 13, 47)
    assert report["kg"]["linked_items"] == 13
    split = report["split"]
    assert split["kind"] == "cold-items" and split["seed"] == 0
    assert sum(split["sizes"].values()) == 47
    # Items that have interactions (12 of 13), a fifth of them cold: 2 items.
    assert split["held_out_by_design"] == {"items": 2, "users": 0}
    assert split["cold"]["valid"]["cold_items"] + split["cold"]["test"]["cold_items"] >= 2
    graph = report["graph"]
    assert graph["nodes"] == {"user": 10, "item": 13, "entity": report["kg"]["entities"]}
    assert graph["edges"]["user__interacts__item"] == split["sizes"]["train"]
    assert graph["edges"]["item__rev_interacts__user"] == split["sizes"]["train"]
    assert graph["edges"]["item__schema_director__entity"] == 13
    assert set(report["seconds"]) == {"load", "split", "graph", "total"}


def test_bad_input_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user_id,item_id,rating\nu1,i1,5\nu2,i2,five\n")
    done = run_module("info", "--interactions", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {bad} line 3 (row 2), column 'rating'"), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_info_text_in_process(capsys):
    assert main(["info", *EXAMPLE_ARGS, "--split", "temporal"]) == 0
    out = capsys.readouterr().out
    assert "users         10" in out and "split         temporal" in out
    assert "user__interacts__item" in out


def test_run_cli_turns_data_errors_into_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        run_cli(main, ["info", "--items", "items.csv"])
    assert done.value.code == 2
    assert capsys.readouterr().err == "error: command line: --items needs --interactions " \
                                      "(a built-in data set takes no file options)\n"
    with pytest.raises(SystemExit) as done:
        run_cli(lambda argv: 0)
    assert done.value.code == 0


def test_run_cli_turns_bad_option_values_into_exit_2(capsys):
    args = [*EXAMPLE_ARGS, "--split", "cold-users", "--cold-fraction", "0.99"]
    with pytest.raises(SystemExit) as done:
        run_cli(main, ["info", *args])
    assert done.value.code == 2
    assert capsys.readouterr().err.startswith("error: cold_users_split: fraction=0.99 leaves no warm users")


def test_data_source_round_trips_through_options():
    args = parse([*EXAMPLE_ARGS, "--columns", "uid=user_id"])
    source, options = data_source_from_args(args)
    assert source == str(EXAMPLES / "interactions.csv")
    assert options["item_categorical"] == "genre" and options["columns"] == "uid=user_id"
    assert parse([]).dataset is None and data_source_from_args(parse([]))[0] == "ml-100k"
    data = load_dataset_from_args(parse(EXAMPLE_ARGS))
    assert (data.num_users, data.num_items) == (10, 13)
    assert data.item_categorical_columns == ("genre",)


@pytest.mark.parametrize("argv,message", [
    (["--links", "l.csv"], "--links needs --interactions"),
    (["--interactions", "i.csv", "--links", "l.csv"], "--links needs --kg"),
    (["--interactions", "i.csv", "--item-text", "title"], "--item-text needs --items"),
])
def test_option_combinations_are_checked(argv, message):
    with pytest.raises(DataError, match=message):
        load_dataset_from_args(parse(argv))


def test_argument_types_are_checked(capsys):
    with pytest.raises(SystemExit):
        parse(["--ratios", "0.8,0.2"])
    assert "three non-negative numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--dataset", "ml-100k", "--interactions", "x.csv"])
    with pytest.raises(SystemExit):
        parse(["--cold-fraction", "1.5"])
    assert parse_columns("a=b, c = d") == {"a": "b", "c": "d"}
    with pytest.raises(ValueError, match="old=new"):
        parse_columns("a")
    with pytest.raises(DataError, match="options among"):
        load_dataset("ml-100k", {"colums": "a=b"})


def test_split_from_args_kinds_and_files(tmp_path):
    data = load_dataset_from_args(parse(EXAMPLE_ARGS))
    split = split_from_args(parse(["--split", "cold-users", "--cold-fraction", "0.2", "--seed", "4"]), data)
    assert split.kind == "cold-users" and split.seed == 4 and len(split.cold_users) == 2
    assert split_from_args(parse(["--ratios", "1,0,1"]), data).sizes()["valid"] == 0
    paths = write_split_files(data, split, tmp_path)
    from_files = split_from_args(parse(["--train-file", str(paths["train"]),
                                        "--test-file", str(paths["test"])]), data)
    assert from_files.kind == "files" and len(from_files.valid) == 0
    assert from_files.test.item_index.tolist() == split.test.item_index.tolist()
    with pytest.raises(DataError, match="not both"):
        split_from_args(parse(["--split", "random", "--train-file", "a", "--test-file", "b"]), data)
    with pytest.raises(DataError, match="need --train-file and --test-file"):
        split_from_args(parse(["--train-file", "a"]), data)


@pytest.mark.slow
def test_info_json_on_ml100k():
    done = run_module("info", "--dataset", "ml-100k", "--split", "temporal", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["users"], report["items"], report["interactions"]) == (943, 1682, 100_000)
    assert report["kg"]["kg_triples"] == 91_631 and report["kg"]["linked_items"] == 1_598
    assert report["split"]["sizes"] == {"train": 80_000, "valid": 10_009, "test": 9_991}
    graph = report["graph"]
    assert graph["nodes"]["user"] == 943 and graph["nodes"]["item"] == 1682
    assert graph["edges"]["user__interacts__item"] == 80_000
    assert len(graph["edges"]) == graph["edge_types"] and graph["edge_types"] % 2 == 0
