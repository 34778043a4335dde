"""Recommender: a trained run, in use. Raw ids in and out, never internal indices.

* top-K for known users (one or many), with the popular-items fallback on request;
* new users without retraining: from an item history (fold-in) or from a sentence;
* new items without retraining (text + KG edges, the GNN run inductively);
* new interactions folded in; similar items; explanations from the knowledge graph;
* ``save`` / ``load`` of the whole state, atomically, with no pickle;
* top-K over big catalogues by one inner-product search (:mod:`hybridrec.ann`): an exact
  dense scan up to :data:`~hybridrec.ann.EXACT_MAX_ITEMS` items, a FAISS index above, saved in
  the run folder as ``ann.safetensors`` and kept current by :meth:`Recommender.add_items`.

Fold-in, per scorer of the mix (every scorer is a dot product of a user and an item vector):

* GNN: the node's own layers are recomputed from its input state and its in-neighbours'
  cached layer states (:meth:`~hybridrec.models.HeteroGNN.fold_in`); the rest of the graph is
  not moved.
* ALS: the closed-form least-squares solve of ``implicit``, :func:`als_fold_in`.
* Text channel: the normalised sum of the history's centred item texts (as in training).
* LightGCN: no fold-in; a new user or item has a zero vector, so its LightGCN score is the
  same for every item and the ranking comes from the other scorers.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from hybridrec.ann import ANN_FILE, EXACT_MAX_ITEMS, ItemIndex, faiss_available
from hybridrec.config import RunConfig
from hybridrec.data.build import build_dataset
from hybridrec.data.dataset import Dataset
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.data.split import Split
from hybridrec.explain import (
    Explanation,
    KnowledgePaths,
    cosine_top,
    explanation_sentence,
)
from hybridrec.graph import INTERACTS, REV_INTERACTS, relation_names, reverse_edge_type
from hybridrec.models.mix import Mix
from hybridrec.models.prepare import graph_inputs
from hybridrec.run import Run, load_run, save_run

log = logging.getLogger(__name__)

Source = Literal["model", "popular", "history", "text"]
# How top-K is found: "exact" scans every item; "faiss" searches an index (hybridrec.ann);
# "auto" uses the index above EXACT_MAX_ITEMS items when FAISS is installed and the mix has
# no learned gate (which the index cannot serve).
TopK = Literal["auto", "exact", "faiss"]


class UnknownIdError(KeyError, ValueError):
    """A user or item id the recommender does not know (a ``KeyError``, and a ``ValueError``
    so that the command-line tools report it as bad input)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Ranking:
    """A top-K list. ``source``: ``"model"`` (a known user), ``"popular"`` (the fallback for
    an unknown user), ``"history"`` or ``"text"`` (a new user)."""

    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    source: Source
    user_id: str | None = None
    titles: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "source": self.source,
                "items": [{"item_id": i, "title": t, "score": s}
                          for i, t, s in zip(self.item_ids, self.titles, self.scores)]}


@dataclass(frozen=True)
class AddedItems:
    """What :meth:`Recommender.add_items` did: the new ids, the graph edges attached to them,
    and the edges it could not attach, each with its reason."""

    item_ids: tuple[str, ...]
    edges: int
    skipped: tuple[str, ...]


def als_fold_in(item_factors: Tensor, histories: Sequence[np.ndarray], regularization: float,
                alpha: float) -> Tensor:
    r"""ALS user factors for item histories, with the item factors held fixed, as
    ``implicit``'s ``recalculate_user`` solves them:

    .. math::
        \mathbf{x}_u = \big(\mathbf{Y}^\top\mathbf{Y} + \lambda \mathbf{I}
            + (\alpha - 1) \textstyle\sum_{i \in H_u} \mathbf{y}_i \mathbf{y}_i^\top\big)^{-1}
            \, \alpha \textstyle\sum_{i \in H_u} \mathbf{y}_i

    Args:
        item_factors: :math:`\mathbf{Y}`, ``[I, f]``.
        histories: per user, the distinct item indices :math:`H_u`.
        regularization / alpha: :math:`\lambda`, :math:`\alpha` of the fit.
    Returns:
        ``[len(histories), f]``.
    """
    y = item_factors.double()
    f = y.size(1)
    base = y.t() @ y + regularization * torch.eye(f, dtype=y.dtype, device=y.device)
    out = torch.zeros(len(histories), f, dtype=y.dtype, device=y.device)
    for row, items in enumerate(histories):
        if len(items) == 0:
            continue
        h = y[torch.as_tensor(np.asarray(items), dtype=torch.long, device=y.device)]  # [n, f]
        a = base + (alpha - 1) * h.t() @ h
        out[row] = torch.linalg.solve(a, alpha * h.sum(0))
    return out.to(item_factors.dtype)


