"""``python -m hybridrec.train``: flags -> config -> text features -> graph -> fit -> save -> table.

With no arguments it trains the hybrid on ml-100k (random 8:1:1 split), saves the run to
``runs/hybrid-ml-100k-random`` and prints its test Recall@20 / NDCG@20 beside the CF baselines
(BPR-MF, ALS, LightGCN) fitted on the same split::

    python -m hybridrec.train
    python -m hybridrec.train --split cold-items --out runs/cold
    python -m hybridrec.train --no-kg --gate --epochs 20 --set train.lr=0.002
    python -m hybridrec.train --config runs/cold/config.json --resume
    python -m hybridrec.train --train-file a.csv --valid-file b.csv --test-file c.csv

Precedence: defaults < ``--config FILE`` < explicit flags < ``--set section.key=value``.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import io
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from hybridrec import distributed
from hybridrec.cli_args import (
    BUILTIN_DATASETS,
    add_data_arguments,
    add_split_arguments,
    data_source_from_args,
    load_dataset,
    run_cli,
)
from hybridrec.config import DataConfig, RunConfig, apply_overrides
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.split import Split
from hybridrec.device import pick_device
from hybridrec.pipeline import (
    BASELINES,
    check_checkpoint,
    evaluate_run,
    fit_baselines,
    fit_hybrid,
    gate_report,
    load_split,
    text_features,
    text_only,
)
from hybridrec.baselines.search import capped_metric
from hybridrec.run import is_run_folder, json_ready, save_run

log = logging.getLogger(__name__)

_DATA_DESTS = ("dataset", "interactions", "items", "users", "kg", "links", "item_iri", "columns",
               "item_text", "item_categorical", "user_text", "user_categorical", "separator",
               "encoding", "normalize_ids", "cache_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hybridrec.train",
        description="Train the graph + text hybrid recommender and compare it with CF baselines.")
    add_data_arguments(parser)
    add_split_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--hidden-channels", "--dim", type=int, dest="hidden_channels",
                       help="embedding width (default: 64)")
    model.add_argument("--num-layers", type=int, help="GNN layers (default: 2)")
    model.add_argument("--conv", choices=("rgcn", "sage", "graph", "lightgcn", "gat", "hgt"),
                       help="GNN operator (default: rgcn)")
    model.add_argument("--text-model", metavar="PATH",
                       help="local text model (default: all-MiniLM-L6-v2, shipped)")
    for name, what in (("text", "text features (ID embeddings instead)"),
                       ("kg", "KG edges (user-item graph only)"),
                       ("mf", "MF branch (GNN score only)"),
                       ("lightgcn", "LightGCN in the MF branch")):
        model.add_argument(f"--no-{name}", action="store_true", help=f"ablation: no {what}")
    model.add_argument("--gate", action="store_true",
                       help="learn the gate that mixes the scorers (default: a fixed mix, "
                            "each scorer weighed alike)")
    model.add_argument("--mix-search", action="store_true",
                       help="early-stop the GNN on its own validation metric, then choose its "
                            "share of the mix on validation (default: every scorer alike, the "
                            "GNN early-stopped on the mix)")
    model.add_argument("--cold-start", action="store_true",
                       help="score items without interactions (cold, or added later) by "
                            "content, a content prior and an offset chosen on validation, so "
                            "that they compete with the others (default: mixed as the others)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int,
                       help="maximum epochs of the GNN, the scorer trained by gradient (default: "
                            "60); the LightGCN and the learned gate have their own bounds "
                            "(--set model.mf_lightgcn_epochs=300, --set train.gate_epochs=10)")
    train.add_argument("--batch-size", type=int, help="positive pairs per step (default: 4096)")
    train.add_argument("--lr", type=float, help="Adam learning rate")
    train.add_argument("--loss", choices=("softmax", "bpr"), help="ranking loss")
    train.add_argument("--train-seed", type=int, help="seed of weights, negatives and masks "
                                                      "(default: 0)")
    train.add_argument("--fanouts", metavar="N,N",
                       help="neighbour sampling for big graphs: neighbours per node and "
                            "relation for each GNN layer, outermost first, e.g. 10,10 (default: "
                            "every step runs the whole graph)")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    train.add_argument("--threads", type=int, dest="num_threads",
                       help="torch CPU threads, 0 = torch's default (default: 1)")
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", type=Path,
                     help="a config.json (e.g. from a run folder) to start from")
    run.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                     help="override any config field, e.g. --set train.lr=0.005 (repeatable)")
    run.add_argument("--out", metavar="DIR", type=Path,
                     help="run folder (default: runs/hybrid-<data set>-<split>)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint of an interrupted run with this --out")
    run.add_argument("--no-baselines", action="store_true",
                     help="skip fitting the CF baselines for the comparison table")
    run.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    return parser


def _given(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The destinations the command line set explicitly (parsed again with no defaults)."""
    probe = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in parser._actions:  # noqa: SLF001 (argparse has no public iterator)
        if not action.option_strings or action.dest == "help":
            continue
        kwargs: dict[str, Any] = {"dest": action.dest}
        if action.nargs == 0:
            kwargs.update(action="store_const", const=True)
        elif isinstance(action, argparse._AppendAction):  # noqa: SLF001
            kwargs.update(action="append")
        else:
            kwargs.update(nargs=action.nargs)
        probe.add_argument(*action.option_strings, **kwargs)
    args, _ = probe.parse_known_args(argv)
    return set(vars(args))


