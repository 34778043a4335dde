"""``python -m benchmarks.run`` (from the checkout's root) or ``python benchmarks/run.py`` (from
any directory, with the script's path): every model on the same split(s), one evaluator, one table.

By default: ml-100k, the random 8:1:1 split AND the cold-item split (10% of items held out),
every registered model (``pop, itemknn, bpr_mf, als, lightgcn, text_only`` plus extensions),
each tuned on validation NDCG@20 with a small grid, then tested once. Writes
``results.json``, ``results.md`` and PNG plots under ``--out`` and prints the table.

Memory: ``peak_rss_mb`` is the process resident set size sampled every 20 ms while a model is
fitted and evaluated (``/proc/self/statm``), ``rss_delta_mb`` its rise over the value at the
start of that model; ``max_rss_mb`` is ``resource.getrusage`` ``ru_maxrss``, the process peak so
far (monotone, includes earlier models). On CUDA, ``cuda_peak_mb`` is
``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python path/to/benchmarks/run.py, from any directory): the checkout's
    # root goes on the path, so that the benchmarks package imports.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Shared or oversubscribed CPUs: spinning OpenMP workers stall each other badly (measured 10-50x
# slower small ops here); passive waiting costs nothing when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from benchmarks.registry import (  # noqa: E402
    REGISTRY,
    SELECTION_METRIC,
    ModelContext,
    default_models,
    load_extensions,
)
from benchmarks.report import write_report  # noqa: E402
from hybridrec.cli_args import (  # noqa: E402
    add_data_arguments,
    add_split_arguments,
    load_dataset_from_args,
    run_cli,
    split_from_args,
)
from hybridrec.data.dataset import Dataset  # noqa: E402
from hybridrec.data.errors import DataError  # noqa: E402
from hybridrec.data.split import Split  # noqa: E402
from hybridrec.device import pick_device  # noqa: E402
from hybridrec.evaluation import evaluate  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_SPLITS = ("random", "cold-items")
DEFAULT_OUT = Path(__file__).resolve().parent / "out"


class MemoryMonitor:
    """Peak resident memory of this process while the ``with`` block runs (sampled)."""

    _PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_mb = self.peak_mb = self._rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss_mb(self) -> float | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._PAGE / 2**20
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss_mb()
            if rss is not None and rss > (self.peak_mb or 0):
                self.peak_mb = rss

    def __enter__(self) -> MemoryMonitor:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss = self._rss_mb()
        if rss is not None and rss > (self.peak_mb or 0):
            self.peak_mb = rss

    def result(self) -> dict[str, float | None]:
        # ru_maxrss is in KiB on Linux.
        out: dict[str, float | None] = {
            "peak_rss_mb": None if self.peak_mb is None else round(self.peak_mb, 1),
            "rss_delta_mb": (None if self.peak_mb is None or self.start_mb is None
                             else round(self.peak_mb - self.start_mb, 1)),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        if torch.cuda.is_available():
            out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out


def versions() -> dict[str, str]:
    """Versions of what the numbers depend on."""
    import implicit
    import numpy
    import torch_geometric

    import hybridrec

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__, "implicit": implicit.__version__,
            "numpy": numpy.__version__, "hybridrec": hybridrec.__version__,
            "platform": platform.platform(), "cpu_count": str(os.cpu_count()),
            "torch_threads": str(torch.get_num_threads())}


def run_model(name: str, ctx: ModelContext, ks: Sequence[int]) -> dict[str, Any]:
    """Fit one model with its factory, then evaluate it on test (and cold items)."""
    spec = REGISTRY[name]
    with MemoryMonitor() as memory:
        start = time.perf_counter()
        scorer = spec.factory(ctx)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        test = evaluate(scorer, ctx.dataset, ctx.split, part="test", ks=ks, device=ctx.device)
        cold = None
        if test["cold"] is not None and test["cold"]["users"]:
            # Cold-start question: rank only the items without training interactions.
            cold = evaluate(scorer, ctx.dataset, ctx.split, part="test", ks=ks,
                            device=ctx.device, item_subset="cold")
        eval_seconds = time.perf_counter() - start
    return {
        "model": name, "split": ctx.split.kind, "seed": ctx.seed,
        "params": None, f"valid_{SELECTION_METRIC}": None, "search": None,
        **ctx.record,  # whatever else the factory recorded (best epoch, gate values, ...)
        "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "memory": memory.result(), "test": test, "test_cold_only": cold,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Every model on the same split(s) with one evaluator; writes results.json, "
                    "results.md and plots.",
        epilog="Without --split both the random and the cold-items split are run.")
    add_data_arguments(parser)
    add_split_arguments(parser)
    group = parser.add_argument_group("benchmark")
    group.add_argument("--models", default=None, metavar="NAME,...",
                       help="models to run (default: every default model); --list-models shows "
                            "them")
    group.add_argument("--list-models", action="store_true", help="print the model names and exit")
    group.add_argument("--seeds", default="0", metavar="N,...",
                       help="model seeds; each runs the whole search (default: 0)")
    group.add_argument("--ks", default="10,20", metavar="K,...", help="cut-offs (default: 10,20)")
    group.add_argument("--no-search", action="store_true",
                       help="skip the validation grids; use each model's defaults")
    group.add_argument("--max-epochs", type=int, default=200,
                       help="cap for iterative models, early-stopped on validation (default: 200)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: automatic)")
    group.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads (default: torch's choice)")
    group.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help="output folder (default: benchmarks/out/)")
    group.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise DataError("command line", f"{flag}: expected integers like 0,1,2, got {text!r}")
    return values


def _splits(args: argparse.Namespace, dataset: Dataset) -> list[Split]:
    if args.split is not None or args.train_file is not None:
        return [split_from_args(args, dataset)]
    out = []
    for kind in DEFAULT_SPLITS:
        args.split = kind
        out.append(split_from_args(args, dataset))
    args.split = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    load_extensions()
    args = build_parser().parse_args(argv)
    if args.list_models:
        for name, spec in REGISTRY.items():
            print(f"{name}{'' if spec.default else ' (not run by default)'}")
        return 0
    models = default_models() if args.models is None else [
        m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in REGISTRY]
    if unknown or not models:
        raise DataError("command line", f"--models: unknown {unknown}; choose from "
                                        f"{sorted(REGISTRY)}")
    seeds, ks = _ints(args.seeds, "--seeds"), _ints(args.ks, "--ks")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    started = time.perf_counter()
    dataset = load_dataset_from_args(args)
    runs = []
    for split in _splits(args, dataset):
        base = ModelContext(dataset, split, device, tune=not args.no_search,
                            show_progress=args.progress, max_epochs=args.max_epochs)
        for seed in seeds:
            for name in models:
                print(f"[{time.perf_counter() - started:7.1f}s] {split.kind} seed {seed}: {name}",
                      flush=True)
                run = run_model(name, base.for_run(seed), ks)
                runs.append(run)
                t = run["test"]
                print(f"          recall@{ks[-1]}={t[f'recall@{ks[-1]}']:.4f} "
                      f"ndcg@{ks[-1]}={t[f'ndcg@{ks[-1]}']:.4f} "
                      f"train {run['train_seconds']:.1f}s eval {run['eval_seconds']:.1f}s",
                      flush=True)
    results = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": dataset.info(),
        "device": str(device),
        "versions": versions(),
        "seeds": seeds,
        "ks": ks,
        "selection_metric": f"valid {SELECTION_METRIC}",
        "memory_note": "peak_rss_mb: sampled /proc/self/statm RSS during fit+eval; rss_delta_mb: "
                       "its rise during the model; max_rss_mb: getrusage ru_maxrss (process peak "
                       "so far)",
        "total_seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    table = write_report(results, args.out)
    print(table)
    print(f"total {results['total_seconds']:.0f}s; wrote {args.out}/results.json, results.md, "
          f"*.png")
    return 0


if __name__ == "__main__":
    run_cli(main, log_level=logging.WARNING)
