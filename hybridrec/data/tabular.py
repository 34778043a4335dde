"""CSV tables (+ an optional RDF or CSV knowledge graph) -> Dataset.

:func:`read_table` parses one CSV/TSV file into exact strings (``"01"``, ``"1.0"`` and long
digit strings stay as written) with the 1-based data row as index, and refuses bad files with
a :class:`~hybridrec.data.errors.DataError` naming the file, row and column. :func:`load_csv`
reads the tables of one data set, checks and converts ratings and timestamps, matches items to
KG entities and hands everything to :func:`~hybridrec.data.build.build_dataset`, which applies
the shared policies (unknown ids, repeated interactions, categorical columns -> triples).
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from hybridrec.data.build import build_dataset
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.rdf import check_local_path, kg_inputs, load_rdf, read_utf8

log = logging.getLogger(__name__)

DELIMITERS: Mapping[str, str] = MappingProxyType({".csv": ",", ".tsv": "\t", ".tab": "\t"})
"""File extension -> field delimiter."""

_KG_COLUMNS = ("head_id", "relation_id", "tail_id")
_PathLike = str | PathLike[str]


def _describe_mapping(columns: Mapping[str, str], wanted: str = "<name>") -> str:
    """The column mapping in use, or how to give one: the command-line flag first (the
    loaders serve the CLIs and Python alike)."""
    if not columns:
        return (f"no column mapping given (rename a file column: --columns "
                f"<file column>={wanted}; in Python columns={{'<file column>': {wanted!r}}})")
    return f"column mapping {','.join(f'{k}={v}' for k, v in columns.items())}"


def read_table(
    path: _PathLike,
    what: str,
    *,
    required: Sequence[str] = (),
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One CSV/TSV file -> a table of exact strings, index = 1-based data row.

    Blank lines are skipped; every other row must have as many fields as the header.

    Args:
        path: a ``.csv`` (comma) or ``.tsv`` / ``.tab`` (tab) file, UTF-8.
        what: what the file should hold, for messages (``"an interactions table"``).
        required: columns that must be present after renaming (default: none).
        columns: file column -> name to use, e.g. ``{"isbn": "item_id"}`` (default: none).

    Raises:
        DataError: missing file, unsupported extension, non-UTF-8 bytes, malformed CSV, a row
            with the wrong number of fields, duplicate or missing columns, no data rows.
    """
    path = check_local_path(path)
    columns = dict(columns or {})
    delimiter = DELIMITERS.get(path.suffix.lower())
    if delimiter is None:
        raise DataError(path, f"{what} as a file ending in {' / '.join(DELIMITERS)}, "
                              f"got {path.suffix or 'no extension'!r}")
    text = read_utf8(path, what)

    # 1. Header: the first non-blank line.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next((r for r in reader if r), None)
        if header is None:
            raise DataError(path, f"{what} with a header row, got an empty file")
        header = [name.strip() for name in header]
        width = len(header)
        rows = []
        # 2. Data rows, each as wide as the header.
        for fields in reader:
            if not fields:
                continue
            if len(fields) != width:
                raise DataError(path, f"{width} fields as in the header {header}, got "
                                      f"{len(fields)}: {fields!r}", row=len(rows) + 1)
            rows.append(fields)
    except csv.Error as err:
        raise DataError(path, f"well-formed CSV: {err}", line=reader.line_num) from None

    # 3. Column names: unique, renamed, required ones present.
    for position, name in enumerate(header):
        if not name:
            raise DataError(path, f"a name for every header column, column {position + 1} has none",
                            line=1)
        if header.index(name) != position:
            raise DataError(path, f"unique column names, {name!r} appears twice in {header}", line=1)
    renamed = [columns.get(name, name) for name in header]
    for position, name in enumerate(renamed):
        if renamed.index(name) != position:
            raise DataError(path, f"unique column names after renaming, {name!r} appears twice in "
                                  f"{renamed} ({_describe_mapping(columns)})", line=1)
    for name in required:
        if name not in renamed:
            raise DataError(path, f"a column {name!r} in {what}; columns found: {header}; "
                                  f"{_describe_mapping(columns, name)}", line=1, field=name)
    if not rows:
        raise DataError(path, f"{what} with at least one data row below the header, got none")
    table = pd.DataFrame(rows, columns=renamed, dtype=object)
    table.index = np.arange(1, len(table) + 1)
    table.attrs["file_columns"] = header
    return table


def _numbers(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"a number, got {table[column].iloc[first]!r} ({int(bad.sum())} such "
                              "rows)", row=int(table.index[first]), field=column)
    return values


def _epoch_seconds(cell: str) -> float | None:
    cell = cell.strip()
    if cell[-1:] in ("Z", "z"):
        cell = cell[:-1] + "+00:00"  # Python 3.10's fromisoformat knows no "Z".
    try:
        moment = datetime.fromisoformat(cell)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # Naive times are UTC.
    return moment.timestamp()