def config_from_args(args: argparse.Namespace, given: set[str]) -> RunConfig:
    """Defaults, then ``--config``, then explicit flags, then ``--set``."""
    config = RunConfig.load(args.config) if args.config else RunConfig()
    data, model, train = config.data, config.model, config.train
    if given & set(_DATA_DESTS) or not args.config:
        source, options = data_source_from_args(args)
        data = dataclasses.replace(data, source=source, options=options)
    files = (args.train_file, args.valid_file, args.test_file)
    if any(f is not None for f in files):
        if args.split is not None:
            raise DataError("command line", f"either --split {args.split} or split files "
                                            f"(--train-file ...), not both")
        data = dataclasses.replace(data, split="files", train_file=args.train_file,
                                   valid_file=args.valid_file, test_file=args.test_file)
    elif "split" in given:
        data = dataclasses.replace(data, split=args.split)
    for flag, name in (("ratios", "ratios"), ("cold_fraction", "cold_fraction"),
                       ("split_seed", "split_seed")):
        if flag in given or not args.config:
            value = getattr(args, flag)
            data = dataclasses.replace(data, **{name: tuple(value) if name == "ratios" else value})
    if "text_model" in given:
        data = dataclasses.replace(data, text_model=args.text_model)
    for name in ("hidden_channels", "num_layers", "conv"):
        if name in given:
            model = dataclasses.replace(model, **{name: getattr(args, name)})
    if "gate" in given:
        model = dataclasses.replace(model, use_gate=True)
    if "cold_start" in given:
        model = dataclasses.replace(model, cold_start=True)
    if "mix_search" in given:
        model = dataclasses.replace(model, mix_search=True)
    for name in ("text", "kg", "mf"):
        if f"no_{name}" in given:
            model = dataclasses.replace(model, **{f"use_{name}": False})
    if "no_lightgcn" in given:
        model = dataclasses.replace(model, mf_lightgcn_channels=0)
    for flag, name in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                       ("loss", "loss"), ("train_seed", "seed"), ("device", "device"),
                       ("num_threads", "num_threads")):
        if flag in given:
            train = dataclasses.replace(train, **{name: getattr(args, flag)})
    if args.quiet:
        train = dataclasses.replace(train, show_progress=False)
    sets = list(args.set)
    if "fanouts" in given:  # parsed as the config field is
        sets.insert(0, f"train.fanouts={args.fanouts}")
    config = apply_overrides(RunConfig(data, model, train), sets)
    fanouts, layers = config.train.fanouts, config.model.num_layers
    if fanouts and (len(fanouts) != layers or min(fanouts) < 1):
        raise ValueError(f"--fanouts: one number >= 1 per GNN layer ({layers}), outermost "
                         f"first, e.g. {','.join(['10'] * layers)}; got "
                         f"{','.join(map(str, fanouts))}")
    if config.model.use_gate and config.train.gate_folds < 2:
        raise ValueError(f"train.gate_folds: 2 or more folds for the gate's cross-fit, got "
                         f"{config.train.gate_folds}")
    return dataclasses.replace(config, data=resolve_paths(config.data))


