"""RecBole atomic files (``.inter .item .user .kg .link``) -> Dataset.

Each file is tab-separated with a typed header, ``user_id:token	item_id:token	rating:float``.
Fields are renamed to hybridrec's columns by their name before the colon; ``float`` fields must
parse as numbers, everything else is kept as exact strings.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hybridrec.data.build import build_dataset
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError

_SUFFIXES = (".inter", ".item", ".user", ".kg", ".link")


def read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """One atomic file -> (string table with 1-based row index, field -> type)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "a RecBole atomic file, but the file does not exist") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(path, f"UTF-8 text, got byte 0x{raw[err.start]:02x} at offset {err.start}",
                        line=line) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(path, "a header line like 'user_id:token<TAB>item_id:token'", line=1)
    fields, types = [], {}
    for spec in lines[0].split("\t"):
        name, sep, kind = spec.strip().partition(":")
        if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(path, f"header fields as name:type with type token, token_seq, float or "
                                  f"float_seq, got {spec!r}", line=1)
        fields.append(name)
        types[name] = kind
    rows = list(csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE))
    for number, row in enumerate(rows, start=2):
        if len(row) != len(fields):
            raise DataError(path, f"{len(fields)} tab-separated fields, got {len(row)}", line=number)
    table = pd.DataFrame(rows, columns=fields, dtype=str)
    table.index = np.arange(1, len(table) + 1)
    table.attrs["lines"] = np.arange(2, len(table) + 2)  # the header is line 1
    for name, kind in types.items():
        if kind == "float":
            values = pd.to_numeric(table[name], errors="coerce")
            bad = values.isna().to_numpy()
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataError(path, f"a number, got {table[name].iloc[first]!r}",
                                row=first + 1, line=first + 2, field=name)
            table[name] = values.astype(float)
    return table, types


def _require(table: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in table:
            raise DataError(path, f"a field named {column!r}; fields found: {list(table.columns)}",
                            line=1, field=column)


def load_atomic(
    folder: str | Path,
    name: str | None = None,
    *,
    item_text_columns: Sequence[str] | None = None,
    item_categorical_columns: Sequence[str] = (),
    user_text_columns: Sequence[str] | None = None,
    user_categorical_columns: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
) -> Dataset:
    """Load ``<folder>/<name>.inter`` and whichever of ``.item .user .kg .link`` exist.

    Categorical ``token_seq`` columns are split on spaces, as RecBole does.

    Args:
        folder: the folder holding the files.
        name: the files' stem (default: the folder's name).
        item_text_columns / user_text_columns: text columns (default: every non-id column).
        item_categorical_columns / user_categorical_columns: columns that become triples.
        rename: field -> column name applied to every file (e.g. ``{"class": "genre"}``).
    """
    folder = Path(folder)
    name = name or folder.name
    paths = {suffix: folder / f"{name}{suffix}" for suffix in _SUFFIXES}
    if not paths[".inter"].exists():
        raise DataError(paths[".inter"], "the interactions file of a RecBole data set; it does not exist")
    rename = dict(rename or {})
    tables, seps = {}, {}
    for suffix, path in paths.items():
        if path.exists():
            table, types = read_atomic(path)
            tables[suffix] = table.rename(columns=rename)
            seps.update({rename.get(f, f): " " for f, kind in types.items() if kind == "token_seq"})

    inter = tables[".inter"]
    _require(inter, paths[".inter"], ("user_id", "item_id"))
    inter = inter[[c for c in ("user_id", "item_id", "rating", "timestamp") if c in inter]]
    users, items = tables.get(".user"), tables.get(".item")
    if users is not None:
        _require(users, paths[".user"], ("user_id",))
    if items is not None:
        _require(items, paths[".item"], ("item_id",))
    others = lambda t, id_col: [c for c in t.columns if c != id_col] if t is not None else []  # noqa: E731

    kg: list[tuple[str, str, str]] = []
    if ".kg" in tables:
        _require(tables[".kg"], paths[".kg"], ("head_id", "relation_id", "tail_id"))
        kg = list(tables[".kg"][["head_id", "relation_id", "tail_id"]].itertuples(index=False, name=None))
    links = tables.get(".link")
    if links is not None:
        _require(links, paths[".link"], ("item_id", "entity_id"))

    return build_dataset(
        name, inter, users, items,
        user_text_columns=others(users, "user_id") if user_text_columns is None else user_text_columns,
        user_categorical_columns=user_categorical_columns,
        item_text_columns=others(items, "item_id") if item_text_columns is None else item_text_columns,
        item_categorical_columns=item_categorical_columns,
        separators=seps,
        kg_triples=kg,
        item_links=links,
        sources={"interactions": str(paths[".inter"]), "users": str(paths[".user"]),
                 "items": str(paths[".item"]), "links": str(paths[".link"])},
    )
