"""Split: train / valid / test interactions, and the ways to make one.

Rules shared by every split:

* **Pairs move together.** A (user, item) pair that occurs on several rows is one unit: all
  its rows land in the same part, so no pair is ever in both train and test. (Loaders already
  keep one row per pair; a hand-built :class:`Dataset` may not.)
* **Small users stay in train.** A user with fewer than three distinct items keeps them all in
  train (they cannot be evaluated without starving training). :func:`leave_last_out` with ``n``
  needs ``2 * n + 1`` items, i.e. three for ``n = 1``. Cold-start splits apply the rule to the
  warm part only: rows of a cold item (or user) are always held out.
* **Per-user cuts.** A user with ``n`` pairs in some order (shuffled, or by time) gives the first
  ``max(1, round(n * r_train))`` to train, the next ones up to ``round(n * (r_train + r_valid))``
  to valid and the rest to test; ``ratios`` are normalised to sum to 1.
* **Seeds.** Randomness comes from ``numpy.random.default_rng(seed)``: the same data and seed
  give the same split.
* Rows keep their original relative order inside each part.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.build import place
from hybridrec.data.errors import DataError

log = logging.getLogger(__name__)

SplitKind = Literal["random", "temporal", "leave-last-out", "cold-items", "cold-users"]
SPLIT_KINDS: tuple[str, ...] = get_args(SplitKind)

MIN_USER_ITEMS = 3  # fewer distinct items than this: the user stays entirely in train

_TRAIN, _VALID, _TEST = 0, 1, 2


@dataclass(frozen=True)
class Split:
    """Train / valid / test interactions of one :class:`Dataset`.

    Validation and test rows never enter the training graph. ``cold_items`` / ``cold_users``
    list the indices held out entirely from training by a cold-start split (empty otherwise).

    Args:
        kind: how it was made (``"random"``, ``"temporal"``, ``"cold-items"``, ...).
        train / valid / test: the interactions of each part.
        cold_items / cold_users: ``int64`` indices with no training interaction by design.
        seed: the seed that made it, if any.
    """

    kind: str
    train: Interactions
    valid: Interactions
    test: Interactions
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cold_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.test) == 0:
            log.warning("%s split: the test part is empty", self.kind)
        for name in ("cold_items", "cold_users"):
            array = np.array(getattr(self, name), dtype=np.int64, copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


# ---------------------------------------------------------------------------------------------
# Shared machinery: rows -> pairs -> per-user ordered cuts -> parts.


@dataclass(frozen=True)
class _Pairs:
    """Distinct (user, item) pairs of the interactions.

    ``of_row [N]`` maps each row to its pair; ``first_row``, ``user``, ``item`` are per pair ``[P]``.
    """

    of_row: np.ndarray
    first_row: np.ndarray
    user: np.ndarray
    item: np.ndarray

    @classmethod
    def of(cls, dataset: Dataset) -> _Pairs:
        inter = dataset.interactions
        key = inter.user_index * max(1, dataset.num_items) + inter.item_index
        _, first_row, of_row = np.unique(key, return_index=True, return_inverse=True)
        return cls(of_row.reshape(-1), first_row, inter.user_index[first_row],
                   inter.item_index[first_row])

    def __len__(self) -> int:
        return len(self.first_row)


def _check_ratios(ratios: tuple[float, float, float], where: str) -> np.ndarray:
    r = np.asarray(ratios, dtype=float)
    if r.shape != (3,) or not np.isfinite(r).all() or (r < 0).any() or r.sum() <= 0:
        raise ValueError(f"{where}: ratios must be three non-negative numbers, got {ratios}")
    return r / r.sum()


def _check_fraction(value: float, name: str, where: str, *, upper_open: bool) -> None:
    ok = 0 <= value < 1 if upper_open else 0 <= value <= 1
    if not ok:
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{where}: {name} must be in {bound}, got {value}")


def _rank_in_user(user: np.ndarray, order: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """For pairs listed in ``order`` (grouped by user, each group in its cut order): the rank of
    each inside its user and its user's pair count, both aligned with ``order``."""
    counts = np.bincount(user, minlength=num_users)
    start = np.cumsum(counts) - counts
    grouped = user[order]
    return np.arange(len(order)) - start[grouped], counts[grouped]


