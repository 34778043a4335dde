"""One ``python -m hybridrec.train`` run on ml-100k in a child process, and its figures: what
the distributed and scale benchmarks compare run against run."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_run(out: Path, seed: int, extra: Sequence[str] = (), processes: int = 1) -> dict:
    """The default run (``--no-baselines``) with split and training seed ``seed`` and the
    ``extra`` flags, written to ``out``, on ``processes`` processes (``torchrun`` above one;
    one torch thread each): test NDCG@20, Recall@20 and tail Recall@20, the GNN's
    validation, epochs and seconds, and the wall time."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={processes}"] if processes > 1 else [sys.executable])
    start = time.perf_counter()
    done = subprocess.run([*launcher, "-m", "hybridrec.train", "--no-baselines", "--quiet",
                           "--seed", str(seed), "--train-seed", str(seed), "--out", str(out),
                           *extra], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"hybridrec.train failed:\n{done.stderr[-3000:]}")
    info = json.loads((out / "run.json").read_text())
    test = json.loads((out / "metrics.json").read_text())["test"]
    return {"seed": seed, "ndcg@20": test["ndcg@20"], "recall@20": test["recall@20"],
            "tail_recall@20": (test.get("by_popularity") or {}).get("tail", {}).get(
                "recall@20"),
            "best_valid": info["best_valid"], "best_epoch": info["best_epoch"],
            "gnn_epochs": len(info["history"]),
            "gnn_seconds_per_epoch": statistics.median(h["seconds"] for h in info["history"]),
            "gnn_seconds": info["seconds"].get("train.gnn"),
            "train_seconds": info["seconds"].get("train"), "wall_seconds": round(wall, 1)}
