"""A :class:`Dataset` as two files, ``dataset.json`` and ``dataset.safetensors``: no pickle.

The JSON holds the name, id maps, tables (strings), column roles and entity labels; the
safetensors file holds the integer arrays (interactions, triples, links). A run folder keeps
its data set this way, so a :class:`~hybridrec.Recommender` loaded from it can show titles,
explain with KG labels and add items without the original files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.tensor_files import Header, check_layout, read_tensors

FORMAT = "hybridrec-dataset/1"
_ARRAYS = ("kg_triples", "item_attributes", "user_attributes", "item_entity")


def write_dataset(dataset: Dataset, folder: str | os.PathLike[str]) -> None:
    """Write ``dataset.json`` and ``dataset.safetensors`` into ``folder`` (which the caller
    makes atomic, e.g. a run folder's temporary twin)."""
    folder = Path(folder)
    inter = dataset.interactions
    tensors = {name: torch.from_numpy(np.array(getattr(dataset, name)))
               for name in _ARRAYS}
    tensors["interactions.user_index"] = torch.from_numpy(np.array(inter.user_index))
    tensors["interactions.item_index"] = torch.from_numpy(np.array(inter.item_index))
    if inter.rating is not None:
        tensors["interactions.rating"] = torch.from_numpy(np.array(inter.rating))
    if inter.timestamp is not None:
        tensors["interactions.timestamp"] = torch.from_numpy(np.array(inter.timestamp))
    save_file(tensors, str(folder / "dataset.safetensors"), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT, "name": dataset.name,
        "users": dataset.users.to_list(), "items": dataset.items.to_list(),
        "entities": dataset.entities.to_list(), "relations": dataset.relations.to_list(),
        "user_table": {k: [str(v) for v in col] for k, col in dataset.user_table.items()},
        "item_table": {k: [str(v) for v in col] for k, col in dataset.item_table.items()},
        "user_text_columns": list(dataset.user_text_columns),
        "item_text_columns": list(dataset.item_text_columns),
        "user_categorical_columns": list(dataset.user_categorical_columns),
        "item_categorical_columns": list(dataset.item_categorical_columns),
        "entity_text": list(dataset.entity_text),
    }
    (folder / "dataset.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def read_dataset(folder: str | os.PathLike[str]) -> Dataset:
    """The :class:`Dataset` that :func:`write_dataset` wrote into ``folder``.

    Raises:
        DataError: a missing file, a foreign format or arrays that do not fit the id maps.
    """
    folder = Path(folder)
    json_path, tensor_path = folder / "dataset.json", folder / "dataset.safetensors"
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise DataError(path, "a file of the saved data set; it does not exist")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(json_path, f"valid JSON ({err.msg})", line=err.lineno) from None
    except (UnicodeDecodeError, RecursionError):
        raise DataError(json_path, "valid UTF-8 JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(json_path, f"format {FORMAT!r}", field="format")
    tensors, _ = read_tensors(tensor_path, _check_layout)
    _check_json(json_path, meta)

    def array(name: str) -> np.ndarray | None:
        return tensors[name].numpy() if name in tensors else None

    def table(values: dict[str, list[str]]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=object) for k, v in values.items()}

    try:
        return Dataset(
            name=meta["name"], users=IdMap(meta["users"]), items=IdMap(meta["items"]),
            interactions=Interactions(array("interactions.user_index"),
                                      array("interactions.item_index"),
                                      array("interactions.rating"),
                                      array("interactions.timestamp")),
            entities=IdMap(meta["entities"]), relations=IdMap(meta["relations"]),
            user_table=table(meta["user_table"]), item_table=table(meta["item_table"]),
            user_text_columns=tuple(meta["user_text_columns"]),
            item_text_columns=tuple(meta["item_text_columns"]),
            user_categorical_columns=tuple(meta["user_categorical_columns"]),
            item_categorical_columns=tuple(meta["item_categorical_columns"]),
            **{name: tensors[name].numpy() for name in _ARRAYS},
            entity_text=tuple(meta["entity_text"]))
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(json_path, f"a consistent saved data set ({err})") from None


def _check_layout(header: Header) -> None:
    """Names, dtypes and shapes of ``dataset.safetensors``, before anything is allocated."""
    found = header.metadata.get("format")
    if found != FORMAT:
        raise DataError(header.path, f"format {FORMAT!r}, got {str(found)[:80]!r}",
                        field="format", field_kind="field")
    check_layout(header, {
        "kg_triples": ("I64", (None, 3)), "item_attributes": ("I64", (None, 3)),
        "user_attributes": ("I64", (None, 3)), "item_entity": ("I64", (None, 2)),
        "interactions.user_index": ("I64", ("N",)), "interactions.item_index": ("I64", ("N",)),
        "interactions.rating": ("F32", ("N",)), "interactions.timestamp": ("F64", ("N",))},
        optional=("interactions.rating", "interactions.timestamp"))


def _check_json(path: Path, meta: dict) -> None:
    """The JSON side's types: id lists and table columns of strings (the ranges are the
    Dataset's own checks)."""
    def strings(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    for key in ("users", "items", "entities", "relations", "user_text_columns",
                "item_text_columns", "user_categorical_columns", "item_categorical_columns",
                "entity_text"):
        if not strings(meta.get(key)):
            raise DataError(path, "a list of strings", field=key, field_kind="key")
    for key in ("user_table", "item_table"):
        table = meta.get(key)
        if not isinstance(table, dict) or not all(strings(v) for v in table.values()):
            raise DataError(path, "an object of string columns", field=key, field_kind="key")
    if not isinstance(meta.get("name"), str):
        raise DataError(path, "a string", field="name", field_kind="key")
