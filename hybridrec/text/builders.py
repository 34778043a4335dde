"""The texts that describe users, items and KG entities, built from a Dataset.

Each builder renders one text per node from *fields*, a ``dict[str, str]``:

* items: ``index``, ``id``, every item text and categorical column by name (categorical values
  joined with ``", "``; they are read from ``item_attributes`` triples whose relation is named
  like the column, so multi-valued cells come out as separate labels), ``description`` (the
  text of the KG entity linked to the item, minus a leading ``"<title>:"``), ``kg`` (labelled KG
  neighbours, see below) and ``default`` (the default rendering);
* users: ``index``, ``id``, every user text and categorical column, ``history`` (titles of the
  user's training items, most recent first, joined with ``"; "``) and ``default``.

The default rendering is the node's first text column (e.g. the title) as a sentence, the
description, then one ``"Label: value."`` sentence per other non-empty field and the KG
neighbours, e.g. ``"Heat. A detective hunts a crew of bank robbers. Year: 1995. Genre: Crime,
Thriller. Actor: Al Pacino, Robert De Niro. Director: Michael Mann."`` A ``template`` replaces it: either a
``str.format`` string with named fields (``"{title} ({year}), a {genre} film"``, or
``"Movie: {default}"`` to wrap the default) or a callable ``fields -> str``.

KG neighbours of an item are the labelled entities one hop from the entity linked to it
(``item_entity`` -> ``kg_triples``, both directions), grouped by relation label, at most
``max_per_relation`` per relation and ``max_neighbours`` in all, in triple order. Relation labels
come from the relation's raw id (``".../film.film.directed_by"`` -> ``"Directed by"``;
incoming edges get ``" of"``). Entities without a label (the ml-100k Freebase mids) add nothing.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Union

import numpy as np

from hybridrec.data.dataset import Dataset, Interactions

Template = Union[str, Callable[[Mapping[str, str]], str], None]


def relation_label(raw_id: str) -> str:
    """A readable label of a relation id: last IRI/path/dotted segment, ``_`` -> space."""
    tail = re.split(r"[/#:]", raw_id.rstrip("/#"))[-1]
    tail = tail.rsplit(".", 1)[-1] or tail
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", tail).replace("_", " ").strip()
    return words[:1].upper() + words[1:].lower() if words else raw_id


def column_label(column: str) -> str:
    words = column.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _without_prefix(text: str, title: str) -> str:
    """``"Heat: A detective ..."`` -> ``"A detective ..."`` when the title is ``"Heat"``."""
    title = title.strip()
    if title and text[:len(title)].casefold() == title.casefold() and text[len(title):].startswith(":"):
        return text[len(title) + 1:].strip() or text
    return text


def _render(fields: Mapping[str, str], lead: str | None, labelled: list[tuple[str, str]],
            extra: list[str], about: str = "") -> str:
    parts = [_sentence(fields[lead])] if lead and fields[lead].strip() else []
    parts += [_sentence(about)] if about.strip() else []
    parts += [f"{label}: {_sentence(fields[name])}" for name, label in labelled if fields[name].strip()]
    parts += [_sentence(x) for x in extra if x.strip()]
    return " ".join(parts)


def _apply(template: Template, fields: Mapping[str, str], where: str) -> str:
    if template is None:
        return fields["default"]
    if callable(template):
        text = template(fields)
        if not isinstance(text, str):
            raise TypeError(f"{where}: template returned {type(text).__name__}, expected str")
        return text
    try:
        return template.format_map(fields)
    except KeyError as err:
        raise ValueError(f"{where}: template field {err.args[0]!r} is unknown; "
                         f"available: {sorted(fields)}") from None


def _attribute_values(dataset: Dataset, triples: np.ndarray, n: int, column: str,
                      table: Mapping[str, np.ndarray]) -> list[str]:
    """Per node, the labels of its ``column`` attribute entities (``", "``-joined)."""
    relation = dataset.relations.get(column)
    if relation < 0:  # No triples for this column: use the table's cells as they are.
        return [str(v) for v in table[column]] if column in table else [""] * n
    values: list[list[str]] = [[] for _ in range(n)]
    for node, _, entity in triples[triples[:, 1] == relation]:
        label = dataset.entity_text[entity]
        if label:
            values[node].append(label)
    return [", ".join(v) for v in values]


def _table_fields(dataset: Dataset, n: int, table: Mapping[str, np.ndarray],
                  text_columns: tuple[str, ...], categorical_columns: tuple[str, ...],
                  triples: np.ndarray) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for column in text_columns:
        fields[column] = [str(v) for v in table[column]] if column in table else [""] * n
    for column in categorical_columns:
        fields[column] = _attribute_values(dataset, triples, n, column, table)
    return fields


def kg_neighbour_texts(dataset: Dataset, *, max_neighbours: int = 16,
                       max_per_relation: int = 5) -> list[str]:
    """Per item, ``"Relation: label, label. Other relation: label."`` from the labelled KG."""
    labelled = np.fromiter((bool(t) for t in dataset.entity_text), bool, dataset.num_entities)
    texts = [""] * dataset.num_items
    if not len(dataset.item_entity) or not len(dataset.kg_triples) or not labelled.any():
        return texts
    item_of = {}
    for item, entity in dataset.item_entity:
        item_of.setdefault(int(entity), []).append(int(item))
    kg = dataset.kg_triples
    groups: list[dict[str, list[str]]] = [{} for _ in range(dataset.num_items)]
    counts = np.zeros(dataset.num_items, np.int64)
    linked = np.zeros(dataset.num_entities, bool)
    linked[dataset.item_entity[:, 1]] = True
    h, t = kg[:, 0], kg[:, 2]
    for head, relation, tail in kg[(linked[h] & labelled[t]) | (linked[t] & labelled[h])]:
        for node, other, suffix in ((head, tail, ""), (tail, head, " of")):
            if not labelled[other]:
                continue
            for item in item_of.get(int(node), ()):
                if counts[item] >= max_neighbours:
                    continue
                label = relation_label(dataset.relations.ids[relation]) + suffix
                values = groups[item].setdefault(label, [])
                text = dataset.entity_text[other]
                if len(values) < max_per_relation and text not in values:
                    values.append(text)
                    counts[item] += 1
    for item, group in enumerate(groups):
        texts[item] = " ".join(f"{label}: {_sentence(', '.join(v))}" for label, v in group.items())
    return texts


def item_texts(dataset: Dataset, template: Template = None, *, max_neighbours: int = 16,
               max_per_relation: int = 5) -> list[str]:
    """One text per item (``num_items``), from its columns and labelled KG neighbours.

    Args:
        dataset: the data set.
        template: ``None`` for the default rendering, a ``str.format`` string with named fields,
            or a callable ``fields -> str`` (see the module docstring) (default: ``None``).
        max_neighbours / max_per_relation: caps on KG neighbour labels (default: ``16`` / ``5``).
    """
    n = dataset.num_items
    columns = _table_fields(dataset, n, dataset.item_table, dataset.item_text_columns,
                            dataset.item_categorical_columns, dataset.item_attributes)
    kg = kg_neighbour_texts(dataset, max_neighbours=max_neighbours, max_per_relation=max_per_relation)
    lead = dataset.item_text_columns[0] if dataset.item_text_columns else None
    labelled = [(c, column_label(c)) for c in columns if c != lead]
    own: list[list[str]] = [[] for _ in range(n)]
    for item, entity in dataset.item_entity:
        if dataset.entity_text[entity]:
            own[item].append(dataset.entity_text[entity])
    texts = []
    for i in range(n):
        fields = {name: values[i] for name, values in columns.items()}
        about = " ".join(_without_prefix(t, fields[lead] if lead else "") for t in own[i])
        fields.update(index=str(i), id=dataset.items.ids[i], kg=kg[i], description=about)
        fields["default"] = _render(fields, lead, labelled, [kg[i]], about)
        texts.append(_apply(template, fields, f"item_texts (item {dataset.items.ids[i]!r})"))
    return texts


def history_items(dataset: Dataset, train: Interactions, max_history: int = 20) -> list[np.ndarray]:
    """Per user, up to ``max_history`` item indices from ``train``, most recent first.

    Recency is the timestamp when ``train`` has one, else the row order.
    """
    if len(train) and (train.user_index.max() >= dataset.num_users
                       or train.item_index.max() >= dataset.num_items):
        raise ValueError(f"history_items: train interactions index users/items outside data set "
                         f"{dataset.name!r}")
    when = train.timestamp if train.timestamp is not None else np.arange(len(train), dtype=float)
    # Newest first within each user; ties keep the later row first.
    order = np.lexsort((-np.arange(len(train)), -when, train.user_index))
    users = train.user_index[order]
    starts = np.searchsorted(users, np.arange(dataset.num_users + 1))
    return [train.item_index[order[starts[u]:min(starts[u + 1], starts[u] + max_history)]]
            for u in range(dataset.num_users)]


def user_texts(dataset: Dataset, train: Interactions | None = None, *, max_history: int = 20,
               template: Template = None) -> list[str]:
    """One text per user (``num_users``), from the profile and the TRAINING history only.

    Args:
        dataset: the data set.
        train: the training interactions whose items form the history, or ``None`` for
            profile-only texts. Never pass validation/test rows: that leaks the answers.
        max_history: most recent training items listed per user (default: ``20``).
        template: as for :func:`item_texts`, with ``history`` among the fields (default: ``None``).
    """
    n = dataset.num_users
    columns = _table_fields(dataset, n, dataset.user_table, dataset.user_text_columns,
                            dataset.user_categorical_columns, dataset.user_attributes)
    titles = (dataset.item_table[dataset.item_text_columns[0]] if dataset.item_text_columns
              and dataset.item_text_columns[0] in dataset.item_table
              else np.asarray(dataset.items.ids, dtype=object))
    history = (history_items(dataset, train, max_history) if train is not None and max_history > 0
               else [np.zeros(0, np.int64)] * n)
    labelled = [(c, column_label(c)) for c in columns] + [("history", "History")]
    texts = []
    for u in range(n):
        fields = {name: values[u] for name, values in columns.items()}
        fields.update(index=str(u), id=dataset.users.ids[u],
                      history="; ".join(str(titles[i]) for i in history[u] if str(titles[i])))
        fields["default"] = _render(fields, None, labelled, [])
        texts.append(_apply(template, fields, f"user_texts (user {dataset.users.ids[u]!r})"))
    return texts


def entity_texts(dataset: Dataset) -> list[str]:
    """One label per KG entity, ``""`` where the KG has none (those get ID embeddings)."""
    return list(dataset.entity_text)
