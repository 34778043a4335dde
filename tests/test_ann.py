"""hybridrec.ann: the Mix's ranking by one inner-product search; the FAISS index, its file,
and the Recommender using it."""
import numpy as np
import pytest
import torch

from hybridrec import Recommender
from hybridrec.ann import ANN_FILE, ItemIndex
from hybridrec.data.errors import DataError
from hybridrec.models import Mix, ScoreGate, Tower
from hybridrec.models.cold import ColdStart
from hybridrec.testing import THIEF

pytestmark = pytest.mark.usefixtures("one_thread")


def _mix(num_users=30, num_items=400, seed=0, cold=False):
    """Towers of different widths and offsets (so the standardisation matters), with a
    low-rank structure (so neighbours mean something)."""
    g = torch.Generator().manual_seed(seed)
    towers = {}
    user_latent, item_latent = torch.randn(num_users, 4, generator=g), \
        torch.randn(num_items, 4, generator=g)
    for name, width, offset in (("gnn", 12, 0.5), ("als", 5, -1.0), ("lightgcn", 7, 2.0)):
        proj = torch.randn(4, width, generator=g)
        towers[name] = Tower(user_latent @ proj + 0.3 * torch.randn(num_users, width, generator=g),
                             item_latent @ proj + 0.3 * torch.randn(num_items, width, generator=g)
                             + offset)
    degree = torch.ones(num_items)
    stage, prior = None, None
    if cold:
        degree[::7] = 0
        stage = ColdStart(0.8, -0.3, 0.5, torch.zeros(3), 0.0)
        prior = torch.randn(num_items, generator=g)
    return Mix(towers, torch.ones(num_users), degree, weights={"gnn": 2, "als": 1, "lightgcn": 1},
               cold=stage, item_prior=prior)


def _exact_top(mix, users, k, exclude):
    scores = mix.score(users)
    for row, ex in enumerate(exclude):
        scores[row, sorted(ex)] = -float("inf")
    return torch.topk(scores, k, dim=1)


