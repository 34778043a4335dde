"""Cold items in the full ranking: the plain mix against the cold-start stage, on runs trained
with ``--cold-start`` on a split with cold items.

    python -m hybridrec.train --split cold-items --seed S --cold-start --no-baselines \\
        --threads 1 --out runs/cold-S                                  # S = 0, 1, 2
    python -m benchmarks.cold_start --runs runs/cold-0,runs/cold-1,runs/cold-2

For each run, three ways to score the items without training interactions, on the same
frozen scorers:

* ``plain``: mixed as the other items (the default, no stage);
* ``stage``: the stage the run kept, chosen on the validation part's cold items (``plain``
  again where validation did not keep one);
* ``simulated``: the stage chosen on a simulated cold start instead (a tenth of the warm
  items made cold beside the split's own; what a split without cold items uses).

Valid and test NDCG@20 and Recall@20, the cold items' Recall@20 inside the full ranking, their
share of the top-20 slots against their share of the positives (and the share of the slots on
cold items without a test positive: on a cold-item split, validation's cold items, whose rows
all went to validation), and the cold-only Recall@20
(ranking among cold items); at 20, or the whole of a smaller catalogue. Writes ``benchmarks/results/ml-100k-cold-start/cold_start.json``
and prints a Markdown table of means and standard deviations over the runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from benchmarks.report import mean_std, save_result

RESULTS = Path("benchmarks/results/ml-100k-cold-start")
VARIANTS = ("plain", "stage", "simulated")
COLUMNS = (("valid", "ndcg"), ("test", "ndcg"), ("test", "recall"), ("test", "cold recall"),
           ("test", "cold share"), ("test", "idle cold share"), ("test", "cold positive share"),
           ("test", "cold-only recall"))



def _figures(run: Any, part: str, k: int) -> dict[str, float]:
    """The figures of :data:`COLUMNS` at cut-off ``k``."""
    from hybridrec.evaluation import evaluate

    full = evaluate(run.scorer, run.dataset, run.split, part=part, ks=[k])
    cold = full["cold"] or {}
    out = {"ndcg": full[f"ndcg@{k}"], "recall": full[f"recall@{k}"],
           "cold recall": cold.get(f"recall@{k}"), "cold share": cold.get(f"share@{k}"),
           "cold positive share": cold.get("positive_share"),
           "idle cold share": cold.get(f"idle_share@{k}")}
    if part == "test":
        only = evaluate(run.scorer, run.dataset, run.split, part=part, ks=[k],
                        item_subset="cold")
        out["cold-only recall"] = only[f"recall@{k}"]
    return out


def measure(folder: Path) -> dict[str, Any]:
    """The three variants of one run folder."""
    from hybridrec.baselines import validation_metric
    from hybridrec.graph import INTERACTS
    from hybridrec.pipeline import fit_cold_start
    from hybridrec.run import load_run

    run = load_run(folder)
    if not run.config.model.cold_start:
        raise SystemExit(f"{folder}: trained without --cold-start")
    mix = run.scorer
    kept = (mix.cold, mix.item_prior)
    k = min(20, run.dataset.num_items)
    result: dict[str, Any] = {"run": str(folder), "k": k, "split": run.split.kind,
                              "split_seed": run.config.data.split_seed,
                              "stage_search": run.info.get("cold_start")}
    mix.set_cold(None)
    result["plain"] = {p: _figures(run, p, k) for p in ("valid", "test")}
    mix.set_cold(*kept)
    result["stage"] = {p: _figures(run, p, k) for p in ("valid", "test")}  # plain if not kept
    # The simulated cold start: the same search, as on a split without validation cold items.
    mix.set_cold(None)
    metric = validation_metric(run.dataset, run.split, run.config.train.valid_metric)
    report = fit_cold_start(mix, run.model, run.graph, run.graph[INTERACTS].edge_index,
                            run.split, metric, simulate=True)
    result["simulated_search"] = {key: v for key, v in report.items() if key != "trials"}
    result["simulated"] = {p: _figures(run, p, k) for p in ("valid", "test")}
    return result


def table(results: list[dict[str, Any]]) -> str:
    k = results[0]["k"]
    head = ["variant"] + [f"{part} {name}" + ("" if name.endswith("positive share") else f"@{k}")
                          for part, name in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in VARIANTS:
        cells = [variant]
        for part, name in COLUMNS:
            cells.append(mean_std([r[variant][part].get(name) for r in results]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="run folders, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [measure(Path(folder)) for folder in args.runs.split(",")]
    text = table(results)
    save_result(args.out, "cold_start", {"runs": results, "table": text})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