_PATH_OPTIONS = ("items", "users", "kg", "links", "cache_dir")


def resolve_paths(data: DataConfig) -> DataConfig:
    """The data settings with every file path absolute, so that a run's ``config.json``
    (``--config``) works from any working directory."""
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).expanduser().resolve())

    source = data.source if data.source in BUILTIN_DATASETS else absolute(data.source)
    options = {k: absolute(v) if k in _PATH_OPTIONS else v for k, v in data.options.items()}
    local = data.text_model is not None and Path(data.text_model).expanduser().exists()
    return dataclasses.replace(
        data, source=source, options=options, train_file=absolute(data.train_file),
        valid_file=absolute(data.valid_file), test_file=absolute(data.test_file),
        text_model=absolute(data.text_model) if local else data.text_model)


def _tower_settings(scorer: Any) -> str:
    """How a scorer of the hybrid was fitted where it differs from the baseline of its class
    (the baseline's defaults), in words; empty where it does not."""
    baseline = type(scorer)()
    changed = [f"{name} {getattr(scorer, name)} (the baseline's {getattr(baseline, name)})"
               for name in ("lr", "batch_size") if hasattr(baseline, name)
               and getattr(scorer, name) != getattr(baseline, name)]
    return ", ".join(changed)


def _shared_baselines(model: Any) -> dict[str, str]:
    """Table rows the hybrid's own fitted scorers give (table name -> scorer name): its ALS and
    its LightGCN, fitted on every training pair as the baselines are; the others are fitted
    apart."""
    shared = {}
    if model.use_mf:
        shared["ALS"] = "als"
        if model.mf_lightgcn_channels:
            shared["LightGCN"] = "lightgcn"
    return shared


def _baselines_job(config: dict[str, Any], num_threads: int) -> list[tuple[str, dict, float]]:
    """:func:`fit_baselines` in a worker process (it reloads the data and split), for the
    baselines the hybrid does not contain."""
    # The main process has said what loading the data has to say (repeated rows ...): the
    # worker's log would print each warning a second time.
    logging.getLogger("hybridrec").addHandler(logging.NullHandler())
    logging.getLogger("hybridrec").propagate = False
    if num_threads:
        torch.set_num_threads(num_threads)
    run_config = RunConfig.from_dict(config)
    dataset = load_dataset(run_config.data.source, run_config.data.options)
    model = run_config.model
    als = {"factors": model.mf_channels, "regularization": model.mf_regularization,
           "alpha": model.mf_alpha}
    models = tuple(m for m in BASELINES if m not in _shared_baselines(model))
    return fit_baselines(dataset, load_split(run_config, dataset), run_config.train.device,
                         run_config.train.valid_metric, als, models)


def _gate_text(report: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in report.items() if v is not None)


def _cold_text(report: dict[str, Any]) -> str:
    """One line on the cold-start stage's search (:func:`~hybridrec.pipeline.fit_cold_start`)."""
    where = (f"on {report['simulated_cold_items']} items made cold" if
             report["simulated_cold_items"] else "on the validation's cold items")
    if not report["kept"]:
        return (f"stage not kept {where} (valid {report['valid']:.4f} against the plain mix's "
                f"{report['valid_plain']:.4f}): items without ID signal are mixed as the others")
    return (f"stage kept {where}: valid {report['valid']:.4f} against the plain mix's "
            f"{report['valid_plain']:.4f}; items without ID signal scored {report['scale']:g} x "
            f"content + {report['shift']:g} + {report['prior_scale']:g} x content prior")


