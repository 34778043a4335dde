"""Splits: no leakage, full coverage, cold-start guarantees, determinism, split files."""
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrec.data import DataError, Dataset, IdMap, Interactions
from hybridrec.data.split import (
    SPLIT_KINDS,
    cold_item_split,
    cold_user_split,
    leave_last_out,
    make_split,
    random_split,
    split_from_files,
    temporal_split,
    write_split_files,
)

PARTS = ("train", "valid", "test")


@st.composite
def datasets(draw, timestamps=True, repeats=True):
    """Small data sets; (user, item) pairs may repeat, timestamps tie often."""
    num_users = draw(st.integers(1, 7))
    num_items = draw(st.integers(2, 9))
    pair = st.tuples(st.integers(0, num_users - 1), st.integers(0, num_items - 1))
    pairs = draw(st.lists(pair, min_size=1, max_size=60, unique=not repeats))
    n = len(pairs)
    rating = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)) if timestamps else None
    users = IdMap(f"u{k}" for k in range(num_users))
    items = IdMap(f"i{k}" for k in range(num_items))
    inter = Interactions([u for u, _ in pairs], [i for _, i in pairs], rating, ts)
    return Dataset("hyp", users, items, inter)


def rows(inter: Interactions) -> list[tuple]:
    ts = inter.timestamp if inter.timestamp is not None else np.zeros(len(inter))
    return list(zip(inter.user_index.tolist(), inter.item_index.tolist(),
                    inter.rating.tolist(), ts.tolist()))


def pairs(inter: Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.user_index.tolist(), inter.item_index.tolist()))


def distinct_items_per_user(data: Dataset) -> dict[int, int]:
    return Counter(u for u, _ in pairs(data.interactions))


def check_partition(data: Dataset, split) -> None:
    # Every row exactly once, pairs never in two parts.
    together = Counter(r for part in PARTS for r in rows(getattr(split, part)))
    assert together == Counter(rows(data.interactions))
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not pairs(getattr(split, a)) & pairs(getattr(split, b)), (a, b)


def split_by(kind, data):
    return {"random": lambda d: random_split(d, seed=3),
            "temporal": temporal_split,
            "leave-last-out": leave_last_out,
            "cold-items": lambda d: cold_item_split(d, 0.3, seed=3),
            "cold-users": lambda d: cold_user_split(d, 0.3, seed=3)}[kind](data)


quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(data=datasets())
@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_partition_covers_every_row_once_without_leaking_pairs(kind, data):
    split = split_by(kind, data)
    check_partition(data, split)
    assert split.kind == kind


@quick
@given(data=datasets())
@pytest.mark.parametrize("kind", ["random", "temporal", "cold-items"])
def test_users_with_fewer_than_three_items_stay_in_train(kind, data):
    split = split_by(kind, data)
    cold = set(split.cold_items.tolist())
    small = {u for u, n in distinct_items_per_user(data).items() if n < 3}
    for part in ("valid", "test"):
        held = getattr(split, part)
        for u, i in zip(held.user_index.tolist(), held.item_index.tolist()):
            assert u not in small or i in cold


@quick
@given(data=datasets())
def test_cold_items_have_no_training_row_and_all_rows_held_out(data):
    split = cold_item_split(data, fraction=0.3, seed=1)
    cold = set(split.cold_items.tolist())
    interacted = set(data.interactions.item_index.tolist())
    assert cold <= interacted
    # At least one item is held out and at least one stays; a lone item cannot be held out.
    n = len(interacted)
    assert min(1, n - 1) <= len(cold) <= max(0, n - 1)
    assert not cold & set(split.train.item_index.tolist())
    held = Counter(r for part in ("valid", "test") for r in rows(getattr(split, part)) if r[1] in cold)
    assert held == Counter(r for r in rows(data.interactions) if r[1] in cold)
    # Valid and test hold different cold items.
    valid_cold = cold & set(split.valid.item_index.tolist())
    assert not valid_cold & set(split.test.item_index.tolist())


