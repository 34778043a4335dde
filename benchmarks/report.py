"""Benchmark report: ``results.json`` -> Markdown table and PNG plots.

``python -m benchmarks.report benchmarks/out/results.json`` re-renders a finished run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_result(folder: Path, name: str, result: dict[str, Any]) -> Path:
    """One benchmark part's figures as ``folder/name.json`` (written atomically), and printed."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    _write_text(folder / f"{name}.json", text + "\n")
    print(text)
    return folder / f"{name}.json"


def mean_std(values: list[float | None], digits: int = 4) -> str:
    """A table cell of ``values`` over seeds or runs: ``"mean ± std"``, one value alone, or
    ``"–"`` (``None`` entries are skipped)."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _group(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """split -> model -> runs (one per seed), in first-seen order."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        out[run["split"]][run["model"]].append(run)
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """One Markdown table per split: accuracy, popularity buckets, cold items, cost.

    Values are means over seeds (± sample standard deviation when there are several).
    """
    ks = results["ks"]
    k = ks[-1]
    lines = []
    for split, models in _group(results["runs"]).items():
        buckets = next(iter(models.values()))[0]["test"]["by_popularity"] or {}
        head = (["model"] + [f"{m}@{kk}" for kk in ks for m in ("R", "N")] +
                [f"HR@{k}", f"MRR@{k}", f"cov@{k}", f"tail share@{k}"] +
                [f"{b} R@{k}" for b in buckets] +
                [f"cold-only R@{k}", f"cold-only N@{k}", "cold users", "train s", "eval s",
                 "peak RSS MB"])
        lines += [f"### split: {split}", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model, runs in models.items():
            def get(*path: str) -> list[float | None]:
                values = []
                for run in runs:
                    value: Any = run
                    for key in path:
                        value = None if value is None else value.get(key)
                    values.append(value)
                return values

            row = [model]
            row += [mean_std(get("test", f"{m}@{kk}")) for kk in ks for m in ("recall", "ndcg")]
            row += [mean_std(get("test", f"hit@{k}")), mean_std(get("test", f"mrr@{k}")),
                    mean_std(get("test", f"coverage@{k}"), 3),
                    mean_std(get("test", f"long_tail_share@{k}"), 3)]
            row += [mean_std(get("test", "by_popularity", b, f"recall@{k}")) for b in buckets]
            row += [mean_std(get("test_cold_only", f"recall@{k}")),
                    mean_std(get("test_cold_only", f"ndcg@{k}")),
                    mean_std(get("test_cold_only", "users_evaluated"), 0),
                    mean_std(get("train_seconds"), 1), mean_std(get("eval_seconds"), 2),
                    mean_std(get("memory", "peak_rss_mb"), 0)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    info = results.get("dataset", {})
    v = results.get("versions", {})
    lines += [
        f"Data: {info.get('name')} ({info.get('users')} users, {info.get('items')} items, "
        f"{info.get('interactions')} interactions). Full ranking over all items, training (and, "
        f"for test, validation) items masked; R = recall (hits / all test items of the user), "
        f"N = NDCG (binary, log2, ideal over min(n, K)); buckets split items into thirds of "
        f"training interactions; cold-only = ranking among items with no training interaction "
        f"(cold users = users with such a test item; few users means a noisy figure; models "
        f"that give every cold item the same score sit at chance level, ties being broken per "
        f"user by a seeded hash). "
        f"Hyperparameters chosen on {results.get('selection_metric')}. Seeds "
        f"{results.get('seeds')}; device {results.get('device')}; torch {v.get('torch')}, "
        f"torch_geometric {v.get('torch_geometric')}, implicit {v.get('implicit')}, python "
        f"{v.get('python')}. Total {results.get('total_seconds')} s.",
    ]
    return "\n".join(lines) + "\n"


def _mean(values: list[float | None]) -> float:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else 0.0


def plot_popularity(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars: recall@K per popularity bucket, one group per model, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["ks"][-1]
    grouped = _group(results["runs"])
    fig, axes = plt.subplots(1, len(grouped), figsize=(6 * len(grouped), 4), squeeze=False)
    for ax, (split, models) in zip(axes[0], grouped.items()):
        buckets = list(next(iter(models.values()))[0]["test"]["by_popularity"] or {})
        width = 0.8 / max(1, len(buckets))
        for b, bucket in enumerate(buckets):
            heights = [_mean([r["test"]["by_popularity"][bucket][f"recall@{k}"] for r in runs])
                       for runs in models.values()]
            ax.bar([m + b * width for m in range(len(models))], heights, width, label=bucket)
        ax.set_xticks([m + width * (len(buckets) - 1) / 2 for m in range(len(models))])
        ax.set_xticklabels(list(models), rotation=30, ha="right")
        ax.set_ylabel(f"recall@{k}")
        ax.set_title(f"{split}: recall@{k} by item popularity")
        ax.legend(title="bucket")
    fig.tight_layout()
    return _save(fig, path)


def plot_cold(results: dict[str, Any], path: Path) -> Path | None:
    """Bars of cold-only recall@K and NDCG@K per model, for splits that have cold items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["ks"][-1]
    panels = {split: models for split, models in _group(results["runs"]).items()
              if any(r["test_cold_only"] for runs in models.values() for r in runs)}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (split, models) in zip(axes[0], panels.items()):
        for j, metric in enumerate((f"recall@{k}", f"ndcg@{k}")):
            heights = [_mean([(r["test_cold_only"] or {}).get(metric) for r in runs])
                       for runs in models.values()]
            ax.bar([m + j * 0.4 for m in range(len(models))], heights, 0.4, label=metric)
        ax.set_xticks([m + 0.2 for m in range(len(models))])
        ax.set_xticklabels(list(models), rotation=30, ha="right")
        users = next(iter(models.values()))[0]["test_cold_only"]
        ax.set_title(f"{split}: ranking only cold items "
                     f"({users['candidate_items'] if users else 0} items)")
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_report(results: dict[str, Any], out: str | os.PathLike[str]) -> str:
    """Write ``results.json``, ``results.md``, ``popularity.png`` and ``cold.png``; return the
    Markdown."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    _write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    table = markdown_table(results)
    _write_text(folder / "results.md", "# hybridrec benchmark\n\n" + table)
    plot_popularity(results, folder / "popularity.png")
    plot_cold(results, folder / "cold.png")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Re-render results.md and plots.")
    parser.add_argument("results", type=Path, help="a results.json written by benchmarks.run")
    parser.add_argument("--out", type=Path, default=None, help="(default: its folder)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(write_report(results, args.out or args.results.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