class Recommender:
    """A trained hybrid in use. Build it with :meth:`fit` or :meth:`load`.

    Example::

        from hybridrec import Recommender
        rec = Recommender.load("runs/hybrid-ml-100k-random")
        rec.recommend("196", k=10)
        rec.recommend_for_text("space opera with big battles", k=10)
        rec.explain("196", "50").sentence

    Args:
        run: a loaded run folder (:func:`~hybridrec.run.load_run`).
        top_k: ``"exact"`` (a dense scan), ``"faiss"`` (the index of :mod:`hybridrec.ann`) or
            ``"auto"`` (the index above :data:`~hybridrec.ann.EXACT_MAX_ITEMS` items when
            FAISS is installed and the mix has no gate) (default: :obj:`"auto"`).
    """

    def __init__(self, run: Run, top_k: TopK = "auto") -> None:
        if top_k not in ("auto", "exact", "faiss"):
            raise ValueError(f"Recommender: top_k 'auto', 'exact' or 'faiss', got {top_k!r}")
        if top_k == "faiss" and not faiss_available():
            raise ImportError("Recommender(top_k='faiss') needs FAISS: pip install faiss-cpu")
        self.top_k = top_k
        self._index: ItemIndex | None = None
        self.run = run
        self.config: RunConfig = run.config
        self.dataset: Dataset = run.dataset
        self.model = run.model.eval()
        self.device = next(self.model.parameters()).device
        graph = run.graph
        self._x_dict, self._edges = graph_inputs(graph, self.device)
        ui = self._edges[INTERACTS]
        self.mix: Mix = run.scorer.copy()  # grows with updates; the run keeps the base
        # Users and items are ours to extend: the base ids, then those added.
        self.user_ids = IdMap(run.ids["users"].ids)
        self.item_ids = IdMap(run.ids["items"].ids)
        self._base_users, self._base_items = len(self.user_ids), len(self.item_ids)
        with torch.no_grad():
            self._layers = self.model.gnn.layer_outputs(self._x_dict, self._edges,
                                                        self.model.cold_masks(ui))
        hidden = self.model.hidden_channels
        gnn_items = self.mix.towers["gnn"].item
        # The text channel's centred unit item texts are the GNN tower's last columns.
        self._text_columns = slice(hidden, gnn_items.size(1)) if self.model.text_channel \
            else None
        if self.model.text_channel:
            # Frozen at training time: new items are centred on the same mean.
            self._item_mean = self._x_dict["item"].float().mean(0)
        self._user_x_mean = self._x_dict["user"].float().mean(0) if "user" in self._x_dict \
            else None
        # Seen items: every known interaction of the data set, then those added.
        inter = self.dataset.interactions
        self._seen: list[set[int]] = [set() for _ in range(len(self.user_ids))]
        for u, i in zip(inter.user_index.tolist(), inter.item_index.tolist()):
            self._seen[u].add(i)
        # Histories the model reads: the training graph's pairs, then those added.
        self._history: list[list[int]] = [[] for _ in range(len(self.user_ids))]
        for u, i in zip(ui[0].tolist(), ui[1].tolist()):
            self._history[u].append(i)
        self._popularity = self.mix.item_degree.float().cpu().clone()
        self.paths = KnowledgePaths(self.dataset)
        self._titles = list(self.paths.item_titles)
        self._entity_index = _prepared_entity_index(graph, self.dataset.num_entities)
        self._relation_names = list(relation_names(self.dataset.relations))
        self._entity_items = {int(e): int(i) for i, e in self.dataset.item_entity}
        self._edge_aliases = dict(getattr(graph, "edge_aliases", None) or {})
        self._updates: dict[str, list] = {"items": [], "interactions": []}
        self._added_x: list[Tensor] = []
        self._encoder = None
        self._item_text_rows: Tensor | None = None  # _item_text's, until items are added
        if run.updates is not None:
            self._replay(*run.updates)
        self._sync_index(run.folder / ANN_FILE)

    # ------------------------------------------------------------------ building and saving
    @classmethod
    def fit(cls, dataset: Dataset, split: Split | None = None, config: RunConfig | None = None,
            *, device: str | torch.device | None = None) -> Recommender:
        """Train the hybrid on ``dataset`` (``split.train``; by default the split that
        ``config.data`` describes) and return it in use (on the CPU)."""
        import tempfile

        from hybridrec.device import pick_device
        from hybridrec.pipeline import evaluate_run, fit_hybrid, load_split, text_features

        config = config or RunConfig()
        split = split if split is not None else load_split(config, dataset)
        device = pick_device(device if device is not None else config.train.device)
        features = text_features(config, dataset, split, device)
        fitted = fit_hybrid(config, dataset, split, features, device=device)
        metrics = evaluate_run(fitted.mix, dataset, split, device)
        ids = {"users": dataset.users, "items": dataset.items, "entities": dataset.entities,
               "relations": dataset.relations}
        with tempfile.TemporaryDirectory() as tmp:
            folder = save_run(Path(tmp) / "run", config=config, model=fitted.gnn,
                              scorer=fitted.mix, graph=fitted.graph, split=split, ids=ids,
                              dataset=dataset,
                              metrics=metrics, info={"best_epoch": fitted.result.best_epoch})
            return cls.load(folder)

    def __repr__(self) -> str:
        added = {k: len(v) for k, v in self._updates.items() if v}
        return (f"Recommender({self.dataset.name}: {len(self.user_ids)} users, "
                f"{len(self.item_ids)} items; {self.mix}; top_k={self.top_k!r}"
                + (f"; added since training: {added}" if added else "") + ")")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu",
             top_k: TopK = "auto") -> Recommender:
        """Load a run folder written by ``python -m hybridrec.train`` or :meth:`save`
        (``top_k``: see the class)."""
        return cls(load_run(folder, device=device), top_k)

    # ------------------------------------------------------------------ the top-K index
    def _wants_index(self) -> bool:
        if self.top_k == "exact" or self.mix.gate is not None:
            return False
        return self.top_k == "faiss" or (self.num_items > EXACT_MAX_ITEMS
                                         and faiss_available())

    def _sync_index(self, path: Path | None = None) -> None:
        """Make the index describe the mix as it is: read ``path`` when it holds a current
        one, else build it (or drop it when the exact scan serves)."""
        if not self._wants_index():
            self._index = None
            return
        if self._index is not None and self._index.current(self.mix):
            return
        self._index = None
        if path is not None and path.is_file():
            self._index = ItemIndex.load(path, self.mix)
        if self._index is None:
            self._index = ItemIndex().build(self.mix)
        log.info("Top-K by %r", self._index)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the run with every update so far into ``folder``, atomically (a temporary
        twin, then ``os.replace``): a process killed mid-save leaves the old folder intact."""
        run = self.run
        updates = None
        if self._updates["items"] or self._updates["interactions"]:
            tensors = {"items.x": torch.cat(self._added_x).contiguous()} if self._added_x \
                else {}
            updates = (self._updates, tensors)
        info = {k: v for k, v in run.info.items() if k not in ("format", "saved", "torch")}
        ann = self._index.file_contents() if self._index is not None else None
        return save_run(folder, config=run.config, model=run.model, scorer=run.scorer,
                        graph=run.graph,
                        split=run.split, ids=run.ids, dataset=run.dataset, metrics=run.metrics,
                        info=info, updates=updates, ann=ann)

    def _replay(self, updates: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
        """Apply the updates a saved run carries, in their order."""
        x = tensors.get("items.x")
        offset = 0
        for batch in updates.get("items", []):
            n = len(batch["rows"])
            self.add_items(batch["rows"], [tuple(t) for t in batch["triples"]],
                           links=batch["links"], entity_text=batch["entity_text"],
                           _x=None if x is None else x[offset:offset + n])
            offset += n
        for batch in updates.get("interactions", []):
            self.add_interactions([tuple(p) for p in batch])

    # ------------------------------------------------------------------ lookups
    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def _user_index(self, user_id: str) -> int:
        index = self.user_ids.get(str(user_id))
        if index < 0:
            raise UnknownIdError(f"unknown user {user_id!r}: not in the training data nor added "
                           f"(recommend_for_history folds in a new user; fallback=True, or "
                           f"--fallback on the command line, gives popular items)")
        return index

    def _item_index(self, item_id: str, what: str = "item") -> int:
        index = self.item_ids.get(str(item_id))
        if index < 0:
            raise UnknownIdError(f"unknown {what} {item_id!r}: not in the data nor added by "
                                 "add_items")
        return index

    def _items(self, item_ids: Iterable[str], what: str) -> list[int]:
        if isinstance(item_ids, str):
            raise TypeError(f"{what}: expected a list of item ids, got one string")
        return [self._item_index(i, what) for i in item_ids]

    @staticmethod
    def _check_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(k)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _scores(self, user_index: Tensor) -> Tensor:
        """Mixed scores of stored users ``[B, num_items]`` on the CPU."""
        return self.mix.score(user_index.to(self.device)).float().cpu()

    @torch.no_grad()
    def _scores_of(self, rows: dict[str, Tensor]) -> Tensor:
        """Mixed scores ``[B, num_items]`` of users given by :meth:`_user_rows`."""
        users = {name: rows[name] for name in self.mix.names}
        parts = self.mix.parts_of(users, self.mix.user_gate_logits(users, rows["degree"]))
        return sum(parts[name] for name in self.mix.names).float().cpu()

    def _top(self, scores: Tensor, k: int, exclude: set[int] | Sequence[int],
             candidates: Sequence[str] | None) -> tuple[list[int], list[float]]:
        """Top-``k`` of one row ``[num_items]`` with ``exclude`` masked out; ``candidates``
        (raw ids) restricts the ranking to them."""
        scores = scores.clone()
        if candidates is not None:
            allowed = torch.zeros(self.num_items, dtype=torch.bool)
            allowed[self._items(candidates, "candidate item")] = True
            scores[~allowed] = -float("inf")
        if exclude:
            scores[torch.as_tensor(sorted(exclude), dtype=torch.long)] = -float("inf")
        n = int(torch.isfinite(scores).sum())
        values, index = torch.topk(scores, min(k, n))
        return index.tolist(), values.tolist()

    def _ranking(self, index: list[int], scores: list[float], source: Source,
                 user_id: str | None) -> Ranking:
        return Ranking(tuple(self.item_ids.to_ids(index)), tuple(scores), source, user_id,
                       tuple(self._titles[i] for i in index))

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                  candidates: Sequence[str] | None = None, fallback: bool = False) -> Ranking:
        """Top-``k`` items for a known user.

        Args:
            user_id: the user's raw id.
            k: list length (default: :obj:`10`).
            exclude_seen: leave out items the user interacted with (default: :obj:`True`).
            candidates: rank only these raw item ids (default: every item).
            fallback: for an unknown user, return the most popular items (``source ==
                "popular"``) instead of raising ``KeyError`` (default: :obj:`False`).
        """
        return self.recommend_batch([user_id], k, exclude_seen, candidates, fallback)[0]

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, exclude_seen: bool = True,
                        candidates: Sequence[str] | None = None,
                        fallback: bool = False) -> list[Ranking]:
        """:meth:`recommend` for many users at once (one matrix product for all of them)."""
        k = self._check_k(k)
        if isinstance(user_ids, str):
            raise TypeError("recommend_batch: expected a list of user ids, got one string")
        index = [self.user_ids.get(str(u)) for u in user_ids]
        unknown = [u for u, i in zip(user_ids, index) if i < 0]
        if unknown and not fallback:
            self._user_index(unknown[0])  # raises, naming it
        known = [i for i in index if i >= 0]
        seen = [self._seen[u] if exclude_seen else set() for u in known]
        self._sync_index()
        if not known:
            tops = iter(())
        elif self._index is not None and candidates is None:
            tops = iter(self._index.search(torch.tensor(known, dtype=torch.long), k, seen))
        else:
            scores = self._scores(torch.tensor(known, dtype=torch.long))
            tops = (self._top(scores[row], k, seen[row], candidates) for row in range(len(known)))
        return [self._ranking(*next(tops), "model", str(user_id)) if u >= 0 else
                self._ranking(*self._top(self._popularity, k, set(), candidates), "popular",
                              str(user_id))
                for user_id, u in zip(user_ids, index)]

    def similar_items(self, item_id: str, k: int = 10) -> Ranking:
        """The ``k`` items whose GNN embeddings (text, KG and interactions) are closest to
        ``item_id``'s by cosine; works for new and cold items alike."""
        k = self._check_k(k)
        i = self._item_index(item_id)
        z = F.normalize(self._gnn_items(), dim=-1).cpu()
        scores = z @ z[i]
        top, values = self._top(scores, k, {i}, None)
        return self._ranking(top, values, "model", None)

    # ------------------------------------------------------------------ fold-in
    def _gnn_items(self) -> Tensor:
        """The GNN's item embeddings alone ``[I, H]`` (the GNN tower without the text)."""
        return self.mix.towers["gnn"].item[:, :self.model.hidden_channels].float()

    def _item_text(self) -> Tensor:
        """The centred unit item texts ``[I, D]``: the GNN tower's text columns without the
        boost of items that have no training interactions (the items of degree 0)."""
        if self._item_text_rows is None:
            boost = self.model.text_boost(self.mix.item_degree == 0).detach()
            text = self.mix.towers["gnn"].item[:, self._text_columns].float()
            self._item_text_rows = text / boost.unsqueeze(-1)
        return self._item_text_rows

    @torch.no_grad()
    def _user_rows(self, histories: Sequence[Sequence[int]], known: Sequence[int | None],
                   x: Tensor | None = None) -> dict[str, Tensor]:
        """Each tower's user vectors (and ``"degree"``) for ``N`` users with the given item
        histories: known users keep their input state, profile edges and LightGCN vector; new
        ones start from ``x`` (``[N, F]``; default: the mean training user text)."""
        n, model, towers = len(histories), self.model, self.mix.towers
        hist = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
        out: dict[str, Tensor] = {"degree": torch.tensor([float(len(h)) for h in hist],
                                                         device=self.device)}
        # 1. GNN: input state, then the node's own layers over its in-neighbours.
        if x is None and self._user_x_mean is not None:
            x = self._user_x_mean.expand(n, -1)
        h0 = model.gnn.text_input("user", None if x is None else x.to(self.device), n)
        for row, u in enumerate(known):
            if u is not None:
                h0[row] = self._layers[0]["user"][u]
        in_edges: dict[tuple[str, str, str], list[Tensor]] = {}
        pairs = [torch.stack([torch.full((len(h),), row), torch.as_tensor(h)])
                 for row, h in enumerate(hist)]
        in_edges[REV_INTERACTS] = [torch.cat(pairs, 1)] if pairs else []
        for edge_type, edge_index in self._edges.items():
            if edge_type[2] != "user" or edge_type == REV_INTERACTS:
                continue
            for row, u in enumerate(known):
                if u is not None:
                    src = edge_index[0, edge_index[1] == u]
                    in_edges.setdefault(edge_type, []).append(
                        torch.stack([torch.full_like(src, row), src]))
        edges = {e: torch.cat(v, 1).to(self.device) for e, v in in_edges.items() if v}
        gnn, _ = self._fold("user", h0, edges)
        # 2. Text channel: the normalised sum of the history's centred item texts, weighted.
        if self._text_columns is not None:
            item_text = self._item_text()
            profile = item_text.new_zeros(n, item_text.size(1))
            for row, h in enumerate(hist):
                if len(h):
                    profile[row] = item_text[torch.as_tensor(h)].sum(0)
            gnn = torch.cat([gnn, model.text_scale() * F.normalize(profile, dim=-1)], -1)
        out["gnn"] = gnn
        # 3. ALS, closed form against the fixed item factors.
        if "als" in towers:
            cfg = self.config.model
            out["als"] = als_fold_in(towers["als"].item, hist, cfg.mf_regularization,
                                     cfg.mf_alpha)
        # 4. LightGCN has no fold-in: a known user keeps its vector, a new one has none.
        if "lightgcn" in towers:
            table = towers["lightgcn"].user
            rows = table.new_zeros(n, table.size(1))
            for row, u in enumerate(known):
                if u is not None and u < table.size(0):
                    rows[row] = table[u]
            out["lightgcn"] = rows
        return out

    def _fold(self, node_type: str, h0: Tensor, edges: dict) -> tuple[Tensor, list[Tensor]]:
        """The GNN's fold-in (see :meth:`~hybridrec.models.HeteroGNN.fold_in`): the output
        embedding and the per-layer states."""
        states = self.model.gnn.fold_in(node_type, h0, edges, self._layers, return_layers=True)
        return torch.stack(states).mean(0), states

    def recommend_for_history(self, item_ids: Sequence[str], k: int = 10,
                              exclude_seen: bool = True,
                              candidates: Sequence[str] | None = None) -> Ranking:
        """Top-``k`` for a visitor known only by the items they interacted with (fold-in; the
        model is not changed)."""
        k = self._check_k(k)
        history = self._items(item_ids, "history item")
        if not history:
            raise ValueError("recommend_for_history: the history is empty; use "
                             "recommend_for_text or the popular-items fallback")
        rows = self._user_rows([history], [None])
        self._sync_index()
        if self._index is not None and candidates is None:
            users = {name: rows[name] for name in self.mix.names}
            [(top, values)] = self._index.search(users, k, [set(history) if exclude_seen
                                                            else set()])
            return self._ranking(top, values, "history", None)
        scores = self._scores_of(rows)[0]
        top, values = self._top(scores, k, set(history) if exclude_seen else set(), candidates)
        return self._ranking(top, values, "history", None)

    def _encode(self, texts: list[str]) -> Tensor:
        if self._encoder is None:
            from hybridrec.text import TextEncoder

            self._encoder = TextEncoder(self.config.data.text_model, device=self.device,
                                        show_progress=False)
        return self._encoder.encode(texts).to(self.device)

    def recommend_for_text(self, text: str, k: int = 10,
                           candidates: Sequence[str] | None = None) -> Ranking:
        """Top-``k`` for a sentence (``"space opera with big battles"``): the text encoder
        embeds it, and it is ranked against the items' centred texts, the text channel of
        the GNN scorer (the only scorer that reads a user's words)."""
        k = self._check_k(k)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"recommend_for_text: expected a non-empty sentence, got {text!r}")
        if self._text_columns is None:
            raise ValueError("recommend_for_text: this run has no text channel (trained with "
                             "--no-text or text_channel off)")
        query = F.normalize(self._encode([text]).float(), dim=-1)[0]
        scores = (self._item_text() @ query).cpu()
        top, values = self._top(scores, k, set(), candidates)
        return self._ranking(top, values, "text", None)

    # ------------------------------------------------------------------ updates
    def add_interactions(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        """Fold in new (user id, item id) interactions without retraining. New user ids
        become users; item ids must be known (add new items with :meth:`add_items` first).
        The affected users' seen items change at once, and their representations are
        recomputed as in fold-in. Returns the affected user ids.

        Raises:
            UnknownIdError: an unknown item (nothing is changed then).
        """
        pairs = [(str(u), str(i)) for u, i in pairs]
        items = [self._item_index(i, "item") for _, i in pairs]  # all checked before changing
        if not pairs:
            return []
        new_users = list(dict.fromkeys(u for u, _ in pairs if u not in self.user_ids))
        if new_users:
            self.user_ids = IdMap(self.user_ids.ids + tuple(new_users))
            self._seen += [set() for _ in new_users]
            self._history += [[] for _ in new_users]
        touched: dict[int, None] = {}
        for (user_id, _), i in zip(pairs, items):
            u = self.user_ids.index(user_id)
            self._seen[u].add(i)
            self._history[u].append(i)
            touched[u] = None
        users = list(touched)
        known = [u if u < self._base_users else None for u in users]
        rows = self._user_rows([self._history[u] for u in users], known)
        self.mix.set_users(users, rows, rows["degree"])
        self._updates["interactions"].append([list(p) for p in pairs])
        return self.user_ids.to_ids(users)

    def add_items(self, items: pd.DataFrame | Sequence[Mapping[str, Any]],
                  triples: Sequence[tuple[str, str, str]] = (), *,
                  links: Mapping[str, str] | None = None,
                  entity_text: Mapping[str, str] | None = None,
                  _x: Tensor | None = None) -> AddedItems:
        """Make new items rankable at once, without retraining: their text is encoded, their
        KG edges attached and the GNN run over them inductively.

        Args:
            items: rows with ``item_id`` and the data set's item text and categorical
                columns (other columns of the item table are optional).
            triples: KG triples ``(head, relation, tail)`` by raw id; one end is a new item
                (or the entity it is linked to), the relation one the model knows.
            links: new item id -> KG entity id it stands for (default: the item IRI column,
                when the data set was loaded with one).
            entity_text: labels of entities the triples introduce.

        Raises:
            DataError: a missing column, a duplicate or known id, an unknown relation, or a
                triple that touches no new item. Nothing is changed then.
        """
        # 1. Validate everything before changing anything.
        frame = pd.DataFrame(list(items)) if not isinstance(items, pd.DataFrame) else items
        frame = frame.astype(str) if len(frame) else frame
        where = "add_items"
        if "item_id" not in frame.columns:
            raise DataError(where, f"an item table with column 'item_id'; got columns "
                                   f"{list(frame.columns)}", field="item_id")
        if not len(frame):
            raise DataError(where, "at least one item row, got none")
        data = self.dataset
        required = list(data.item_text_columns) + list(data.item_categorical_columns)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(where, f"the item columns of the training data "
                                   f"({', '.join(required)}); missing {', '.join(missing)}",
                            field=missing[0])
        for column in data.item_table:
            if column not in frame.columns:
                frame[column] = ""
        new_ids = frame["item_id"].tolist()
        for row, item_id in enumerate(new_ids, start=1):
            if item_id in self.item_ids or new_ids.index(item_id) != row - 1:
                raise DataError(where, f"a new item id; {item_id!r} is already known"
                                       if item_id in self.item_ids else
                                       f"distinct item ids; {item_id!r} repeats",
                                row=row, field="item_id")
        links = dict(links or {})
        iri_column = self.config.data.options.get("item_iri")
        if not links and iri_column and iri_column in frame.columns:
            links = {i: e for i, e in zip(new_ids, frame[iri_column]) if e}
        for item_id in links:
            if item_id not in new_ids:
                raise DataError(where, f"links for the new items only; {item_id!r} is not "
                                       f"among them", field="links")
        stands_for = {e: i for i, e in links.items()}
        new_set = set(new_ids)
        for row, (head, relation, tail) in enumerate(triples, start=1):
            if relation not in data.relations:
                raise DataError(where, f"a relation the model was trained with; "
                                       f"{relation!r} is unknown", row=row, field="relation")
            ends = {head, tail}
            if not ends & (new_set | set(stands_for)):
                raise DataError(where, f"a triple about a new item; ({head!r}, {relation!r}, "
                                       f"{tail!r}) points to none of {sorted(new_set)}",
                                row=row, field="triples")
        # 2. Text: the items rendered as training renders them, with their KG neighbours.
        # A new item named in a triple stands for its linked entity, or for itself.
        entity_of = {i: links.get(i, i) for i in new_ids}
        kg = [(entity_of.get(h, h), r, entity_of.get(t, t)) for h, r, t in triples]
        known_links = {i: e for i, e in links.items() if e in data.entities}
        for item_id, entity in known_links.items():
            e = data.entities.index(entity)
            for h, r, t in data.kg_triples[(data.kg_triples[:, 0] == e)
                                           | (data.kg_triples[:, 2] == e)]:
                kg.append((data.entities.ids[h], data.relations.ids[r], data.entities.ids[t]))
        labels = {e: data.entity_text[data.entities.index(e)]
                  for h, _, t in kg for e in (h, t) if e in data.entities}
        labels.update(entity_text or {})
        in_kg = {e for h, _, t in kg for e in (h, t)}
        mini_links = {i: e for i, e in entity_of.items() if e in in_kg}
        mini = build_dataset(
            f"{data.name}+new", pd.DataFrame({"user_id": ["_"] * len(new_ids),
                                              "item_id": new_ids}),
            items=frame, item_text_columns=data.item_text_columns,
            item_categorical_columns=data.item_categorical_columns,
            separators=self._separators(), kg_triples=kg, entity_text=labels,
            item_links=pd.DataFrame({"item_id": list(mini_links),
                                     "entity_id": list(mini_links.values())})
            if mini_links else None)
        from hybridrec.text.builders import item_texts

        texts = item_texts(mini)
        x = self._encode(texts) if _x is None else _x.to(self.device)
        # 3. In-edges of each new item in the prepared graph, by edge type.
        first = self.num_items
        in_edges: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        facts: list[list[tuple[int, tuple[str, int], bool]]] = [[] for _ in new_ids]
        skipped: list[str] = []
        batch = {item_id: r for r, item_id in enumerate(new_ids)}
        for row, other, relation, outgoing in _mini_facts(mini):
            self._attach(row, other, relation, outgoing, in_edges, facts, skipped, batch)
        # 4. The GNN over the new nodes; the other scorers know nothing of them (zeros).
        n = len(new_ids)
        # Once per pair, as in the training graph: a KG that states a relation and its
        # inverse names each pair twice, and both land on the same (aliased) edge type.
        edges = {e: torch.tensor(sorted(set(v)), dtype=torch.long).t().to(self.device)
                 for e, v in in_edges.items()}
        with torch.no_grad():
            h0 = self.model.gnn.text_input("item", x, n)
            z, states = self._fold("item", h0, edges)
        self._grow_items(self._item_rows(x, z, n), states)
        self.item_ids = IdMap(self.item_ids.ids + tuple(new_ids))
        self._popularity = torch.cat([self._popularity, torch.zeros(n)])
        title_column = data.item_text_columns[0] if data.item_text_columns else None
        for row, item_id in enumerate(new_ids):
            title = str(frame[title_column].iloc[row]) if title_column else item_id
            self._titles.append(title or item_id)
            self.paths.add_item(first + row, title or item_id, facts[row])
        self._added_x.append(x.detach().float().cpu())
        self._updates["items"].append({
            "rows": frame.to_dict(orient="records"), "triples": [list(t) for t in triples],
            "links": links, "entity_text": dict(entity_text or {})})
        attached = sum(int(v.size(1)) for v in edges.values())
        if skipped:
            log.info("add_items: %d edges attached, %d skipped (%s)", attached, len(skipped),
                     "; ".join(skipped[:5]))
        return AddedItems(tuple(new_ids), attached, tuple(skipped))

    def _separators(self) -> dict[str, str]:
        """The separator of each multi-valued categorical column, read off the data: the
        candidate whose parts are the column's known values (``"|"`` in CSV files, ``" "``
        in RecBole's token sequences)."""
        data, out = self.dataset, {}
        for column in data.item_categorical_columns:
            cells = data.item_table.get(column, ())
            for sep in ("|", ";", ",", " "):
                cell = next((str(c) for c in cells if sep in str(c)), None)
                if cell is not None and all(f"{column}:{part.strip()}" in data.entities
                                            for part in cell.split(sep) if part.strip()):
                    out[column] = sep
                    break
        return out

    def _attach(self, row: int, other: tuple[str, str], relation: str, outgoing: bool,
                in_edges: dict, facts: list, skipped: list[str], batch: dict[str, int]
                ) -> None:
        """Attach one fact of new item ``row``: the edge type the item receives messages on
        (the reverse of an outgoing relation), if the model has it and the other end is a
        node of the training graph or another item of this batch (``batch``: id -> row)."""
        data, (kind, raw) = self.dataset, other
        rel = data.relations.index(relation)
        name = self._relation_names[rel]
        if kind == "item" and raw in batch:
            # Another new item: fold-in reads its state as row num_items + its row.
            other_type, graph_index, fact_node = "item", self.num_items + batch[raw], None
        elif kind == "item":
            node = self.item_ids.get(raw)
            if node < 0 or node >= self._base_items:
                skipped.append(f"{relation} -> {raw}: not an item of the training graph")
                return
            other_type, graph_index = "item", node
            fact_node = ("item", node)
        elif data.entities.get(raw) in self._entity_items:
            # A KG entity that stands for an item of the training graph: item -> item.
            node = self._entity_items[data.entities.get(raw)]
            other_type, graph_index, fact_node = "item", node, ("item", node)
        else:
            entity = data.entities.get(raw)
            graph_index = self._entity_index[entity] if entity >= 0 else -1
            if graph_index < 0:
                skipped.append(f"{relation} -> {raw}: "
                               + ("an entity new to the graph" if entity < 0
                                  else "an entity pruned from the graph (a leaf)"))
                if entity >= 0:
                    facts[row].append((rel, ("entity", entity), not outgoing))
                return
            other_type, fact_node = "entity", ("entity", entity)
        forward = ("item", name, other_type) if outgoing else (other_type, name, "item")
        edge_type = reverse_edge_type(forward) if outgoing else forward
        if fact_node is not None:  # Paths run through the catalogue known before.
            facts[row].append((rel, fact_node, not outgoing))
        edge_type = self._edge_aliases.get(edge_type, edge_type)
        if edge_type not in self.model.gnn.edge_types:
            skipped.append(f"{relation} -> {raw}: edge type {edge_type} not in the model")
            return
        in_edges.setdefault(edge_type, []).append((row, graph_index))

    @torch.no_grad()
    def _item_rows(self, x: Tensor, z: Tensor, n: int) -> dict[str, Tensor]:
        """Each tower's vectors for ``n`` new items: the GNN's (with the centred text), zeros
        for the collaborative towers, which never saw them; and their content prior when the
        mix has a cold-start stage."""
        out = {"degree": torch.zeros(n, device=self.device)}
        if self.mix.cold is not None:
            out["prior"] = self.mix.cold.prior(x)
        for name, tower in self.mix.towers.items():
            out[name] = tower.item.new_zeros(n, tower.item.size(1))
        if self._text_columns is not None:
            # New items have no interactions: their text carries the cold items' boost.
            boost = self.model.text_boost(torch.ones(n, dtype=torch.bool, device=self.device))
            text = F.normalize(x.float() - self._item_mean, dim=-1)
            z = torch.cat([z, boost.unsqueeze(-1) * text], -1)
        out["gnn"] = z
        return out

    def _grow_items(self, rows: dict[str, Tensor], states: list[Tensor]) -> None:
        self._item_text_rows = None
        self.mix.add_items(rows, rows["degree"], rows.get("prior"))
        if self._index is not None:
            self._index.add_items(self.mix)
        for layer, state in zip(self._layers, states):
            layer["item"] = torch.cat([layer["item"], state])

    # ------------------------------------------------------------------ explanations
    @torch.no_grad()
    def explain(self, user_id: str, item_id: str, max_paths: int = 3) -> Explanation:
        """Why ``item_id`` suits ``user_id``: KG paths from the user's history, the nearest
        history items, and each scorer's share of the mixed score."""
        u, i = self._user_index(user_id), self._item_index(item_id)
        history = sorted(set(self._history[u]) | self._seen[u])
        paths = self.paths.paths(history, i, max_paths)
        z = self._gnn_items().cpu().numpy()
        near = cosine_top(z[i], z[history], 3) if history else []
        similar = tuple({"item_id": self.item_ids.ids[history[p]],
                         "title": self._titles[history[p]], "cosine": round(c, 4)}
                        for p, c in near if history[p] != i)
        shares, gate, score = self._shares(u, i)
        leaning = ("the graph-and-text side weighs " f"{gate:.0%}" if gate is not None
                   else "scored by the graph-and-text side alone")
        sentence = explanation_sentence(self._titles[i], paths, similar, leaning)
        return Explanation(str(user_id), str(item_id), score, shares, gate, tuple(paths),
                           similar, sentence)

    def _shares(self, u: int, i: int) -> tuple[dict[str, float], float | None, float]:
        """Each scorer's term of the mixed score at ``(u, i)`` and the GNN's weight there."""
        parts = self.mix.parts(torch.tensor([u], device=self.device))
        shares = {name: float(parts[name][0, i]) for name in self.mix.names}
        gate = float(parts["gate"][0, i]) if len(self.mix.names) > 1 else None
        return shares, gate, sum(shares.values())


def fit(dataset: Dataset, split: Split | None = None, config: RunConfig | None = None, *,
        device: str | torch.device | None = None) -> Recommender:
    """:meth:`Recommender.fit`: train on ``dataset`` and return the recommender."""
    return Recommender.fit(dataset, split, config, device=device)


def load(folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> Recommender:
    """:meth:`Recommender.load`: a run folder, in use."""
    return Recommender.load(folder, device)


def _prepared_entity_index(graph: Any, num_entities: int) -> np.ndarray:
    """Data-set entity index -> node index in the prepared graph (``-1``: pruned)."""
    index = np.full(num_entities, -1, dtype=np.int64)
    if "entity" in graph.node_types and "n_id" in graph["entity"]:
        n_id = graph["entity"].n_id.cpu().numpy()
        index[n_id] = np.arange(len(n_id))
    return index


def _mini_facts(mini: Dataset) -> Iterable[tuple[int, tuple[str, str], str, bool]]:
    """Facts of the items of a small data set: ``(item row, (kind, raw id) of the other end,
    relation, outgoing?)``. Linked entities stand for their items; the other end is an item
    only when it is a new item's entity (these are resolved later against the catalogue)."""
    item_of = {int(e): int(i) for i, e in mini.item_entity}
    for item, rel, entity in mini.item_attributes:
        yield int(item), ("entity", mini.entities.ids[entity]), mini.relations.ids[rel], True
    for head, rel, tail in mini.kg_triples:
        h, t, r = int(head), int(tail), mini.relations.ids[rel]
        if h in item_of:
            yield item_of[h], _end(mini, t, item_of), r, True
        if t in item_of:
            yield item_of[t], _end(mini, h, item_of), r, False


def _end(mini: Dataset, entity: int, item_of: dict[int, int]) -> tuple[str, str]:
    if entity in item_of:
        return "item", mini.items.ids[item_of[entity]]
    return "entity", mini.entities.ids[entity]
