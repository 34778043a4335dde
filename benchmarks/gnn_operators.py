"""``python -m benchmarks.gnn_operators``: which heterogeneous operator for the GNN branch.

For each operator (``rgcn`` = the fused :class:`~hybridrec.models.RelationalLayer`, ``sage`` =
the same R-GCN math as PyG ``HeteroConv(SAGEConv)``, ``lightgcn`` = parameter-free
propagation, ``graph``, ``gat``, ``hgt``) it builds the full hybrid on ml-100k (random split,
the default config otherwise) and measures the seconds of one training step (full-graph
message passing, median of ``--steps`` after one warm-up step, one torch thread) and, with
``--epochs N``, the best validation NDCG@20 within N epochs. Writes ``operators.json`` and
``operators.md`` under ``--out`` (default ``benchmarks/out/operators``)::

    python -m benchmarks.gnn_operators                        # step time of every operator
    python -m benchmarks.gnn_operators --epochs 30 --operators rgcn,lightgcn,gat
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from hybridrec.cli_args import run_cli  # noqa: E402
from hybridrec.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from hybridrec.data.movielens import load_ml100k  # noqa: E402
from hybridrec.data.split import random_split  # noqa: E402
from hybridrec.models import GNNScorer  # noqa: E402
from hybridrec.graph import INTERACTS  # noqa: E402
from hybridrec.pipeline import fit_hybrid, text_features, training_graph  # noqa: E402
from hybridrec.trainer import sample_batch, train_step  # noqa: E402

OPERATORS = ("rgcn", "sage", "lightgcn", "graph", "gat", "hgt")
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "operators"


def step_seconds(config: RunConfig, graph, steps: int) -> dict[str, float]:
    """Median wall and CPU seconds of one training step (after a warm-up step)."""
    torch.manual_seed(0)
    model = GNNScorer.from_config(config.model, graph)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x = {t: graph[t].x for t in graph.node_types if "x" in graph[t]}
    edges = dict(graph.edge_index_dict)
    positives = edges[INTERACTS]
    degree = torch.bincount(positives[1], minlength=graph["item"].num_nodes)
    generator = torch.Generator().manual_seed(0)
    wall, cpu = [], []
    for k in range(steps + 1):
        rows = torch.randperm(positives.size(1), generator=generator)[:config.train.batch_size]
        batch = sample_batch(positives, rows, degree, graph["item"].num_nodes,
                             loss=config.train.loss, num_negatives=config.train.num_negatives,
                             cold_start_fraction=config.train.cold_start_fraction,
                             generator=generator)
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(model, optimizer, x, edges, batch, loss=config.train.loss,
                   temperature=config.train.temperature,
                   weight_decay=config.train.weight_decay,
                   drop_label_edges=config.train.drop_label_edges)
        if k:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"step_wall_s": statistics.median(wall), "step_cpu_s": statistics.median(cpu),
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gnn_operators",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--operators", default=",".join(OPERATORS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default: 5)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="also train this many epochs and report validation NDCG@20")
    parser.add_argument("--seed", type=int, default=0, help="split and model seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_ml100k()
    split = random_split(dataset, seed=args.seed)
    base = RunConfig(train=TrainConfig(seed=args.seed, show_progress=False))
    features = text_features(base, dataset, split, torch.device("cpu"))
    rows = []
    for op in [o.strip() for o in args.operators.split(",") if o.strip()]:
        config = dataclasses.replace(base, model=dataclasses.replace(ModelConfig(), conv=op))
        graph = training_graph(config.model, dataset, split.train, features)
        row = {"operator": op, **step_seconds(config, graph, args.steps)}
        if args.epochs:
            config = dataclasses.replace(config, train=dataclasses.replace(
                config.train, epochs=args.epochs))
            start = time.perf_counter()
            fitted = fit_hybrid(config, dataset, split, features, device="cpu")
            row.update({"valid_ndcg@20": fitted.result.best_score,
                        "best_epoch": fitted.result.best_epoch,
                        "fit_s": time.perf_counter() - start})
        rows.append(row)
        print(json.dumps(row), flush=True)
    head = ["operator", "step s (wall)", "step s (CPU)", "parameters"] + (
        ["valid NDCG@20", "best epoch", "fit s"] if args.epochs else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["operator"], f"{r['step_wall_s']:.3f}", f"{r['step_cpu_s']:.3f}",
                 str(r["parameters"])]
        if args.epochs:
            cells += [f"{r['valid_ndcg@20']:.4f}", str(r["best_epoch"]), f"{r['fit_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("operators.json", json.dumps(rows, indent=1)), ("operators.md", table)):
        tmp = args.out / f"{name}.tmp"
        tmp.write_text(text + "\n")
        os.replace(tmp, args.out / name)
    print(table)
    return 0


if __name__ == "__main__":
    run_cli(main)
