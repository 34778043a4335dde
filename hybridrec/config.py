"""Run configuration: nested frozen dataclasses, saved as ``config.json`` in every run folder.

Modules never see these classes: they take plain ints and hyperparameters, and the
``from_config`` helpers (or :mod:`hybridrec.train`) do the mapping.

``RunConfig.from_dict`` rejects unknown keys and lists the valid ones; :func:`apply_overrides`
parses ``--set train.lr=0.005`` by the field's declared type.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SplitKind = Literal["random", "temporal", "leave-last-out", "cold-items", "cold-users", "files"]
Conv = Literal["rgcn", "sage", "graph", "lightgcn", "gat", "hgt"]
Loss = Literal["softmax", "bpr"]
Negatives = Literal["auto", "all", "warm"]


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split."""

    # "ml-100k" (built in) or the path of an interactions CSV (see hybridrec.cli_args).
    source: str = "ml-100k"
    # Loader options as strings: cache_dir, or for files items/users/kg/links/columns/... .
    options: dict[str, str] = field(default_factory=dict)
    # How the interactions are split into train / valid / test.
    split: SplitKind = "random"
    # Train / valid / test proportions (random, temporal, cold splits).
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # Fraction of items (cold-items) or users (cold-users) held out of training entirely.
    cold_fraction: float = 0.1
    # Seed of the split (the same seed gives the same split).
    split_seed: int = 0
    # User-supplied split files (split="files").
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    # Local text model folder (None: the shipped all-MiniLM-L6-v2).
    text_model: str | None = None
    # User texts list the user's most recent training items. Off by default: the GNN already
    # sees the history as edges (measured on ml-100k: no loss), and profile-only texts do not
    # depend on the split, so the text cache serves every split and seed.
    user_history: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """The hybrid's scorers: the GNN (:class:`hybridrec.models.GNNScorer`), the collaborative
    ones beside it and their mix (:class:`hybridrec.models.Mix`)."""

    # Width of every embedding and hidden layer.
    hidden_channels: int = 64
    # Message-passing layers of the GNN.
    num_layers: int = 2
    # The per-relation PyG operator of the GNN.
    conv: Conv = "rgcn"
    # The collaborative scorers beside the GNN: ALS (closed form, implicit) and, optionally, a
    # LightGCN. ALS's factors (32 won the validation grid of the ALS baseline).
    mf_channels: int = 32
    # ALS's L2 penalty and confidence of observed pairs (chosen on the validation part of the
    # ml-100k random split, as the ALS baseline's search).
    mf_regularization: float = 20.0
    mf_alpha: float = 3.0
    # Width of a LightGCN (BPR, early-stopped on validation like the baseline) in the mix beside
    # ALS, 0 = none. Its effect on test quality is in benchmarks/results/ml-100k-hybrid.
    mf_lightgcn_channels: int = 64
    # Upper bound on its epochs (it is early-stopped on validation when there is one).
    mf_lightgcn_epochs: int = 300
    # Its Adam learning rate and training pairs per step: twice the baseline's of each, which
    # halves its fit inside the hybrid at the same validation NDCG@20 of the hybrid (ml-100k,
    # 3 seeds; the README's training section has the figures).
    mf_lightgcn_lr: float = 1e-2
    mf_lightgcn_batch_size: int = 8192
    # Hidden width of the gate's MLPs.
    gate_hidden: int = 16
    # Dropout on the GNN's hidden layers.
    dropout: float = 0.0
    # Ablations: text features (else ID embeddings for every node), KG edges, the collaborative
    # scorers (ALS, LightGCN). The learned gate is opt-in: without it every scorer weighs the
    # same; validation kept a trained gate in few fits (see the README).
    use_text: bool = True
    use_kg: bool = True
    use_mf: bool = True
    use_gate: bool = False
    # Early-stop the GNN on its own validation metric, then choose its share of the fixed
    # mix's weights on validation (hybridrec.pipeline.MIX_SHARES); else the GNN is
    # early-stopped on the mix with every scorer alike. Not with the learned gate.
    mix_search: bool = False
    # Add a parameter-free text channel to the GNN score: cosine of the item's text and the
    # mean text of the user's training items (the text-only baseline), with a learned weight.
    text_channel: bool = True
    # GNN item nodes read text and KG only (not the users who interacted), so warm and cold
    # items are encoded alike; users still aggregate their items.
    content_items: bool = False
    # Drop KG entities linked to a single node (they cannot carry signal between items).
    prune_leaf_entities: bool = True
    # Score items without interactions (cold, or added after training) by the cold-start stage
    # (hybridrec.models.cold), chosen on validation, instead of mixing them as the others.
    # Opt-in: on ml-100k's cold-item split, validation keeps it and test loses NDCG (see the
    # README); new items then reach top lists only with it on.
    cold_start: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """How the scorers are fitted; see :func:`hybridrec.pipeline.fit_hybrid`."""

    # Upper bound on passes over the training interactions.
    epochs: int = 60
    # Positive (user, item) pairs per step.
    batch_size: int = 4096
    # Adam learning rate.
    lr: float = 0.005
    # L2 penalty on the ID embeddings a batch uses, as BPR/LightGCN (1e-4 .. 1e-2: same
    # validation NDCG@20 on ml-100k; the strong end as the tuned baselines prefer).
    weight_decay: float = 0.01
    # Ranking loss: sampled softmax over shared negatives, or BPR with one negative per positive.
    loss: Loss = "softmax"
    # Uniform negatives shared by a batch (softmax loss); at least the catalogue size means the
    # full softmax over every item (ml-100k: 1,682 items, a few ms per step).
    num_negatives: int = 4096
    # Where negatives come from: every item, or items with training interactions only ("warm":
    # an item that is never a positive is otherwise only pushed down, and the GNN learns to
    # bury exactly the held-out items it should rank from text and KG). "auto": warm when the
    # split holds items out by design (cold-items), else all (never-seen items of a random
    # split are rarely relevant; measured on ml-100k, all: +0.01 NDCG@20).
    negatives: Negatives = "auto"
    # Softmax temperature on the scores.
    temperature: float = 0.5
    # With the learned gate: the folds of the cross-fit. Every scorer is fitted again on all
    # folds but one, and the gate learns on the left-out fold's scores (on the scorers' own
    # pairs it would prefer whichever memorises them), so every training pair trains it and
    # the scorers it mixes are the ones fitted on every pair.
    gate_folds: int = 3
    # Upper bound on the gate's epochs (see trainer.train_gate).
    gate_epochs: int = 10
    # The gate's learning rate as a multiple of lr: a few hundred weights, a few epochs.
    gate_lr_scale: float = 10.0
    # Fraction of items whose ID embedding and interaction edges are masked per step
    # (simulated cold start, DropoutNet-style).
    cold_start_fraction: float = 0.1
    # Leave each batch's positive pairs out of the GNN's message passing that step, so
    # it never scores a pair by looking at its own edge (PyG's disjoint_train_ratio idea).
    drop_label_edges: bool = False
    # Gradient-norm clipping (0 = off).
    clip_grad_norm: float = 5.0
    # Early stopping: the validation metric, checked every eval_every epochs, and the number of
    # checks without improvement before stopping.
    # (3: on every ml-100k run recorded for the speed issue, the GNN's best epoch was never
    # followed by a better one after 3 worse ones; 5 cost two more epochs for nothing.)
    valid_metric: str = "ndcg@20"
    eval_every: int = 1
    patience: int = 3
    # Neighbour sampling for big graphs: neighbours per node and relation for each GNN layer,
    # outermost first (e.g. (10, 10)); each step then runs on its batch's sampled
    # neighbourhoods, at a cost that does not grow with the graph. Empty: full-graph steps.
    fanouts: tuple[int, ...] = ()
    # Seed of the parameters, the negatives and the cold-start masks.
    seed: int = 0
    # "auto" (CUDA when present), "cpu", "cuda", "cuda:1" ...
    device: str = "auto"
    # Mixed precision (bf16 autocast) on CUDA; ignored on CPU.
    amp: bool = True
    # CPU threads of torch in the training CLI (0 = torch's default). One is the fastest on a
    # small or shared machine: on a busy 2-core VM, 2 threads made a step 30x slower (threads
    # spin waiting for each other); the CLI fits the baselines in a second process instead.
    num_threads: int = 1
    # Progress bars.
    show_progress: bool = True


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to repeat a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        """Build from a nested dict; missing keys keep their defaults, unknown keys raise.

        Raises:
            ValueError: an unknown section or key (the message lists the valid ones), or a
                value of the wrong type.
        """
        return _from_dict(cls, data, where)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {err.lineno}: expected JSON ({err.msg})") from None
        except FileNotFoundError:
            raise ValueError(f"{path}: expected a config file (a run's config.json); it does "
                             f"not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{path}: expected a config file (a run's config.json); it is a "
                             f"folder") from None
        except OSError as err:
            raise ValueError(f"{path}: expected a readable config file "
                             f"({err.strerror or err})") from None
        except (UnicodeDecodeError, RecursionError):
            raise ValueError(f"{path}: expected a UTF-8 JSON config file") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with sections data/model/train")
        return cls.from_dict(data, where=str(path))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


