r"""Approximate top-K over big catalogues: one maximum-inner-product search serves the whole
:class:`~hybridrec.models.Mix`.

For the fixed mix (no gate) the score of item :math:`i` for user :math:`u` is

.. math::
    s(u, i) = \sum_k w_k \frac{\mathbf{u}_k \cdot \mathbf{i}_k - \mu_{k,u}}{\sigma_{k,u}}
            = \Big[\tfrac{w_1}{\sigma_{1,u}} \mathbf{u}_1, \dots,
                   \tfrac{w_K}{\sigma_{K,u}} \mathbf{u}_K\Big]
              \cdot [\mathbf{i}_1, \dots, \mathbf{i}_K] \;-\; c_u,
    \qquad c_u = \sum_k w_k \frac{\mu_{k,u}}{\sigma_{k,u}}

and :math:`c_u` does not depend on the item, so a user's ranking is the inner product of
the concatenated item vector with a per-user query. The per-user mean and deviation over
the :math:`n` items need no scan of the items:

.. math::
    \mu_{k,u} = \mathbf{u}_k \cdot \bar{\mathbf{i}}_k, \qquad
    \sigma^2_{k,u} = \frac{\mathbf{u}_k^\top \mathbf{C}_k \mathbf{u}_k}{n - 1}, \qquad
    \mathbf{C}_k = \sum_i (\mathbf{i}_k - \bar{\mathbf{i}}_k)(\mathbf{i}_k - \bar{\mathbf{i}}_k)^\top
        = \mathbf{G}_k - n\, \bar{\mathbf{i}}_k \bar{\mathbf{i}}_k^\top

with :math:`\mathbf{G}_k = \mathbf{I}_k^\top \mathbf{I}_k` the tower's Gram matrix. The
centred form :math:`\mathbf{C}_k` is kept (in float64, merged chunk by chunk with Chan's
update, also on :meth:`ItemIndex.add_items`) rather than :math:`\mathbf{G}_k`: the same number,
without the cancellation of :math:`\mathbf{u}^\top\mathbf{G}\mathbf{u}/n - \mu^2` when the
mean is large. The :math:`n - 1` is the unbiased deviation the Mix uses (``Tensor.std``),
and the same ``clamp(min=1e-6)``, so the scores returned are the Mix's scores up to float
rounding, not just its ranking.

Items the fixed formula does not score are handled exactly:

* with a learned gate, :math:`g(u, i)` makes the score non-linear in the item vectors:
  :meth:`ItemIndex.search` falls back to the Mix's exact dense scan (no index is built);
* under a :class:`~hybridrec.models.cold.ColdStart` stage, items of degree 0 are left out of
  the index and scanned exactly (their score is the stage's affine map of the content
  tower's standardised score and their prior), then merged with the index's candidates.

Candidates from the index are over-fetched (``k`` plus the user's excluded items), the
excluded ones dropped, and the rest re-scored exactly.

The index is FAISS's ``IndexHNSWFlat`` with the inner-product metric (``faiss-cpu``, imported
lazily), ``M`` links per node, and ``efSearch`` chosen at :meth:`ItemIndex.build` as the
smallest that reaches ``target_recall`` of the exact top-10 on a sample of users
(``recall_`` keeps the figure). An IVF index (``IndexIVFFlat``, inner product) needed 40 % of
its cells for recall 0.95 on clustered towers (benchmarks/ann.py), HNSW a few hundred
candidates. With GPUs (``faiss.get_num_gpus() > 0``) searches run on a GPU flat
inner-product index of the same vectors instead: exact, and fast there. It is saved with
``faiss.serialize_index`` as a ``uint8`` safetensors tensor, never pickled, with a SHA-256
of its bytes checked before FAISS parses them, and a fingerprint of the item vectors that
tells a stale file from a current one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from hybridrec.data.errors import DataError
from hybridrec.models.mix import Mix
from hybridrec.tensor_files import check_layout, read_tensors

log = logging.getLogger(__name__)

FORMAT = "hybridrec-ann/1"
ANN_FILE = "ann.safetensors"  # in the run folder, beside the files of hybridrec.run
Backend = Literal["faiss", "exact"]
# Below this many items one matrix product over the catalogue is fast enough (a few ms per
# user on a CPU core) and exact; above it the index answers (see benchmarks/ann.py).
EXACT_MAX_ITEMS = 200_000
# Rows per chunk when building statistics or adding vectors: bounds the temporary copies.
CHUNK = 65_536
# efSearch values tried at build time, smallest first.
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)


def faiss_available() -> bool:
    """Whether ``faiss`` can be imported (``pip install faiss-cpu``)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise ImportError("the approximate top-K index needs FAISS: pip install faiss-cpu") \
            from err
    return faiss


