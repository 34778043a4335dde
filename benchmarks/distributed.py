"""One process against ``torchrun --nproc-per-node N``: the same default run of
``python -m hybridrec.train`` on ml-100k, per seed, and what DDP changes.

    python -m benchmarks.distributed --seeds 0,1,2 --processes 2

Writes ``benchmarks/results/distributed/ml-100k.json`` and ``.md``: per seed and mode, test
NDCG@20, Recall@20 and tail Recall@20, the GNN's epochs, its median seconds per epoch and the
wall time. Every process runs one torch thread (the training CLI's default), so on a CPU
``N`` processes use ``N`` cores where one process uses one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.cli_runs import train_run
from benchmarks.report import mean_std, save_result

RESULTS = Path("benchmarks/results/distributed")


def run_once(seed: int, processes: int, folder: Path) -> dict:
    """``python -m hybridrec.train`` for ``seed`` on ``processes`` processes; its figures."""
    run = train_run(folder / f"run-{processes}-{seed}", seed, processes=processes)
    return {"processes": processes, "threads_per_process": 1, **run}


def table(runs: list[dict]) -> str:
    lines = ["| processes | test NDCG@20 | test Recall@20 | tail Recall@20 | GNN epochs | "
             "GNN s/epoch (median) | wall s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for n in sorted({r["processes"] for r in runs}):
        mine = [r for r in runs if r["processes"] == n]
        cells = [mean_std([r[key] for r in mine]) for key in
                 ("ndcg@20", "recall@20", "tail_recall@20")]
        lines.append(f"| {n} | " + " | ".join(cells)
                     + f" | {statistics.mean(r['gnn_epochs'] for r in mine):.1f}"
                     + f" | {statistics.median(r['gnn_seconds_per_epoch'] for r in mine):.2f}"
                     + f" | {statistics.median(r['wall_seconds'] for r in mine):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for processes in (1, args.processes):
                runs.append(run_once(seed, processes, Path(tmp)))
                print(json.dumps(runs[-1]), flush=True)
    text = table(runs)
    save_result(RESULTS, "ml-100k", {
        "command": f"python -m benchmarks.distributed --seeds {args.seeds} "
                   f"--processes {args.processes}", "cpu_count": os.cpu_count(), "runs": runs})
    (RESULTS / "ml-100k.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
