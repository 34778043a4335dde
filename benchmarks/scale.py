"""How the GNN's cost grows with the data, from 10^5 to 10^7 interactions: full-graph steps
(the default) against neighbour-sampled steps (``--fanouts``).

    python -m benchmarks.scale                                  # every size, both schemes
    python -m benchmarks.scale --sizes 100000,1000000 --schemes sampled
    python -m benchmarks.scale --quality 0,1,2                  # ml-100k: sampled vs full quality

Each (size, scheme) runs in a child process of its own (its peak RSS is its own), on a seeded
synthetic catalogue (:func:`generate`): power-law users and items, latent topics that steer
choices, a KG of creators and a two-level subject hierarchy, and item "text" features. The
features are synthetic (a topic direction plus noise, 384 wide as MiniLM's), not encoder
outputs: encoding 10^5 item texts takes about 15 minutes on this CPU, a cost that is linear in
the items and measured apart (``benchmarks/text_encoder.py``).

Per run: the graph's build seconds; the median seconds of one training step (after two
warm-up steps) and an epoch as ``steps_per_epoch`` times that (an epoch of full-graph steps at
10^7 would take hours); the full-graph inference that validation runs (every node's
embedding: one pass, linear in the edges) and a full-ranking evaluation of 2,000 users'
held-out pairs; peak RSS. Then the log-log slope of epoch seconds against interactions, per
scheme, and a PNG of the curves. Top-10 latency over 10^4..10^6 items (exact vs FAISS) is
``benchmarks/ann.py``'s; the table quotes ``benchmarks/results/ann/ann.json``.

Writes ``benchmarks/results/scale/scale.json``, ``scale.md`` and ``scale.png``; a run of some
schemes keeps the other schemes' rows of the last ``scale.json``, each with its command.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import save_result

RESULTS = Path("benchmarks/results/scale")
ROOT = Path(__file__).resolve().parent.parent
SIZES = (100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
FANOUTS = (10, 10)
TEXT_WIDTH = 384


def generate(interactions: int, seed: int = 0):
    """A prepared training graph of about ``interactions`` distinct (user, item) pairs, and
    2,000 users' held-out pairs: ``(graph, held_out [2, H])``.

    ``interactions / 50`` users (activity log-normal), ``interactions / 100`` items (Zipf
    popularity), 64 topics; a user picks 70 % of their items in their own topic, by
    popularity, the rest anywhere, by popularity. Each item has a creator (``items / 5``,
    Zipf) and one or two subjects out of 256, each under one of 16 broader subjects.
    """
    from hybridrec.graph import INTERACTS, REV_INTERACTS
    from hybridrec.models import prepare_graph
    from torch_geometric.data import HeteroData

    rng = np.random.default_rng(seed)
    users, items, topics = max(100, interactions // 50), max(100, interactions // 100), 64
    item_topic = rng.integers(topics, size=items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    rng.shuffle(popularity)
    user_topic = rng.integers(topics, size=users)
    activity = rng.lognormal(0.0, 1.0, users)
    # Within a topic: inverse-CDF draws on its items' cumulative popularity.
    order = np.lexsort((np.arange(items), item_topic))
    cum = np.cumsum(popularity[order])
    bounds = np.searchsorted(item_topic[order], np.arange(topics + 1))
    keys = np.zeros(0, np.int64)
    while len(keys) < interactions:  # repeats are dropped: draw until enough are distinct
        draws = int((interactions - len(keys)) * 1.3) + 1000
        user = rng.choice(users, size=draws, p=activity / activity.sum())
        topic = user_topic[user]
        low = np.where(bounds[topic] > 0, cum[bounds[topic] - 1], 0.0)
        high = cum[bounds[topic + 1] - 1]
        in_topic = order[np.minimum(
            np.searchsorted(cum, low + rng.random(draws) * (high - low)), items - 1)]
        anywhere = rng.choice(items, size=draws, p=popularity / popularity.sum())
        item = np.where(rng.random(draws) < 0.7, in_topic, anywhere)
        keys = np.unique(np.concatenate([keys, user.astype(np.int64) * items + item]))
    keys = rng.permutation(keys)[:interactions]
    pairs = torch.from_numpy(np.stack([keys // items, keys % items]))
    # 2,000 users' held-out pairs (one in ten of their pairs).
    chosen = torch.from_numpy(rng.choice(users, size=min(2000, users), replace=False))
    mask = torch.isin(pairs[0], chosen) & torch.from_numpy(rng.random(pairs.size(1)) < 0.1)
    held_out, train = pairs[:, mask], pairs[:, ~mask]

    creators, subjects, broader = max(1, items // 5), 256, 16
    creator = rng.choice(creators, size=items, p=_zipf(creators, rng))
    subject = (item_topic * 4 + rng.integers(4, size=items)) % subjects
    second = rng.random(items) < 0.5
    item_ids = torch.arange(items)
    entity_kinds = {"creator": (0, creators), "subject": (creators, subjects),
                    "broader": (creators + subjects, broader)}
    creator_edges = torch.stack([item_ids, torch.from_numpy(creator)])
    subject_edges = torch.cat([
        torch.stack([item_ids, torch.from_numpy(subject) + creators]),
        torch.stack([item_ids[torch.from_numpy(second)],
                     torch.from_numpy(rng.integers(subjects, size=int(second.sum())))
                     + creators])], 1)
    broader_edges = torch.stack([torch.arange(subjects) + creators,
                                 torch.arange(subjects) % broader + creators + subjects])
    centres = rng.standard_normal((topics, TEXT_WIDTH)).astype(np.float32)
    x = centres[item_topic] + 1.5 * rng.standard_normal((items, TEXT_WIDTH)).astype(np.float32)

    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = users, items
    data["item"].x = torch.from_numpy(x)
    data["entity"].num_nodes = sum(n for _, n in entity_kinds.values())
    data[INTERACTS].edge_index = train
    data[REV_INTERACTS].edge_index = train.flip(0)
    for name, edges in (("created_by", creator_edges), ("about", subject_edges)):
        data["item", name, "entity"].edge_index = edges
        data["entity", f"rev_{name}", "item"].edge_index = edges.flip(0)
    data["entity", "broader", "entity"].edge_index = broader_edges
    data["entity", "rev_broader", "entity"].edge_index = broader_edges.flip(0)
    has_text = torch.zeros(data["entity"].num_nodes, dtype=torch.bool)
    return prepare_graph(data, entity_has_text=has_text, prune_leaf_entities=False), held_out


def _zipf(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    rng.shuffle(weights)
    return weights / weights.sum()


def measure(interactions: int, scheme: str, steps: int, seed: int = 0,
            overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """One (size, scheme): build, step, inference and evaluation seconds, peak RSS;
    ``overrides`` are ``section.key=value`` settings of the run configuration."""
    from hybridrec.config import RunConfig
    from hybridrec.data.dataset import Interactions
    from hybridrec.data.split import Split
    from hybridrec.evaluation import evaluate
    from hybridrec.graph import INTERACTS
    from hybridrec.models import GNNScorer, Mix
    from hybridrec.models.prepare import graph_inputs
    from hybridrec.models.sampled import SampledLoss
    from hybridrec.sampling import KnownPairs, edge_batches
    from hybridrec.trainer import LinkLoss, TrainedGNN, gnn_optimizer, sample_batch, train_step

    from hybridrec.config import apply_overrides

    torch.set_num_threads(1)
    config = apply_overrides(RunConfig(), list(overrides))
    fanouts = config.train.fanouts or FANOUTS
    start = time.perf_counter()
    graph, held_out = generate(interactions, seed)
    build_s = time.perf_counter() - start
    torch.manual_seed(seed)
    model = GNNScorer.from_config(config.model, graph)
    x_dict, edge_index_dict = graph_inputs(graph)
    positives = graph[INTERACTS].edge_index
    num_items = model.num_items
    item_degree = torch.bincount(positives[1], minlength=num_items)
    known = KnownPairs(positives, model.num_users, num_items)
    generator = torch.Generator().manual_seed(seed)
    cfg = config.train
    sampled = (SampledLoss(model, x_dict, edge_index_dict, fanouts, generator)
               if scheme == "sampled" else None)
    loss = LinkLoss(model, temperature=cfg.temperature, weight_decay=cfg.weight_decay,
                    sampled=sampled)
    optimizer = gnn_optimizer(model, cfg.lr)  # as train_gnn's
    seconds = []
    for k, rows in enumerate(edge_batches(positives.size(1), cfg.batch_size, generator)):
        if k == steps + 2:
            break
        t = time.perf_counter()
        batch = sample_batch(positives, rows, item_degree, num_items, loss="softmax",
                             num_negatives=cfg.num_negatives,
                             cold_start_fraction=cfg.cold_start_fraction, generator=generator,
                             known_keys=known)
        train_step(model, optimizer, x_dict, edge_index_dict, batch, loss_module=loss,
                   clip_grad_norm=cfg.clip_grad_norm)
        if k >= 2:
            seconds.append(time.perf_counter() - t)
    step_s = statistics.median(seconds)
    steps_per_epoch = math.ceil(positives.size(1) / cfg.batch_size)

    start = time.perf_counter()
    tower = TrainedGNN(model, x_dict, edge_index_dict).tower()
    inference_s = time.perf_counter() - start
    degree = (torch.bincount(positives[0], minlength=model.num_users),
              torch.bincount(positives[1], minlength=num_items))
    mix = Mix({"gnn": tower}, degree[0], degree[1])
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split("random", Interactions(positives[0].numpy(), positives[1].numpy()), empty,
                  Interactions(held_out[0].numpy(), held_out[1].numpy()))
    start = time.perf_counter()
    metrics = evaluate(mix, (model.num_users, num_items), split, ks=(20,), device="cpu")
    evaluate_s = time.perf_counter() - start
    return {"interactions": int(positives.size(1)), "users": model.num_users,
            "items": num_items, "entities": int(graph["entity"].num_nodes),
            "edges": int(sum(e.size(1) for e in edge_index_dict.values())),
            "scheme": scheme, "fanouts": list(fanouts) if scheme == "sampled" else None,
            "batch_size": cfg.batch_size, "num_negatives": cfg.num_negatives,
            "settings": list(overrides),
            "build_s": round(build_s, 2), "step_s": round(step_s, 4), "steps_timed": steps,
            "steps_per_epoch": steps_per_epoch, "epoch_s": round(step_s * steps_per_epoch, 1),
            "inference_s": round(inference_s, 2), "evaluate_s": round(evaluate_s, 2),
            "evaluated_users": int(metrics["users_evaluated"]),
            "recall@20_after_steps": round(float(metrics["recall@20"]), 4),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def quality(seeds: list[int]) -> dict:
    """Test figures of the default ``python -m hybridrec.train`` on ml-100k with full-graph
    steps and with ``--fanouts``, per seed (each run in a child process)."""
    import tempfile

    from benchmarks.cli_runs import train_run

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for scheme, extra in (("full", []), ("sampled", ["--fanouts", ",".join(
                    map(str, FANOUTS))])):
                runs.append({"scheme": scheme,
                             **train_run(Path(tmp) / f"{scheme}-{seed}", seed, extra)})
                print(json.dumps(runs[-1]), flush=True)
    summary = {scheme: {key: [r[key] for r in runs if r["scheme"] == scheme]
                        for key in ("ndcg@20", "recall@20", "tail_recall@20")}
               for scheme in ("full", "sampled")}
    return {"dataset": "ml-100k", "split": "random", "fanouts": list(FANOUTS), "runs": runs,
            "mean": {scheme: {k: round(statistics.fmean(v), 4) for k, v in parts.items()}
                     for scheme, parts in summary.items()}}


def slope(rows: list[dict]) -> float | None:
    """Least-squares slope of log(epoch seconds) against log(interactions)."""
    if len(rows) < 2:
        return None
    x = np.log([r["interactions"] for r in rows])
    y = np.log([r["epoch_s"] for r in rows])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for scheme in sorted({r["scheme"] for r in runs}):
        rows = sorted((r for r in runs if r["scheme"] == scheme),
                      key=lambda r: r["interactions"])
        ax.loglog([r["interactions"] for r in rows], [r["epoch_s"] for r in rows], "o-",
                  label=f"{scheme} steps (slope {slope(rows)})")
    ax.set_xlabel("training interactions")
    ax.set_ylabel("seconds per epoch (1 thread)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(runs: list[dict], slopes: dict[str, float | None],
          slopes_from_1e6: dict[str, float | None]) -> str:
    lines = ["| scheme | interactions | users | items | step s | epoch s | inference s | "
             "evaluate s | peak RSS GB |", "|" + " --- |" * 9]
    for r in sorted(runs, key=lambda r: (r["scheme"], r["interactions"])):
        lines.append(f"| {r['scheme']} | {r['interactions']:,} | {r['users']:,} | "
                     f"{r['items']:,} | {r['step_s']:.3f} | {r['epoch_s']:,.0f} | "
                     f"{r['inference_s']:.1f} | {r['evaluate_s']:.1f} | {r['peak_rss_gb']:.1f} |")
    lines.append("")
    lines.append("log-log slope of epoch seconds: " + ", ".join(
        f"{k} {v}" for k, v in slopes.items()) + "; from 10^6 interactions: " + ", ".join(
        f"{k} {v}" for k, v in slopes_from_1e6.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--schemes", default="full,sampled")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a run setting for every size, e.g. --set train.batch_size=1024 "
                             "(repeatable); --set train.fanouts=5,5 for the sampled scheme")
    parser.add_argument("--name", default="scale", help="result file name (default: scale)")
    parser.add_argument("--quality", metavar="SEEDS",
                        help="instead: ml-100k test quality of both schemes for these seeds")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quality:
        save_result(RESULTS, "quality", {
            "command": f"python -m benchmarks.scale --quality {args.quality}",
            **quality([int(s) for s in args.quality.split(",")])})
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    schemes = args.schemes.split(",")
    if args.one:  # a child: one size, one scheme, JSON on stdout
        print(json.dumps(measure(sizes[0], schemes[0], args.steps, overrides=args.set)))
        return 0
    runs = []
    for scheme in schemes:
        for size in sizes:
            done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--one",
                                   "--sizes", str(size), "--schemes", scheme,
                                   "--steps", str(args.steps),
                                   *[f"--set={o}" for o in args.set]],
                                  cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{scheme} at {size}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                runs.append({"scheme": scheme, "target_interactions": size,
                             "failed": done.stderr.strip().splitlines()[-1:]})
                continue
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    previous = RESULTS / f"{args.name}.json"
    kept = []
    if previous.is_file():  # the schemes not rerun keep their rows of the last file
        last = json.loads(previous.read_text())
        kept = [{**r, "command": r.get("command", last["command"])}  # the run that made it
                for r in last.get("runs", []) if r.get("scheme") not in schemes]
    runs = kept + runs
    ok = [r for r in runs if "failed" not in r]
    slopes = {s: slope([r for r in ok if r["scheme"] == s])
              for s in dict.fromkeys(r["scheme"] for r in runs)}
    # Past the smallest graphs, whose two-hop samples are the whole graph.
    slopes_from_1e6 = {s: slope([r for r in ok if r["scheme"] == s
                                 and r["interactions"] >= 900_000]) for s in slopes}
    ann = Path("benchmarks/results/ann/ann.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_result(RESULTS, args.name, {
        "command": "python -m benchmarks.scale " + " ".join(argv or sys.argv[1:]),
        "torch_threads": 1, "fanouts": list(FANOUTS), "runs": runs, "slopes": slopes,
        "slopes_from_1e6": slopes_from_1e6,
        "top10_latency": json.loads(ann.read_text()) if ann.is_file() else None})
    text = table(ok, slopes, slopes_from_1e6)
    (RESULTS / f"{args.name}.md").write_text(text + "\n", encoding="utf-8")
    if ok:
        plot(ok, RESULTS / f"{args.name}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