def _cut_by_ratios(pairs: _Pairs, rows: np.ndarray, sort_key: np.ndarray, r: np.ndarray,
                   num_users: int) -> np.ndarray:
    """Parts (0/1/2) of the pairs ``rows``: per user, ordered by ``sort_key`` then pair order."""
    part = np.zeros(len(pairs), dtype=np.int8)
    user = pairs.user[rows]
    order = np.lexsort((pairs.first_row[rows], sort_key, user))
    rank, n = _rank_in_user(user, order, num_users)
    n_train = np.maximum(1, np.rint(n * r[0]))
    valid_end = np.maximum(n_train, np.rint(n * (r[0] + r[1])))
    cut = np.where(rank < n_train, _TRAIN, np.where(rank < valid_end, _VALID, _TEST))
    cut[n < MIN_USER_ITEMS] = _TRAIN
    part[rows[order]] = cut
    return part


def _make(kind: str, dataset: Dataset, pairs: _Pairs, pair_part: np.ndarray, *,
          cold_items: np.ndarray | None = None, cold_users: np.ndarray | None = None,
          seed: int | None = None) -> Split:
    inter = dataset.interactions
    part = pair_part[pairs.of_row]
    split = Split(kind, inter.select(part == _TRAIN), inter.select(part == _VALID),
                  inter.select(part == _TEST),
                  cold_items=np.zeros(0, np.int64) if cold_items is None else np.sort(cold_items),
                  cold_users=np.zeros(0, np.int64) if cold_users is None else np.sort(cold_users),
                  seed=seed)
    log.info("%s split of %s: %s", kind, dataset.name, split.sizes())
    return split


def _ordered_time(dataset: Dataset, pairs: _Pairs) -> np.ndarray | None:
    """Per pair, the time of its first row (``None`` without timestamps)."""
    ts = dataset.interactions.timestamp
    if ts is None:
        return None
    first = np.full(len(pairs), np.inf)
    np.minimum.at(first, pairs.of_row, ts)
    return first


# ---------------------------------------------------------------------------------------------
# The splits.


