"""Mix: the hybrid as a scorer of scorers. Each part is a frozen dot-product scorer (a
*tower*: one vector per user, one per item); the mix standardises each part's scores per user
and adds them with fixed weights, or with the learned gate."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from hybridrec.models.cold import ColdStart
from hybridrec.models.gate import ScoreGate
from hybridrec.scoring import check_user_index
from hybridrec.tensor_files import read_tensors

FORMAT = "hybridrec-mix/2"


@dataclass
class Tower:
    """A fitted dot-product scorer, frozen: ``s(u, i) = user[u] · item[i]``.

    ``user``: ``[U, d]``; ``item``: ``[I, d]``. A user or item the scorer knows nothing of
    has a zero row, so it scores 0 against everything.
    """

    user: Tensor
    item: Tensor

    @classmethod
    def from_scorer(cls, user: Tensor, item: Tensor, user_known: Tensor | None = None,
                    item_known: Tensor | None = None) -> Tower:
        """A tower of the factors of a fitted scorer, with the rows of nodes it never saw in
        training zeroed (an ID scorer's vector for them is noise, not knowledge)."""
        user, item = user.detach().float().clone(), item.detach().float().clone()
        if user_known is not None:
            user[~user_known.to(user.device)] = 0
        if item_known is not None:
            item[~item_known.to(item.device)] = 0
        return cls(user, item)


class Mix:
    r"""Scores of several towers, standardised per user and mixed.

    .. math::
        s(u, i) = \sum_k w_k\, \tilde s_k(u, i), \qquad
        \tilde s_k(u, i) = \frac{s_k(u, i) - \mu_{k,u}}{\sigma_{k,u}}

    with :math:`\mu_{k,u}, \sigma_{k,u}` the mean and deviation of tower :math:`k`'s scores
    for user :math:`u` over the catalogue (the raw ranges differ by tower and user) and
    weights :math:`w_k` summing to 1. With a learned gate the first tower (the GNN) gets
    :math:`g(u, i)` (:class:`~hybridrec.models.ScoreGate`) and the others share
    :math:`1 - g(u, i)` in proportion to their weights:

    .. math::
        s(u, i) = g(u, i)\, \tilde s_1(u, i)
            + \big(1 - g(u, i)\big) \sum_{k > 1} \frac{w_k}{\sum_{j > 1} w_j}\, \tilde s_k(u, i)

    The gate reads per-node signals: :math:`\log(1 + \deg)` in the training graph and the
    norms of the node's first two towers' vectors.

    Items of degree 0 (no ID signal: cold, or added after training) are scored by the
    :class:`~hybridrec.models.cold.ColdStart` stage instead when there is one.

    Args:
        towers: name -> :class:`Tower`, the gated one (the GNN) first.
        weights: name -> weight (default: every tower alike).
        user_degree / item_degree: training-graph degrees ``[U]`` / ``[I]``.
        gate: a :class:`ScoreGate` over the first tower, or ``None`` for fixed weights.
        cold: the stage for items of degree 0, with ``item_prior``, their content prior ``[I]``
            (:meth:`ColdStart.prior` of every item; only degree-0 items read it).
    """

    def __init__(self, towers: dict[str, Tower], user_degree: Tensor, item_degree: Tensor,
                 weights: dict[str, float] | None = None, gate: ScoreGate | None = None,
                 cold: ColdStart | None = None, item_prior: Tensor | None = None) -> None:
        if not towers:
            raise ValueError("Mix: needs at least one tower")
        weights = weights or {name: 1.0 for name in towers}
        if set(weights) != set(towers) or min(weights.values()) <= 0:
            raise ValueError(f"Mix: one positive weight per tower ({list(towers)}), got "
                             f"{weights}")
        if gate is not None and len(towers) < 2:
            raise ValueError("Mix: a gate needs at least two towers")
        total = sum(weights.values())
        self.towers = dict(towers)
        self.weights = {name: weights[name] / total for name in towers}
        self.user_degree = user_degree.float()
        self.item_degree = item_degree.float()
        self.gate = gate
        self.user_gate: Tensor | None = None
        self.item_gate: Tensor | None = None
        self.refresh_gate()
        self.cold: ColdStart | None = None
        self.item_prior: Tensor | None = None
        self.set_cold(cold, item_prior)

    def set_cold(self, cold: ColdStart | None, item_prior: Tensor | None = None) -> None:
        """Score items of degree 0 with ``cold`` (``None``: as the other items)."""
        if cold is not None and (item_prior is None or item_prior.shape != (self.num_items,)):
            raise ValueError(f"Mix: a cold-start stage needs item_prior [{self.num_items}]")
        self.cold = None if cold is None else cold.to(self.device)
        self.item_prior = None if cold is None else item_prior.float().to(self.device)

    # Sizes and placement.
    @property
    def names(self) -> list[str]:
        return list(self.towers)

    @property
    def num_users(self) -> int:
        return next(iter(self.towers.values())).user.size(0)

    @property
    def num_items(self) -> int:
        return next(iter(self.towers.values())).item.size(0)

    @property
    def device(self) -> torch.device:
        return next(iter(self.towers.values())).user.device

    def to(self, device: torch.device | str) -> Mix:
        self.towers = {k: Tower(t.user.to(device), t.item.to(device))
                       for k, t in self.towers.items()}
        self.user_degree, self.item_degree = self.user_degree.to(device), \
            self.item_degree.to(device)
        if self.gate is not None:
            self.gate.to(device)
        self.refresh_gate()
        self.set_cold(self.cold, self.item_prior)
        return self

    def copy(self) -> Mix:
        """A copy whose tables can grow and change without touching this mix (the gate
        module is shared: nothing here trains it)."""
        towers = {k: Tower(t.user.clone(), t.item.clone()) for k, t in self.towers.items()}
        return Mix(towers, self.user_degree.clone(), self.item_degree.clone(), self.weights,
                   self.gate, self.cold,
                   None if self.item_prior is None else self.item_prior.clone())

    # The gate.
    def gate_signals(self, degree: Tensor, *vectors: Tensor) -> Tensor:
        """:meth:`ScoreGate.signals` of nodes from their degree and first two tower rows."""
        return ScoreGate.signals(degree, *vectors[:2])

    def gate_logits(self, users: Tensor | None = None, items: Tensor | None = None
                    ) -> tuple[Tensor, Tensor]:
        """Gate logits of all users ``[U]`` and items ``[I]`` (differentiable in the gate)."""
        first = list(self.towers.values())[:2]
        u = self.gate_signals(self.user_degree, *[t.user for t in first])
        i = self.gate_signals(self.item_degree, *[t.item for t in first])
        return self.gate(u, i)

    def refresh_gate(self) -> None:
        """Recompute the cached gate logits (after the towers or degrees changed)."""
        if self.gate is None:
            self.user_gate = self.item_gate = None
            return
        with torch.no_grad():
            self.user_gate, self.item_gate = self.gate_logits()

    @property
    def fixed_gate(self) -> float:
        """The first tower's weight: the mix a fresh gate starts from."""
        return self.weights[self.names[0]]

    # Scores.
    def parts(self, user_index: Tensor, user_gate: Tensor | None = None,
              item_gate: Tensor | None = None) -> dict[str, Tensor]:
        """Each tower's weighted standardised scores ``[B, I]`` (they sum to :meth:`score`),
        and ``"gate"``: the first tower's weight ``[B, I]`` (a constant without a gate).
        ``user_gate`` / ``item_gate``: logits to use instead of the cached ones (training)."""
        users = {name: t.user.index_select(0, user_index) for name, t in self.towers.items()}
        logits = None
        if self.gate is not None:
            logits = (self.user_gate if user_gate is None else user_gate).index_select(
                0, user_index)
        return self.parts_of(users, logits, item_gate)

    def parts_of(self, users: dict[str, Tensor], user_gate: Tensor | None = None,
                 item_gate: Tensor | None = None) -> dict[str, Tensor]:
        """:meth:`parts` for users given by their vectors (``{tower: [B, d]}``) and gate
        logits ``[B]``, such as users folded in and not stored."""
        out: dict[str, Tensor] = {}
        z = {name: _standardise(users[name] @ t.item.t())  # [B, I]
             for name, t in self.towers.items()}
        first, rest = self.names[0], self.names[1:]
        if self.gate is None:
            gate = torch.full_like(z[first], self.weights[first])
        else:
            b = self.item_gate if item_gate is None else item_gate
            gate = torch.sigmoid(user_gate.unsqueeze(-1) + b.unsqueeze(0))
        out[first] = gate * z[first]
        rest_total = sum(self.weights[name] for name in rest)
        for name in rest:
            out[name] = (1 - gate) * (self.weights[name] / rest_total) * z[name]
        out["gate"] = gate
        if self.cold is not None:
            self._score_cold(out, z[first])
        return out

    def _score_cold(self, parts: dict[str, Tensor], z_content: Tensor) -> None:
        """Degree-0 items' columns of ``parts``, in place: the content tower's part becomes
        the :class:`ColdStart` score, the other towers' parts 0, the gate 1."""
        cold = self.item_degree == 0  # [I]
        if not bool(cold.any()):
            return
        c = self.cold
        value = c.scale * z_content + c.shift + c.prior_scale * self.item_prior.unsqueeze(0)
        first = self.names[0]
        parts[first] = torch.where(cold, value, parts[first])
        for name in self.names[1:]:
            parts[name] = parts[name].masked_fill(cold, 0.0)
        parts["gate"] = parts["gate"].masked_fill(cold, 1.0)

    def score(self, user_index: Tensor) -> Tensor:
        """Mixed scores of every item for each user: ``[B, num_items]`` float32."""
        user_index = check_user_index(user_index, self.num_users, "Mix").to(self.device)
        if user_index.numel() == 0:
            return torch.zeros(0, self.num_items)
        with torch.no_grad():
            parts = self.parts(user_index)
            return sum(parts[name] for name in self.names)

    def user_gate_logits(self, users: dict[str, Tensor], degree: Tensor) -> Tensor | None:
        """Gate logits ``[B]`` of users given by their vectors and degrees (``None`` without
        a gate)."""
        if self.gate is None:
            return None
        signals = self.gate_signals(degree.float(), *[users[n] for n in self.names[:2]])
        with torch.no_grad():
            return self.gate(signals, signals)[0]

    def set_users(self, index: list[int], users: dict[str, Tensor], degree: Tensor) -> None:
        """Write the rows of users ``index`` (new indices past the end grow the tables)."""
        grow = max(index) + 1 - self.num_users
        rows = torch.tensor(index, device=self.device)
        for name, t in self.towers.items():
            table = t.user.clone() if grow <= 0 else torch.cat(
                [t.user, t.user.new_zeros(grow, t.user.size(1))])
            table[rows] = users[name].to(table.dtype)
            t.user = table
        deg = self.user_degree if grow <= 0 else torch.cat([self.user_degree,
                                                            self.user_degree.new_zeros(grow)])
        deg = deg.clone()
        deg[rows] = degree.to(deg.dtype)
        self.user_degree = deg
        self.refresh_gate()

    def add_items(self, items: dict[str, Tensor], degree: Tensor, prior: Tensor | None = None
                  ) -> None:
        """Append items given by their vectors (``{tower: [N, d]}``), degrees ``[N]`` and,
        with a cold-start stage, content priors ``[N]`` (:meth:`ColdStart.prior`)."""
        if self.cold is not None and (prior is None or prior.shape != degree.shape):
            raise ValueError(f"Mix.add_items: the cold-start stage needs a prior per item "
                             f"[{len(degree)}]")
        for name, t in self.towers.items():
            t.item = torch.cat([t.item, items[name].to(t.item.dtype)])
        self.item_degree = torch.cat([self.item_degree, degree.to(self.item_degree.dtype)])
        if self.cold is not None:
            self.item_prior = torch.cat([self.item_prior, prior.float().to(self.device)])
        self.refresh_gate()

    def mixed(self, user_index: Tensor, user_gate: Tensor, item_gate: Tensor) -> Tensor:
        """:meth:`score` with the given gate logits, differentiable in them (the gate's
        training)."""
        parts = self.parts(user_index, user_gate, item_gate)
        return sum(parts[name] for name in self.names)

    def mean_gate(self, batch_size: int = 1024) -> Tensor | None:
        """The gate averaged over users, per item: ``[num_items]`` (``None`` without)."""
        if self.gate is None:
            return None
        total = torch.zeros(self.num_items, device=self.device)
        with torch.no_grad():
            for start in range(0, self.num_users, batch_size):
                users = torch.arange(start, min(start + batch_size, self.num_users),
                                     device=self.device)
                a = self.user_gate.index_select(0, users)
                total += torch.sigmoid(a.unsqueeze(-1) + self.item_gate.unsqueeze(0)).sum(0)
        return total / self.num_users

    # Files: one safetensors file, the layout in its metadata.
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` (the caller makes it atomic)."""
        tensors = {"user_degree": self.user_degree.cpu().contiguous(),
                   "item_degree": self.item_degree.cpu().contiguous()}
        for name, t in self.towers.items():
            tensors[f"tower.{name}.user"] = t.user.detach().float().cpu().contiguous()
            tensors[f"tower.{name}.item"] = t.item.detach().float().cpu().contiguous()
        meta = {"names": self.names, "weights": self.weights, "gate": None, "cold": None}
        if self.gate is not None:
            meta["gate"] = {"num_signals": self.gate.num_signals,
                            "hidden_channels": self.gate.hidden_channels,
                            "prior": self.gate.prior}
            tensors.update({f"gate.{k}": v.detach().cpu().contiguous()
                            for k, v in self.gate.state_dict().items()})
        if self.cold is not None:
            meta["cold"] = self.cold.settings()
            tensors["cold.weight"] = self.cold.weight.detach().float().cpu().contiguous()
            tensors["cold.item_prior"] = self.item_prior.detach().float().cpu().contiguous()
        save_file(tensors, str(path), metadata={"format": FORMAT, "mix": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Mix:
        """Read a file of :meth:`save` (no pickle). :func:`hybridrec.run.load_scorer` reads
        it with every name and shape checked first."""
        tensors, metadata = read_tensors(Path(path))
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path}: expected a {FORMAT} file, got format "
                             f"{metadata.get('format')!r}")
        return cls.from_tensors(tensors, json.loads(metadata["mix"]), device)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], meta: dict,
                     device: torch.device | str = "cpu") -> Mix:
        """The inverse of :meth:`save`, from its tensors and its ``mix`` metadata."""
        towers = {name: Tower(tensors[f"tower.{name}.user"], tensors[f"tower.{name}.item"])
                  for name in meta["names"]}
        gate = None
        if meta["gate"] is not None:
            gate = ScoreGate(**meta["gate"])
            gate.load_state_dict({k[len("gate."):]: v for k, v in tensors.items()
                                  if k.startswith("gate.")})
            gate.eval()
        cold, prior = None, None
        if meta.get("cold") is not None:
            cold = ColdStart(weight=tensors["cold.weight"], **meta["cold"])
            prior = tensors["cold.item_prior"]
        mix = cls(towers, tensors["user_degree"], tensors["item_degree"], meta["weights"], gate,
                  cold, prior)
        return mix.to(device)

    def __repr__(self) -> str:
        weights = ", ".join(f"{k} {w:.3g}" for k, w in self.weights.items())
        cold = "; cold-start stage" if self.cold is not None else ""
        return (f"Mix({weights}; {'learned gate' if self.gate is not None else 'fixed'}{cold}, "
                f"{self.num_users} users, {self.num_items} items)")


def _standardise(scores: Tensor) -> Tensor:
    """Each row minus its mean, over its deviation (``[B, I]``; a constant row gives 0)."""
    scores = scores.float()
    mean, std = scores.mean(-1, keepdim=True), scores.std(-1, keepdim=True).clamp(min=1e-6)
    return (scores - mean) / std
