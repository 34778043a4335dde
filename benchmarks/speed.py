"""Where the default run's time goes, and how the cost grows with the data.

    python -m benchmarks.speed --part train    # python -m hybridrec.train, end to end
    python -m benchmarks.speed --part scale    # seconds per epoch at 1x, 2x, 4x the data
    python -m benchmarks.speed --part text     # benchmarks/text_encoder.py, kept here too
    python -m benchmarks.speed --table         # every part's figures as one table

Each part writes ``benchmarks/results/speed/<part>.json``.

* **train**: the README's main command (``python -m hybridrec.train`` on ml-100k) in a child
  process, with the data and text caches warm (a first run fills them) and, with
  ``--cold-cache``, with an empty cache folder; wall time, peak RSS of the largest process,
  and the run's own breakdown by phase (``run.json``: text, each scorer's fit, the GNN's
  epochs, gate folds, gate, evaluation, the wait for the baseline table), plus the GNN's seconds
  per epoch and the load average around the run (another process on the two cores shows).
* **scale**: the ml-100k training graph with every user replicated 2x and 4x (the same
  histories, features and attribute edges under new ids: 2x and 4x the interactions, the
  same catalogue and KG); seconds per epoch of the GNN (``epochs`` epochs, no validation),
  of the LightGCN tower and of the ALS fit, median over the epochs.
* **text**: items/second of :class:`~hybridrec.text.TextEncoder` against
  sentence-transformers on the same texts (``benchmarks/text_encoder.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import save_result

RESULTS = Path("benchmarks/results/speed")
ROOT = Path(__file__).resolve().parent.parent


def train(cold_cache: bool = False, seed: int = 0) -> dict:
    """``python -m hybridrec.train`` in a child process, timed from the outside."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if cold_cache:
            env["HYBRIDREC_CACHE_DIR"] = str(Path(tmp) / "cache")
        out = Path(tmp) / "run"
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hybridrec.train", "--out", str(out),
                               "--seed", str(seed), "--train-seed", str(seed)],
                              cwd=ROOT, env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"hybridrec.train failed:\n{done.stderr[-3000:]}")
        info = json.loads((out / "run.json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds, history = info.get("seconds", {}), info.get("history", [])
    epochs = [h["seconds"] for h in history if "seconds" in h]
    return {"cold_cache": cold_cache, "seed": seed, "wall_s": round(wall, 1),
            # PIP_NO_CACHE_DIR=1: the data set's wheel downloaded, not read from pip's cache.
            "pip_cache": os.environ.get("PIP_NO_CACHE_DIR", "") in ("", "0", "false"),
            "peak_rss_mb": round(peak_mb), "phases_s": {k: round(v, 1)
                                                       for k, v in seconds.items()},
            "gnn_epochs": len(epochs),
            "gnn_epoch_s": round(statistics.median(epochs), 2) if epochs else None,
            "load_average_before": load, "load_average_after": os.getloadavg()[0],
            "last_lines": done.stdout.strip().splitlines()[-6:]}


def replicate_users(graph, times: int):
    """``graph`` with every user (features, interactions, attribute edges) ``times`` times."""
    out = graph.clone()
    n = graph["user"].num_nodes
    out["user"].num_nodes = n * times
    if "x" in graph["user"]:
        out["user"].x = graph["user"].x.repeat(times, 1)
    for edge_type in graph.edge_types:
        src, _, dst = edge_type
        if "user" not in (src, dst):
            continue
        ei = graph[edge_type].edge_index
        parts = []
        for k in range(times):
            copy = ei.clone()
            for row, node_type in ((0, src), (1, dst)):
                if node_type == "user":
                    copy[row] += k * n
            parts.append(copy)
        out[edge_type].edge_index = torch.cat(parts, 1)
    return out


def scale(factors: tuple[int, ...] = (1, 2, 4), epochs: int = 3, seed: int = 0) -> dict:
    """Seconds per epoch of each trained part at ``factors`` times the users."""
    from hybridrec.baselines import ALS, LightGCN
    from hybridrec.config import RunConfig
    from hybridrec.data import load_ml100k
    from hybridrec.data.dataset import Interactions
    from hybridrec.graph import INTERACTS
    from hybridrec.models import GNNScorer
    from hybridrec.pipeline import load_split, text_features, training_graph
    from hybridrec.trainer import train_gnn, train_kwargs

    config = RunConfig.from_dict({"train": {"show_progress": False}})
    dataset = load_ml100k()
    split = load_split(config, dataset)
    device = torch.device("cpu")
    text = text_features(config, dataset, split, device)
    cfg = config.model
    base = training_graph(cfg, dataset, split.train, text)
    out: dict = {"seed": seed, "epochs": epochs, "factors": {}}
    for factor in factors:
        graph = replicate_users(base, factor)
        pairs = graph[INTERACTS].edge_index
        torch.manual_seed(seed)
        model = GNNScorer.from_config(cfg, graph)
        kwargs = {**train_kwargs(config.train), "epochs": epochs, "show_progress": False}
        result = train_gnn(model, graph, validate=None,
                           generator=torch.Generator().manual_seed(seed), **kwargs)
        gnn = [h["seconds"] for h in result.history]
        inter = Interactions(pairs[0].numpy(), pairs[1].numpy())
        users, items = graph["user"].num_nodes, graph["item"].num_nodes
        lightgcn = LightGCN(cfg.mf_lightgcn_channels, epochs=epochs, show_progress=False)
        start = time.perf_counter()
        lightgcn.fit(inter, users, items)
        lightgcn_s = (time.perf_counter() - start) / epochs
        start = time.perf_counter()
        ALS(factors=cfg.mf_channels, regularization=cfg.mf_regularization,
            alpha=cfg.mf_alpha, random_state=seed).fit(inter, users, items)
        als_s = time.perf_counter() - start
        out["factors"][str(factor)] = {
            "users": users, "interactions": int(pairs.size(1)),
            "gnn_epoch_s": round(statistics.median(gnn), 3),
            "lightgcn_epoch_s": round(lightgcn_s, 3), "als_fit_s": round(als_s, 3)}
    one = out["factors"]["1"]
    for factor, row in out["factors"].items():
        row["gnn_epoch_vs_1x"] = round(row["gnn_epoch_s"] / one["gnn_epoch_s"], 2)
    return out


def text() -> dict:
    """benchmarks/text_encoder.py in a child process; its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "benchmarks/text_encoder.py", "--out", tmp],
                       cwd=ROOT, check=True, capture_output=True)
        result = json.loads((Path(tmp) / "text_encoder.json").read_text())
    return {"items_per_second": result["items_per_second"],
            "ratio_hybridrec_to_st": round(result["ratio_hybridrec_to_st"], 3),
            "min_cosine_vs_st": result["min_cosine_vs_st"]}


def table() -> str:
    lines = ["| measure | value |", "|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        for key, value in json.loads(path.read_text()).items():
            if key == "last_lines":
                continue
            lines.append(f"| {path.stem}: {key} | "
                         f"{json.dumps(value) if isinstance(value, (dict, list)) else value} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("train", "scale", "text"))
    parser.add_argument("--cold-cache", action="store_true", help="train: an empty cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3, help="scale: epochs per size")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (the train CLI's default is 1)")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part:
        result = {"train": lambda: train(args.cold_cache, args.seed),
                  "scale": lambda: scale(epochs=args.epochs, seed=args.seed),
                  "text": text}[args.part]()
        result["cpu_count"], result["torch_threads"] = os.cpu_count(), args.threads
        save_result(RESULTS, args.part + ("-cold-cache" if args.cold_cache else ""), result)
    if args.table:
        print(table())


if __name__ == "__main__":
    main()