@pytest.mark.parametrize("cold", [False, True])
def test_the_query_decomposition_ranks_as_the_mix(cold):
    """No FAISS: the decomposed queries, scanned densely, give the Mix's top-k and scores,
    with seen items excluded, and items under a cold-start stage scored by the stage."""
    mix = _mix(cold=cold)
    index = ItemIndex("exact").build(mix)
    users = torch.arange(mix.num_users)
    exclude = [set(range(u, 400, 37)) for u in range(mix.num_users)]
    found = index.search(users, 20, exclude)
    values, top = _exact_top(mix, users, 20, exclude)
    for (items, scores), want, want_scores in zip(found, top, values):
        assert items == want.tolist()
        torch.testing.assert_close(torch.tensor(scores), want_scores, rtol=1e-4, atol=1e-4)
    # Exact scores of any items, without a catalogue scan; users given by their vectors too.
    some = torch.randint(400, (mix.num_users, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(index.scores(users, some), mix.score(users).gather(1, some),
                               rtol=1e-4, atol=1e-4)
    vectors = {n: t.user[:3] for n, t in mix.towers.items()}
    assert index.search(vectors, 5) == index.search(torch.arange(3), 5)


def test_a_gated_mix_is_scanned_exactly():
    mix = _mix()
    gate = ScoreGate(3, 8, prior=0.5)
    torch.nn.init.normal_(gate.item_mlp[2].weight)
    gated = Mix(mix.towers, mix.user_degree, torch.arange(400.0), mix.weights, gate)
    index = ItemIndex().build(gated)  # no FAISS needed: nothing is indexed
    assert index.index_ is None
    values, top = _exact_top(gated, torch.arange(5), 10, [set()] * 5)
    assert [r[0] for r in index.search(torch.arange(5), 10)] == top.tolist()


def test_the_stats_follow_added_items():
    mix = _mix()
    index = ItemIndex("exact").build(mix)
    g = torch.Generator().manual_seed(3)
    mix.add_items({n: 3 * torch.randn(50, t.item.size(1), generator=g)
                   for n, t in mix.towers.items()}, torch.ones(50))
    index.add_items(mix)
    users = torch.arange(mix.num_users)
    values, top = _exact_top(mix, users, 10, [set()] * mix.num_users)
    assert [r[0] for r in index.search(users, 10)] == top.tolist()


# ---------------------------------------------------------------------- FAISS
@pytest.fixture
def faiss():
    faiss = pytest.importorskip("faiss")
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield faiss
    faiss.omp_set_num_threads(threads)


def test_faiss_recall_and_seen_items(faiss):
    mix = _mix(num_users=100, num_items=4000)
    index = ItemIndex().build(mix)
    assert index.recall_ >= 0.95
    users = torch.arange(100)
    rng = np.random.default_rng(0)
    exclude = [set(rng.choice(4000, 30, replace=False).tolist()) for _ in range(100)]
    _, truth = _exact_top(mix, users, 10, exclude)
    found = index.search(users, 10, exclude)
    recall = np.mean([len(set(f[0]) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95
    assert all(not set(f[0]) & ex and len(f[0]) == 10 for f, ex in zip(found, exclude))
    # The scores are the Mix's.
    full = mix.score(users)
    for (items, scores), row in zip(found, full):
        torch.testing.assert_close(torch.tensor(scores), row[items], rtol=1e-4, atol=1e-4)


def test_faiss_add_items_makes_a_new_item_findable(faiss):
    mix = _mix(num_items=2000)
    index = ItemIndex().build(mix)
    # An item along user 0's query direction, far out: its top-1 once added.
    query = torch.from_numpy(index._queries(index._user_vectors(torch.tensor([0]))))[0]
    new, offset = {}, 0
    for name, t in mix.towers.items():
        width = t.item.size(1)
        new[name] = 50 * query[offset:offset + width].unsqueeze(0) / query.norm()
        offset += width
    mix.add_items(new, torch.ones(1))
    assert not index.current(mix) or index.num_items_ != mix.num_items
    index.add_items(mix)
    assert index.current(mix)
    assert index.search(torch.tensor([0]), 5)[0][0][0] == 2000


def test_faiss_bytes_round_trip_and_a_spoilt_file(faiss, tmp_path):
    mix = _mix(num_items=1500, cold=True)
    index = ItemIndex().build(mix)
    assert 1500 - len(index.items_) == len(range(0, 1500, 7))  # the stage's items stay out
    path = tmp_path / ANN_FILE
    index.save(path)
    again = ItemIndex.load(path, mix)
    users = torch.arange(10)
    assert again.search(users, 10) == index.search(users, 10)
    assert again.ef_search_ == index.ef_search_
    # from_bytes alone.
    other = ItemIndex().from_bytes(index.to_bytes(), mix, index.items_, index.ef_search_)
    assert other.search(users, 10) == index.search(users, 10)
    # Another catalogue: stale, not an error.
    assert ItemIndex.load(path, _mix(num_items=1500, seed=5, cold=True)) is None
    # A damaged byte in the index: a DataError naming the file.
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=ANN_FILE):
        ItemIndex.load(path, mix)
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(DataError, match=ANN_FILE):
        ItemIndex.load(path, mix)


def test_recommender_faiss_path_matches_the_exact_path(faiss, example_run, tmp_path):
    exact = Recommender.load(example_run, top_k="exact")
    fast = Recommender.load(example_run, top_k="faiss")
    assert exact._index is None and fast._index is not None
    users = list(exact.user_ids.ids)
    for a, b in zip(exact.recommend_batch(users, k=10), fast.recommend_batch(users, k=10)):
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    history = list(exact.item_ids.ids[:2])
    assert exact.recommend_for_history(history, k=5).item_ids == \
        fast.recommend_for_history(history, k=5).item_ids
    # Saved with the run; read back (not rebuilt) when current; kept current by add_items.
    fast.save(tmp_path / "saved")
    assert (tmp_path / "saved" / ANN_FILE).is_file()
    again = Recommender.load(tmp_path / "saved", top_k="faiss")
    assert again.recommend("u01").item_ids == fast.recommend("u01").item_ids
    for rec in (exact, fast):
        rec.add_items([THIEF])
    assert fast._index.current(fast.mix) and fast._index.num_items_ == fast.num_items
    n = exact.num_items
    assert exact.recommend("u01", k=n).item_ids == fast.recommend("u01", k=n).item_ids
