"""Command-line options shared by every CLI (data, embed, train, benchmarks), and their loaders.

A CLI adds the option groups, then turns the parsed arguments into a :class:`Dataset` and a
:class:`Split`; :func:`run_cli` turns a :class:`DataError` into one clean line and exit code 2::

    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    add_split_arguments(parser)
    args = parser.parse_args(argv)
    dataset = load_dataset_from_args(args)
    split = split_from_args(args, dataset)

The data choice is also expressible as ``(source, options)`` strings — what
:class:`hybridrec.config.DataConfig` stores — through :func:`data_source_from_args` and
:func:`load_dataset`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.split import SPLIT_KINDS, Split, make_split, split_from_files

log = logging.getLogger(__name__)

BUILTIN_DATASETS: tuple[str, ...] = ("ml-100k",)
# Option keys of a file-based source, as stored in DataConfig.options (all strings).
FILE_OPTIONS: tuple[str, ...] = (
    "items", "users", "kg", "links", "item_iri", "columns", "item_text", "item_categorical",
    "user_text", "user_categorical", "separator", "encoding", "normalize_ids",
)
_COMMAND_LINE = "command line"


def _names(text: str) -> tuple[str, ...]:
    """``"a,b , c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_columns(text: str) -> dict[str, str]:
    """``"movie=item_id,uid=user_id"`` -> ``{"movie": "item_id", "uid": "user_id"}``."""
    mapping = {}
    for part in _names(text):
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"expected old=new pairs separated by commas, got {part!r}")
        mapping[old.strip()] = new.strip()
    return mapping


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``: three non-negative numbers, not all zero."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 or v != v for v in values) or sum(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three non-negative numbers like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def _columns_type(text: str) -> dict[str, str]:
    try:
        return parse_columns(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options choosing the data: a built-in data set, or CSV files with an optional KG."""
    group = parser.add_argument_group(
        "data", "a built-in data set (default: ml-100k), or your own CSV files")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--dataset", choices=BUILTIN_DATASETS, default=None,
                       help="built-in data set (default: ml-100k unless --interactions is given)")
    which.add_argument("--interactions", metavar="CSV",
                       help="interactions table: user_id, item_id[, rating][, timestamp]")
    group.add_argument("--items", metavar="CSV", help="item table: item_id and other columns")
    group.add_argument("--users", metavar="CSV", help="user table: user_id and other columns")
    group.add_argument("--kg", metavar="FILE",
                       help="knowledge graph: RDF in any rdflib format (by file extension)")
    group.add_argument("--links", metavar="CSV", help="item-entity links: item_id, entity_id")
    group.add_argument("--item-iri", metavar="COLUMN",
                       help="items column holding each item's KG entity IRI (instead of --links)")
    group.add_argument("--columns", metavar="OLD=NEW,...", type=_columns_type, default=None,
                       help="rename columns of your files, e.g. movieId=item_id,userId=user_id")
    for who, text, categorical in (("item", "title,year", "genre"),
                                   ("user", "age", "gender,occupation")):
        group.add_argument(f"--{who}-text", metavar="COL,...", type=_names, default=None,
                           help=f"{who} columns holding free text for the text encoder "
                                f"(e.g. {text})")
        group.add_argument(f"--{who}-categorical", metavar="COL,...", type=_names, default=None,
                           help=f"{who} columns whose values become KG entities "
                                f"(e.g. {categorical})")
    group.add_argument("--separator", metavar="SEP", default=None,
                       help="splits multi-valued categorical cells such as Crime|Drama "
                            "(default: '|'); the field delimiter follows the file extension "
                            "(.csv comma, .tsv tab)")
    group.add_argument("--encoding", metavar="NAME", default=None,
                       help="text encoding of the CSV/TSV files, e.g. latin-1 or cp1252 "
                            "(default: utf-8)")
    group.add_argument("--normalize-ids", action="store_true", default=None,
                       help="rewrite ids to Unicode NFC without zero-width and bidirectional "
                            "control characters, merging look-alike ids (default: keep ids "
                            "exact and warn about look-alikes)")
    group.add_argument("--cache-dir", metavar="DIR", default=None,
                       help="where built-in data sets are kept (default: the user cache dir)")
    return parser


def add_split_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options choosing the split: a generated kind, or three split files.

    ``--seed`` (also ``--split-seed``) is stored as ``args.split_seed``.
    """
    group = parser.add_argument_group("split", "how interactions become train / valid / test")
    group.add_argument("--split", choices=SPLIT_KINDS, default=None,
                       help="split kind (default: random; not with --train-file)")
    group.add_argument("--ratios", metavar="TRAIN,VALID,TEST", type=parse_ratios,
                       default=(0.8, 0.1, 0.1), help="shares per user (default: 0.8,0.1,0.1)")
    group.add_argument("--cold-fraction", metavar="F", type=_fraction, default=0.1,
                       help="share of items (cold-items) or users (cold-users) held out of "
                            "training entirely (default: 0.1)")
    group.add_argument("--seed", "--split-seed", dest="split_seed", type=int, default=0, metavar="N",
                       help="seed of the split (default: 0)")
    group.add_argument("--train-file", metavar="CSV", default=None,
                       help="user-supplied split: user_id,item_id rows of raw ids")
    group.add_argument("--valid-file", metavar="CSV", default=None)
    group.add_argument("--test-file", metavar="CSV", default=None)
    return parser


def data_source_from_args(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """``(source, options)``: a built-in name or the interactions path, and string options
    (the keys of :data:`FILE_OPTIONS` that were given, plus ``cache_dir``)."""
    options: dict[str, str] = {}
    if getattr(args, "cache_dir", None):
        options["cache_dir"] = str(args.cache_dir)
    file_options = {
        "items": args.items, "users": args.users, "kg": args.kg, "links": args.links,
        "item_iri": args.item_iri,
        "columns": ",".join(f"{o}={n}" for o, n in args.columns.items()) if args.columns else None,
        "item_text": ",".join(args.item_text) if args.item_text is not None else None,
        "item_categorical": ",".join(args.item_categorical) if args.item_categorical is not None else None,
        "user_text": ",".join(args.user_text) if args.user_text is not None else None,
        "user_categorical": ",".join(args.user_categorical) if args.user_categorical is not None else None,
        "separator": args.separator,
        "encoding": getattr(args, "encoding", None),
        "normalize_ids": "true" if getattr(args, "normalize_ids", None) else None,
    }
    given = {k: str(v) for k, v in file_options.items() if v is not None}
    if args.interactions is None:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise DataError(_COMMAND_LINE, f"{flags} {'needs' if len(given) == 1 else 'need'} "
                                           f"--interactions (a built-in data set takes no file "
                                           f"options)")
        return args.dataset or "ml-100k", options
    return str(args.interactions), {**options, **given}


# Option -> options it needs, checked before loading (flag names in messages).
_NEEDS = {"links": ("kg",), "item_iri": ("items", "kg"), "item_text": ("items",),
          "item_categorical": ("items",), "user_text": ("users",), "user_categorical": ("users",)}


def _check_needs(options: Mapping[str, str]) -> None:
    flag = lambda key: "--" + key.replace("_", "-")  # noqa: E731
    for key, needs in _NEEDS.items():
        missing = [n for n in needs if key in options and n not in options]
        if missing:
            raise DataError(_COMMAND_LINE, f"{flag(key)} needs {' and '.join(map(flag, missing))}")


def load_dataset(source: str, options: Mapping[str, str] | None = None) -> Dataset:
    """Load a data set from ``(source, options)`` as :func:`data_source_from_args` gives them.

    Args:
        source: a name of :data:`BUILTIN_DATASETS`, or the path of an interactions CSV.
        options: string options: ``cache_dir`` (built-in), or the keys of :data:`FILE_OPTIONS`
            (files; ``columns`` as ``old=new,...``, column lists comma-separated).

    Raises:
        DataError: bad files (naming file, row and column), or an unknown option.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(FILE_OPTIONS) - {"cache_dir"})
    if unknown:
        raise DataError("data options", f"options among {sorted(FILE_OPTIONS + ('cache_dir',))}, "
                                        f"got {unknown}")
    if source in BUILTIN_DATASETS:
        extra = sorted(set(options) - {"cache_dir"})
        if extra:
            raise DataError("data options", f"no file options for built-in {source}, got {extra}")
        from hybridrec.data.movielens import load_ml100k

        return load_ml100k(cache_dir=options.get("cache_dir"))
    return _load_files(Path(source), options)


def _load_files(interactions: Path, options: Mapping[str, str]) -> Dataset:
    from hybridrec.data.tabular import load_csv

    _check_needs(options)
    names = lambda key: _names(options[key]) if key in options else ()  # noqa: E731
    path = lambda key: Path(options[key]) if key in options else None  # noqa: E731
    try:
        columns = parse_columns(options.get("columns", ""))
    except ValueError as err:
        raise DataError("--columns", str(err)) from None
    return load_csv(
        interactions,
        items=path("items"),
        users=path("users"),
        kg=path("kg"),
        links=path("links"),
        columns=columns,
        item_text_columns=names("item_text"),
        item_categorical_columns=names("item_categorical"),
        user_text_columns=names("user_text"),
        user_categorical_columns=names("user_categorical"),
        item_iri_column=options.get("item_iri"),
        separator=options.get("separator", "|"),
        encoding=options.get("encoding", "utf-8"),
        normalize_ids=options.get("normalize_ids") == "true",
    )


def load_dataset_from_args(args: argparse.Namespace) -> Dataset:
    """The :class:`Dataset` that the options of :func:`add_data_arguments` name."""
    source, options = data_source_from_args(args)
    return load_dataset(source, options)


def split_from_args(args: argparse.Namespace, dataset: Dataset) -> Split:
    """The :class:`Split` that the options of :func:`add_split_arguments` name."""
    files = (args.train_file, args.valid_file, args.test_file)
    if any(f is not None for f in files):
        if args.split is not None:
            raise DataError(_COMMAND_LINE, f"either --split {args.split} or split files "
                                           f"(--train-file ...), not both")
        if args.train_file is None or args.test_file is None:
            raise DataError(_COMMAND_LINE, "split files need --train-file and --test-file "
                                           "(--valid-file is optional)")
        return split_from_files(dataset, *files, encoding=getattr(args, "encoding", None)
                                or "utf-8", normalize_ids=bool(getattr(args, "normalize_ids",
                                                                       None)))
    return make_split(dataset, args.split or "random", ratios=tuple(args.ratios),
                      seed=args.split_seed, cold_fraction=args.cold_fraction)


def run_cli(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    *,
    log_level: int = logging.WARNING,
) -> NoReturn:
    """Run a CLI's ``main(argv)`` and exit with its code.

    A :class:`DataError` or other ``ValueError`` (bad data, bad option values) prints as
    ``error: <message>`` on stderr (no traceback) and exits 2, like an argparse usage error. Logging goes to stderr at ``log_level`` unless the program
    configured it already.
    """
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main(argv)
    except ValueError as err:  # DataError included
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