@quick
@given(data=datasets())
def test_cold_users_have_no_training_row(data):
    split = cold_user_split(data, fraction=0.3, seed=1)
    cold = set(split.cold_users.tolist())
    assert cold <= set(data.interactions.user_index.tolist())
    assert not cold & set(split.train.user_index.tolist())
    held = sum(1 for part in ("valid", "test") for r in rows(getattr(split, part)) if r[0] in cold)
    assert held == sum(1 for r in rows(data.interactions) if r[0] in cold)
    assert len(split.cold_items) == 0


@quick
@given(data=datasets())
def test_temporal_train_precedes_valid_precedes_test_per_user(data):
    # A pair's time is its first row's time (pairs may repeat).
    first = {}
    for u, i, _, t in rows(data.interactions):
        first[(u, i)] = min(t, first.get((u, i), t))
    split = temporal_split(data)
    times = {part: defaultdict(list) for part in PARTS}
    for part in PARTS:
        for u, i, _, _ in rows(getattr(split, part)):
            times[part][u].append(first[(u, i)])
    for u in times["train"]:
        late_train = max(times["train"][u])
        assert all(late_train <= t for t in times["valid"][u] + times["test"][u])
        assert all(v <= t for v in times["valid"][u] for t in times["test"][u])


@quick
@given(data=datasets(repeats=False))
def test_temporal_without_repeats_holds_row_by_row(data):
    split = temporal_split(data)
    for u in set(data.interactions.user_index.tolist()):
        train = [r[3] for r in rows(split.train) if r[0] == u]
        test = [r[3] for r in rows(split.test) if r[0] == u]
        if train and test:
            assert max(train) <= min(test)


@quick
@given(data=datasets(repeats=False), n=st.integers(1, 2))
def test_leave_last_out_holds_out_the_last_n(data, n):
    split = leave_last_out(data, n)
    check_partition(data, split)
    for u, count in distinct_items_per_user(data).items():
        test = [r[3] for r in rows(split.test) if r[0] == u]
        valid = [r[3] for r in rows(split.valid) if r[0] == u]
        train = [r[3] for r in rows(split.train) if r[0] == u]
        if count < 2 * n + 1:
            assert not test and not valid
        else:
            assert len(test) == len(valid) == n
            assert max(train) <= min(valid) and max(valid) <= min(test)


