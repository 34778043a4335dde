"""Text of users, items and KG entities, and the encoder that turns it into vectors.

* :mod:`~hybridrec.text.encoder`: :class:`TextEncoder` (texts -> L2-normalised vectors).
* :mod:`~hybridrec.text.cache`: :class:`EmbeddingCache`, the on-disk cache it uses.
* :mod:`~hybridrec.text.builders`: :func:`item_texts`, :func:`user_texts`, :func:`entity_texts`.
* :mod:`~hybridrec.text.features`: :func:`embed_dataset` -> :class:`NodeFeatures` (save/load).
"""
from hybridrec.text.builders import entity_texts, history_items, item_texts, user_texts
from hybridrec.text.cache import EmbeddingCache, default_text_cache_dir
from hybridrec.text.encoder import (
    TextEncoder,
    TextModelNotFoundError,
    default_model_path,
    resolve_model_path,
)
from hybridrec.text.features import NodeFeatures, embed_dataset

__all__ = [
    "EmbeddingCache", "NodeFeatures", "TextEncoder", "TextModelNotFoundError",
    "default_model_path", "default_text_cache_dir", "embed_dataset", "entity_texts",
    "history_items", "item_texts", "resolve_model_path", "user_texts",
]
