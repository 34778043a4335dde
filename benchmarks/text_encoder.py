"""TextEncoder against sentence-transformers, and the embedding cache, on ml-100k.

Measures, in one process on one device:

1. items/second encoding all 1,682 ml-100k item texts with :class:`hybridrec.text.TextEncoder`
   (cache off) and with ``SentenceTransformer.encode`` (same model folder, batch size and
   device), runs interleaved, median of ``--repeats``; their ratio and the lowest cosine between
   the two outputs;
2. a full :func:`hybridrec.text.embed_dataset` of ml-100k users (with training histories) and
   items into an empty cache (cold), then again with a new encoder on the same cache (warm).

Writes ``text_encoder.json`` and ``text_encoder.md`` into ``--out`` and prints the table::

    python benchmarks/text_encoder.py [--out benchmarks/out/text_encoder] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hybridrec.data.movielens import load_ml100k
from hybridrec.data.split import random_split
from hybridrec.device import pick_device
from hybridrec.text import TextEncoder, default_model_path, embed_dataset, item_texts


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/text_encoder"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    device = pick_device(args.device)
    load_before = os.getloadavg()
    dataset = load_ml100k()
    split = random_split(dataset, seed=0)
    texts = item_texts(dataset)

    # 1. Throughput, cache off, runs interleaved so that load changes hit both alike.
    ours = TextEncoder(device=device, batch_size=args.batch_size, use_cache=False, show_progress=False)
    theirs = SentenceTransformer(str(default_model_path()), device=str(device))
    ours.encode(texts[:64])  # warm-up: first-call allocations
    theirs.encode(texts[:64], batch_size=args.batch_size)
    times: dict[str, list[float]] = {"hybridrec": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        seconds, a = _timed(lambda: ours.encode(texts))
        times["hybridrec"].append(seconds)
        seconds, b = _timed(lambda: theirs.encode(texts, batch_size=args.batch_size,
                                                  normalize_embeddings=True, show_progress_bar=False,
                                                  convert_to_tensor=True))
        times["sentence-transformers"].append(seconds)
    cosine = torch.nn.functional.cosine_similarity(a, b.float().cpu(), dim=1).min().item()
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}

    # 2. Full embed of users + items: an empty cache, then a new encoder on the same cache.
    with tempfile.TemporaryDirectory() as cache:
        cold_enc = TextEncoder(device=device, batch_size=args.batch_size, cache_dir=cache,
                               show_progress=False)
        cold_s, features = _timed(lambda: embed_dataset(dataset, split.train, cold_enc))
        warm_enc = TextEncoder(device=device, batch_size=args.batch_size, cache_dir=cache,
                               show_progress=False)
        warm_s, _ = _timed(lambda: embed_dataset(dataset, split.train, warm_enc))
    n_texts = len(features.user_text) + len(features.item_text) + int(features.entity_has_text.sum())

    result = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model_id": ours.model_id,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "item_texts": len(texts),
        "encode_seconds": times,
        "items_per_second": rate,
        "ratio_hybridrec_to_st": rate["hybridrec"] / rate["sentence-transformers"],
        "min_cosine_vs_st": cosine,
        "embed_texts": n_texts,
        "embed_cold_seconds": cold_s,
        "embed_cold_misses": cold_enc.cache_misses,
        "embed_warm_seconds": warm_s,
        "embed_warm_hits": warm_enc.cache_hits,
        "embed_warm_misses": warm_enc.cache_misses,
    }
    rows = [
        ("TextEncoder.encode, 1,682 item texts, cache off", f"{rate['hybridrec']:.1f} items/s",
         f"median of {args.repeats}: {statistics.median(times['hybridrec']):.2f}s"),
        ("SentenceTransformer.encode, same texts", f"{rate['sentence-transformers']:.1f} items/s",
         f"median of {args.repeats}: {statistics.median(times['sentence-transformers']):.2f}s"),
        ("ratio hybridrec / sentence-transformers", f"{result['ratio_hybridrec_to_st']:.2f}x",
         f"min cosine {cosine:.5f}"),
        ("embed_dataset ml-100k users+items, cold cache", f"{cold_s:.1f}s",
         f"{n_texts} texts, {cold_enc.cache_misses} misses"),
        ("embed_dataset ml-100k users+items, warm cache", f"{warm_s:.2f}s",
         f"{warm_enc.cache_hits} hits, {warm_enc.cache_misses} misses"),
    ]
    table = "\n".join(
        ["| measure | value | notes |", "| --- | --- | --- |"]
        + [f"| {a} | {b} | {c} |" for a, b, c in rows]
        + ["", f"Device {device}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
               f"batch size {args.batch_size}, model {ours.model_id}; load average "
               f"{load_before[0]:.2f} before, {result['load_average_after'][0]:.2f} after."])

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {"text_encoder.json": json.dumps(result, indent=2), "text_encoder.md": table + "\n"}
    for name, text in outputs.items():
        tmp = args.out / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, args.out / name)
    print(table)
    print(f"\nwrote {args.out / 'text_encoder.json'} and {args.out / 'text_encoder.md'}")


if __name__ == "__main__":
    main()