class ItemIndex:
    r"""Top-K items of a :class:`~hybridrec.models.Mix` by one inner-product search (see the
    module docstring for the decomposition).

    Example::

        index = ItemIndex().build(mix)
        [(items, scores)] = index.search(torch.tensor([7]), k=10, exclude=[{3, 5}])

    Args:
        backend: ``"faiss"`` (an HNSW index) or ``"exact"`` (the same decomposition by a
            dense scan of the towers; needs no FAISS) (default: :obj:`"faiss"`).
        target_recall: recall@10 against the exact top-10 that ``efSearch`` is tuned to
            reach on a sample of users (default: :obj:`0.97`, a margin over 0.95).
        links: HNSW's ``M``, links per node (default: :obj:`32`).
        ef_construction: HNSW's ``efConstruction`` (default: :obj:`40`).
        tune_users: users sampled to tune ``efSearch`` (default: :obj:`100`).
        seed: for the training and tuning samples (default: :obj:`0`).
        use_gpu: move the index to the GPUs when FAISS has any (default: :obj:`True`).

    Attributes:
        ef_search_: HNSW's ``efSearch``. ``recall_``: recall@10 measured at that
        ``efSearch``. ``items_``: item index of each position of the index ``[N]``.
    """

    def __init__(self, backend: Backend = "faiss", target_recall: float = 0.97,
                 links: int = 32, ef_construction: int = 40, tune_users: int = 100,
                 seed: int = 0, use_gpu: bool = True) -> None:
        if backend not in ("faiss", "exact"):
            raise ValueError(f"ItemIndex: backend 'faiss' or 'exact', got {backend!r}")
        if not 0 < target_recall <= 1:
            raise ValueError(f"ItemIndex: target_recall in (0, 1], got {target_recall}")
        self.backend = backend
        self.target_recall = target_recall
        self.links = links
        self.ef_construction = ef_construction
        self.tune_users = tune_users
        self.seed = seed
        self.use_gpu = use_gpu
        self.mix: Mix | None = None
        self.index_ = None  # the CPU index (saved, grown)
        self._search_index = None  # the same on the GPUs, or the CPU index
        self.items_ = np.zeros(0, dtype=np.int64)
        self.ef_search_ = EF_SEARCH[0]
        self.recall_: float | None = None
        self.cold_ = False
        self.num_items_ = 0
        self._count = 0
        self._mean: dict[str, Tensor] = {}
        self._scatter: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ statistics
    def _reset_stats(self, mix: Mix) -> None:
        self._count = 0
        self._mean = {n: torch.zeros(t.item.size(1), dtype=torch.float64)
                      for n, t in mix.towers.items()}
        self._scatter = {n: torch.zeros(t.item.size(1), t.item.size(1), dtype=torch.float64)
                         for n, t in mix.towers.items()}

    def _add_stats(self, mix: Mix, start: int) -> None:
        """Merge the items ``start:`` of every tower into the mean and scatter (Chan et al.'s
        pairwise update, one chunk at a time, the chunk's own scatter in float32)."""
        stop = mix.num_items
        for lo in range(start, stop, CHUNK):
            hi = min(lo + CHUNK, stop)
            m, n = hi - lo, self._count
            for name, t in mix.towers.items():
                chunk = t.item[lo:hi].detach().float().cpu()  # [m, d]
                mean = chunk.mean(0)
                centred = chunk - mean
                scatter = (centred.t() @ centred).double()  # [d, d]
                delta = mean.double() - self._mean[name]
                self._scatter[name] += scatter + torch.outer(delta, delta) * (n * m / (n + m))
                self._mean[name] += delta * (m / (n + m))
            self._count = n + m

    def _moments(self, users: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each tower's per-user mean and deviation of the scores over the catalogue: ``[B]``
        each, as :func:`~hybridrec.models.mix._standardise` computes them."""
        n = self._count
        mu, sigma = {}, {}
        for name in self.mix.names:
            u = users[name].detach().double().cpu()  # [B, d]
            mu[name] = u @ self._mean[name]
            var = ((u @ self._scatter[name]) * u).sum(-1) / max(n - 1, 1)
            sigma[name] = var.clamp(min=0).sqrt().clamp(min=1e-6)
        return mu, sigma

    # ------------------------------------------------------------------ building
    def build(self, mix: Mix) -> ItemIndex:
        """Index every item of ``mix`` that the fixed formula scores, and tune ``efSearch``."""
        self.mix = mix
        self.num_items_ = mix.num_items
        self._reset_stats(mix)
        self._add_stats(mix, 0)
        self.cold_ = mix.cold is not None
        if mix.gate is not None:
            log.info("ItemIndex: the mix has a learned gate; searches scan exactly")
            self.index_ = self._search_index = None
            return self
        items = self._linear_items(mix, 0)
        self.items_ = items
        if self.backend == "exact":
            self.recall_ = 1.0
            return self
        faiss = _faiss()
        d = sum(t.item.size(1) for t in mix.towers.values())
        n = len(items)
        index = faiss.IndexHNSWFlat(d, self.links, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        for lo in range(0, n, CHUNK):
            index.add(self._rows(mix, items[lo:lo + CHUNK]))
        self.index_, self.items_ = index, items
        self._place()
        self._tune()
        return self

    @staticmethod
    def _linear_items(mix: Mix, start: int) -> np.ndarray:
        """Items ``start:`` the fixed formula scores: all of them, or those of degree > 0
        under a cold-start stage."""
        index = torch.arange(start, mix.num_items)
        if mix.cold is not None:
            index = index[mix.item_degree[start:].cpu() > 0]
        return index.numpy().astype(np.int64)

    @staticmethod
    def _rows(mix: Mix, items: np.ndarray) -> np.ndarray:
        """The concatenated tower vectors of ``items``: ``[len(items), d]`` float32."""
        rows = torch.as_tensor(items, dtype=torch.long)
        parts = [t.item.index_select(0, rows.to(t.item.device)).float().cpu()
                 for t in mix.towers.values()]
        return np.ascontiguousarray(torch.cat(parts, 1).numpy())

    def _place(self) -> None:
        """The index to search: the HNSW index, or an exact flat one on the GPUs."""
        faiss = _faiss()
        self._search_index = self.index_
        if self.use_gpu and faiss.get_num_gpus() > 0:  # pragma: no cover - no GPU FAISS here
            flat = faiss.IndexFlatIP(self.index_.d)
            flat.add(self.index_.storage.reconstruct_n(0, self.index_.ntotal))
            self._search_index = faiss.index_cpu_to_all_gpus(flat)
        self._set_ef(self.ef_search_)

    def _set_ef(self, ef: int) -> None:
        self.ef_search_ = ef
        self.index_.hnsw.efSearch = ef

    def _tune(self, k: int = 10) -> None:
        """The smallest ``efSearch`` whose recall@``k`` against the exact top-``k`` reaches
        ``target_recall`` on a sample of users (with a vector in some tower)."""
        mix = self.mix
        g = torch.Generator().manual_seed(self.seed + 1)
        users = torch.randperm(mix.num_users, generator=g)
        norms = sum(t.user.index_select(0, users.to(t.user.device)).abs().sum(-1).cpu()
                    for t in mix.towers.values())
        users = users[norms > 0][:self.tune_users]
        k = min(k, len(self.items_))
        if len(users) == 0 or k == 0:
            self.recall_ = None
            return
        queries = self._queries(self._user_vectors(users))
        truth = self._exact_linear(queries, k)  # [B, k] item indices
        for ef in EF_SEARCH:
            self._set_ef(ef)
            found = self._candidates(queries, k)
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found)]))
            if recall >= self.target_recall:
                break
        self.recall_ = recall
        log.info("ItemIndex: %d items, efSearch %d, recall@%d %.4f on %d users",
                 len(self.items_), self.ef_search_, k, recall, len(users))

    def _exact_linear(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Exact top-``k`` items by the inner product with ``queries`` ``[B, d]``, among
        those the formula scores: one dense scan of each tower (no copy of the items)."""
        mix, q = self.mix, torch.from_numpy(queries)
        out = np.full((len(q), k), -1, dtype=np.int64)
        for lo in range(0, len(q), 64):  # users per pass: bounds the [B, n] scores
            hi = min(lo + 64, len(q))
            scores = torch.zeros(hi - lo, mix.num_items)  # [b, I]
            offset = 0
            for t in mix.towers.values():
                width = t.item.size(1)
                scores += (q[lo:hi, offset:offset + width].to(t.item.device)
                           @ t.item.float().t()).cpu()
                offset += width
            if self.cold_:
                scores[:, mix.item_degree.cpu() == 0] = -float("inf")
            top = torch.topk(scores, min(k, len(self.items_)), dim=1).indices
            out[lo:hi, :top.size(1)] = top.numpy()
        return out

    def _candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` item indices ``[B, k]`` of the search (``-1``: none found)."""
        if self.backend == "exact":
            return self._exact_linear(queries, k)
        _, found = self._search_index.search(queries, k)
        return np.where(found >= 0, self.items_[np.maximum(found, 0)], -1)

    def add_items(self, mix: Mix | None = None) -> None:
        """Take in the items ``mix`` (default: the one built on) gained since: statistics,
        and the index for those the fixed formula scores. ``efSearch`` is kept."""
        mix = mix or self.mix
        start = self.num_items_
        if mix.num_items < start:
            raise ValueError(f"ItemIndex.add_items: the mix has {mix.num_items} items, fewer "
                             f"than the {start} indexed")
        self.mix = mix
        self._add_stats(mix, start)
        self.num_items_ = mix.num_items
        items = self._linear_items(mix, start)
        if self.index_ is None:
            self.items_ = np.concatenate([self.items_, items])
            return
        for lo in range(0, len(items), CHUNK):
            self.index_.add(self._rows(mix, items[lo:lo + CHUNK]))
        self.items_ = np.concatenate([self.items_, items])
        if self._search_index is not self.index_:  # pragma: no cover - GPU
            self._place()

    def current(self, mix: Mix) -> bool:
        """Whether this index describes ``mix`` as it is (same items, same cold-start rule)."""
        return (self.mix is mix and self.num_items_ == mix.num_items
                and self.cold_ == (mix.cold is not None))

    # ------------------------------------------------------------------ searching
    def _user_vectors(self, users: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
        if isinstance(users, dict):
            return {name: users[name].detach().float().cpu() for name in self.mix.names}
        rows = torch.as_tensor(users, dtype=torch.long).reshape(-1)
        return {name: t.user.index_select(0, rows.to(t.user.device)).float().cpu()
                for name, t in self.mix.towers.items()}

    def _queries(self, users: dict[str, Tensor]) -> np.ndarray:
        """The per-user queries ``[B, d]``: tower ``k``'s vector times ``w_k / sigma_k``."""
        _, sigma = self._moments(users)
        parts = [users[n].double() * (self.mix.weights[n] / sigma[n]).unsqueeze(-1)
                 for n in self.mix.names]
        return np.ascontiguousarray(torch.cat(parts, 1).float().numpy())

    def scores(self, users: Tensor | dict[str, Tensor], items: Tensor) -> Tensor:
        """The exact mixed scores of ``items`` ``[B, J]`` (item indices) for the users
        (indices ``[B]`` or vectors ``{tower: [B, d]}``): ``[B, J]``, the Mix's scores
        without a pass over the catalogue (a gated mix scans it)."""
        items = torch.as_tensor(items, dtype=torch.long)
        mix = self.mix
        if mix.gate is not None:
            return self._gated(users).gather(1, items)
        users = self._user_vectors(users)
        mu, sigma = self._moments(users)
        z = {}
        for name, t in mix.towers.items():
            vectors = t.item.index_select(0, items.reshape(-1).to(t.item.device)).float().cpu()
            raw = torch.einsum("bd,bjd->bj", users[name],
                               vectors.reshape(*items.shape, -1)).double()
            z[name] = (raw - mu[name].unsqueeze(-1)) / sigma[name].unsqueeze(-1)
        out = sum(mix.weights[name] * z[name] for name in mix.names)
        if mix.cold is not None:
            cold = (mix.item_degree.cpu()[items] == 0)
            c = mix.cold
            value = (c.scale * z[mix.names[0]] + c.shift
                     + c.prior_scale * mix.item_prior.cpu()[items].double())
            out = torch.where(cold, value, out)
        return out.float()

    def _gated(self, users: Tensor | dict[str, Tensor]) -> Tensor:
        """A gated mix's exact scores ``[B, num_items]`` (the gate reads the stored users'
        degrees, so vectors alone do not do)."""
        if isinstance(users, dict):
            raise ValueError("ItemIndex: a gated mix scores stored users only (by index)")
        return self.mix.score(torch.as_tensor(users, dtype=torch.long)).float().cpu()

    def search(self, users: Tensor | dict[str, Tensor], k: int,
               exclude: Sequence[Sequence[int] | set[int]] | None = None
               ) -> list[tuple[list[int], list[float]]]:
        """Top-``k`` items per user, best first, with their exact mixed scores.

        Args:
            users: user indices ``[B]`` into the mix's user table, or vectors
                ``{tower: [B, d]}`` (users folded in and not stored).
            k: list length; shorter when fewer items remain.
            exclude: per user, item indices never to return (default: none).

        Returns:
            per user, ``(item indices, scores)``.
        """
        vectors = self._user_vectors(users)
        b = len(next(iter(vectors.values())))
        exclude = [set(e) for e in exclude] if exclude is not None else [set()] * b
        if self.mix.gate is not None:
            full = self._gated(users)
            return [self._top_of(row, torch.arange(self.mix.num_items), k, ex)
                    for row, ex in zip(full, exclude)]
        # 1. Candidates from the index, over-fetched by the excluded items.
        out = []
        queries = self._queries(vectors)
        fetch = min(k + max((len(e) for e in exclude), default=0), len(self.items_))
        found = np.zeros((b, 0), dtype=np.int64)
        if fetch > 0:
            found = self._candidates(queries, fetch)
        # 2. Items outside the index (degree 0 under a cold-start stage): all of them.
        outside = torch.zeros(0, dtype=torch.long)
        if self.cold_:
            outside = torch.nonzero(self.mix.item_degree.cpu() == 0).reshape(-1)
        for row in range(b):
            candidates = torch.cat([torch.from_numpy(found[row][found[row] >= 0]), outside])
            keep = torch.tensor([int(i) not in exclude[row] for i in candidates.tolist()],
                                dtype=torch.bool)
            candidates = candidates[keep]
            available = self.mix.num_items - sum(0 <= i < self.mix.num_items
                                                 for i in exclude[row])
            if len(candidates) < min(k, available):
                # Too few left (excluded items crowded the candidates): scan exactly.
                candidates = torch.tensor(sorted(set(range(self.mix.num_items)) - exclude[row]),
                                          dtype=torch.long)
            user = {n: v[row:row + 1] for n, v in vectors.items()}
            # 3. Exact scores of the candidates, then the top k.
            values = self.scores(user, candidates.unsqueeze(0))[0]
            out.append(self._top_of(values, candidates, k, set()))
        return out

    @staticmethod
    def _top_of(values: Tensor, items: Tensor, k: int, exclude: set[int]
                ) -> tuple[list[int], list[float]]:
        if exclude:
            values = values.clone()
            values[torch.as_tensor(sorted(exclude), dtype=torch.long)] = -float("inf")
        n = int(torch.isfinite(values).sum())
        top_v, top_i = torch.topk(values, min(k, n))
        return items[top_i].tolist(), top_v.tolist()

    # ------------------------------------------------------------------ files
    def fingerprint(self, mix: Mix | None = None) -> str:
        """A hash of the sizes, the cold-start rule and a spread of item rows of ``mix``:
        it tells whether a saved index describes these items."""
        mix = mix or self.mix
        n = mix.num_items
        rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 4096)).astype(np.int64))
        h = hashlib.sha256(json.dumps([n, [t.item.size(1) for t in mix.towers.values()],
                                       mix.names, mix.cold is not None]).encode())
        if n:
            h.update(self._rows(mix, rows).tobytes())
            h.update(mix.item_degree.cpu()[torch.from_numpy(rows)].numpy().tobytes())
        return h.hexdigest()

    def to_bytes(self) -> np.ndarray:
        """The FAISS index as bytes (``faiss.serialize_index``): a ``uint8`` array."""
        if self.index_ is None:
            return np.zeros(0, dtype=np.uint8)
        return _faiss().serialize_index(self.index_)

    def from_bytes(self, data: np.ndarray, mix: Mix, items: np.ndarray, ef_search: int
                   ) -> ItemIndex:
        """The inverse of :meth:`to_bytes`, over ``mix`` (statistics recomputed from it).
        Raises ``ValueError`` on bytes FAISS cannot read or an index that does not fit."""
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        except RuntimeError as err:
            raise ValueError(f"a FAISS index FAISS can read ({str(err).splitlines()[0][:120]})"
                             ) from None
        d = sum(t.item.size(1) for t in mix.towers.values())
        if not isinstance(index, faiss.IndexHNSWFlat) or index.d != d \
                or index.ntotal != len(items) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"an inner-product HNSW index of {len(items)} vectors of width {d}")
        self.mix, self.num_items_ = mix, mix.num_items
        self.index_, self.items_, self.cold_ = index, items, mix.cold is not None
        self._reset_stats(mix)
        self._add_stats(mix, 0)
        self.ef_search_ = max(1, min(int(ef_search), 65_536))
        self._place()
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path`` (one safetensors file; the caller makes it atomic)."""
        tensors, metadata = self.file_contents()
        save_file(tensors, str(path), metadata=metadata)

    def file_contents(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """``(tensors, metadata)`` of the safetensors file :meth:`save` writes."""
        data = self.to_bytes()
        meta = {"ef_search": self.ef_search_, "recall": self.recall_, "num_items": self.num_items_,
                "fingerprint": self.fingerprint(), "sha256": hashlib.sha256(data).hexdigest(),
                "target_recall": self.target_recall}
        tensors = {"index": torch.from_numpy(data.copy()),
                   "items": torch.from_numpy(self.items_.copy())}
        return tensors, {"format": FORMAT, "ann": json.dumps(meta)}

    @classmethod
    def load(cls, path: str | os.PathLike[str], mix: Mix, **kwargs: Any) -> ItemIndex | None:
        """The index saved at ``path`` over ``mix``, validated as hostile input, or ``None``
        when it is stale (another catalogue: rebuild it).

        Raises:
            DataError: a malformed file, naming it.
        """
        path = Path(path)
        parsed: dict[str, Any] = {}

        def check(header: Any) -> None:
            if header.metadata.get("format") != FORMAT:
                raise DataError(path, f"format {FORMAT!r}, got "
                                f"{str(header.metadata.get('format'))[:80]!r}", field="format",
                                field_kind="metadata")
            try:
                meta = json.loads(header.metadata.get("ann", ""))
            except (ValueError, RecursionError):
                meta = None
            if not isinstance(meta, dict) or not all(
                    isinstance(meta.get(key), str) for key in ("fingerprint", "sha256")) \
                    or not isinstance(meta.get("ef_search"), int) or meta["ef_search"] < 1:
                raise DataError(path, "a JSON object with ef_search, fingerprint and sha256",
                                field="ann", field_kind="metadata")
            check_layout(header, {"index": ("U8", (None,)), "items": ("I64", (None,))})
            parsed.update(meta)

        tensors, _ = read_tensors(path, check)
        index = cls(**kwargs)
        if parsed["fingerprint"] != index.fingerprint(mix):
            log.info("%s: an index of another catalogue; rebuilding", path)
            return None
        data = tensors["index"].numpy()
        if hashlib.sha256(data).hexdigest() != parsed["sha256"]:
            raise DataError(path, "index bytes whose SHA-256 is the one in its metadata; "
                            "the file is damaged", field="index", field_kind="tensor")
        items = tensors["items"].numpy()
        expected = cls._linear_items(mix, 0)
        if not np.array_equal(items, expected):
            raise DataError(path, f"the {len(expected)} indexed item indices of the mix",
                            field="items", field_kind="tensor")
        try:
            index.from_bytes(data, mix, items, parsed["ef_search"])
        except ValueError as err:
            raise DataError(path, str(err), field="index", field_kind="tensor") from None
        recall = parsed.get("recall")
        index.recall_ = float(recall) if isinstance(recall, (int, float)) else None
        return index

    def __repr__(self) -> str:
        if self.index_ is None:
            how = "the gated mix's scan" if self.mix is not None and self.mix.gate is not None \
                else "a dense scan of the decomposition"
            return f"ItemIndex({how}, {self.num_items_} items)"
        recall = "" if self.recall_ is None else f", recall@10 {self.recall_:.3f}"
        return (f"ItemIndex(HNSW M={self.links}, efSearch {self.ef_search_}, "
                f"{len(self.items_)} indexed of {self.num_items_} items{recall})")
