"""The run artifact: one folder per trained model, JSON + safetensors only, written atomically.

A run folder holds:

* ``config.json``: the :class:`~hybridrec.config.RunConfig` (loadable with ``--config``);
* ``model.safetensors``: the GNN scorer's ``state_dict`` (fold-in of new users and items
  runs it);
* ``features.safetensors``: the text embeddings the model was trained on (``x.<node type>``,
  ``entity.has_text``);
* ``graph.safetensors``: the prepared training graph (``edge_index.<src>__<rel>__<dst>``,
  ``entity.n_id``);
* ``scorers.safetensors``: the hybrid as a scorer, :class:`~hybridrec.models.Mix`: each
  scorer's frozen user and item vectors (GNN, ALS, LightGCN), the weights, the gate if any;
* ``split.safetensors``: the train / valid / test pairs (and cold items / users) it was
  evaluated on;
* ``ids.json``: raw ids of users, items, entities (by original index) and relations;
* ``dataset.json`` + ``dataset.safetensors``: the data set itself (tables, KG, links; see
  :mod:`hybridrec.data.store`), so that the run can show titles and explain without the
  original files;
* ``updates.json`` + ``updates.safetensors`` (only after updates): the items and interactions
  a :class:`~hybridrec.Recommender` added after training, replayed on load;
* ``metrics.json``: ``{"test": {...}, "valid": {...}, ...}`` from
  :func:`hybridrec.evaluation.evaluate` (lower-case ``recall@20``; popularity and cold
  breakdowns inside), plus ``"gate"`` (mean gate per popularity bucket and for cold items) and
  ``"gate_candidate"`` (the same for a trained gate that validation turned down, else null);
* ``run.json``: format, history, timings, library versions;
* ``train.log``: the training log.

Everything is written into ``<folder>.tmp-<pid>`` and then moved into place with
``os.replace``; nothing is pickled, and :func:`load_run` reads it all back with safetensors and
json.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor
from torch_geometric.data import HeteroData

from hybridrec.config import RunConfig
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.data.split import Split
from hybridrec.data.store import read_dataset, write_dataset
from hybridrec.models.gnn_scorer import GNNScorer
from hybridrec.models.mix import Mix
from hybridrec.tensor_files import read_tensors

log = logging.getLogger(__name__)

FORMAT = "hybridrec-run/7"  # 6: data set and updates inside; 7: the hybrid as a mix of scorers
FILES = ("config.json", "model.safetensors", "features.safetensors", "graph.safetensors",
         "scorers.safetensors", "split.safetensors", "ids.json", "metrics.json", "run.json",
         "train.log", "dataset.json", "dataset.safetensors")
UPDATE_FILES = ("updates.json", "updates.safetensors")


@dataclass
class Run:
    """A loaded run: everything needed to score, re-evaluate or keep training.

    Attributes:
        folder: where it was read from.
        config: the run's configuration.
        model: the trained GNN scorer (eval mode).
        graph: the prepared training graph with its features.
        scorer: the hybrid, a :class:`~hybridrec.models.Mix` of frozen scorers.
        split: the split it was evaluated on.
        ids: ``users`` / ``items`` / ``entities`` / ``relations`` id maps.
        metrics: the content of ``metrics.json``.
        info: the content of ``run.json``.
        dataset: the data set it was trained on.
        updates: ``(json, tensors)`` of the updates made after training (``None``: none).
    """

    folder: Path
    config: RunConfig
    model: GNNScorer
    graph: HeteroData
    scorer: Mix
    split: Split
    ids: dict[str, IdMap]
    metrics: dict[str, Any]
    info: dict[str, Any]
    dataset: Dataset
    updates: tuple[dict[str, Any], dict[str, Tensor]] | None = None


def json_ready(value: Any) -> Any:
    """Replace NaN / inf by ``None`` and tuples by lists, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return json_ready(value.item())
    return value


def _edge_key(edge_type: tuple[str, str, str]) -> str:
    return "edge_index." + "__".join(edge_type)


