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
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from hybridrec.data.build import build_dataset, place
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.rdf import check_local_path, kg_inputs, load_rdf

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


# A physical line longer than this is refused before it is parsed: no CSV of ids, numbers and
# short texts has one, and reading it whole would hold a pathological field several times.
MAX_LINE = 8 * 2**20
# Characters per field: the csv module's own bound, named in the message.
MAX_FIELD = csv.field_size_limit()


def read_table(
    path: _PathLike,
    what: str,
    *,
    required: Sequence[str] = (),
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """One CSV/TSV file -> a table of exact strings, index = 1-based data row.

    Blank lines are skipped; every other row must have as many fields as the header. The
    line where each row starts (the header is line 1) is kept in ``table.attrs["lines"]``
    (by data row), so that errors name the line an editor shows. The file is read line by
    line: memory stays bounded by :data:`MAX_LINE` whatever a field holds.

    Args:
        path: a ``.csv`` (comma) or ``.tsv`` / ``.tab`` (tab) file.
        what: what the file should hold, for messages (``"an interactions table"``).
        required: columns that must be present after renaming (default: none).
        columns: file column -> name to use, e.g. ``{"isbn": "item_id"}`` (default: ``None``:
            the file's names, and no renaming is suggested).
        encoding: the file's text encoding (default: ``"utf-8"``; a leading BOM is dropped).
        delimiter: the field delimiter (default: by extension).
        allow_empty: accept a header without data rows (default: ``False``).

    Raises:
        DataError: missing file, unsupported extension, bytes that are not ``encoding``,
            malformed CSV (an unclosed quote is named at the line where it opens), a line
            over :data:`MAX_LINE` characters or a field over :data:`MAX_FIELD`, a row with the
            wrong number of fields, duplicate or missing columns, no data rows.
    """
    path = check_local_path(path)
    mappable = columns is not None  # the file's columns may be renamed (--columns)
    columns = dict(columns or {})
    if delimiter is None:
        delimiter = DELIMITERS.get(path.suffix.lower())
        if delimiter is None:
            raise DataError(path, f"{what} as a file ending in {' / '.join(DELIMITERS)}, "
                                  f"got {path.suffix or 'no extension'!r}")
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        handle = open(path, encoding=codec, newline="")
    except FileNotFoundError:
        raise DataError(path, f"{what}, but the file does not exist") from None
    except IsADirectoryError:
        raise DataError(path, f"{what}, but it is a directory") from None
    except LookupError:
        raise DataError(path, f"a text encoding Python knows, got {encoding!r}",
                        field="encoding", field_kind="option") from None
    with handle:
        header, rows, lines = _parse(handle, path, what, delimiter, codec)

    # Column names: unique, renamed, required ones present.
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
            hint = f"; {_describe_mapping(columns, name)}" if mappable else ""
            raise DataError(path, f"a column {name!r} in {what}; columns found: {header}{hint}",
                            line=1, field=name)
    if not rows and not allow_empty:
        raise DataError(path, f"{what} with at least one data row below the header, got none")
    table = pd.DataFrame(rows, columns=renamed, dtype=object)
    table.index = np.arange(1, len(table) + 1)
    table.attrs["file_columns"] = header
    table.attrs["lines"] = np.asarray(lines, dtype=np.int64)
    return table


def _parse(handle: io.TextIOBase, path: Path, what: str, delimiter: str, codec: str,
           ) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the data rows and the line where each row starts."""
    physical = _physical_lines(handle, path, codec)
    reader = csv.reader(physical, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        while True:
            start = reader.line_num + 1  # where the next record starts
            fields = next(reader, None)
            if fields is None:
                break
            if not fields:  # a blank line
                continue
            if header is None:
                header = [name.strip() for name in fields]
                continue
            if len(fields) != len(header):
                raise DataError(path, f"{len(header)} fields as in the header {header}, got "
                                      f"{len(fields)}: {_short(fields)}", row=len(rows) + 1,
                                line=start)
            rows.append(fields)
            lines.append(start)
    except csv.Error as err:
        message = str(err)
        if "field larger than field limit" in message:
            raise DataError(path, f"fields of at most {MAX_FIELD:,} characters; this row holds "
                                  f"a longer one (a pathological cell?)", line=start) from None
        if "unexpected end of data" in message:
            opened = _unclosed_quote(path, codec, start, delimiter)
            raise DataError(path, "a closing quote for the quoted field that opens here (the "
                                  "file ends inside it)", line=opened) from None
        raise DataError(path, f"well-formed CSV: {message}", line=reader.line_num) from None
    if header is None:
        raise DataError(path, f"{what} with a header row, got an empty file")
    return header, rows, lines


def _short(fields: list[str], limit: int = 200) -> str:
    text = repr(fields)
    return text if len(text) <= limit else text[:limit] + "...]"


def _physical_lines(handle: io.TextIOBase, path: Path, codec: str) -> Iterator[str]:
    """The file's lines, each at most :data:`MAX_LINE` characters; bytes that are not
    ``codec`` are named by line and byte offset, with the option that reads other encodings."""
    number = 0
    while True:
        try:
            line = handle.readline(MAX_LINE + 1)
        except UnicodeDecodeError as err:
            raise _decode_error(path, codec, err) from None
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise DataError(path, f"lines of at most {MAX_LINE:,} characters; this one is longer "
                                  f"(a pathological cell?)", line=number)
        yield line


def _decode_error(path: Path, codec: str, err: UnicodeDecodeError) -> DataError:
    """Where the first byte that is not ``codec`` sits (found by reading the bytes again, in
    blocks), and how to name the file's real encoding."""
    import codecs

    decoder = codecs.getincrementaldecoder(codec)()
    offset, line, bad = 0, 1, None
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as inner:
                line += block.count(b"\n", 0, max(inner.start, 0))
                offset += max(inner.start, 0)
                bad = block[inner.start] if 0 <= inner.start < len(block) else None
                break
            line += block.count(b"\n")
            offset += len(block)
    shown = f"byte 0x{bad:02x}" if bad is not None else "a byte"
    name = "UTF-8" if codec == "utf-8-sig" else codec
    return DataError(path, f"{name} text, got {shown} at byte offset {offset}; if the file is "
                           f"in another encoding, name it: --encoding latin-1 (or cp1252 ...; "
                           f"encoding='latin-1' in Python)", line=line)


def _unclosed_quote(path: Path, codec: str, start: int, delimiter: str) -> int:
    """The line where the quoted field left open at the end of the file opens: the record
    from line ``start`` on, read again, its quotes followed."""
    inside, opened, previous = False, start, delimiter
    with open(path, encoding=codec, newline="") as f:
        for number, line in enumerate(_physical_lines(f, path, codec), start=1):
            if number < start:
                continue
            i = 0
            while i < len(line):
                char = line[i]
                if inside and char == '"':
                    if line[i + 1:i + 2] == '"':  # an escaped quote
                        i += 2
                        continue
                    inside = False
                elif not inside and char == '"' and previous in (delimiter, "\n", "\r"):
                    inside, opened = True, number
                previous = char
                i += 1
    return opened


def _numbers(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"a number, got {table[column].iloc[first]!r} ({int(bad.sum())} such "
                              "rows)", **place(table, first), field=column)
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
                            **place(table, first), field=column)
    return values


