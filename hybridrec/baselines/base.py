"""Shared plumbing for the baselines: parameters, fitted checks, scoring guard, save / load.

Baselines follow scikit-learn: ``__init__`` stores keyword arguments, ``fit(train, num_users,
num_items, ...)`` learns and returns ``self``, learned attributes end in ``_``. They score
through :class:`~hybridrec.scoring.Scorer` and save as ``scorer.json`` (class, parameters,
sizes) plus ``scorer.safetensors`` (learned tensors) in one folder; no pickle.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_file
from torch import Tensor

from hybridrec.device import pick_device
from hybridrec.scoring import Scorer, check_user_index
from hybridrec.data.errors import DataError
from hybridrec.tensor_files import check_finite, check_layout, read_tensors

log = logging.getLogger(__name__)

__all__ = ["BaseScorer", "Callback", "NotFittedError", "Scorer", "sparse_csr"]

#: ``callback(epoch, scorer) -> stop?``, called after each epoch of iterative baselines.
Callback = Callable[[int, "BaseScorer"], bool | None]

_FORMAT = 1


def sparse_csr(index: Tensor, value: Tensor, size: tuple[int, int],
               device: torch.device) -> Tensor:
    """A sparse CSR matrix from COO ``index [2, nnz]`` and ``value [nnz]`` (duplicates summed).

    CSR, not COO: ``torch.sparse.mm`` with a CSR left factor is several times faster on CPU.
    """
    coo = torch.sparse_coo_tensor(index, value, size, check_invariants=True).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return coo.to_sparse_csr().to(device)


def check_history(path: Path, indptr: Tensor, indices: Tensor, num_users: int,
                  num_items: int) -> None:
    """Refuse a loaded history (``history_indptr`` / ``history_indices``, the CSR of
    :class:`~hybridrec.scoring.UserItems`) that is not ``num_users`` rows of item indices."""
    if (len(indptr) != num_users + 1 or int(indptr[0]) != 0
            or int(indptr[-1]) != len(indices) or bool((indptr[1:] < indptr[:-1]).any())):
        raise DataError(path, f"{num_users + 1} rising row pointers from 0 to {len(indices)}",
                        field="history_indptr", field_kind="tensor")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_items):
        raise DataError(path, f"item indices in [0, {num_items})", field="history_indices",
                        field_kind="tensor")


class NotFittedError(RuntimeError):
    """``score`` or ``save`` was called before ``fit``."""


class BaseScorer:
    """Base of every baseline scorer.

    Subclasses implement ``fit`` (setting ``num_users_``, ``num_items_``, ``device_`` and their
    own learned tensors), ``_score(user_index) -> [B, num_items]`` for valid, non-empty input on
    ``device_``, and ``_state() / _load_state()`` listing the learned tensors.
    """

    #: The small grid searched on validation NDCG@20: parameter -> candidate values.
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: Whether ``fit`` runs epochs and accepts ``callback`` (early stopping then applies).
    iterative: ClassVar[bool] = False
    _classes: ClassVar[dict[str, type[BaseScorer]]] = {}
    #: The learned tensors as saved: name -> (safetensors dtype, shape pattern), ``"U"`` /
    #: ``"I"`` standing for ``num_users_`` / ``num_items_`` (see
    #: :func:`~hybridrec.tensor_files.check_layout`); :meth:`load` checks a file against it
    #: before allocating anything.
    state_layout: ClassVar[dict[str, tuple[str, tuple[int | str | None, ...]]]] = {}

    num_users_: int
    num_items_: int
    device_: torch.device

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        BaseScorer._classes[cls.__name__] = cls

    # Parameters, as in scikit-learn.
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, torch.device) else value
        return out

    def set_params(self, **params: Any) -> BaseScorer:
        """Change constructor arguments (takes effect at the next ``fit``)."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__}: unknown parameter {name!r}; valid: "
                                 f"{sorted(valid)}")
            setattr(self, name, value)
        return self

    def clone(self, **params: Any) -> BaseScorer:
        """A new, unfitted scorer with the same (or overridden) parameters."""
        return type(self)(**{**self.get_params(), **params})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # Fitting bookkeeping.
    def _start_fit(self, num_users: int, num_items: int, device: Any) -> None:
        if num_users < 1 or num_items < 1:
            raise ValueError(f"{type(self).__name__}.fit: need num_users >= 1 and "
                             f"num_items >= 1, got {num_users} and {num_items}")
        self.num_users_ = int(num_users)
        self.num_items_ = int(num_items)
        self.device_ = pick_device(device)

    def _check_fitted(self, what: str) -> None:
        if not hasattr(self, "num_items_"):
            raise NotFittedError(f"{type(self).__name__}.{what}: call fit() first")

    # Scoring.
    def score(self, user_index: Tensor) -> Tensor:
        """Scores of every item for the given users.

        Args:
            user_index: ``int64 [B]`` contiguous user indices, on any device.

        Shapes:
            - **output:** ``float [B, num_items]`` on ``device_``.
        """
        self._check_fitted("score")
        index = check_user_index(user_index, self.num_users_, type(self).__name__)
        if index.numel() == 0:
            return torch.zeros(0, self.num_items_, device=self.device_)
        with torch.no_grad():
            return self._score(index.to(self.device_))

    def _score(self, user_index: Tensor) -> Tensor:
        raise NotImplementedError

    # Learned state.
    def _state(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def state_tensors(self) -> dict[str, Tensor]:
        """Copies of the learned tensors (used for saving and for keeping a best epoch)."""
        self._check_fitted("state_tensors")
        return {k: v.detach().clone() for k, v in self._state().items()}

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Put back tensors from :meth:`state_tensors`."""
        self._load_state({k: v.to(self.device_) for k, v in state.items()})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``scorer.json`` and ``scorer.safetensors`` into folder ``path``; returns it."""
        self._check_fitted("save")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "class": type(self).__name__, "params": self.get_params(),
                "num_users": self.num_users_, "num_items": self.num_items_}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state().items()}
        tmp = folder / "scorer.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, folder / "scorer.safetensors")
        tmp = folder / "scorer.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, folder / "scorer.json")
        log.debug("Saved %s to %s", type(self).__name__, folder)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: Any = None) -> BaseScorer:
        """Read a folder written by :meth:`save`.

        Called on :class:`BaseScorer` it builds whichever baseline the folder holds; called on
        a subclass it insists on that class.

        Args:
            path: the folder.
            device: where to put the tensors (default: the saved ``device`` parameter, else
                automatic).
        """
        folder = Path(path)
        meta_path = folder / "scorer.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(meta_path, "a saved scorer; there is none here") from None
        except OSError as err:
            raise DataError(meta_path, f"a readable file ({err.strerror or err})") from None
        except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
            raise DataError(meta_path, f"valid JSON ({str(err)[:200]})") from None

        def bad(expected: str, key: str) -> DataError:
            return DataError(meta_path, expected, field=key, field_kind="key")

        if not isinstance(meta, dict):
            raise DataError(meta_path, "a JSON object")
        for key in ("format", "class", "params", "num_users", "num_items"):
            if key not in meta:
                raise bad("this key; it is missing", key)
        if meta["format"] != _FORMAT:
            raise bad(f"format {_FORMAT}, got {str(meta['format'])[:40]}", "format")
        target = BaseScorer._classes.get(meta["class"]) if isinstance(meta["class"], str) \
            else None
        if target is None or not issubclass(target, cls):
            raise bad(f"holds a {str(meta['class'])[:80]!r}, expected a {cls.__name__}",
                      "class")
        sizes = {}
        for key, size in (("num_users", "U"), ("num_items", "I")):
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"a positive integer, got {str(value)[:40]}", key)
            sizes[size] = value
        if not isinstance(meta["params"], dict):
            raise bad("an object of parameters", "params")
        try:
            scorer = target(**meta["params"])
        except (TypeError, ValueError) as err:
            raise bad(f"the parameters of {target.__name__} ({err})", "params") from None
        # Widths named after an integer parameter must equal it (a model is built from it).
        sizes.update({k: v for k, v in meta["params"].items()
                      if isinstance(v, int) and not isinstance(v, bool)})
        state, _ = read_tensors(folder / "scorer.safetensors", lambda header: check_layout(
            header, target.state_layout, sizes=sizes))
        check_finite(folder / "scorer.safetensors", state)
        scorer._check_state(folder / "scorer.safetensors", state, sizes["U"], sizes["I"])
        try:
            scorer._start_fit(sizes["U"], sizes["I"], device if device is not None
                              else meta["params"].get("device"))
        except (ValueError, RuntimeError) as err:  # a device this machine does not have
            raise bad(f"a device this machine has ({err})", "params") from None
        scorer._load_state({k: v.to(scorer.device_) for k, v in state.items()})
        return scorer

    def _check_state(self, path: Path, state: dict[str, Tensor], num_users: int,
                     num_items: int) -> None:
        """Refuse loaded tensors whose values cannot be this scorer's (indices out of range
        ...); the names and shapes are already those of :attr:`state_layout`."""
