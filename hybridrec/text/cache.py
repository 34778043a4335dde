"""On-disk cache of text embeddings, keyed by the encoder's identity and the text.

Layout: ``<cache dir>/<model_id, made file-safe>/shard-*.safetensors``. Each shard holds two
tensors, ``key`` (``uint8 [N, 32]``, the sha256 of ``model_id + "\\0" + text``) and ``embedding``
(``float32 [N, D]``), plus the ``model_id`` in its metadata. One shard is written per
:meth:`EmbeddingCache.put` (to ``*.tmp``, then ``os.replace``), so a killed run leaves either a
whole shard or a stray ``*.tmp`` that is never read; several processes may share a cache because
they never write the same file. A shard that cannot be read or fails its checks is logged,
removed and its texts are simply encoded again. When more than ``max_shards`` shards pile up they
are merged into one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from hybridrec.cache import cache_root
from hybridrec.tensor_files import Header, check_layout, read_header, read_tensors

log = logging.getLogger(__name__)

_FORMAT = "hybridrec-text-cache/1"
_STALE_TMP_S = 3600.0


def default_text_cache_dir() -> Path:
    """``<cache root>/text``; the root is ``$HYBRIDREC_CACHE_DIR`` or the user cache dir."""
    return cache_root() / "text"


def text_key(model_id: str, text: str) -> bytes:
    """The 32-byte cache key of one text under one encoder: ``sha256(model_id + "\\0" + text)``."""
    return hashlib.sha256(f"{model_id}\0{text}".encode("utf-8", "surrogatepass")).digest()


def _safe_name(model_id: str) -> str:
    # Readable prefix plus a hash of the whole id, so two ids never share a folder.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80]
    return f"{stem}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then ``os.replace`` the tmp file onto ``path``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_shard(header: Header, model_id: str) -> None:
    """A shard of this cache and encoder: ``key`` ``U8 [N, 32]`` and ``embedding``
    ``F32 [N, D]``."""
    meta = header.metadata
    if meta.get("format") != _FORMAT or meta.get("model_id") != model_id:
        raise ValueError(f"metadata {str(meta)[:200]} is not {_FORMAT} for {model_id!r}")
    check_layout(header, {"key": ("U8", ("N", 32)), "embedding": ("F32", ("N", None))})


def _embedding_memmap(shard: Path, model_id: str) -> np.ndarray:
    """The shard's ``embedding`` tensor as a read-only memory map, so a lookup reads only the
    rows it needs (its header validated first: offsets inside the file, shapes that fit)."""
    header = read_header(shard)
    _check_shard(header, model_id)
    info = header.tensors["embedding"]
    return np.memmap(shard, dtype="<f4", mode="r", offset=header.data_start + info.start,
                     shape=info.shape)


class EmbeddingCache:
    """Embeddings of texts under one encoder identity, on disk.

    Args:
        directory: the text cache folder; this encoder's shards go in a sub-folder.
        model_id: the encoder's identity (:attr:`TextEncoder.model_id`).
        max_shards: merge the shards into one when there are more than this (default: ``32``).

    Attributes:
        hits / misses: keys found / not found by :meth:`get`, since construction.
    """

    def __init__(self, directory: str | os.PathLike[str], model_id: str, *, max_shards: int = 32) -> None:
        self.model_id = model_id
        self.folder = Path(directory) / _safe_name(model_id)
        self.max_shards = max_shards
        self.hits = 0
        self.misses = 0
        self._keys: dict[bytes, tuple[Path, int]] = {}
        self._dim: int | None = None
        self._seen: set[Path] = set()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r})"

    def key(self, text: str) -> bytes:
        return text_key(self.model_id, text)

    # Reading.
    def _shards(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        now = time.time()
        for tmp in self.folder.glob("*.tmp"):
            try:  # Leftovers of killed runs; recent ones may belong to a live writer.
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
            except OSError:
                pass
        return sorted(self.folder.glob("shard-*.safetensors"))

    def _drop(self, shard: Path, why: str) -> None:
        log.warning("Text cache shard %s is unusable (%s); removing it, its texts will be "
                    "encoded again", shard, why)
        self._seen.discard(shard)
        for key in [k for k, (s, _) in self._keys.items() if s == shard]:
            del self._keys[key]
        try:
            shard.unlink()
        except OSError:
            pass

    def _read(self, shard: Path, tensor: str) -> np.ndarray:
        tensors, _ = read_tensors(shard, lambda header: _check_shard(header, self.model_id),
                                  names=(tensor,))
        return tensors[tensor].numpy()

    def _index(self) -> None:
        shards = self._shards()
        present = set(shards)
        for gone in self._seen - present:  # Merged away by another process.
            self._seen.discard(gone)
            for key in [k for k, (s, _) in self._keys.items() if s == gone]:
                del self._keys[key]
        for shard in shards:
            if shard in self._seen:
                continue
            try:
                keys = self._read(shard, "key")
                if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 32:
                    raise ValueError(f"key tensor {keys.dtype} {keys.shape}, expected uint8 [N, 32]")
            except Exception as err:  # noqa: BLE001 - any unreadable shard is dropped, never fatal.
                if shard.exists():  # (else merged away by another process meanwhile)
                    self._drop(shard, str(err))
                continue
            self._seen.add(shard)
            for row, key in enumerate(keys):
                self._keys[key.tobytes()] = (shard, row)

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached ``float32 [D]`` vector of each key found (counted in :attr:`hits`)."""
        self._index()
        wanted: dict[Path, list[tuple[bytes, int]]] = {}
        for key in dict.fromkeys(keys):
            where = self._keys.get(key)
            if where is not None:
                wanted.setdefault(where[0], []).append((key, where[1]))
        found: dict[bytes, np.ndarray] = {}
        for shard, rows in wanted.items():
            try:
                embedding = _embedding_memmap(shard, self.model_id)
                if ((self._dim is not None and embedding.shape[1] != self._dim)
                        or max(r for _, r in rows) >= len(embedding)):
                    raise ValueError(f"embedding shape {embedding.shape} does not match its keys")
                block = np.array(embedding[np.array([r for _, r in rows])], dtype=np.float32)
                if not np.isfinite(block).all():
                    raise ValueError("non-finite values")
            except Exception as err:  # noqa: BLE001
                if shard.exists():
                    self._drop(shard, str(err))
                continue
            self._dim = embedding.shape[1]
            found.update((key, vec) for (key, _), vec in zip(rows, block))
        n_hit = sum(1 for k in keys if k in found)
        self.hits += n_hit
        self.misses += len(keys) - n_hit
        return found

    # Writing.
    def put(self, keys: Sequence[bytes], embedding: np.ndarray) -> None:
        """Store ``embedding[i]`` (``float32 [N, D]``) under ``keys[i]`` as one new shard."""
        if not len(keys):
            return
        embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        if embedding.shape[0] != len(keys) or embedding.ndim != 2:
            raise ValueError(f"EmbeddingCache.put: {len(keys)} keys for embedding {embedding.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        shard = self.folder / f"shard-{time.time_ns():020d}-{os.urandom(4).hex()}.safetensors"
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        meta = {"format": _FORMAT, "model_id": self.model_id}
        write_atomic(shard, lambda tmp: save_file({"key": key_array, "embedding": embedding},
                                                  str(tmp), metadata=meta))
        self._dim = embedding.shape[1]
        self._seen.add(shard)
        for row, key in enumerate(keys):
            self._keys[key] = (shard, row)
        if len(self._seen) > self.max_shards:
            self.compact()

    def compact(self) -> None:
        """Merge every readable shard into one (written before the old ones are removed)."""
        self._index()
        shards = sorted(self._seen)
        if len(shards) < 2:
            return
        keys = list(self._keys)
        vectors = self.get(keys)
        self.hits -= len(vectors)  # Housekeeping is not a lookup.
        self.misses -= len(keys) - len(vectors)
        keys = [k for k in keys if k in vectors]
        self._keys.clear()
        self._seen.clear()
        if keys:
            self.put(keys, np.stack([vectors[k] for k in keys]))
        for shard in shards:
            try:
                shard.unlink()
            except OSError:
                pass
        log.info("Text cache %s: merged %d shards (%d vectors)", self.folder, len(shards), len(keys))