def _require_ids(table: pd.DataFrame, column: str, path: Path) -> None:
    empty = (table[column] == "").to_numpy()
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise DataError(path, f"a non-empty id ({int(empty.sum())} rows have none)",
                        **place(table, first), field=column)


def _require_columns(table: pd.DataFrame, names: Sequence[str], role: str, path: Path,
                     columns: Mapping[str, str]) -> None:
    for name in names:
        if name not in table.columns:
            raise DataError(path, f"the column {name!r} named in {role}; columns found: "
                                  f"{list(table.columns)}; {_describe_mapping(columns)}", line=1,
                            field=name)


def _read_kg(path: Path, kg_format: str | None, columns: Mapping[str, str],
             encoding: str = "utf-8",
             ) -> tuple[list[tuple[str, str, str]], dict[str, str], list[str]]:
    """A KG file -> (triples, entity text, the file's columns if it is a table)."""
    if kg_format is None and path.suffix.lower() in DELIMITERS:
        table = read_table(path, "a KG triple table", required=_KG_COLUMNS, columns=columns,
                           encoding=encoding)
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
                        **place(items, first), field=column)
    return pd.DataFrame({"item_id": items["item_id"][given], "entity_id": iris[given]})


# Characters that change an id without showing: zero-width ones, the soft hyphen, and the
# bidirectional controls (marks, embeddings, overrides, isolates).
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
                                    "\u202a\u202b\u202c\u202d\u202e"
                                    "\u2066\u2067\u2068\u2069"))


