"""``torchrun --nproc-per-node 2 -m hybridrec.train`` on the CPU (gloo): the run folder loads,
and the DDP model matches one process trained on the same global batches."""
import json
import os
import subprocess
import sys

import pytest
import torch

from hybridrec import Recommender
from hybridrec.run import load_run

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available()
                                     and torch.distributed.is_gloo_available()),
                                reason="needs torch.distributed with gloo")

EXAMPLES = "kg/examples"
DATA = ["--interactions", f"{EXAMPLES}/interactions.csv", "--items", f"{EXAMPLES}/items.csv",
        "--users", f"{EXAMPLES}/users.csv", "--kg", f"{EXAMPLES}/graph.ttl", "--item-iri", "iri",
        "--item-text", "title,year", "--item-categorical", "genre", "--user-text", "age",
        "--user-categorical", "gender,occupation"]
# The full softmax (64 negatives > 13 items) and no simulated cold items: the only sampling
# left is the shuffle, which every rank draws as one process does, so DDP over 2 x 8 pairs per
# step follows the one-process run over 16 up to float rounding and the last step's 3 + 2
# split of its 5 pairs.
SETTINGS = ["--epochs", "3", "--quiet", "--no-baselines", "--set", "train.valid_metric=ndcg@5",
            "--set", "train.num_negatives=64", "--set", "train.cold_start_fraction=0",
            "--set", "model.hidden_channels=8"]


def _train(out, batch_size, env, processes=1, extra=()):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={processes}"] if processes > 1 else [sys.executable])
    done = subprocess.run([*launcher, "-m", "hybridrec.train", *DATA, *SETTINGS, *extra,
                           "--set", f"train.batch_size={batch_size}", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    env = {**os.environ, "HYBRIDREC_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    _train(tmp / "run", 16, env)
    return tmp / "run", env


# Full-graph steps, and neighbour-sampled ones whose fan-outs take every neighbour (the same
# rows, so the same model).
@pytest.mark.parametrize("extra", [(), ("--fanouts", "1000,1000")], ids=["full", "sampled"])
def test_torchrun_two_processes_match_one_process(tmp_path, one_process, extra):
    one_folder, env = one_process
    printed = _train(tmp_path / "ddp", 8, env, processes=2, extra=extra)
    assert "2 processes (DDP)" in printed
    ddp, one = load_run(tmp_path / "ddp"), load_run(one_folder)
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["processes"] == 2
    assert ddp.config.train.fanouts == tuple(int(f) for f in extra[1:2] for f in f.split(","))
    assert not (tmp_path / "ddp.ckpt").exists()  # rank 0 cleaned up; no rank left files

    # The GNN's scores: within 0.01 of the one-process run (a one-process run with 8 pairs
    # per step, i.e. a rank training alone, lands 0.05 away).
    scores = [run.scorer.towers["gnn"].user @ run.scorer.towers["gnn"].item.T
              for run in (ddp, one)]
    assert (scores[0] - scores[1]).abs().max() <= 0.01
    for key in ("ndcg@10", "recall@10"):
        assert ddp.metrics["test"][key] == pytest.approx(one.metrics["test"][key], abs=0.02)

    # The run folder is an ordinary run: the Recommender loads it and recommends.
    rec = Recommender.load(tmp_path / "ddp")
    user = load_run(tmp_path / "ddp").ids["users"].ids[0]
    assert len(rec.recommend(user, k=3).item_ids) == 3


def test_resume_under_torchrun_is_refused_with_the_command_that_works(monkeypatch, tmp_path):
    from hybridrec.data.errors import DataError
    from hybridrec.train import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataError, match="python -m hybridrec.train --resume"):
        main(DATA + SETTINGS + ["--resume", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_the_learned_gate_under_torchrun_is_refused(monkeypatch, tmp_path):
    """Its cross-fit trains the GNN again in rank 0 alone, which DDP's collectives would hang."""
    from hybridrec.data.errors import DataError
    from hybridrec.train import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataError, match="--gate in one process"):
        main(DATA + SETTINGS + ["--gate", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