def graph_tensors(data: HeteroData) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(features, graph)`` tensor dicts of a prepared graph, as the run files store them."""
    features, graph = {}, {}
    for t in data.node_types:
        graph[f"num_nodes.{t}"] = torch.tensor([int(data[t].num_nodes)])
        if "x" in data[t]:
            features[f"x.{t}"] = data[t].x.detach().float().cpu().contiguous()
    if "entity" in data.node_types:
        if "has_text" in data["entity"]:
            features["entity.has_text"] = data["entity"].has_text.cpu().contiguous()
        if "n_id" in data["entity"]:
            graph["entity.n_id"] = data["entity"].n_id.cpu().contiguous()
    for e in data.edge_types:
        graph[_edge_key(e)] = data[e].edge_index.cpu().contiguous()
    return features, graph


def graph_metadata(data: HeteroData) -> dict[str, str]:
    """The node and edge type order (which the model's relation weights follow), as
    safetensors metadata."""
    aliases = getattr(data, "edge_aliases", None) or {}
    return {"node_types": json.dumps(list(data.node_types)),
            "edge_types": json.dumps([list(e) for e in data.edge_types]),
            "edge_aliases": json.dumps([[list(e), list(t)] for e, t in aliases.items()])}


def graph_from_tensors(features: dict[str, Tensor], graph: dict[str, Tensor],
                       metadata: dict[str, str]) -> HeteroData:
    """The inverse of :func:`graph_tensors`, with types in the order of ``metadata``."""
    data = HeteroData()
    for t in json.loads(metadata["node_types"]):
        data[t].num_nodes = int(graph[f"num_nodes.{t}"][0])
        if f"x.{t}" in features:
            data[t].x = features[f"x.{t}"]
    if "entity.has_text" in features:
        data["entity"].has_text = features["entity.has_text"]
    if "entity.n_id" in graph:
        data["entity"].n_id = graph["entity.n_id"]
    for e in json.loads(metadata["edge_types"]):
        data[tuple(e)].edge_index = graph[_edge_key(tuple(e))]
    data.edge_aliases = {tuple(e): tuple(t)
                         for e, t in json.loads(metadata.get("edge_aliases", "[]"))}
    return data


def _split_tensors(split: Split) -> dict[str, Tensor]:
    out = {}
    for part in ("train", "valid", "test"):
        inter: Interactions = getattr(split, part)
        out[f"{part}.user_index"] = torch.from_numpy(np.array(inter.user_index))
        out[f"{part}.item_index"] = torch.from_numpy(np.array(inter.item_index))
        if inter.rating is not None:
            out[f"{part}.rating"] = torch.from_numpy(np.array(inter.rating))
        if inter.timestamp is not None:
            out[f"{part}.timestamp"] = torch.from_numpy(np.array(inter.timestamp))
    out["cold_items"] = torch.from_numpy(np.array(split.cold_items))
    out["cold_users"] = torch.from_numpy(np.array(split.cold_users))
    return out


def _split_from_tensors(tensors: dict[str, Tensor], kind: str, seed: int | None) -> Split:
    parts = []
    for part in ("train", "valid", "test"):
        get = lambda name: (tensors[f"{part}.{name}"].numpy()  # noqa: E731
                            if f"{part}.{name}" in tensors else None)
        parts.append(Interactions(get("user_index"), get("item_index"), get("rating"),
                                  get("timestamp")))
    return Split(kind, *parts, cold_items=tensors["cold_items"].numpy(),
                 cold_users=tensors["cold_users"].numpy(), seed=seed)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(json_ready(value), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def save_run(
    folder: str | os.PathLike[str],
    *,
    config: RunConfig,
    model: GNNScorer,
    scorer: Mix,
    graph: HeteroData,
    split: Split,
    ids: dict[str, IdMap],
    metrics: dict[str, Any],
    dataset: Dataset,
    info: dict[str, Any] | None = None,
    log_text: str = "",
    updates: tuple[dict[str, Any], dict[str, Tensor]] | None = None,
) -> Path:
    """Write a run folder (see the module docstring), atomically.

    The files go to ``<folder>.tmp-<pid>``, which then replaces ``folder``. An existing
    ``folder`` is moved aside first and deleted after the move, so a kill leaves either the
    old run, or the new one, or (in a window of two renames) the old one under
    ``<folder>.old-<pid>``.

    Args:
        folder: the run folder.
        config: the run's configuration.
        model: the trained GNN scorer.
        scorer: the hybrid (the mix of frozen scorers).
        graph: the prepared training graph the model was fitted on (with features).
        split: the split it was evaluated on.
        ids: ``users`` / ``items`` / ``entities`` / ``relations`` id maps of the data set.
        metrics: evaluation results (``{"test": ..., "valid": ...}``).
        dataset: the data set (written with :func:`~hybridrec.data.store.write_dataset`).
        info: more JSON for ``run.json`` (history, timings ...).
        log_text: the training log.
        updates: ``(json, tensors)`` describing updates after training (default: none).
    """
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"format": FORMAT}

    config.save(tmp / "config.json")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata=meta)
    features, edges = graph_tensors(graph)
    save_file(features, str(tmp / "features.safetensors"), metadata=meta)
    save_file(edges, str(tmp / "graph.safetensors"), metadata={**meta, **graph_metadata(graph)})
    scorer.save(tmp / "scorers.safetensors")
    save_file(_split_tensors(split), str(tmp / "split.safetensors"),
              metadata={**meta, "kind": split.kind,
                        "seed": "" if split.seed is None else str(split.seed)})
    _write_json(tmp / "ids.json", {name: m.to_list() for name, m in ids.items()})
    _write_json(tmp / "metrics.json", metrics)
    _write_json(tmp / "run.json", {"format": FORMAT, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "torch": torch.__version__, **(info or {})})
    (tmp / "train.log").write_text(log_text, encoding="utf-8")
    write_dataset(dataset, tmp)
    if updates is not None:
        _write_json(tmp / "updates.json", {"format": FORMAT, **updates[0]})
        save_file(updates[1], str(tmp / "updates.safetensors"), metadata=meta)

    if folder.exists():
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    log.info("Saved run to %s", folder)
    return folder


def _read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise DataError(path, "a file of the run folder; it does not exist (an unfinished or "
                              "foreign folder?)")
    tensors, metadata = read_tensors(path)
    if metadata.get("format") != FORMAT:
        raise DataError(path, f"format {FORMAT!r}, got {metadata.get('format')!r}",
                        field="format")
    return tensors, metadata


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "a file of the run folder; it does not exist") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"valid JSON ({err.msg})", line=err.lineno) from None


def load_run(folder: str | os.PathLike[str], device: str | torch.device | None = "cpu") -> Run:
    """Read a run folder written by :func:`save_run` (no pickle).

    Args:
        folder: the run folder.
        device: where to put the model and scorer (default: ``"cpu"``).

    Raises:
        DataError: a missing, unreadable or foreign file.
    """
    folder = Path(folder)
    info = _read_json(folder / "run.json")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise DataError(folder / "run.json", f"format {FORMAT!r}, got {found!r}: this run was "
                        "written by another version of hybridrec; retrain it with "
                        "python -m hybridrec.train", field="format")
    try:
        config = RunConfig.load(folder / "config.json")
    except ValueError as err:
        raise DataError(folder / "config.json", str(err)) from None
    features, _ = _read_tensors(folder / "features.safetensors")
    edges, graph_meta = _read_tensors(folder / "graph.safetensors")
    graph = graph_from_tensors(features, edges, graph_meta)
    state, _ = _read_tensors(folder / "model.safetensors")
    model = GNNScorer.from_config(config.model, graph)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(folder / "model.safetensors", f"weights that fit config.json ({err})") \
            from None
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device).eval()
    scorer = load_scorer(folder, device)
    split_tensors, split_meta = _read_tensors(folder / "split.safetensors")
    seed = split_meta.get("seed") or None
    split = _split_from_tensors(split_tensors, split_meta.get("kind", "unknown"),
                                int(seed) if seed is not None else None)
    ids = {name: IdMap(values) for name, values in _read_json(folder / "ids.json").items()}
    metrics = _read_json(folder / "metrics.json")
    dataset = read_dataset(folder)
    updates = None
    if (folder / "updates.json").is_file():
        tensors, _ = _read_tensors(folder / "updates.safetensors")
        updates = (_read_json(folder / "updates.json"), tensors)
    return Run(folder, config, model, graph, scorer, split, ids, metrics, info, dataset, updates)


def load_scorer(folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> Mix:
    """The hybrid as a scorer from ``scorers.safetensors`` alone (no GNN; for serving)."""
    path = Path(folder) / "scorers.safetensors"
    if not path.is_file():
        raise DataError(path, "a file of the run folder; it does not exist")
    try:
        return Mix.load(path, device)
    except (ValueError, KeyError) as err:
        raise DataError(path, f"a saved mix of scorers ({err})") from None
