"""``python -m hybridrec.data info``: what a data set, its split and its training graph hold.

Examples::

    python -m hybridrec.data info                               # ml-100k, random split
    python -m hybridrec.data info --split cold-items --json
    python -m hybridrec.data info --interactions ratings.csv --items movies.csv \\
        --item-text title --item-categorical genre
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from hybridrec.cli_args import (
    add_data_arguments,
    add_split_arguments,
    load_dataset_from_args,
    run_cli,
    split_from_args,
)
from hybridrec.data.dataset import Dataset
from hybridrec.data.split import Split


def _stats(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "median": float(np.median(values)),
            "mean": round(float(values.mean()), 3), "max": int(values.max())}


def _cold(split: Split, dataset: Dataset) -> dict[str, object]:
    """Items and users of valid/test with no training interaction, and their rows."""
    trained_items = np.bincount(split.train.item_index, minlength=dataset.num_items) > 0
    trained_users = np.bincount(split.train.user_index, minlength=dataset.num_users) > 0
    out: dict[str, object] = {}
    for part in ("valid", "test"):
        inter = getattr(split, part)
        cold_item_rows = ~trained_items[inter.item_index]
        cold_user_rows = ~trained_users[inter.user_index]
        out[part] = {
            "cold_items": int(len(np.unique(inter.item_index[cold_item_rows]))),
            "cold_item_rows": int(cold_item_rows.sum()),
            "cold_users": int(len(np.unique(inter.user_index[cold_user_rows]))),
            "cold_user_rows": int(cold_user_rows.sum()),
        }
    return out


def info(args: argparse.Namespace) -> dict[str, object]:
    """Everything ``info`` reports, JSON-ready."""
    t0 = time.perf_counter()
    dataset = load_dataset_from_args(args)
    t1 = time.perf_counter()
    split = split_from_args(args, dataset)
    t2 = time.perf_counter()
    # Imported late: torch is slow to import, and bad input should fail fast.
    from hybridrec.graph import build_graph

    t3 = time.perf_counter()
    graph = build_graph(dataset, split.train)
    t4 = time.perf_counter()

    summary = dataset.info()
    degree = {t: np.zeros(graph[t].num_nodes, np.int64) for t in graph.node_types}
    edges = {}
    for edge_type, edge_index in graph.edge_index_dict.items():
        edges["__".join(edge_type)] = int(edge_index.size(1))
        # Every edge type has its reverse, so in-degree over all types is the degree.
        degree[edge_type[2]] += np.bincount(edge_index[1].numpy(), minlength=graph[edge_type[2]].num_nodes)
    train = split.train
    return {
        "dataset": dataset.name,
        "users": dataset.num_users,
        "items": dataset.num_items,
        "interactions": len(dataset.interactions),
        "density": summary["density"],
        "has_rating": summary["has_rating"],
        "has_timestamp": summary["has_timestamp"],
        "user_degree": summary["user_degree"],
        "item_degree": summary["item_degree"],
        "kg": {key: summary[key] for key in ("entities", "relations", "kg_triples",
                                             "item_attribute_triples", "user_attribute_triples",
                                             "linked_items")},
        "split": {
            "kind": split.kind,
            "seed": split.seed,
            "sizes": split.sizes(),
            "held_out_by_design": {"items": len(split.cold_items), "users": len(split.cold_users)},
            "cold": _cold(split, dataset),
        },
        "graph": {
            "nodes": {t: int(graph[t].num_nodes) for t in graph.node_types},
            "edge_types": len(graph.edge_types),
            "edges": edges,
            "train_density": len(train) / max(1, dataset.num_users * dataset.num_items),
            "train_user_degree": _stats(np.bincount(train.user_index, minlength=dataset.num_users)),
            "train_item_degree": _stats(np.bincount(train.item_index, minlength=dataset.num_items)),
            "node_degree": {t: _stats(d) for t, d in degree.items()},
            "isolated_nodes": {t: int((d == 0).sum()) for t, d in degree.items()},
        },
        "seconds": {"load": round(t1 - t0, 3), "split": round(t2 - t1, 3),
                    "graph": round(t4 - t3, 3), "total": round(t2 - t0 + t4 - t3, 3)},
    }


def _fmt_stats(s: dict[str, float]) -> str:
    return f"min {s['min']}, median {s['median']:g}, mean {s['mean']:g}, max {s['max']}"


def render(report: dict[str, object]) -> str:
    """The report as aligned plain text."""
    r = report
    kg, split, graph, secs = r["kg"], r["split"], r["graph"], r["seconds"]
    lines = [
        f"data set      {r['dataset']}",
        f"users         {r['users']:,}",
        f"items         {r['items']:,}",
        f"interactions  {r['interactions']:,}  (density {r['density']:.4f}; "
        f"rating {'yes' if r['has_rating'] else 'no'}, timestamp {'yes' if r['has_timestamp'] else 'no'})",
        f"user degree   {_fmt_stats(r['user_degree'])}",
        f"item degree   {_fmt_stats(r['item_degree'])}",
        f"KG            {kg['entities']:,} entities, {kg['relations']} relations, "
        f"{kg['kg_triples']:,} triples, {kg['item_attribute_triples']:,} item and "
        f"{kg['user_attribute_triples']:,} user attribute triples, {kg['linked_items']:,} linked items",
        "",
        f"split         {split['kind']}" + (f" (seed {split['seed']})" if split["seed"] is not None else ""),
        "              " + ", ".join(f"{k} {v:,}" for k, v in split["sizes"].items()),
        f"held out      {split['held_out_by_design']['items']:,} items, "
        f"{split['held_out_by_design']['users']:,} users (by design)",
    ]
    for part, cold in split["cold"].items():
        lines.append(f"cold in {part:<5} {cold['cold_items']:,} items ({cold['cold_item_rows']:,} rows), "
                     f"{cold['cold_users']:,} users ({cold['cold_user_rows']:,} rows) without training rows")
    lines += ["", "training graph"]
    for node_type, n in graph["nodes"].items():
        lines.append(f"  {node_type:<8} {n:>9,} nodes  degree {_fmt_stats(graph['node_degree'][node_type])}"
                     f"  isolated {graph['isolated_nodes'][node_type]:,}")
    lines.append(f"  train density {graph['train_density']:.4f}; train user degree "
                 f"{_fmt_stats(graph['train_user_degree'])}; train item degree "
                 f"{_fmt_stats(graph['train_item_degree'])}")
    lines.append(f"  {graph['edge_types']} edge types:")
    width = max((len(k) for k in graph["edges"]), default=0)
    lines += [f"    {k:<{width}}  {v:>9,}" for k, v in graph["edges"].items()]
    lines += ["", f"seconds       load {secs['load']:.2f}, split {secs['split']:.2f}, "
                  f"graph {secs['graph']:.2f}, total {secs['total']:.2f}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hybridrec.data",
                                     description="Inspect data sets, splits and training graphs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info_parser = commands.add_parser(
        "info", help="counts, degrees, cold items and the training graph of a data set",
        description="Load a data set, split it and build the training graph; report counts, "
                    "degrees, cold items per split, KG sizes and timings.")
    add_data_arguments(info_parser)
    add_split_arguments(info_parser)
    info_parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = info(args)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
