r"""``python -m benchmarks.tail_tradeoff``: what the long tail costs, post hoc, on trained runs.

For each run folder (the default hybrid, frozen) three cheap families of changes are swept, with
no retraining, and each point is evaluated on validation and on test (NDCG@20, Recall@20 and
the tail bucket's Recall@20, :func:`hybridrec.evaluation.evaluate`):

* ``popularity_penalty`` (:class:`PopularityPenalty`): subtract :math:`\lambda` times the
  standardised :math:`\log(1 + \deg_i)` of the item's training interactions;
* ``lightgcn_weight``: the mix's weights ``gnn : als : lightgcn = 1 : 1 : w`` (LightGCN alone
  has the best tail; ``w = 1`` is the unchanged mix);
* ``tail_quota`` (:class:`TailQuota`): at least ``m`` of the top-K slots go to tail items, the
  user's best-scored ones, everything else kept in the mix's order.

Each family's operating point is chosen on validation only (:func:`choose`): the grid point with
the highest mean validation tail Recall@20 among those whose mean validation NDCG@20 is at least
``--ndcg-ratio`` (0.99) times the unchanged mix's. Its test figures are then reported as mean
± std over the runs. Writes ``tail_tradeoff.json`` (every point, per run, both parts, and the
choices), ``tail_tradeoff.md`` and ``tail_tradeoff.png`` (test NDCG@20 against test tail
Recall@20) to ``--out``::

    python -m benchmarks.tail_tradeoff --runs /tmp/tail/run0,/tmp/tail/run1,/tmp/tail/run2 \
        --out benchmarks/results/tail
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from hybridrec.cli_args import run_cli  # noqa: E402
from hybridrec.data.split import Split  # noqa: E402
from hybridrec.evaluation import evaluate, item_popularity_buckets  # noqa: E402
from hybridrec.models.mix import Mix  # noqa: E402
from hybridrec.run import json_ready, load_run  # noqa: E402
from hybridrec.scoring import Scorer, UserItems  # noqa: E402

K = 20
PARTS = ("valid", "test")
FAMILIES = ("popularity_penalty", "lightgcn_weight", "tail_quota")
GRIDS: dict[str, list[float]] = {
    # lambda: fine where NDCG holds, coarse where it collapses.
    "popularity_penalty": [round(0.025 * i, 3) for i in range(21)] + [0.6, 0.7, 0.8, 0.9, 1.0],
    "lightgcn_weight": [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 16.0],  # w
    "tail_quota": [float(m) for m in range(11)],  # m of the K slots
}
PARAM = {"popularity_penalty": "λ", "lightgcn_weight": "w", "tail_quota": "m"}
TARGET_TAIL = 0.065  # issue 17, item 5
METRICS = ("ndcg@20", "recall@20", "tail_recall@20", "tail_share@20", "avg_popularity@20",
           "coverage@20")


class PopularityPenalty:
    r"""A scorer's scores minus a popularity penalty.

    .. math::
        s'(u, i) = s(u, i) - \lambda\, \frac{p_i - \bar p}{\sigma_p}, \qquad
        p_i = \log(1 + \deg_i)

    with :math:`\bar p, \sigma_p` the mean and deviation of :math:`p` over the catalogue, so
    :math:`\lambda` is in units of the mix's per-user standardised scores.

    Args:
        base: the scorer to re-rank (any ``score(user_index) -> [B, num_items]``).
        item_degree: training interactions per item ``[num_items]``.
        lam: :math:`\lambda` (``0``: exactly ``base``'s scores).
    """

    def __init__(self, base: Scorer, item_degree: Tensor, lam: float) -> None:
        p = torch.log1p(item_degree.double())
        self.base = base
        self.lam = float(lam)
        spread = p.std() if len(p) > 1 and p.std() > 0 else p.new_ones(())  # one degree: no spread
        self.penalty = (self.lam * (p - p.mean()) / spread).float()  # [I]

    def score(self, user_index: Tensor) -> Tensor:
        scores = self.base.score(user_index)  # [B, I]
        return scores - self.penalty.to(scores.device)


class TailQuota:
    """A scorer's top-``k`` list with at least ``min_tail`` tail items.

    Walking down the user's ranking (seen items skipped), every tail item is kept but only the
    first ``k - min_tail`` others; the top-``k`` of what is kept is the list, in the base
    scorer's order. A list that already holds ``min_tail`` tail items is unchanged. Dropped
    items keep their order below every kept one.

    Args:
        base: the scorer to re-rank.
        tail: ``bool [num_items]``, the tail items.
        seen: the items each user has already seen (they take no slot).
        k: the list length the quota is for.
        min_tail: tail slots, at most ``k`` (``0``: exactly ``base``'s scores).
    """

    def __init__(self, base: Scorer, tail: Tensor, seen: UserItems, k: int,
                 min_tail: int) -> None:
        if not 0 <= min_tail <= k:
            raise ValueError(f"TailQuota: min_tail must lie in [0, {k}], got {min_tail}")
        self.base, self.tail, self.seen = base, tail.bool(), seen
        self.k, self.min_tail = k, int(min_tail)

    def score(self, user_index: Tensor) -> Tensor:
        scores = self.base.score(user_index)  # [B, I]
        if self.min_tail == 0 or scores.numel() == 0:
            return scores
        seen = self.seen.dense(user_index.to(self.seen.indptr.device)).to(scores.device)
        order = scores.masked_fill(seen, -torch.inf).argsort(dim=1, descending=True, stable=True)
        other = ~(self.tail.to(scores.device)[order] | seen.gather(1, order))  # [B, I] sorted
        drop_sorted = other & (torch.cumsum(other, 1) > self.k - self.min_tail)
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        # Below every kept item, in their own order: shift by more than the row's range.
        span = (scores.amax(1, keepdim=True) - scores.amin(1, keepdim=True)) * 2 + 1
        return torch.where(drop, scores - span, scores)


def reweighted(mix: Mix, name: str, factor: float) -> Mix:
    """``mix`` with tower ``name``'s weight multiplied by ``factor`` (the towers are shared)."""
    if mix.gate is not None:
        raise ValueError("reweighted: a gated mix has no fixed weights to change")
    weights = {n: w * (factor if n == name else 1.0) for n, w in mix.weights.items()}
    return Mix(mix.towers, mix.user_degree, mix.item_degree, weights, None, mix.cold,
               mix.item_prior)


def alone(mix: Mix, name: str) -> Mix:
    """Tower ``name`` by itself, as a one-tower mix."""
    return Mix({name: mix.towers[name]}, mix.user_degree, mix.item_degree)


def choose(valid: Sequence[dict[str, float]], base_ndcg: float, ratio: float = 0.99) -> int:
    """Index of the operating point, from validation figures only.

    The point with the highest ``tail_recall@20`` among those with ``ndcg@20 >= ratio *
    base_ndcg`` (ties: the higher NDCG, then the earlier point). Test figures never reach here.

    Raises:
        ValueError: no point keeps the NDCG floor.
    """
    floor = ratio * base_ndcg
    feasible = [i for i, v in enumerate(valid) if v["ndcg@20"] >= floor]
    if not feasible:
        raise ValueError(f"choose: no point has validation NDCG@20 >= {floor:.4f}")
    return max(feasible, key=lambda i: (valid[i]["tail_recall@20"], valid[i]["ndcg@20"], -i))


def figures(scorer: Scorer, dataset: Any, split: Split, part: str, device: str
            ) -> dict[str, float]:
    """The figures this benchmark records for one scorer on one part."""
    e = evaluate(scorer, dataset, split, part=part, ks=[K], device=device)
    tail = e["by_popularity"]["tail"]
    return {"ndcg@20": e["ndcg@20"], "recall@20": e["recall@20"],
            "tail_recall@20": tail["recall@20"], "tail_share@20": tail["share@20"],
            "avg_popularity@20": e["avg_popularity@20"], "coverage@20": e["coverage@20"]}


def family_scorers(family: str, mix: Mix, split: Split, part: str
                   ) -> Callable[[float], Scorer]:
    """Grid value -> scorer of one family, for one run and part (the quota skips the items the
    evaluator masks on that part)."""
    num_users, num_items = mix.num_users, mix.num_items
    degree = torch.from_numpy(np.bincount(split.train.item_index, minlength=num_items))
    if family == "popularity_penalty":
        return lambda lam: PopularityPenalty(mix, degree, lam)
    if family == "lightgcn_weight":
        return lambda w: reweighted(mix, "lightgcn", w)
    if family == "tail_quota":
        tail = torch.from_numpy(item_popularity_buckets(degree.numpy(), 3) == 2)
        seen = UserItems.from_interactions(
            [split.train] + ([split.valid] if part == "test" else []), num_users, num_items)
        return lambda m: TailQuota(mix, tail, seen, K, int(m))
    raise ValueError(f"family_scorers: unknown family {family!r}, expected one of {FAMILIES}")


def sweep_run(folder: Path, device: str) -> dict[str, Any]:
    """Every point of every family, and the references, on one run (both parts)."""
    run = load_run(folder)
    mix, split, dataset = run.scorer, run.split, run.dataset
    out: dict[str, Any] = {"folder": str(folder), "train_seed": run.config.train.seed,
                           "split_seed": run.config.data.split_seed, "mix": repr(mix)}
    out["mix_unchanged"] = {p: figures(mix, dataset, split, p, device) for p in PARTS}
    out["lightgcn_alone"] = {p: figures(alone(mix, "lightgcn"), dataset, split, p, device)
                             for p in PARTS}
    out["families"] = {}
    for family in FAMILIES:
        make = {p: family_scorers(family, mix, split, p) for p in PARTS}
        out["families"][family] = [
            {"param": x, **{p: figures(make[p](x), dataset, split, p, device) for p in PARTS}}
            for x in GRIDS[family]]
        print(f"{folder.name} {family}: {len(GRIDS[family])} points", flush=True)
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def summarise(runs: list[dict[str, Any]], ratio: float) -> dict[str, Any]:
    """Means over runs per point, and each family's choice (on the mean validation figures)."""
    def mean_of(entries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
        return {p: {m: _stats([e[p][m] for e in entries]) for m in METRICS} for p in PARTS}

    base = mean_of([r["mix_unchanged"] for r in runs])
    out: dict[str, Any] = {"mix_unchanged": base,
                           "lightgcn_alone": mean_of([r["lightgcn_alone"] for r in runs]),
                           "curves": {}, "chosen": {}}
    base_ndcg = base["valid"]["ndcg@20"]["mean"]
    for family in FAMILIES:
        curve = [{"param": x, **mean_of([r["families"][family][j] for r in runs])}
                 for j, x in enumerate(GRIDS[family])]
        out["curves"][family] = curve
        valid = [{m: point["valid"][m]["mean"] for m in METRICS} for point in curve]
        j = choose(valid, base_ndcg, ratio)
        # The same rule run by run, for how stable the choice is.
        per_run = [GRIDS[family][choose([pt["valid"] for pt in r["families"][family]],
                                        r["mix_unchanged"]["valid"]["ndcg@20"], ratio)]
                   for r in runs]
        test = curve[j]["test"]
        out["chosen"][family] = {
            "param": GRIDS[family][j], "valid": curve[j]["valid"], "test": test,
            "param_per_run": per_run,
            "test_ndcg_change": test["ndcg@20"]["mean"] / base["test"]["ndcg@20"]["mean"] - 1,
            "meets_target": bool(test["tail_recall@20"]["mean"] >= TARGET_TAIL and
                                 test["ndcg@20"]["mean"] >= ratio *
                                 base["test"]["ndcg@20"]["mean"])}
    return out


def _cell(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def markdown(result: dict[str, Any]) -> str:
    """The chosen points against the unchanged mix, then every family's mean curve."""
    s, ratio = result["summary"], result["ndcg_ratio"]
    head = ["", "setting (chosen on valid)", "valid N@20", "margin over floor",
            "valid tail R@20", "test N@20",
            "test R@20", "test tail R@20", "test tail share@20", "test N@20 vs mix"]
    lines = ["# Long tail: post-hoc trade-off of the hybrid (ml-100k, random split)", "",
             f"Runs: {', '.join(r['folder'] for r in result['runs'])} (train seeds "
             f"{[r['train_seed'] for r in result['runs']]}, split seed "
             f"{result['runs'][0]['split_seed']}). Rule, on validation only: the highest mean "
             f"valid tail Recall@20 with mean valid NDCG@20 ≥ {ratio} × the unchanged mix's. "
             f"Margin over floor: that mean valid NDCG@20 minus the floor; per run: the "
             f"rule applied to each run alone. Test: mean ± std over runs. Target (issue 17, "
             f"item 5): test tail Recall@20 ≥ "
             f"{TARGET_TAIL} at NDCG@20 within {1 - ratio:.0%} of the mix.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    floor = ratio * s["mix_unchanged"]["valid"]["ndcg@20"]["mean"]

    def row(name: str, setting: str, entry: dict[str, Any], change: str) -> str:
        v, t = entry["valid"], entry["test"]
        return "| " + " | ".join([name, setting, f"{v['ndcg@20']['mean']:.4f}",
                                  f"{v['ndcg@20']['mean'] - floor:+.5f}",
                                  f"{v['tail_recall@20']['mean']:.4f}", _cell(t["ndcg@20"]),
                                  _cell(t["recall@20"]), _cell(t["tail_recall@20"]),
                                  f"{t['tail_share@20']['mean']:.3f}", change]) + " |"

    base_test = s["mix_unchanged"]["test"]["ndcg@20"]["mean"]
    lines.append(row("mix (unchanged)", "1 : 1 : 1", s["mix_unchanged"], "–"))
    for family in FAMILIES:
        c = s["chosen"][family]
        per_run = ", ".join(f"{x:g}" for x in c["param_per_run"])
        lines.append(row(family, f"{PARAM[family]} = {c['param']:g} (per run: {per_run})", c,
                         f"{c['test_ndcg_change']:+.2%}"))
    lg = s["lightgcn_alone"]
    lines.append(row("LightGCN alone (reference)", "–", lg,
                     f"{lg['test']['ndcg@20']['mean'] / base_test - 1:+.2%}"))
    met = [f for f in FAMILIES if s["chosen"][f]["meets_target"]]
    lines += ["", f"Meets the target: {', '.join(met) if met else 'none'}.", ""]
    for family in FAMILIES:
        lines += [f"## {family} (means over runs)", "",
                  f"| {PARAM[family]} | valid N@20 | valid tail R@20 | test N@20 | test R@20 | "
                  f"test tail R@20 | test avg pop@20 | test coverage@20 |",
                  "|---|---|---|---|---|---|---|---|"]
        for pt in s["curves"][family]:
            v, t = pt["valid"], pt["test"]
            lines.append(f"| {pt['param']:g} | {v['ndcg@20']['mean']:.4f} | "
                         f"{v['tail_recall@20']['mean']:.4f} | {t['ndcg@20']['mean']:.4f} | "
                         f"{t['recall@20']['mean']:.4f} | {t['tail_recall@20']['mean']:.4f} | "
                         f"{t['avg_popularity@20']['mean']:.1f} | "
                         f"{t['coverage@20']['mean']:.3f} |")
        lines.append("")
    lines.append(f"Total {result['seconds']:.0f} s, {result['device']}, torch "
                 f"{result['torch']}.")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """NDCG@20 against tail Recall@20, one line per family (means over runs), valid and test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, ratio = result["summary"], result["ndcg_ratio"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, part in zip(axes, PARTS):
        for family, color in zip(FAMILIES, ("tab:blue", "tab:orange", "tab:green")):
            curve = s["curves"][family]
            xs = [pt[part]["tail_recall@20"]["mean"] for pt in curve]
            ys = [pt[part]["ndcg@20"]["mean"] for pt in curve]
            ax.plot(xs, ys, "o-", ms=3, color=color, label=family)
            c = s["chosen"][family]
            ax.plot(c[part]["tail_recall@20"]["mean"], c[part]["ndcg@20"]["mean"], "o", ms=11,
                    mfc="none", mec=color, mew=2)
        for name, marker, label in (("mix_unchanged", "*", "mix (unchanged)"),
                                    ("lightgcn_alone", "X", "LightGCN alone")):
            e = s[name][part]
            ax.plot(e["tail_recall@20"]["mean"], e["ndcg@20"]["mean"], marker, ms=13,
                    color="black" if marker == "*" else "grey", label=label)
        base = s["mix_unchanged"][part]["ndcg@20"]["mean"]
        ax.axhline(ratio * base, ls="--", color="grey", lw=1,
                   label=f"{ratio} × mix NDCG@20")
        if part == "test":
            ax.axvline(TARGET_TAIL, ls=":", color="red", lw=1, label=f"target {TARGET_TAIL}")
        # Zoom on the region near the mix; the penalty's collapse (NDCG far below) is cut off.
        ax.set_ylim(0.9 * base, 1.01 * base)
        ax.set_xlabel(f"{part} tail Recall@20")
        ax.set_ylabel(f"{part} NDCG@20")
        ax.set_title(f"{part} (mean of {len(result['runs'])} runs)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("NDCG@20 vs tail Recall@20 of post-hoc changes to the mix; circles: chosen "
                 "on validation; NDCG below 0.9 × the mix's not shown", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tail_tradeoff",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True,
                        help="comma-separated run folders of python -m hybridrec.train")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tail"))
    parser.add_argument("--ndcg-ratio", type=float, default=0.99,
                        help="NDCG floor of the choice, as a share of the mix's (default: 0.99)")
    parser.add_argument("--device", default="cpu", help="where to rank (default: cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs = [sweep_run(Path(f), args.device) for f in args.runs.split(",") if f]
    result: dict[str, Any] = {"k": K, "ndcg_ratio": args.ndcg_ratio, "target_tail": TARGET_TAIL,
                              "grids": GRIDS, "device": args.device, "torch": torch.__version__,
                              "runs": runs}
    result["summary"] = summarise(runs, args.ndcg_ratio)
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    _write_text(args.out / "tail_tradeoff.json", json.dumps(json_ready(result), indent=1) + "\n")
    table = markdown(result)
    _write_text(args.out / "tail_tradeoff.md", table)
    plot(result, args.out / "tail_tradeoff.png")
    print(table)
    return 0


if __name__ == "__main__":
    run_cli(main)
