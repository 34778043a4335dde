"""Recommender on the tiny example: trained for real (text, KG, GNN, ALS, LightGCN), then used
through Python and through ``python -m hybridrec.recommend``."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybridrec import Recommender
from hybridrec.data.errors import DataError
from hybridrec.recommend import main as recommend_main
from hybridrec.recommender import UnknownIdError, als_fold_in
from hybridrec.testing import MANN, THIEF

pytestmark = pytest.mark.usefixtures("one_thread")

THIEF_KG = [("http://example.org/kg/thief", "schema:director", MANN)]


@pytest.fixture
def rec(example_run):
    return Recommender.load(example_run)


def test_recommend_known_user_raw_ids_match_the_trained_scorer(rec):
    ranking = rec.recommend("u01", k=5)
    assert ranking.source == "model" and ranking.user_id == "u01"
    assert len(ranking.item_ids) == 5 and all(i.startswith("m") for i in ranking.item_ids)
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)
    seen = {rec.item_ids.ids[i] for i in rec._seen[rec.user_ids.index("u01")]}
    assert not seen & set(ranking.item_ids)
    # The same order as the trained scorer's full ranking with seen items masked.
    scores = rec.run.scorer.score(torch.tensor([rec.user_ids.index("u01")]))[0]  # the Mix
    scores[list(rec._seen[rec.user_ids.index("u01")])] = -float("inf")
    expected = rec.item_ids.to_ids(torch.topk(scores, 5).indices.tolist())
    assert list(ranking.item_ids) == expected
    assert ranking.to_dict()["items"][0]["title"]


def test_batch_equals_single_and_candidates_restrict(rec):
    batch = rec.recommend_batch(["u01", "u02"], k=3)
    assert [r.item_ids for r in batch] == [rec.recommend(u, k=3).item_ids for u in ("u01", "u02")]
    only = rec.recommend("u01", k=5, candidates=["m13", "m12"])
    assert set(only.item_ids) <= {"m13", "m12"}
    with_seen = rec.recommend("u01", k=13, exclude_seen=False)
    assert len(with_seen.item_ids) == 13


def test_bad_calls_raise_clear_errors(rec):
    with pytest.raises(UnknownIdError, match="unknown user 'nobody'"):
        rec.recommend("nobody")
    popular = rec.recommend("nobody", k=3, fallback=True)
    assert popular.source == "popular" and len(popular.item_ids) == 3
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            rec.recommend("u01", k=k)
    with pytest.raises(UnknownIdError, match="unknown item 'zz'"):
        rec.similar_items("zz")
    with pytest.raises(ValueError, match="history is empty"):
        rec.recommend_for_history([])


def test_gnn_fold_in_of_a_known_node_equals_the_trained_embedding(rec):
    u = rec.user_ids.index("u03")
    rows = rec._user_rows([rec._history[u]], [u])
    trained = rec.mix.towers["gnn"].user[u]  # [z_u, e^gamma t_u]
    torch.testing.assert_close(rows["gnn"][0], trained, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows["lightgcn"][0], rec.mix.towers["lightgcn"].user[u])
    # An item, from its in-edges in the training graph.
    gnn, item = rec.model.gnn, 2
    edges = {e: ei[:, ei[1] == item] for e, ei in rec._edges.items() if e[2] == "item"}
    edges = {e: torch.stack([torch.zeros_like(ei[0]), ei[0]]) for e, ei in edges.items()}
    z = gnn.fold_in("item", rec._layers[0]["item"][item:item + 1], edges, rec._layers)
    torch.testing.assert_close(z[0], rec._gnn_items()[item], rtol=1e-5, atol=1e-5)


def test_als_fold_in_equals_implicit_recalculate_user():
    import implicit.cpu.als

    rng = np.random.default_rng(0)
    matrix = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    model = implicit.cpu.als.AlternatingLeastSquares(factors=4, regularization=2.0, alpha=3.0,
                                                     random_state=0)
    model.fit(matrix, show_progress=False)
    history = np.array([1, 4, 7, 9])
    row = sp.csr_matrix((np.ones(4, np.float32), (np.zeros(4), history)), shape=(1, 20))
    expected = np.asarray(model.recalculate_user(0, row)).ravel()
    ours = als_fold_in(torch.from_numpy(np.asarray(model.item_factors)), [history], 2.0, 3.0)
    np.testing.assert_allclose(ours[0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_new_users_from_history_and_from_text(rec):
    by_history = rec.recommend_for_history(["m01", "m02"], k=4)
    assert by_history.source == "history" and len(by_history.item_ids) == 4
    assert not {"m01", "m02"} & set(by_history.item_ids)
    by_text = rec.recommend_for_text("a film about the mafia and crime families", k=3)
    assert by_text.source == "text" and len(by_text.item_ids) == 3
    with pytest.raises(ValueError, match="non-empty sentence"):
        rec.recommend_for_text("  ")


def test_add_items_makes_a_new_film_rankable_and_explainable(rec, tmp_path):
    before = rec.num_items
    assert repr(rec).startswith(f"Recommender(examples: 10 users, {before} items; Mix(")
    added = rec.add_items([THIEF], THIEF_KG)
    assert added.item_ids == ("m14",) and added.edges >= 3  # genre x2 + director
    assert rec.num_items == before + 1
    assert "added since training: {'items': 1}" in repr(rec)
    everything = rec.recommend("u01", k=rec.num_items).item_ids
    assert "m14" in everything
    # Its GNN embedding came from text and KG: its nearest item shares the director or genre.
    assert rec.similar_items("m14", k=3).item_ids
    u01_history = {rec.item_ids.ids[i] for i in rec._seen[rec.user_ids.index("u01")]}
    assert "m01" in u01_history  # Heat, also by Michael Mann
    why = rec.explain("u01", "m14")
    assert any("Michael Mann" in p.text for p in why.kg_paths)
    assert "Thief" in why.sentence and set(why.shares) == {"gnn", "als", "lightgcn"}
    json.dumps(why.to_dict())  # JSON-ready
    # Saved and loaded: the same rankings, the update replayed.
    rec.save(tmp_path / "saved")
    again = Recommender.load(tmp_path / "saved")
    assert again.recommend("u01", k=rec.num_items).item_ids == everything
    torch.testing.assert_close(again.mix.towers["gnn"].item, rec.mix.towers["gnn"].item)


def test_an_added_copy_of_a_film_is_that_film_without_its_interactions(rec):
    """add_items attaches exactly the KG and attribute edges training gave the film and
    renders the same text: the copy's GNN vector is the film's, folded without its users."""
    godfather = rec.item_ids.index("m02")
    row = {"item_id": "m02-copy", "title": "The Godfather", "year": "1972",
           "genre": "Crime|Drama", "iri": "http://example.org/kg/the_godfather"}
    rec.add_items([row])
    copy = rec.item_ids.index("m02-copy")
    content = {e: ei[:, ei[1] == godfather] for e, ei in rec._edges.items()
               if e[2] == "item" and e[0] != "user"}
    content = {e: torch.stack([torch.zeros_like(ei[0]), ei[0]]) for e, ei in content.items()}
    assert sum(ei.size(1) for ei in content.values()) >= 4  # director, actors, genres
    h0 = rec.model.gnn.text_input("item", rec._x_dict["item"][godfather:godfather + 1], 1)
    expected = rec.model.gnn.fold_in("item", h0, content, rec._layers)[0]
    tower = rec.mix.towers["gnn"].item
    torch.testing.assert_close(rec._gnn_items()[copy], expected, rtol=1e-5, atol=1e-5)
    # The same centred text; in the tower, boosted as an item without interactions.
    text = rec._item_text()
    torch.testing.assert_close(text[copy], text[godfather], rtol=1e-4, atol=1e-4)
    boost = rec.model.cold_text_log_scale.detach().exp()
    torch.testing.assert_close(tower[copy, rec._text_columns], boost * text[godfather],
                               rtol=1e-4, atol=1e-4)


def test_with_a_cold_start_stage_an_added_item_is_scored_by_it_and_saved_with_it(
        example_run, tmp_path):
    from hybridrec.models.cold import ColdStart, fit_content_prior
    from hybridrec.pipeline import mean_item_scores
    from hybridrec.run import load_run

    run = load_run(example_run)
    x = run.graph["item"].x
    stage = ColdStart(0.5, 0.25, 1.0, *fit_content_prior(mean_item_scores(run.scorer), x,
                                                           run.scorer.item_degree > 0))
    run.scorer.set_cold(stage, stage.prior(x))
    rec = Recommender(run)
    godfather = rec.item_ids.index("m02")
    row = {"item_id": "m02-copy", "title": "The Godfather", "year": "1972",
           "genre": "Crime|Drama", "iri": "http://example.org/kg/the_godfather"}
    rec.add_items([row])
    copy = rec.item_ids.index("m02-copy")
    # Same text, same content prior; scored by the stage: no ID signal, no collaborative part.
    torch.testing.assert_close(rec.mix.item_prior[copy], rec.mix.item_prior[godfather])
    u = rec.user_ids.index("u01")
    parts = rec.mix.parts(torch.tensor([u]))
    assert float(parts["als"][0, copy]) == 0.0 and float(parts["gate"][0, copy]) == 1.0
    gnn = rec.mix.towers["gnn"]
    z = gnn.user[u] @ gnn.item.t()
    z = (z - z.mean()) / z.std()
    expected = 0.5 * z[copy] + 0.25 + float(rec.mix.item_prior[copy])
    torch.testing.assert_close(rec.mix.score(torch.tensor([u]))[0, copy], expected)
    rec.save(tmp_path / "saved")
    again = Recommender.load(tmp_path / "saved")
    assert again.mix.cold.settings() == stage.settings()
    assert again.recommend("u01", k=again.num_items) == rec.recommend("u01", k=rec.num_items)


def test_failed_add_items_changes_nothing(rec):
    before = (rec.num_items, rec.mix.towers["gnn"].item.clone())
    bad_calls = [
        ([{"item_id": "m15", "year": "1999", "genre": "Drama"}], [], "missing title"),
        ([{**THIEF, "item_id": "m01"}], [], "'m01' is already known"),
        ([THIEF], [("http://example.org/kg/thief", "schema:madeUp", MANN)],
         "'schema:madeUp' is unknown"),
        ([THIEF], [(MANN, "schema:director", "http://example.org/kg/heat")],
         "points to none of"),
    ]
    for rows, triples, message in bad_calls:
        with pytest.raises(DataError, match=message):
            rec.add_items(rows, triples)
        assert rec.num_items == before[0]
        assert torch.equal(rec.mix.towers["gnn"].item, before[1])


def test_add_interactions_folds_in_without_retraining(rec):
    before = rec.recommend("u02", k=12).item_ids
    target = before[0]
    assert rec.add_interactions([("u02", target), ("newbie", "m01"), ("newbie", "m02")]) == \
        ["u02", "newbie"]
    assert target not in rec.recommend("u02", k=12).item_ids  # seen at once
    newbie = rec.recommend("newbie", k=3)
    assert newbie.source == "model" and not {"m01", "m02"} & set(newbie.item_ids)
    users, u03 = len(rec.user_ids), rec.user_ids.index("u03")
    seen = set(rec._seen[u03])
    with pytest.raises(UnknownIdError, match="unknown item 'nope'"):
        rec.add_interactions([("u03", "m01"), ("late", "nope")])
    assert len(rec.user_ids) == users and rec._seen[u03] == seen


def test_an_old_run_folder_asks_for_a_retrain(example_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(example_run, old)
    info = json.loads((old / "run.json").read_text())
    info["format"] = "hybridrec-run/5"
    (old / "run.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="retrain"):
        Recommender.load(old)


def test_cli_recommend_history_text_similar_and_add_items(example_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "cli-run"
    shutil.copytree(example_run, run)
    assert recommend_main([str(run), "--user", "u01", "-k", "3", "--explain"]) == 0
    table = capsys.readouterr().out
    assert "Top 3 for user u01" in table and "|" in table
    assert recommend_main([str(run), "--user", "u01", "-k", "2", "--json", "--explain"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 2 and "explanation" in out["items"][0]
    for flags in (["--history", "m01,m02"], ["--text", "a gangster film"],
                  ["--similar", "m01"]):
        assert recommend_main([str(run), *flags, "-k", "2", "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["items"]) == 2
    items = tmp_path / "new.csv"
    items.write_text("item_id,title,year,genre,iri\n"
                     "m14,Thief,1981,Crime|Thriller,http://example.org/kg/thief\n")
    kg = tmp_path / "new.ttl"
    kg.write_text("@prefix schema: <http://schema.org/> .\n"
                  "<http://example.org/kg/thief> schema:director "
                  "<http://example.org/kg/michael_mann> ;\n"
                  "    schema:name \"Thief\" .\n")
    assert recommend_main([str(run), "--add-items", str(items), "--kg", str(kg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == ["m14"]
    assert recommend_main([str(run), "--similar", "m14", "-k", "2"]) == 0
    assert "Items similar to m14" in capsys.readouterr().out
    assert "m14" in Recommender.load(run).item_ids
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nnewcomer,m14\nnewcomer,m01\n")
    assert recommend_main([str(run), "--add-interactions", str(events), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == ["newcomer"]
    assert recommend_main([str(run), "--user", "newcomer", "-k", "2", "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)["items"]
    assert len(ranking) == 2 and not {"m14", "m01"} & {r["item_id"] for r in ranking}


def test_cli_unknown_user_is_a_clear_error(example_run, capsys):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hybridrec.recommend", str(example_run),
                           "--user", "nobody"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "error: unknown user 'nobody'" in done.stderr and "Traceback" not in done.stderr

