"""NodeFeatures: text embeddings of every user, item and KG entity of a Dataset, and their files."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.text.builders import Template, entity_texts, item_texts, user_texts
from hybridrec.tensor_files import check_layout, read_tensors
from hybridrec.text.cache import write_atomic
from hybridrec.text.encoder import TextEncoder

log = logging.getLogger(__name__)

TENSORS_FILE = "node_features.safetensors"
META_FILE = "node_features.json"
_FORMAT = "hybridrec-node-features/1"


@dataclass(frozen=True)
class NodeFeatures:
    """Text embeddings of the nodes of one data set, by contiguous index.

    Args:
        user: ``float32 [num_users, D]``, L2-normalised.
        item: ``float32 [num_items, D]``, L2-normalised.
        entity: ``float32 [num_entities, D]``; zero rows where the entity has no label.
        entity_has_text: ``bool [num_entities]``: which entity rows are real embeddings (the
            others should get learned ID embeddings).
        user_text / item_text / entity_text: the texts that were embedded (``""`` = none).
        model_id: :attr:`TextEncoder.model_id` of the encoder that made them.
    """

    user: torch.Tensor
    item: torch.Tensor
    entity: torch.Tensor
    entity_has_text: torch.Tensor
    user_text: tuple[str, ...]
    item_text: tuple[str, ...]
    entity_text: tuple[str, ...]
    model_id: str

    def __post_init__(self) -> None:
        for name in ("user", "item", "entity"):
            value = getattr(self, name)
            if value.dtype != torch.float32 or value.dim() != 2 or value.shape[1] != self.dim:
                raise ValueError(f"NodeFeatures.{name}: expected float32 [n, {self.dim}], got "
                                 f"{value.dtype} {list(value.shape)}")
            if len(getattr(self, f"{name}_text")) != len(value):
                raise ValueError(f"NodeFeatures.{name}_text: {len(getattr(self, f'{name}_text'))} "
                                 f"texts for {len(value)} rows")
        if self.entity_has_text.dtype != torch.bool or self.entity_has_text.shape != (len(self.entity),):
            raise ValueError(f"NodeFeatures.entity_has_text: expected bool [{len(self.entity)}], got "
                             f"{self.entity_has_text.dtype} {list(self.entity_has_text.shape)}")

    @property
    def dim(self) -> int:
        return self.user.shape[1]

    def __repr__(self) -> str:
        return (f"NodeFeatures(users={len(self.user)}, items={len(self.item)}, "
                f"entities={len(self.entity)} ({int(self.entity_has_text.sum())} with text), "
                f"dim={self.dim}, model_id={self.model_id!r})")

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``node_features.safetensors`` and ``node_features.json`` into ``folder``.

        Each file goes to ``*.tmp`` and is then ``os.replace``d; the JSON (written last) holds the
        sha256 of the tensors file, so an interrupted save is detected by :meth:`load`.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"user": self.user.contiguous(), "item": self.item.contiguous(),
                   "entity": self.entity.contiguous(), "entity_has_text": self.entity_has_text.contiguous()}
        write_atomic(folder / TENSORS_FILE, lambda tmp: save_file(
            tensors, str(tmp), metadata={"format": _FORMAT, "model_id": self.model_id}))
        meta = {
            "format": _FORMAT,
            "model_id": self.model_id,
            "dim": self.dim,
            "num_users": len(self.user),
            "num_items": len(self.item),
            "num_entities": len(self.entity),
            "tensors_sha256": _sha256(folder / TENSORS_FILE),
            "user_text": list(self.user_text),
            "item_text": list(self.item_text),
            "entity_text": list(self.entity_text),
        }
        write_atomic(folder / META_FILE, lambda tmp: tmp.write_text(
            json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8"))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> NodeFeatures:
        """Read what :meth:`save` wrote (no pickle).

        Raises:
            DataError: a file is missing, unreadable or does not match the other.
        """
        folder = Path(folder)
        meta_path, tensors_path = folder / META_FILE, folder / TENSORS_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(meta_path, "node features metadata written by NodeFeatures.save; "
                                       "the file does not exist") from None
        except (ValueError, RecursionError) as err:
            raise DataError(meta_path, f"valid JSON ({str(err)[:200]})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise DataError(meta_path, f"format {_FORMAT!r}", field="format", field_kind="key")
        for key in ("user_text", "item_text", "entity_text"):
            texts = meta.get(key)
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise DataError(meta_path, "a list of strings", field=key, field_kind="key")
        if not tensors_path.is_file():
            raise DataError(tensors_path, "the tensors file beside node_features.json; it does not exist")
        if _sha256(tensors_path) != meta.get("tensors_sha256"):
            raise DataError(tensors_path, "the tensors whose sha256 node_features.json records; the "
                                          "file differs (an interrupted or mixed save?)")
        sizes = {"U": len(meta["user_text"]), "I": len(meta["item_text"]),
                 "E": len(meta["entity_text"])}
        tensors, _ = read_tensors(tensors_path, lambda header: check_layout(header, {
            "user": ("F32", ("U", "D")), "item": ("F32", ("I", "D")),
            "entity": ("F32", ("E", "D")), "entity_has_text": ("BOOL", ("E",))}, sizes=sizes))
        try:
            return cls(user=tensors["user"], item=tensors["item"], entity=tensors["entity"],
                       entity_has_text=tensors["entity_has_text"],
                       user_text=tuple(meta["user_text"]), item_text=tuple(meta["item_text"]),
                       entity_text=tuple(meta["entity_text"]), model_id=meta["model_id"])
        except (KeyError, ValueError, TypeError) as err:
            raise DataError(folder, f"consistent node features ({err})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def embed_dataset(
    dataset: Dataset,
    train: Interactions | None,
    encoder: TextEncoder,
    *,
    user_history: bool = True,
    max_history: int = 20,
    item_template: Template = None,
    user_template: Template = None,
) -> NodeFeatures:
    """Build the texts of every user, item and labelled entity and embed them in one pass.

    Args:
        dataset: the data set.
        train: the training interactions (user histories come from these only), or ``None``.
        encoder: the text encoder.
        user_history: list each user's training items in the user text (default: ``True``).
        max_history: most recent training items per user text (default: ``20``).
        item_template / user_template: see :mod:`hybridrec.text.builders` (default: ``None``).
    """
    start = time.perf_counter()
    hits, misses = encoder.cache_hits, encoder.cache_misses
    items = item_texts(dataset, item_template)
    users = user_texts(dataset, train if user_history else None, max_history=max_history,
                       template=user_template)
    entities = entity_texts(dataset)
    has_text = torch.tensor([bool(t) for t in entities], dtype=torch.bool)
    labelled = [t for t in entities if t]
    vectors = encoder.encode(users + items + labelled)  # [U + I + E_text, D]
    n_users, n_items = len(users), len(items)
    entity = torch.zeros(len(entities), encoder.dim)
    entity[has_text] = vectors[n_users + n_items:]
    features = NodeFeatures(
        user=vectors[:n_users].clone(), item=vectors[n_users:n_users + n_items].clone(),
        entity=entity, entity_has_text=has_text, user_text=tuple(users), item_text=tuple(items),
        entity_text=tuple(entities), model_id=encoder.model_id)
    log.info("Embedded %s: %d users, %d items, %d of %d entities in %.1fs (cache: %d hits, %d misses)",
             dataset.name, n_users, n_items, len(labelled), len(entities),
             time.perf_counter() - start, encoder.cache_hits - hits, encoder.cache_misses - misses)
    return features
