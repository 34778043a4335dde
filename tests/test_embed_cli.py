"""`python -m hybridrec.embed` on the tiny example data set."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybridrec.embed import main
from hybridrec.text import NodeFeatures

EXAMPLES = Path(__file__).resolve().parents[1] / "kg" / "examples"
DATA = ["--interactions", str(EXAMPLES / "interactions.csv"), "--items", str(EXAMPLES / "items.csv"),
        "--users", str(EXAMPLES / "users.csv"), "--kg", str(EXAMPLES / "graph.ttl"),
        "--item-iri", "iri", "--item-text", "title,year", "--item-categorical", "genre",
        "--user-text", "age", "--user-categorical", "gender,occupation", "--quiet"]


def test_embed_cli_writes_features_and_reuses_the_cache(tmp_path, capsys):
    argv = DATA + ["--text-cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    first = capsys.readouterr().out
    features = NodeFeatures.load(tmp_path / "out")
    assert (len(features.user), len(features.item), features.dim) == (10, 13, 384)
    assert features.item_text[0].startswith("Heat. A detective hunts")
    assert "Director: Michael Mann." in features.item_text[0]
    assert features.entity_has_text.any() and not features.entity_has_text.all()
    assert " 0 hits, " in first and f"model:    {features.model_id}" in first

    assert main(argv + ["--out", str(tmp_path / "again")]) == 0
    assert ", 0 misses" in capsys.readouterr().out
    assert torch.equal(NodeFeatures.load(tmp_path / "again").item, features.item)


def test_embed_cli_missing_model_exits_2_with_advice(tmp_path, capsys):
    argv = DATA + ["--text-model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--text-model /path/to/folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_an_existing_file_is_refused_before_embedding(tmp_path):
    from hybridrec.data.errors import DataError

    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(DataError, match="notes.txt: an output folder for --out; it is an "
                                        "existing file"):
        main(["--interactions", "kg/examples/interactions.csv", "--out", str(mine)])
    assert mine.read_text() == "mine"
