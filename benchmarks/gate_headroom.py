r"""``python -m benchmarks.gate_headroom``: how much could a gate on degrees buy over the fixed mix?

A diagnostic, not a model: for each trained run folder (frozen towers), a family of gates over
the mix's towers is swept and every point is evaluated on validation *and on test*:

.. math::
    s(u, i) = \sum_k w_k(u, i)\, \tilde s_k(u, i), \qquad
    w_k(u, i) = \operatorname{softmax}_k\big(\log w_k + a_k\, d_i + b_k\, d_u\big)

with :math:`\tilde s_k` the mix's standardised scores, :math:`w_k` its fixed weights, and
:math:`d_i, d_u` the standardised :math:`\log(1 + \deg)` of the item and user in training; ALS
is the reference tower (:math:`a = b = 0`), the slopes of the GNN and of LightGCN run over
:data:`SLOPES` (the GNN's user slope too). Slopes of 0 are the fixed mix. What a learned gate
reads (degrees) is here, in the simplest form a ranking metric can be searched over directly.

Reported per run: the fixed mix, the point validation picks, and the point that is best *on
test* (an oracle: the most this family can buy, which no model selection may use). Writes
``gate_headroom.json`` and ``gate_headroom.md`` to ``--out``::

    python -m benchmarks.gate_headroom --runs R0,R1,R2 --out benchmarks/results/gate/random
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from hybridrec.cli_args import run_cli  # noqa: E402
from hybridrec.evaluation import evaluate  # noqa: E402
from hybridrec.models.mix import Mix  # noqa: E402
from hybridrec.run import json_ready, load_run  # noqa: E402

SLOPES = (-0.5, -0.25, 0.0, 0.25, 0.5)
USER_SLOPES = (-0.25, 0.0, 0.25)


def _z(values: Tensor) -> Tensor:
    x = torch.log1p(values.float())
    return (x - x.mean()) / x.std().clamp(min=1e-6)


class DegreeGate:
    """The mix's towers, weighted per (user, item) by a softmax over degree-linear logits."""

    def __init__(self, mix: Mix, item_slopes: dict[str, float], user_slopes: dict[str, float]
                 ) -> None:
        self.mix = mix
        self.item_slopes, self.user_slopes = item_slopes, user_slopes
        self.d_item, self.d_user = _z(mix.item_degree), _z(mix.user_degree)

    def score(self, user_index: Tensor) -> Tensor:
        mix = self.mix
        with torch.no_grad():
            parts = mix.parts(user_index)  # w_k * standardised scores
            logits, z = [], []
            for name in mix.names:
                z.append(parts[name] / mix.weights[name])
                logits.append(
                    torch.log(torch.tensor(mix.weights[name]))
                    + self.item_slopes.get(name, 0.0) * self.d_item.unsqueeze(0)
                    + self.user_slopes.get(name, 0.0) * self.d_user[user_index].unsqueeze(1))
            weights = torch.softmax(torch.stack(logits), 0)
            return (weights * torch.stack(z)).sum(0)


def sweep(folder: str) -> dict[str, Any]:
    """Every grid point of one run, validation and test NDCG@20 / tail Recall@20."""
    run = load_run(folder)
    mix, split, dataset = run.scorer, run.split, run.dataset
    if not {"gnn", "als", "lightgcn"} <= set(mix.towers) or mix.gate is not None:
        raise SystemExit(f"{folder}: expected a fixed mix of gnn, als and lightgcn")
    points = []
    for a_gnn, a_lgcn, b_gnn in itertools.product(SLOPES, SLOPES, USER_SLOPES):
        scorer = DegreeGate(mix, {"gnn": a_gnn, "lightgcn": a_lgcn}, {"gnn": b_gnn})
        point: dict[str, Any] = {"gnn_item": a_gnn, "lightgcn_item": a_lgcn, "gnn_user": b_gnn}
        for part in ("valid", "test"):
            values = evaluate(scorer, dataset, split, part=part, ks=(20,))
            point[part] = {"ndcg@20": values["ndcg@20"],
                           "tail_recall@20": values["by_popularity"]["tail"]["recall@20"]}
        points.append(point)
    fixed = next(p for p in points if not (p["gnn_item"] or p["lightgcn_item"] or p["gnn_user"]))
    chosen = max(points, key=lambda p: p["valid"]["ndcg@20"])
    oracle = max(points, key=lambda p: p["test"]["ndcg@20"])
    return {"run": folder, "split": split.kind, "fixed": fixed, "validation_pick": chosen,
            "test_oracle": oracle, "points": points}


def _mean_std(values: list[float]) -> list[float]:
    return [round(statistics.mean(values), 4),
            round(statistics.stdev(values), 4) if len(values) > 1 else 0.0]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in ("fixed", "validation_pick", "test_oracle"):
        out[name] = {f"{part}_{metric}": _mean_std([r[name][part][metric] for r in runs])
                     for part in ("valid", "test") for metric in ("ndcg@20", "tail_recall@20")}
    out["validation_pick_beats_fixed_on_test"] = sum(
        r["validation_pick"]["test"]["ndcg@20"] > r["fixed"]["test"]["ndcg@20"] for r in runs)
    return out


def table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| run | gate | slopes (GNN item, LightGCN item, GNN user) | valid N@20 | test N@20 "
             "| test tail R@20 |", "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        for name in ("fixed", "validation_pick", "test_oracle"):
            p = r[name]
            lines.append(f"| {Path(r['run']).name} | {name} | {p['gnn_item']}, "
                         f"{p['lightgcn_item']}, {p['gnn_user']} | {p['valid']['ndcg@20']:.4f} "
                         f"| {p['test']['ndcg@20']:.4f} | {p['test']['tail_recall@20']:.4f} |")
    lines += ["", "| gate, mean ± std | valid N@20 | test N@20 | test tail R@20 |",
              "| --- | --- | --- | --- |"]
    for name in ("fixed", "validation_pick", "test_oracle"):
        s = summary[name]
        lines.append(f"| {name} | {s['valid_ndcg@20'][0]:.4f} ± {s['valid_ndcg@20'][1]:.4f} "
                     f"| {s['test_ndcg@20'][0]:.4f} ± {s['test_ndcg@20'][1]:.4f} "
                     f"| {s['test_tail_recall@20'][0]:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate_headroom",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="run folders, comma-separated")
    parser.add_argument("--out", default="benchmarks/out/gate",
                        help="output folder (default: benchmarks/out/gate)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = [sweep(folder) for folder in args.runs.split(",")]
    summary = summarise(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate_headroom.json").write_text(json.dumps(json_ready(
        {"command": "python -m benchmarks.gate_headroom --runs " + args.runs,
         "slopes": SLOPES, "user_slopes": USER_SLOPES, "summary": summary, "runs": runs}),
        indent=1) + "\n", encoding="utf-8")
    (out / "gate_headroom.md").write_text(table(runs, summary), encoding="utf-8")
    print(table(runs, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