def _timestamps(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Epoch seconds (numbers) or ISO-8601 date/times (naive = UTC) -> float epoch seconds."""
    cells = table[column]
    values = pd.to_numeric(cells, errors="coerce").astype(float)
    todo = ~np.isfinite(values.to_numpy())
    if todo.any():
        parsed = {cell: _epoch_seconds(cell) for cell in pd.unique(cells[todo])}
        values[todo] = [parsed[c] if parsed[c] is not None else np.nan for c in cells[todo]]
        bad = values.isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"seconds since the epoch or an ISO-8601 date/time such as "
                                  f"'2024-03-01T09:30:00Z', got {cells.iloc[first]!r}",
                            row=int(table.index[first]), field=column)
    return values


def _require_ids(table: pd.DataFrame, column: str, path: Path) -> None:
    empty = (table[column] == "").to_numpy()
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise DataError(path, f"a non-empty id ({int(empty.sum())} rows have none)",
                        row=int(table.index[first]), field=column)


def _require_columns(table: pd.DataFrame, names: Sequence[str], role: str, path: Path,
                     columns: Mapping[str, str]) -> None:
    for name in names:
        if name not in table.columns:
            raise DataError(path, f"the column {name!r} named in {role}; columns found: "
                                  f"{list(table.columns)}; {_describe_mapping(columns)}", line=1,
                            field=name)


def _read_kg(path: Path, kg_format: str | None, columns: Mapping[str, str],
             ) -> tuple[list[tuple[str, str, str]], dict[str, str], list[str]]:
    """A KG file -> (triples, entity text, the file's columns if it is a table)."""
    if kg_format is None and path.suffix.lower() in DELIMITERS:
        table = read_table(path, "a KG triple table", required=_KG_COLUMNS, columns=columns)
        triples = list(table[list(_KG_COLUMNS)].itertuples(index=False, name=None))
        return triples, {}, table.attrs["file_columns"]
    triples, text = kg_inputs(load_rdf(path, kg_format))
    return triples, text, []


def _iri_links(items: pd.DataFrame, column: str, triples: Sequence[tuple[str, str, str]],
               items_path: Path, kg_path: Path) -> pd.DataFrame:
    """``item_id, entity_id`` rows from an items column of entity IRIs (empty cells: no link)."""
    iris = items[column]
    known = {e for h, _, t in triples for e in (h, t)}
    given = (iris != "").to_numpy()
    bad = given & ~iris.isin(known).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(items_path, f"an entity IRI that appears in {kg_path}, got "
                                    f"{iris.iloc[first]!r} ({int(bad.sum())} such rows)",
                        row=int(items.index[first]), field=column)
    return pd.DataFrame({"item_id": items["item_id"][given], "entity_id": iris[given]})


def load_csv(
    interactions: _PathLike,
    items: _PathLike | None = None,
    users: _PathLike | None = None,
    kg: _PathLike | None = None,
    links: _PathLike | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    item_text_columns: Sequence[str] = (),
    item_categorical_columns: Sequence[str] = (),
    user_text_columns: Sequence[str] = (),
    user_categorical_columns: Sequence[str] = (),
    item_iri_column: str | None = None,
    separator: str | Mapping[str, str] | None = "|",
    kg_format: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Load a data set from CSV tables and an optional knowledge graph.

    Tables (``.csv`` comma- or ``.tsv`` tab-separated, UTF-8, one header row):

    * ``interactions``: ``user_id``, ``item_id``, optional ``rating`` (a number) and
      ``timestamp`` (epoch seconds or ISO-8601; naive times are UTC); other columns are ignored
      (and logged);
    * ``items`` / ``users``: ``item_id`` / ``user_id`` and any other columns, kept as strings;
    * ``kg``: an RDF file in any rdflib format (see :func:`~hybridrec.data.rdf.load_rdf`) or a
      CSV/TSV triple table ``head_id, relation_id, tail_id``;
    * ``links``: ``item_id, entity_id`` rows matching items to KG entities (IRIs).

    Ids are exact strings. Categorical columns become attribute triples
    ``(item, column, value)``; their cells are split on ``separator``.

    Args:
        interactions / items / users / kg / links: file paths (URLs are refused).
        columns: file column -> hybridrec name, applied to every table, e.g.
            ``{"customer_id": "user_id", "isbn": "item_id", "stars": "rating", "ts": "timestamp"}``;
            role arguments below use the names after renaming (default: none).
        item_text_columns / user_text_columns: columns of free text for the text encoder.
        item_categorical_columns / user_categorical_columns: columns that become triples.
        item_iri_column: an ``items`` column holding each item's KG entity IRI (empty = none),
            an alternative to ``links`` (default: ``None``).
        separator: splits multi-valued categorical cells; a string for every categorical column,
            a column -> separator mapping, or ``None`` for no splitting (default: ``"|"``).
        kg_format: the rdflib format of ``kg`` (default: by extension).
        name: the data set's name (default: the name of the folder holding ``interactions``).

    Raises:
        DataError: for every bad file, row or cell, naming the file, row and column.
    """
    # 0. Arguments that need each other.
    if links is not None and kg is None:
        raise ValueError("load_csv: links= matches items to KG entities, so it needs kg=")
    if item_iri_column is not None and (items is None or kg is None):
        raise ValueError("load_csv: item_iri_column needs both items= and kg=")
    if items is None and (item_text_columns or item_categorical_columns):
        raise ValueError("load_csv: item column roles given without items=")
    if users is None and (user_text_columns or user_categorical_columns):
        raise ValueError("load_csv: user column roles given without users=")
    columns = dict(columns or {})
    inter_path = check_local_path(interactions)
    tables: dict[str, pd.DataFrame] = {}
    paths: dict[str, Path] = {"interactions": inter_path}

    # 1. Parse every table into exact strings.
    tables["interactions"] = read_table(inter_path, "an interactions table",
                                        required=("user_id", "item_id"), columns=columns)
    for role, path, id_column in (("items", items, "item_id"), ("users", users, "user_id")):
        if path is not None:
            paths[role] = check_local_path(path)
            tables[role] = read_table(paths[role], f"an {role} table" if role == "items" else
                                      "a users table", required=(id_column,), columns=columns)
    triples: list[tuple[str, str, str]] = []
    text: dict[str, str] = {}
    file_columns = [c for table in tables.values() for c in table.attrs["file_columns"]]
    if links is not None:
        paths["links"] = check_local_path(links)
        tables["links"] = read_table(paths["links"], "an item-entity link table",
                                     required=("item_id", "entity_id"), columns=columns)
        file_columns += tables["links"].attrs["file_columns"]

    # 2. Ids are never empty; column roles must name existing columns.
    for role, id_columns in (("interactions", ("user_id", "item_id")), ("items", ("item_id",)),
                             ("users", ("user_id",)), ("links", ("item_id", "entity_id"))):
        for column in id_columns if role in tables else ():
            _require_ids(tables[role], column, paths[role])
    for role, text_columns, categorical_columns in (
            ("items", item_text_columns, item_categorical_columns),
            ("users", user_text_columns, user_categorical_columns)):
        if role not in tables:
            continue
        _require_columns(tables[role], text_columns, f"{role[:-1]}_text_columns", paths[role],
                         columns)
        _require_columns(tables[role], categorical_columns, f"{role[:-1]}_categorical_columns",
                         paths[role], columns)
    if item_iri_column is not None:
        _require_columns(tables["items"], (item_iri_column,), "item_iri_column", paths["items"],
                         columns)

    # 3. The knowledge graph; then every mapping key must have matched a file column.
    if kg is not None:
        paths["kg"] = check_local_path(kg)
        triples, text, kg_columns = _read_kg(paths["kg"], kg_format, columns)
        file_columns += kg_columns
    unused = [key for key in columns if key not in file_columns]
    if unused:
        raise DataError(", ".join(p.name for p in paths.values()),
                        f"every key of the column mapping to name a file column; {unused} match "
                        f"none ({_describe_mapping(columns)})")

    # 4. Interactions: ids, then numbers.
    inter = tables["interactions"]
    extra = [c for c in inter.columns if c not in ("user_id", "item_id", "rating", "timestamp")]
    if extra:
        log.info("%s: columns %s ignored (not user_id, item_id, rating, timestamp)", inter_path, extra)
    inter = inter[[c for c in ("user_id", "item_id", "rating", "timestamp") if c in inter.columns]].copy()
    if "rating" in inter:
        inter["rating"] = _numbers(inter, "rating", inter_path)
    if "timestamp" in inter:
        inter["timestamp"] = _timestamps(inter, "timestamp", inter_path)

    # 5. Item links: a link table and/or an IRI column of the items table.
    link_table = tables.get("links")
    if link_table is not None:
        link_table = link_table[["item_id", "entity_id"]]
    if item_iri_column is not None:
        by_iri = _iri_links(tables["items"], item_iri_column, triples, paths["items"], paths["kg"])
        link_table = by_iri if link_table is None else pd.concat([link_table, by_iri])

    if isinstance(separator, Mapping):
        separators = dict(separator)
    else:
        separators = {c: separator for c in (*item_categorical_columns, *user_categorical_columns)
                      if separator}
    sources = {role: str(path) for role, path in paths.items() if role != "kg"}
    if "links" not in sources and item_iri_column is not None:
        sources["links"] = f"{paths['items']} column {item_iri_column!r}"
    return build_dataset(
        name or inter_path.resolve().parent.name,
        inter,
        tables.get("users"),
        tables.get("items"),
        user_text_columns=user_text_columns,
        user_categorical_columns=user_categorical_columns,
        item_text_columns=item_text_columns,
        item_categorical_columns=item_categorical_columns,
        separators=separators,
        kg_triples=triples,
        entity_text=text,
        item_links=link_table,
        sources=sources,
    )