def format_table(rows: list[tuple[str, dict[str, Any], float]], cold_split: bool,
                 k: int = 20) -> str:
    """A Markdown table of test metrics at cut-off ``k``, one row per model."""
    header = ["model", f"recall@{k}", f"ndcg@{k}", f"tail recall@{k}"]
    if cold_split:
        header += [f"cold recall@{k} (cold only)", f"cold recall@{k} (full ranking)",
                   f"cold share of top-{k} / of positives"]
    header.append("seconds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    for name, metrics, seconds in rows:
        test = metrics["test"]
        cells = [name, fmt(test.get(f"recall@{k}")), fmt(test.get(f"ndcg@{k}")),
                 fmt((test.get("by_popularity") or {}).get("tail", {}).get(f"recall@{k}"))]
        if cold_split:
            cold = test.get("cold") or {}
            cells += [fmt((metrics.get("test_cold_only") or {}).get(f"recall@{k}")),
                      fmt(cold.get(f"recall@{k}")),
                      f"{fmt(cold.get(f'share@{k}'))} / {fmt(cold.get('positive_share'))}"]
        cells.append(f"{seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_out(out: Path) -> None:
    """Refuse, before anything is trained, an ``--out`` that a run must not replace: an
    existing file, or a folder holding anything but a hybridrec run (a run folder is replaced
    atomically, as retraining means)."""
    if out.exists() and not out.is_dir():
        raise DataError(out, "a run folder for --out; it is an existing file, which a run "
                             "would replace. Choose another --out")
    if out.is_dir() and not is_run_folder(out) and any(out.iterdir()):
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise DataError(out, f"a new or empty folder, or a run folder to replace, for --out; "
                             f"it holds other files ({shown}), which a run would delete. "
                             f"Choose another --out")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DataError(out, f"a folder path for --out; {parent} is a file")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(out, f"a folder path for --out that can be written; {parent} cannot")
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.exists() and not ckpt.is_dir():
        raise DataError(ckpt, "the checkpoint folder of --out; it is an existing file. Choose "
                              "another --out")


def discard_checkpoint(checkpoint_dir: Path) -> None:
    """Remove the checkpoint of a finished run: renamed first, so that a kill while deleting
    never leaves a checkpoint that lost its fingerprint (or half its files) for --resume;
    leftovers of such kills go too."""
    for stale in checkpoint_dir.parent.glob(glob.escape(checkpoint_dir.name) + ".done-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if checkpoint_dir.is_dir():
        done = checkpoint_dir.with_name(f"{checkpoint_dir.name}.done-{os.getpid()}")
        os.replace(checkpoint_dir, done)
        shutil.rmtree(done, ignore_errors=True)


def _capture_logs(quiet: bool) -> tuple[io.StringIO, list[logging.Handler]]:
    """The package's log, into a buffer (the run's ``train.log``) and onto stderr; with
    ``quiet`` only warnings reach stderr."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package = logging.getLogger("hybridrec")
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    handlers: list[logging.Handler] = [handler]
    if quiet:
        package.propagate = False
        warnings = logging.StreamHandler(sys.stderr)
        warnings.setFormatter(logging.Formatter("warning: %(message)s"))
        warnings.setLevel(logging.WARNING)
        package.addHandler(warnings)
        handlers.append(warnings)
    return buffer, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = _given(parser, argv)
    try:
        config = config_from_args(args, given)
    except ValueError as err:  # one line, as every bad input: no usage block
        parser.exit(2, f"error: {err}\n")
    # Under torchrun only rank 0 speaks (the others' logs repeat it).
    buffer, handlers = _capture_logs(args.quiet or os.environ.get("RANK", "0") != "0")
    threads = torch.get_num_threads()
    try:
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        return _train(config, args, buffer)
    finally:
        torch.set_num_threads(threads)
        for handler in handlers:
            logging.getLogger("hybridrec").removeHandler(handler)
        logging.getLogger("hybridrec").propagate = True


def _train(config: RunConfig, args: argparse.Namespace, buffer: io.StringIO) -> int:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    device = pick_device(config.train.device)
    if args.resume and distributed.launched():
        raise DataError("command line", "--resume in one process: a torchrun run's checkpoint "
                                        "continues with python -m hybridrec.train --resume and "
                                        "the same flags; got --resume under torchrun")
    if config.model.use_gate and distributed.launched():
        raise DataError("command line", "--gate in one process: its cross-fit trains the GNN "
                                        "again on each fold, in rank 0 alone; got --gate under "
                                        "torchrun")
    ranks = distributed.init(device)
    try:
        return _train_ranked(config, args, buffer, ranks, started, timings,
                             distributed.device_for(device, ranks))
    finally:
        distributed.finish(ranks)


def _train_ranked(config: RunConfig, args: argparse.Namespace, buffer: io.StringIO,
                  ranks: distributed.Ranks, started: float, timings: dict[str, float],
                  device: torch.device) -> int:
    # 1. Data and split; the CF baselines start at once in a second process (a second core).
    if args.out is not None:
        check_out(args.out)  # before anything else: nothing is read, fitted or written
    with distributed.main_first(ranks):  # rank 0 fills the data cache
        dataset = load_dataset(config.data.source, config.data.options)
        split = load_split(config, dataset)
    timings["load"] = time.perf_counter() - started
    out = args.out or Path("runs") / f"hybrid-{dataset.name}-{split.kind}"
    check_out(out)
    log.info("Config: %s", config.to_dict())
    capped_metric(config.train.valid_metric, dataset.num_items)  # a bad name stops here
    if not ranks.is_main:  # under torchrun: help train the GNN, write nothing
        with distributed.main_first(ranks):
            features = text_features(config, dataset, split, device)
        fit_hybrid(config, dataset, split, features, device=device)
        return 0
    # A resumed run must be the interrupted one: same data, split and settings (checked
    # before anything is fitted).
    check_checkpoint(out.with_name(out.name + ".ckpt"), config, dataset, split, args.resume)
    pool = None
    if not args.no_baselines:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return _train_hybrid(config, args, buffer, dataset, split, out, device, pool, started,
                             timings, ranks)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _train_hybrid(config: RunConfig, args: argparse.Namespace, buffer: io.StringIO,
                  dataset: Dataset, split: Split, out: Path, device: torch.device,
                  pool: ProcessPoolExecutor | None, started: float,
                  timings: dict[str, float], ranks: distributed.Ranks) -> int:
    baselines = (pool.submit(_baselines_job, config.to_dict(), config.train.num_threads)
                 if pool is not None else None)

    # 2. Text features (cached on disk), then the graph, the model and its training
    # (checkpoints beside the run folder until it is saved).
    checkpoint_dir = out.with_name(out.name + ".ckpt")
    t = time.perf_counter()
    with distributed.main_first(ranks):  # rank 0 fills the text cache
        features = text_features(config, dataset, split, device)
    timings["text"] = time.perf_counter() - t
    t = time.perf_counter()
    fitted = fit_hybrid(config, dataset, split, features, device=device,
                        checkpoint_dir=checkpoint_dir, resume=args.resume)
    model, graph, scorer, result = fitted.gnn, fitted.graph, fitted.mix, fitted.result
    timings["train"] = time.perf_counter() - t
    timings.update({f"train.{phase}": s for phase, s in fitted.seconds.items()})

    # 3. Evaluate and save.
    t = time.perf_counter()
    metrics = evaluate_run(scorer, dataset, split, device)
    metrics["gate"] = gate_report(scorer, split, dataset.num_items)
    timings["evaluate"] = time.perf_counter() - t
    info = {"history": result.history, "best_epoch": result.best_epoch,
            "best_valid": result.best_score, "stopped_early": result.stopped_early,
            "lightgcn_epochs": fitted.lightgcn_epochs, "cold_start": fitted.cold_start,
            "gate": None if fitted.gate is None else {
                "kept": fitted.gate_kept, "history": fitted.gate[0].history,
                "fixed_mix_valid": fitted.gate[1], "best_valid": fitted.gate[0].best_score},
            "seconds": {**timings}, "device": str(device), "processes": ranks.world_size,
            "text_model": None if features is None else features.model_id,
            "dataset": dataset.info()}
    ids = {"users": dataset.users, "items": dataset.items, "entities": dataset.entities,
           "relations": dataset.relations}
    timings["total_hybrid"] = time.perf_counter() - started
    save_run(out, config=config, model=model, scorer=scorer, graph=graph, split=split, ids=ids,
             dataset=dataset,
             metrics=metrics, info=json_ready(info), log_text=buffer.getvalue())
    discard_checkpoint(checkpoint_dir)

    # 4. Baselines on the same split, and the table (at 20, or the whole of a smaller
    # catalogue, as the evaluation ranks it).
    k = min(20, dataset.num_items)
    rows = [("hybrid", metrics, timings["train"])]
    if baselines is not None:
        t = time.perf_counter()
        apart = {name: (metrics_, seconds) for name, metrics_, seconds in baselines.result()}
        timings["wait_baselines"] = time.perf_counter() - t
        shared = _shared_baselines(config.model)
        for name in BASELINES:
            if name in apart:
                rows.append((name, *apart[name]))
            elif name in shared and shared[name] in fitted.collaborative:
                scorer_ = fitted.collaborative[shared[name]]
                rows.append((name + ("*" if _tower_settings(scorer_) else ""),
                             evaluate_run(scorer_, dataset, split, device),
                             fitted.seconds.get(shared[name], 0.0)))
    # Cold columns (and text-only) where items without training pairs matter to the test: a
    # cold-item split, or one whose new items hold at least 1 % of the test positives (a
    # temporal split's new releases; not the odd item of a random split).
    cold_share = ((metrics["test"].get("cold") or {}).get("positive_share") or 0.0)
    cold_split = "test_cold_only" in metrics and (len(split.cold_items) > 0
                                                  or cold_share >= 0.01)
    if cold_split and features is not None:
        rows.append(text_only(dataset, split, features, device, config.train.valid_metric))
    print(f"data:   {dataset.name} ({dataset.num_users} users, {dataset.num_items} items, "
          f"{dataset.num_entities} entities); {split.kind} split: {len(split.train)} train, "
          f"{len(split.valid)} valid, {len(split.test)} test")
    print(f"model:  {model}")
    print(f"mix:    {scorer}")
    valid_metric = capped_metric(config.train.valid_metric, dataset.num_items)[0]
    searched = (config.model.mix_search and not config.model.use_gate
                and len(scorer.names) > 1)
    stopped_on = "the GNN alone" if searched else "the fixed mix"
    print(f"train:  GNN {len(result.history)} epochs, best epoch {result.best_epoch} (valid "
          f"{valid_metric} of {stopped_on} {result.best_score:.4f}), device {device}"
          + (f", {ranks.world_size} processes (DDP)" if ranks.active else "")
          + (f", sampled steps (fan-outs {','.join(map(str, config.train.fanouts))})"
             if config.train.fanouts else "")
          + (f"; LightGCN {fitted.lightgcn_epochs} epochs" if fitted.lightgcn_epochs else ""))
    if fitted.cold_start is not None:
        print("cold:   " + _cold_text(fitted.cold_start))
    if fitted.gate is not None:
        gate_fit, fixed = fitted.gate
        if fitted.gate_kept:
            print(f"gate:   kept (valid {gate_fit.best_score:.4f} against the fixed mix's "
                  f"{fixed:.4f}); mean g (weight of the GNN score) by item popularity: "
                  + _gate_text(metrics["gate"]))
        else:
            print(f"gate:   the learned gate did not beat the fixed mix on validation "
                  f"({fixed:.4f}): kept the fixed mix")
    print("time:   " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
          + f", all {time.perf_counter() - started:.1f}s")
    print(f"saved:  {out}")
    print()
    print(f"Test metrics, full ranking over all {dataset.num_items} items"
          + (f" (cut-off {k}: the catalogue is smaller than 20)" if k < 20 else "") + ":")
    print(format_table(rows, cold_split, k))
    for name, _, _ in rows:
        if name.endswith("*") and name[:-1] in shared:
            print(f"* {name[:-1]}: the hybrid's own tower, "
                  f"{_tower_settings(fitted.collaborative[shared[name[:-1]]])}")
    return 0


if __name__ == "__main__":
    run_cli(main)