#: Keys of earlier versions that only steered training, dropped when read so that the runs
#: saved with them still load (their models do not depend on them).
RETIRED_KEYS = {"TrainConfig": {"gate_holdout"}}  # replaced by the gate's cross-fit


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    retired = RETIRED_KEYS.get(cls.__name__, set())
    data = {k: v for k, v in data.items() if k not in retired}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(tp, value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check a JSON value against a field type; tuples from lists, ints accepted as floats."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(repr, args))
            raise ValueError(f"{where}: expected one of {choices}, got {value!r}")
        return value
    if origin is tuple and args[-1:] == (Ellipsis,):  # tuple[int, ...]: any length
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        return {str(k): _coerce(args[1], v, where) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _parse_text(tp: Any, text: str, where: str) -> Any:
    """A command-line string -> a value of the field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        return _parse_text(next(a for a in args if a is not type(None)), text, where)
    if origin is Literal:
        return _coerce(tp, text, where)
    if origin is tuple and args[-1:] == (Ellipsis,):  # "10,10"; "" or "none": empty
        if text.strip().lower() in ("", "none"):
            return ()
        return tuple(_parse_text(args[0], p.strip(), where) for p in text.split(","))
    if origin is tuple:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != len(args):
            raise ValueError(f"{where}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(_parse_text(a, p, where) for a, p in zip(args, parts))
    if origin is dict:
        raise ValueError(f"{where}: set a mapping in a --config file, not with --set")
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: expected true or false, got {text!r}")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise ValueError(f"{where}: expected {kind}, got {text!r}") from None
    return text


def apply_overrides(config: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings (``--set train.lr=0.005``), parsed by field type.

    Raises:
        ValueError: a malformed assignment, an unknown section or key, or a bad value.
    """
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) != 2:
            raise ValueError(f"--set {assignment!r}: expected section.key=value, "
                             f"e.g. train.lr=0.005")
        section, key = keys
        sections = [f.name for f in dataclasses.fields(RunConfig)]
        if section not in sections:
            raise ValueError(f"--set {assignment!r}: unknown section {section!r}; "
                             f"valid sections are {', '.join(sections)}")
        part = getattr(config, section)
        names = [f.name for f in dataclasses.fields(part)]
        if key not in names:
            raise ValueError(f"--set {assignment!r}: unknown key {key!r} in {section}; "
                             f"valid keys are {', '.join(names)}")
        value = _parse_text(_hints(type(part))[key], text.strip(), f"--set {path}")
        config = dataclasses.replace(config, **{section: dataclasses.replace(part, **{key: value})})
    return config
