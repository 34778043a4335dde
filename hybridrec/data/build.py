"""Parsed tables -> Dataset: the one place where the data policies live.

Every loader (CSV, RecBole atomic files, ml-100k) parses its files into string tables and hands
them here. Policies:

* Ids are exact strings; indices follow first appearance (table order, then interactions).
* An interaction naming a user or item absent from a given users/items table is an error.
  Without a table, ids come from the interactions.
* A repeated (user, item) pair keeps one row: the latest by timestamp, else the last in the file.
  The number of dropped rows is logged as a warning.
* A duplicate id in a users or items table is an error.
* Categorical columns become attribute triples ``(item|user, column, value)``; each distinct
  value is an entity with raw id ``"<column>:<value>"`` and text ``value``. A multi-valued cell
  is split on that column's separator; empty parts are ignored.
* KG triples are entity -> entity by raw id; links map items to entities. A link naming an
  unknown item or an entity absent from the KG is an error.

Row numbers in error messages come from each table's index, which loaders set to the 1-based
data row of the source file.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap

log = logging.getLogger(__name__)


def place(frame: pd.DataFrame, position: int) -> dict[str, int]:
    """``row`` (the frame's 1-based data row) and, for a table read from a file, ``line`` (where
    the row starts in it, from ``frame.attrs["lines"]``) of the row at ``position``: the
    keywords of :class:`DataError`."""
    row = int(frame.index[position])
    lines = frame.attrs.get("lines")
    if lines is not None and 1 <= row <= len(lines):
        return {"row": row, "line": int(lines[row - 1])}
    return {"row": row}


def _first_bad(frame: pd.DataFrame, bad: np.ndarray, column: str, source: str, expected: str,
               ids: bool = False) -> None:
    """A DataError at the first ``bad`` row; with ``ids``, the distinct bad values are listed
    (the first few and their count)."""
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = frame[column].to_numpy()[first]
        detail = f"{int(bad.sum())} such rows"
        if ids:
            distinct = list(dict.fromkeys(frame[column].to_numpy()[bad].tolist()))
            shown = ", ".join(repr(v) for v in distinct[:5])
            more = f" and {len(distinct) - 5} more" if len(distinct) > 5 else ""
            detail += f"; {len(distinct)} unknown: {shown}{more}"
        raise DataError(source, f"{expected}, got {value!r} ({detail})",
                        **place(frame, first), field=column)


def _table_ids(table: pd.DataFrame, id_column: str, source: str) -> IdMap:
    ids = table[id_column].astype(str)
    dup = ids.duplicated().to_numpy()
    _first_bad(table, dup, id_column, source, "a unique id (it appears on an earlier row)")
    return IdMap(ids)


def _deduplicate(inter: pd.DataFrame, source: str) -> pd.DataFrame:
    if "timestamp" in inter:
        inter = inter.sort_values("timestamp", kind="stable")
    keep = ~inter.duplicated(["user_id", "item_id"], keep="last")
    if not keep.all():
        log.warning("%s: %d repeated (user, item) rows dropped, the latest of each kept",
                    source, int((~keep).sum()))
    return inter[keep].sort_index()


def _attribute_triples(
    table: pd.DataFrame, columns: Sequence[str], separators: Mapping[str, str],
) -> list[tuple[int, str, str]]:
    triples = []
    for column in columns:
        sep = separators.get(column)
        for position, cell in enumerate(table[column].astype(str).to_numpy()):
            values = cell.split(sep) if sep else [cell]
            for value in dict.fromkeys(v.strip() for v in values):
                if value:
                    triples.append((position, column, value))
    return triples


def build_dataset(
    name: str,
    interactions: pd.DataFrame,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    *,
    user_text_columns: Sequence[str] = (),
    user_categorical_columns: Sequence[str] = (),
    item_text_columns: Sequence[str] = (),
    item_categorical_columns: Sequence[str] = (),
    separators: Mapping[str, str] | None = None,
    kg_triples: Sequence[tuple[str, str, str]] = (),
    entity_text: Mapping[str, str] | None = None,
    item_links: pd.DataFrame | None = None,
    sources: Mapping[str, str] | None = None,
) -> Dataset:
    """Assemble a :class:`Dataset` from parsed tables, applying the module's policies.

    Args:
        name: the data set's name.
        interactions: columns ``user_id``, ``item_id`` (str), optional ``rating`` and
            ``timestamp`` (float, epoch seconds); index = 1-based source row.
        users / items: ``user_id`` / ``item_id`` plus other string columns, or ``None``.
        *_text_columns / *_categorical_columns: column roles.
        separators: column -> separator for multi-valued categorical cells (default: none).
        kg_triples: ``(head_id, relation_name, tail_id)`` between KG entities.
        entity_text: raw entity id -> label.
        item_links: columns ``item_id``, ``entity_id``; index = 1-based source row.
        sources: role (``"interactions"``, ``"users"``, ``"items"``, ``"links"``) -> file name,
            for messages.
    """
    sources = dict(sources or {})
    src = lambda role: sources.get(role, role)  # noqa: E731
    src_kg = f" ({sources['kg']})" if "kg" in sources else ""
    separators = dict(separators or {})
    if len(interactions) == 0:
        raise DataError(src("interactions"), "at least one interaction row, got an empty table")

    # 1. Users and items: from their tables when given, else from the interactions.
    inter = _deduplicate(interactions, src("interactions"))
    user_ids = (_table_ids(users, "user_id", src("users")) if users is not None
                else IdMap.from_values(inter["user_id"]))
    item_ids = (_table_ids(items, "item_id", src("items")) if items is not None
                else IdMap.from_values(inter["item_id"]))
    user_index = user_ids.indices(inter["user_id"])
    item_index = item_ids.indices(inter["item_id"])
    _first_bad(inter, user_index < 0, "user_id", src("interactions"),
               f"a user listed in {src('users')}", ids=True)
    _first_bad(inter, item_index < 0, "item_id", src("interactions"),
               f"an item listed in {src('items')}", ids=True)

    # 2. Entities: KG nodes first, then categorical values.
    kg = list(kg_triples)
    item_attr = _attribute_triples(items, item_categorical_columns, separators) if items is not None else []
    user_attr = _attribute_triples(users, user_categorical_columns, separators) if users is not None else []
    entities = IdMap.from_values(
        [e for h, _, t in kg for e in (h, t)]
        + [f"{col}:{val}" for _, col, val in item_attr + user_attr]
    )
    relations = IdMap.from_values(
        [col for _, col, _ in item_attr + user_attr] + [r for _, r, _ in kg])
    labels = dict(entity_text or {})
    labels.update({f"{col}:{val}": val for _, col, val in item_attr + user_attr})
    texts = tuple(labels.get(e, "") for e in entities.ids)

    def encode(triples: list[tuple], head_is_entity: bool) -> np.ndarray:
        if not triples:
            return np.zeros((0, 3), np.int64)
        if head_is_entity:
            rows = [(entities.index(h), relations.index(r), entities.index(t)) for h, r, t in triples]
        else:
            rows = [(h, relations.index(c), entities.index(f"{c}:{v}")) for h, c, v in triples]
        return np.asarray(rows, dtype=np.int64)

    # 3. Item <-> entity links.
    if kg and (item_links is None or not len(item_links)):
        log.warning("%s: the knowledge graph (%d triples) is linked to no item, so it cannot "
                    "reach the items; give a link table or an item IRI column",
                    name, len(kg))
    links = np.zeros((0, 2), np.int64)
    if item_links is not None and len(item_links):
        link_items = item_ids.indices(item_links["item_id"])
        link_entities = entities.indices(item_links["entity_id"])
        _first_bad(item_links, link_items < 0, "item_id", src("links"), "an item of the data set",
                   ids=True)
        _first_bad(item_links, link_entities < 0, "entity_id", src("links"),
                   f"an entity that appears in the knowledge graph{src_kg}", ids=True)
        links = np.unique(np.stack([link_items, link_entities], axis=1), axis=0)

    def table_columns(table: pd.DataFrame | None, id_column: str) -> dict[str, np.ndarray]:
        if table is None:
            return {}
        return {c: table[c].astype(str).to_numpy(dtype=object) for c in table.columns if c != id_column}

    return Dataset(
        name=name,
        users=user_ids,
        items=item_ids,
        interactions=Interactions(
            user_index, item_index,
            inter["rating"].to_numpy(np.float32) if "rating" in inter else None,
            inter["timestamp"].to_numpy(np.float64) if "timestamp" in inter else None,
        ),
        entities=entities,
        relations=relations,
        # Tables are in id order already: their ids were taken in table order.
        user_table=table_columns(users, "user_id"),
        item_table=table_columns(items, "item_id"),
        user_text_columns=tuple(user_text_columns),
        item_text_columns=tuple(item_text_columns),
        user_categorical_columns=tuple(user_categorical_columns),
        item_categorical_columns=tuple(item_categorical_columns),
        kg_triples=encode(kg, True),
        item_attributes=encode(item_attr, False),
        user_attributes=encode(user_attr, False),
        item_entity=links,
        entity_text=texts,
    )