def normal_id(raw: str) -> str:
    """An id as ``--normalize-ids`` rewrites it: Unicode NFC, without zero-width and
    bidirectional control characters."""
    return unicodedata.normalize("NFC", raw).translate(_INVISIBLE)


def _look_alikes(tables: Mapping[str, pd.DataFrame], paths: Mapping[str, Path]) -> None:
    """Warn about ids that are different strings but look alike (NFC/NFD forms, zero-width or
    bidirectional control characters): they stay apart unless ``--normalize-ids``."""
    for kind, places in (("user", (("interactions", "user_id"), ("users", "user_id"))),
                         ("item", (("interactions", "item_id"), ("items", "item_id"),
                                   ("links", "item_id")))):
        forms: dict[str, dict[str, str]] = {}  # normal form -> raw id -> file
        for role, column in places:
            if role not in tables:
                continue
            for raw in pd.unique(tables[role][column]):
                forms.setdefault(normal_id(raw), {}).setdefault(raw, paths[role].name)
        odd = {norm: raws for norm, raws in forms.items()
               if len(raws) > 1 or any(normal_id(r) != r for r in raws)}
        if not odd:
            continue
        groups = [" / ".join(f"{ascii(raw)} ({where})" for raw, where in raws.items())
                  for raws in list(odd.values())[:3]]
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        log.warning("%s ids that look alike but are different strings (Unicode forms, "
                    "zero-width or bidirectional control characters), kept apart: %s%s; to "
                    "merge them, normalise the ids with --normalize-ids (normalize_ids=True "
                    "in Python)", kind.capitalize(), "; ".join(groups), more)


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
    encoding: str = "utf-8",
    normalize_ids: bool = False,
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
        encoding: the tables' text encoding (default: ``"utf-8"``; RDF files are UTF-8).
        normalize_ids: rewrite ids to Unicode NFC without zero-width and bidirectional
            control characters, so that look-alike ids become one (default: ``False``: they
            are kept apart, and a warning names them).

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
                                        required=("user_id", "item_id"), columns=columns,
                                        encoding=encoding)
    for role, path, id_column in (("items", items, "item_id"), ("users", users, "user_id")):
        if path is not None:
            paths[role] = check_local_path(path)
            tables[role] = read_table(paths[role], f"an {role} table" if role == "items" else
                                      "a users table", required=(id_column,), columns=columns,
                                      encoding=encoding)
    triples: list[tuple[str, str, str]] = []
    text: dict[str, str] = {}
    file_columns = [c for table in tables.values() for c in table.attrs["file_columns"]]
    if links is not None:
        paths["links"] = check_local_path(links)
        tables["links"] = read_table(paths["links"], "an item-entity link table",
                                     required=("item_id", "entity_id"), columns=columns,
                                     encoding=encoding)
        file_columns += tables["links"].attrs["file_columns"]

    # 2. Look-alike ids are named, and merged only on request; ids are never empty; column
    # roles must name existing columns.
    id_columns = {"interactions": ("user_id", "item_id"), "items": ("item_id",),
                  "users": ("user_id",), "links": ("item_id",)}
    if normalize_ids:
        for role, names in id_columns.items():
            for column in names if role in tables else ():
                tables[role][column] = tables[role][column].map(normal_id)
    else:
        _look_alikes(tables, paths)
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
        triples, text, kg_columns = _read_kg(paths["kg"], kg_format, columns, encoding)
        file_columns += kg_columns
        if not triples:  # Named here, not as links to entities that cannot be found.
            raise DataError(paths["kg"], "a knowledge graph with at least one triple, got none "
                                         "(an empty file, or one in another RDF format than "
                                         "its extension says?)")
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
    sources = {role: str(path) for role, path in paths.items()}
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