@quick
@given(data=datasets(), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("kind", ["random", "cold-items", "cold-users"])
def test_same_seed_same_split(kind, data, seed):
    a = make_split(data, kind, seed=seed, cold_fraction=0.3)
    b = make_split(data, kind, seed=seed, cold_fraction=0.3)
    for part in PARTS:
        assert rows(getattr(a, part)) == rows(getattr(b, part))
    assert a.cold_items.tolist() == b.cold_items.tolist()
    assert a.seed == seed


def grid(num_users=20, num_items=30, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(num_users), per_user)
    i = np.concatenate([rng.choice(num_items, per_user, replace=False) for _ in range(num_users)])
    ts = rng.integers(0, 10**9, len(u)).astype(float)
    rating = rng.integers(1, 6, len(u)).astype(float)
    return Dataset("grid", IdMap(f"u{k}" for k in range(num_users)),
                   IdMap(f"i{k}" for k in range(num_items)), Interactions(u, i, rating, ts))


def test_random_split_ratios_and_different_seeds():
    data = grid()
    split = random_split(data, (0.6, 0.2, 0.2), seed=0)
    assert split.sizes() == {"train": 120, "valid": 40, "test": 40}
    other = random_split(data, (0.6, 0.2, 0.2), seed=1)
    assert rows(split.test) != rows(other.test)


def test_temporal_needs_timestamps():
    data = Dataset("t", IdMap(["a"]), IdMap(["x", "y", "z"]), Interactions([0, 0, 0], [0, 1, 2]))
    with pytest.raises(DataError, match="column .timestamp.: a timestamp per interaction"):
        temporal_split(data)
    # Leave-last-out falls back to row order.
    split = leave_last_out(data)
    assert split.test.item_index.tolist() == [2] and split.valid.item_index.tolist() == [1]


@pytest.mark.parametrize("call,match", [
    (lambda d: random_split(d, (0.8, -0.1, 0.3)), "ratios"),
    (lambda d: cold_item_split(d, fraction=1.0), "fraction"),
    (lambda d: cold_user_split(d, valid_share=1.5), "valid_share"),
    (lambda d: leave_last_out(d, 0), "n must be"),
    (lambda d: make_split(d, "sideways"), "kind must be one of"),
])
def test_bad_arguments_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call(grid())


def test_split_files_round_trip(tmp_path):
    data = grid()
    split = cold_item_split(data, 0.2, seed=5)
    paths = write_split_files(data, split, tmp_path)
    back = split_from_files(data, paths["train"], paths["valid"], paths["test"])
    assert back.kind == "files"
    for part in PARTS:
        assert rows(getattr(back, part)) == rows(getattr(split, part))


def write(path, text):
    path.write_text(text)
    return path


def small():
    inter = Interactions([0, 0, 1, 1], [0, 1, 0, 2], [5, 4, 3, 2], [10, 20, 30, 40])
    return Dataset("small", IdMap(["u1", "u2"]), IdMap(["i1", "i2", "i3"]), inter)


def test_split_files_take_rating_and_time_from_the_data_set(tmp_path):
    train = write(tmp_path / "train.csv", "user_id,item_id,rating\nu1,i1,1\nu2,i1,1\n")
    test = write(tmp_path / "test.csv", "item_id,user_id\ni2,u1\ni3,u2\n")
    split = split_from_files(small(), train, None, test)
    assert split.train.rating.tolist() == [5.0, 3.0]  # the data set's, not the file's
    assert split.test.timestamp.tolist() == [20.0, 40.0]
    assert len(split.valid) == 0


def test_split_files_new_pairs_need_their_own_numbers(tmp_path):
    train = write(tmp_path / "train.csv", "user_id,item_id\nu1,i1\nu1,i3\n")
    test = write(tmp_path / "test.csv", "user_id,item_id\nu2,i3\n")
    with pytest.raises(DataError, match=r"train.csv line 3 \(row 2\), column 'rating'"):
        split_from_files(small(), train, None, test)
    train = write(tmp_path / "train.csv", "user_id,item_id,rating,timestamp\nu1,i1,,\nu1,i3,2,50\n")
    split = split_from_files(small(), train, None, test)
    assert split.train.rating.tolist() == [5.0, 2.0]
    assert split.train.timestamp.tolist() == [10.0, 50.0]


@pytest.mark.parametrize("train_text,test_text,message", [
    ("user_id,item_id\nu1,i1\nu7,i2\n", "user_id,item_id\nu2,i3\n",
     "train.csv line 3 (row 2), column 'user_id': a user id of small, got 'u7' (1 such rows; 1 unknown: 'u7')"),
    ("user_id,item_id\nu1,i1\n", "user_id,item_id\nu2,i3\nu2,nope\n",
     "test.csv line 3 (row 2), column 'item_id': an item id of small, got 'nope'"),
    ("user,item_id\nu1,i1\n", "user_id,item_id\nu2,i3\n",
     "train.csv line 1, column 'user_id': a column 'user_id' in a split file; columns found: ['user', 'item_id']"),
    ("user_id,item_id\nu1,i1\n", "user_id,item_id\nu2,i3\nu1,i1\n",
     "test.csv line 3 (row 2), column 'item_id': a pair not already in train.csv (it is on line 2 there)"),
    ("user_id,item_id\n", "user_id,item_id\nu2,i3\n", "train.csv line 2: at least one training row"),
])
def test_split_files_errors_name_file_row_and_column(tmp_path, train_text, test_text, message):
    train = write(tmp_path / "train.csv", train_text)
    test = write(tmp_path / "test.csv", test_text)
    with pytest.raises(DataError) as err:
        split_from_files(small(), train, None, test)
    assert str(err.value).startswith(str(tmp_path / message)), str(err.value)


def test_split_files_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        split_from_files(small(), tmp_path / "nope.csv", None, tmp_path / "nope2.csv")