def random_split(
    dataset: Dataset,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Per-user random split by ``ratios`` (normalised to sum to 1).

    Each user's pairs are shuffled with a seeded generator and cut as the module docstring says.
    Users with fewer than three items keep them all in train.

    Args:
        dataset: the data set.
        ratios: train / valid / test shares (default: ``(0.8, 0.1, 0.1)``).
        seed: seed of the shuffle (default: ``0``).
    """
    r = _check_ratios(ratios, "random_split")
    rng = np.random.default_rng(seed)
    pairs = _Pairs.of(dataset)
    rows = np.arange(len(pairs))
    part = _cut_by_ratios(pairs, rows, rng.random(len(pairs)), r, dataset.num_users)
    return _make("random", dataset, pairs, part, seed=seed)


def temporal_split(
    dataset: Dataset,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> Split:
    """Per-user split by time: each user's earliest pairs train, the latest test.

    A pair's time is that of its first row; ties keep row order (stable). So for every user,
    every train timestamp is ``<=`` every valid timestamp ``<=`` every test timestamp (for
    repeated pairs: their first timestamps). Users with fewer than three items stay in train.

    Args:
        dataset: the data set; its interactions must have timestamps.
        ratios: train / valid / test shares (default: ``(0.8, 0.1, 0.1)``).

    Raises:
        DataError: the interactions have no timestamps.
    """
    r = _check_ratios(ratios, "temporal_split")
    pairs = _Pairs.of(dataset)
    time = _ordered_time(dataset, pairs)
    if time is None:
        raise DataError(f"{dataset.name} interactions", "a timestamp per interaction for a "
                        "temporal split, got none (random and leave-last-out splits need none)",
                        field="timestamp")
    part = _cut_by_ratios(pairs, np.arange(len(pairs)), time, r, dataset.num_users)
    return _make("temporal", dataset, pairs, part)


def leave_last_out(dataset: Dataset, n: int = 1) -> Split:
    """Each user's last ``n`` items to test, the ``n`` before them to valid, the rest to train.

    "Last" is by timestamp (a pair's first row; ties by row order) when the interactions have
    timestamps, else by row order. Users with fewer than ``2 * n + 1`` items stay in train.

    Args:
        dataset: the data set.
        n: items held out per user in each of valid and test (default: ``1``).
    """
    if n < 1:
        raise ValueError(f"leave_last_out: n must be >= 1, got {n}")
    pairs = _Pairs.of(dataset)
    time = _ordered_time(dataset, pairs)
    if time is None:
        log.info("leave_last_out: %s has no timestamps; using row order", dataset.name)
        time = np.zeros(len(pairs))
    order = np.lexsort((pairs.first_row, time, pairs.user))
    rank, count = _rank_in_user(pairs.user, order, dataset.num_users)
    from_end = count - rank  # 1 for the last pair of a user
    cut = np.where(from_end <= n, _TEST, np.where(from_end <= 2 * n, _VALID, _TRAIN))
    cut[count < 2 * n + 1] = _TRAIN
    part = np.zeros(len(pairs), dtype=np.int8)
    part[order] = cut
    return _make("leave-last-out", dataset, pairs, part)


def _hold_out(
    kind: str, dataset: Dataset, pairs: _Pairs, of_pair: np.ndarray, fraction: float,
    valid_share: float, ratios: tuple[float, float, float], seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Shared body of the cold-start splits: ``of_pair`` is the held-out key (item or user)."""
    where = kind.replace("-", "_") + "_split"
    _check_fraction(fraction, "fraction", where, upper_open=True)
    _check_fraction(valid_share, "valid_share", where, upper_open=False)
    r = _check_ratios(ratios, where)
    rng = np.random.default_rng(seed)
    # 1. Choose cold keys among those with interactions; at least one when fraction > 0.
    candidates = np.unique(of_pair)
    k = int(round(fraction * len(candidates)))
    k = max(k, 1) if fraction > 0 and len(candidates) > 1 else k
    if k >= len(candidates) and k > 0:
        raise ValueError(f"{where}: fraction={fraction} leaves no warm {kind[5:]} "
                         f"({len(candidates)} have interactions)")
    cold = rng.permutation(candidates)[:k]
    n_valid = int(round(k * valid_share))
    # 2. Every row of a cold key is held out: the first share of them to valid, the rest to test.
    part = np.zeros(len(pairs), dtype=np.int8)
    part[np.isin(of_pair, cold[n_valid:])] = _TEST
    part[np.isin(of_pair, cold[:n_valid])] = _VALID
    # 3. Warm pairs: per-user random cut, as random_split.
    warm = np.flatnonzero(~np.isin(of_pair, cold))
    warm_part = _cut_by_ratios(pairs, warm, rng.random(len(warm)), r, dataset.num_users)
    part[warm] = warm_part[warm]
    return part, cold


def cold_item_split(
    dataset: Dataset,
    fraction: float = 0.1,
    seed: int = 0,
    valid_share: float = 0.5,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> Split:
    """Cold-start items: a seeded share of items has no training interaction at all.

    1. ``round(fraction * m)`` of the ``m`` items that have interactions are drawn (at least one
       when ``fraction > 0``); they are :attr:`Split.cold_items`.
    2. Of the drawn items, the first ``round(k * valid_share)`` send **every** row to valid, the
       others every row to test, so valid and test hold different cold items.
    3. The remaining (warm) rows are split per user at random by ``ratios``, as
       :func:`random_split` does (users with fewer than three warm items keep them in train).

    Args:
        dataset: the data set.
        fraction: share of interacted items made cold, in ``[0, 1)`` (default: ``0.1``).
        seed: seed of the draw and of the warm shuffle (default: ``0``).
        valid_share: share of cold items whose rows go to valid (default: ``0.5``).
        ratios: train / valid / test shares of the warm rows (default: ``(0.8, 0.1, 0.1)``).
    """
    pairs = _Pairs.of(dataset)
    part, cold = _hold_out("cold-items", dataset, pairs, pairs.item, fraction, valid_share,
                           ratios, seed)
    return _make("cold-items", dataset, pairs, part, cold_items=cold, seed=seed)


def cold_user_split(
    dataset: Dataset,
    fraction: float = 0.1,
    seed: int = 0,
    valid_share: float = 0.5,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> Split:
    """Cold-start users: a seeded share of users has no training interaction at all.

    The same three steps as :func:`cold_item_split`, with users in place of items: every row of
    a cold user goes to valid (the first ``round(k * valid_share)`` cold users) or to test; warm
    users are split at random by ``ratios``. Fills :attr:`Split.cold_users`.

    Args:
        dataset: the data set.
        fraction: share of interacting users made cold, in ``[0, 1)`` (default: ``0.1``).
        seed: seed of the draw and of the warm shuffle (default: ``0``).
        valid_share: share of cold users whose rows go to valid (default: ``0.5``).
        ratios: train / valid / test shares of the warm users' rows (default: ``(0.8, 0.1, 0.1)``).
    """
    pairs = _Pairs.of(dataset)
    part, cold = _hold_out("cold-users", dataset, pairs, pairs.user, fraction, valid_share,
                           ratios, seed)
    return _make("cold-users", dataset, pairs, part, cold_users=cold, seed=seed)


def make_split(
    dataset: Dataset,
    kind: SplitKind = "random",
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cold_fraction: float = 0.1,
    n: int = 1,
) -> Split:
    """Any of the generated splits by name (for configs and CLIs).

    Args:
        dataset: the data set.
        kind: one of ``"random"``, ``"temporal"``, ``"leave-last-out"``, ``"cold-items"``,
            ``"cold-users"`` (default: ``"random"``).
        ratios: train / valid / test shares where the kind uses them (default: ``(0.8, 0.1, 0.1)``).
        seed: seed where the kind is random (default: ``0``).
        cold_fraction: ``fraction`` of the cold-start kinds (default: ``0.1``).
        n: ``n`` of ``"leave-last-out"`` (default: ``1``).
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"make_split: kind must be one of {SPLIT_KINDS}, got {kind!r}")
    if kind == "random":
        return random_split(dataset, ratios, seed)
    if kind == "temporal":
        return temporal_split(dataset, ratios)
    if kind == "leave-last-out":
        return leave_last_out(dataset, n)
    if kind == "cold-items":
        return cold_item_split(dataset, cold_fraction, seed, ratios=ratios)
    return cold_user_split(dataset, cold_fraction, seed, ratios=ratios)


# ---------------------------------------------------------------------------------------------
# Split files.


def _read_part(path: Path, sep: str | None, encoding: str = "utf-8",
               normalize_ids: bool = False) -> pd.DataFrame:
    """A split file as a table of exact strings (its rows' lines in ``attrs["lines"]``)."""
    from hybridrec.data.tabular import normal_id, read_table

    if sep is None:
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    table = read_table(path, "a split file", required=("user_id", "item_id"), delimiter=sep,
                       encoding=encoding, allow_empty=True)
    if normalize_ids:
        for column in ("user_id", "item_id"):
            table[column] = table[column].map(normal_id)
    return table


def _file_numbers(table: pd.DataFrame, column: str, rows: np.ndarray, path: Path) -> np.ndarray:
    """Numbers of ``column`` at positions ``rows``; DataError at the first missing/bad cell."""
    if column not in table.columns:
        raise DataError(path, f"a {column!r} column, as this row's pair is not among the data "
                              f"set's interactions", **place(table, int(rows[0])), field=column)
    cells = table[column].to_numpy(dtype=object)[rows]
    values = pd.to_numeric(pd.Series(cells), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"a number (the pair is not among the data set's interactions), "
                              f"got {cells[first]!r}", **place(table, int(rows[first])),
                        field=column)
    return values


def split_from_files(
    dataset: Dataset,
    train: str | os.PathLike[str],
    valid: str | os.PathLike[str] | None,
    test: str | os.PathLike[str],
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
    normalize_ids: bool = False,
) -> Split:
    """A split given as three CSV files of the data set's own raw ids.

    Each file (``.tsv`` / ``.tab``: tab-separated, else comma-separated, UTF-8) has a header
    with at least ``user_id`` and ``item_id``; ids are exact strings. Rows take ``rating`` and
    ``timestamp`` from the data set: a row whose pair is among the data set's interactions gets
    that interaction's values (its first row, should the pair repeat), whatever the file says.
    A row whose pair is not among them reads the file's ``rating`` / ``timestamp`` columns, which
    are then required where the data set has those fields (and ignored where it has not).
    Interactions of the data set in no file are left out of the split (logged).

    Args:
        dataset: the data set the ids belong to.
        train / valid / test: the files; ``valid`` may be ``None`` (an empty valid part).
        sep: the field separator (default: by extension).
        encoding: the files' text encoding (default: ``"utf-8"``).
        normalize_ids: rewrite ids as :func:`~hybridrec.data.tabular.load_csv` does with the
            same option (default: ``False``).

    Raises:
        DataError: a missing file or column, an unknown user or item id (with file, row and
            column), a bad number, or a pair in more than one file.
    """
    inter = dataset.interactions
    width = max(1, dataset.num_items)
    # Data-set pair -> first row, for matching file rows back.
    keys = inter.user_index * width + inter.item_index
    uniq_keys, first_row = np.unique(keys, return_index=True)
    seen: dict[int, tuple[Path, int]] = {}
    parts: list[Interactions] = []
    for name, source in (("train", train), ("valid", valid), ("test", test)):
        if source is None:
            parts.append(inter.select(np.zeros(0, np.int64)))
            continue
        path = Path(source)
        table = _read_part(path, sep, encoding, normalize_ids)
        if name == "train" and not len(table):
            raise DataError(path, "at least one training row, got none", line=2)
        # 1. Raw ids -> indices, naming the first unknown one.
        index = {}
        for column, ids, what in (("user_id", dataset.users, "a user id"),
                                  ("item_id", dataset.items, "an item id")):
            index[column] = ids.indices(table[column])
            unknown = np.flatnonzero(index[column] < 0)
            if len(unknown):
                k = int(unknown[0])
                distinct = list(dict.fromkeys(table[column].to_numpy()[unknown].tolist()))
                shown = ", ".join(repr(v) for v in distinct[:5]) + (
                    f" and {len(distinct) - 5} more" if len(distinct) > 5 else "")
                raise DataError(path, f"{what} of {dataset.name}, got "
                                      f"{table[column].iloc[k]!r} ({len(unknown)} such rows; "
                                      f"{len(distinct)} unknown: {shown})",
                                **place(table, k), field=column)
        user, item = index["user_id"], index["item_id"]
        # 2. No pair in two files: that would leak.
        file_keys = user * width + item
        for position, key in enumerate(file_keys.tolist()):
            other = seen.get(key)
            if other is not None and other[0] != path:
                raise DataError(path, f"a pair not already in {other[0].name} (it is on line "
                                      f"{other[1]} there)", **place(table, position),
                                field="item_id")
            seen.setdefault(key, (path, place(table, position).get("line", position + 1)))
        # 3. Ratings and timestamps: from the data set where the pair is known, else the file.
        pos = np.searchsorted(uniq_keys, file_keys)
        known = (pos < len(uniq_keys)) & (uniq_keys[np.minimum(pos, len(uniq_keys) - 1)] == file_keys)
        match = first_row[pos[known]]
        values = {}
        for column in ("rating", "timestamp"):
            ours = getattr(inter, column)
            if ours is None:
                values[column] = None
                continue
            out = np.empty(len(table), dtype=np.float64)
            out[known] = ours[match]
            if (~known).any():
                out[~known] = _file_numbers(table, column, np.flatnonzero(~known), path)
            values[column] = out
        parts.append(Interactions(user, item, values["rating"], values["timestamp"]))
    unused = len(uniq_keys) - int(np.isin(uniq_keys, np.fromiter(seen, np.int64, len(seen))).sum())
    if unused:
        log.warning("split_from_files: %d interaction pairs of %s are in none of the files",
                    unused, dataset.name)
    split = Split("files", *parts)
    log.info("files split of %s: %s", dataset.name, split.sizes())
    return split


def write_split_files(dataset: Dataset, split: Split, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` of raw ids that :func:`split_from_files`
    reads back to the same split.

    Columns: ``user_id``, ``item_id``, then ``rating`` and ``timestamp`` when present. Each file
    is written to ``*.tmp`` and then moved into place.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("train", "valid", "test"):
        part: Interactions = getattr(split, name)
        columns = {"user_id": dataset.users.to_ids(part.user_index),
                   "item_id": dataset.items.to_ids(part.item_index)}
        for column in ("rating", "timestamp"):
            values = getattr(part, column)
            if values is not None:
                columns[column] = [repr(float(v)) for v in values]
        path = folder / f"{name}.csv"
        tmp = path.with_name(path.name + ".tmp")
        pd.DataFrame(columns, dtype=object).to_csv(tmp, index=False)
        os.replace(tmp, path)
        paths[name] = path
    return paths
