"""Approximate top-K for big catalogues: the exact dense scan against the FAISS index of
:class:`hybridrec.ann.ItemIndex`, on synthetic towers shaped like the hybrid's.

    python -m benchmarks.ann                      # 10^4, 10^5 and 10^6 items
    python -m benchmarks.ann --sizes 10000 100000

Towers as the hybrid has them: GNN 64 + 384 wide (its embedding and the centred text), ALS 32,
LightGCN 64, weights 2 : 1 : 1. Random, but with a shared low-rank structure: 16 latent
factors around one of 1,000 topics, seen through each tower's own projection, plus noise and an
item "popularity" scale, so that neighbours mean something and the standardisation matters.

For each size: build seconds (statistics, adding to HNSW, tuning ``efSearch``), index
MB (``faiss.serialize_index``), p50 / p99 latency of top-10 for one user with 20 seen items
excluded, for

* ``mix``: :meth:`Mix.score` + top-k, what ``Recommender`` does below
  :data:`~hybridrec.ann.EXACT_MAX_ITEMS` (computed up to 10^5 items only: it is the same
  O(n d) scan as ``exact`` with larger temporaries);
* ``exact``: the decomposition by a dense scan of the towers (``ItemIndex("exact")``);
* ``faiss``: the HNSW index (``ItemIndex("faiss")``);

and recall@10 of ``faiss`` against ``exact`` over 200 users. One torch and one FAISS thread.
Writes ``benchmarks/results/ann/ann.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import gc
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from benchmarks.report import save_result
from hybridrec.ann import ItemIndex
from hybridrec.models import Mix, Tower

RESULTS = Path("benchmarks/results/ann")
WIDTHS = {"gnn": 64 + 384, "als": 32, "lightgcn": 64}
WEIGHTS = {"gnn": 2.0, "als": 1.0, "lightgcn": 1.0}
RANK = 16  # latent factors
TOPICS = 1000  # cluster centres of the latent factors (genres, styles ...)
SPREAD = 0.5  # a node's latent spread around its topic
NOISE = 0.2  # per-dimension noise of each tower, beyond the latent structure
USERS = 1000


def synthetic_mix(num_items: int, num_users: int = USERS, seed: int = 0) -> Mix:
    """Towers with a shared clustered low-rank structure (see the module docstring), built
    in chunks."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.randn(TOPICS, RANK, generator=g)

    def latent(n: int) -> Tensor:
        pick = torch.randint(TOPICS, (n,), generator=g)
        return topics[pick] + SPREAD * torch.randn(n, RANK, generator=g)

    user_latent = latent(num_users)
    towers = {}
    for name, width in WIDTHS.items():
        proj = torch.randn(RANK, width, generator=g) / RANK ** 0.5
        users = user_latent @ proj + NOISE * torch.randn(num_users, width, generator=g)
        items = torch.empty(num_items, width)
        for lo in range(0, num_items, 65_536):
            hi = min(lo + 65_536, num_items)
            scale = torch.rand(hi - lo, 1, generator=g) * 1.5 + 0.25  # popularity-ish norms
            items[lo:hi] = scale * (latent(hi - lo) @ proj + NOISE * torch.randn(
                hi - lo, width, generator=g)) + 0.1
        towers[name] = Tower(users / width ** 0.5, items / width ** 0.5)
    return Mix(towers, torch.ones(num_users), torch.ones(num_items), weights=WEIGHTS)


def _latency(fn, users: list[int]) -> tuple[float, float, list]:
    """p50 / p99 milliseconds of ``fn(user)`` over ``users`` (after two warm-up calls)."""
    fn(users[0])
    fn(users[1])
    times, out = [], []
    for u in users:
        start = time.perf_counter()
        out.append(fn(u))
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), out


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_size(num_items: int, num_users: int, k: int = 10, seen: int = 20) -> dict:
    import faiss

    mix = synthetic_mix(num_items)
    rng = np.random.default_rng(1)
    users = rng.choice(USERS, num_users, replace=False).tolist()
    exclude = {u: set(rng.choice(num_items, seen, replace=False).tolist()) for u in users}
    row: dict = {"items": num_items, "dim": sum(WIDTHS.values()), "users": num_users}

    start = time.perf_counter()
    exact = ItemIndex("exact").build(mix)
    row["exact_build_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    index = ItemIndex("faiss").build(mix)
    row["faiss_build_s"] = round(time.perf_counter() - start, 2)
    row.update(ef_search=index.ef_search_, tuned_recall=index.recall_)
    data = index.to_bytes()
    row["index_mb"] = round(data.nbytes / 2**20, 1)
    del data
    gc.collect()

    def search(idx: ItemIndex):
        return lambda u: idx.search(torch.tensor([u]), k, [exclude[u]])[0][0]

    if num_items <= 100_000:
        def mix_top(u: int) -> list[int]:
            scores = mix.score(torch.tensor([u]))[0]
            scores[torch.tensor(sorted(exclude[u]))] = -float("inf")
            return torch.topk(scores, k).indices.tolist()

        row["mix_p50_ms"], row["mix_p99_ms"], _ = _latency(mix_top, users)
    row["exact_p50_ms"], row["exact_p99_ms"], truth = _latency(search(exact), users)
    row["faiss_p50_ms"], row["faiss_p99_ms"], found = _latency(search(index), users)
    row["recall@10"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found)]))
    row["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    row["faiss"] = faiss.__version__
    for key in list(row):
        if key.endswith("_ms"):
            row[key] = round(row[key], 3)
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| items | build s (FAISS) | index MB | efSearch | Mix.score p50 / p99 ms | "
            "exact p50 / p99 ms | FAISS p50 / p99 ms | recall@10 |")
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        mix = (f"{r['mix_p50_ms']:.1f} / {r['mix_p99_ms']:.1f}" if "mix_p50_ms" in r
               else "–")
        lines.append(f"| {r['items']:,} | {r['faiss_build_s']:.1f} | {r['index_mb']:.0f} | "
                     f"{r['ef_search']} | {mix} | "
                     f"{r['exact_p50_ms']:.1f} / {r['exact_p99_ms']:.1f} | "
                     f"{r['faiss_p50_ms']:.2f} / {r['faiss_p99_ms']:.2f} | "
                     f"{r['recall@10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=200, help="users timed and compared")
    args = parser.parse_args()
    import faiss

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rows = []
    for n in args.sizes:
        rows.append(run_size(n, args.users))
        print(rows[-1], flush=True)
        gc.collect()
    save_result(RESULTS, "ann", {"threads": 1, "k": 10, "seen_excluded": 20,
                                 "widths": WIDTHS, "weights": WEIGHTS, "rows": rows,
                                 "table": markdown(rows)})
    print(markdown(rows))


if __name__ == "__main__":
    main()
