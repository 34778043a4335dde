"""``python -m benchmarks.ablation``: the hybrid and its ablations on both splits, one command.

Runs ``hybrid`` (full), ``hybrid_no_text``, ``hybrid_no_kg``, ``hybrid_no_mf``,
``hybrid_gate`` (the learned gate on) and ``hybrid_no_lightgcn`` (ALS alone beside the
GNN) through :mod:`benchmarks.run` on ml-100k's random 8:1:1 and
cold-item (10 % of items held out) splits, over ``--seeds`` (default ``0,1,2``), then writes
``ablation.json`` and ``ablation.md`` (test Recall/NDCG@20, tail-bucket recall, cold-only
recall, the learned gate by item popularity, best epoch, seconds) beside ``benchmarks.run``'s
own ``results.json`` / ``results.md`` in ``--out`` (default ``benchmarks/out/ablation``)::

    python -m benchmarks.ablation
    python -m benchmarks.ablation --seeds 0 --models hybrid,hybrid_no_kg --split random

Any other option is passed on to ``python -m benchmarks.run`` (``--device``, ``--threads`` ...).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import run as bench  # noqa: E402
from benchmarks.report import mean_std  # noqa: E402
from benchmarks.hybrid_models import ABLATIONS  # noqa: E402
from hybridrec.cli_args import run_cli  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "ablation"
GATE_KEYS = ("head", "torso", "tail", "cold")


def _get(run: dict[str, Any], *path: str) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def ablation_table(results: dict[str, Any], k: int = 20) -> str:
    """One Markdown table per split, one row per variant (means ± std over seeds)."""
    lines = []
    splits: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in results["runs"]:
        splits.setdefault(run["split"], {}).setdefault(run["model"], []).append(run)
    for split, models in splits.items():
        head = ["variant", f"R@{k}", f"N@{k}", f"tail R@{k}", f"cold-only R@{k}",
                f"cold-only N@{k}"] + [f"gate {g}" for g in GATE_KEYS] + ["best epoch",
                                                                           "train s", "seeds"]
        lines += [f"### split: {split}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for model, runs in models.items():
            cells = [model,
                     mean_std([_get(r, "test", f"recall@{k}") for r in runs]),
                     mean_std([_get(r, "test", f"ndcg@{k}") for r in runs]),
                     mean_std([_get(r, "test", "by_popularity", "tail", f"recall@{k}") for r in runs]),
                     mean_std([_get(r, "test_cold_only", f"recall@{k}") for r in runs]),
                     mean_std([_get(r, "test_cold_only", f"ndcg@{k}") for r in runs])]
            cells += [mean_std([_get(r, "gate", g) for r in runs]) for g in GATE_KEYS]
            cells += [mean_std([_get(r, "best_epoch") for r in runs]),
                      mean_std([_get(r, "train_seconds") for r in runs]), str(len(runs))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0],
        epilog="Any other option goes on to python -m benchmarks.run: the data flags "
               "(--interactions, --kg ...), --split, --threads, --device, --max-epochs; see "
               "python -m benchmarks.run --help.")
    parser.add_argument("--models", default=",".join(ABLATIONS),
                        help=f"variants (default: {','.join(ABLATIONS)})")
    parser.add_argument("--seeds", default="0,1,2", help="model seeds (default: 0,1,2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default: benchmarks/out/ablation)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    code = bench.main(["--models", args.models, "--seeds", args.seeds, "--out", str(args.out),
                       "--no-search", *rest])
    if code:
        return code
    results = json.loads((args.out / "results.json").read_text())
    table = ablation_table(results)
    text = ("# Hybrid ablations\n\n"
            f"`{results['command'].replace('benchmarks.run', 'benchmarks.ablation')}` on "
            f"{results['dataset']['name']}, device {results['device']}, test part, full "
            "ranking; cold-only = ranking among the held-out items only; gate = mean weight "
            "of the GNN score per item-popularity bucket (and cold items).\n\n" + table)
    for name, content in (("ablation.md", text),
                          ("ablation.json", json.dumps(results, indent=1) + "\n")):
        tmp = args.out / f"{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, args.out / name)
    print(table)
    print(f"wrote {args.out}/ablation.json, ablation.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
