import json

import numpy as np

from benchmarks.registry import REGISTRY, ModelContext, register_model
from benchmarks.run import main


def _csv(tmp_path, num_users=50, num_items=40, seed=0):
    gen = np.random.default_rng(seed)
    rows = ["user_id,item_id,rating"]
    for u in range(num_users):
        for i in gen.choice(num_items, size=12, replace=False):
            rows.append(f"u{u},i{i},{gen.integers(1, 6)}")
    path = tmp_path / "interactions.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_runs_both_splits_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--interactions", str(_csv(tmp_path)), "--models", "pop,itemknn,bpr_mf",
                 "--max-epochs", "4", "--no-search", "--ks", "5,10", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["split"], r["model"]) for r in results["runs"]] == [
        ("random", "pop"), ("random", "itemknn"), ("random", "bpr_mf"),
        ("cold-items", "pop"), ("cold-items", "itemknn"), ("cold-items", "bpr_mf")]
    run = results["runs"][-1]
    assert run["params"]["epochs"] <= 4
    assert 0.0 <= run["test"]["ndcg@10"] <= 1.0
    assert set(run["test"]["by_popularity"]) == {"head", "torso", "tail"}
    assert run["test_cold_only"]["candidate_items"] == 4  # 10% of 40 items
    assert run["memory"]["max_rss_mb"] > 0
    assert {"torch", "torch_geometric", "implicit", "python"} <= set(results["versions"])
    table = (out / "results.md").read_text()
    assert "### split: cold-items" in table and "| bpr_mf |" in table
    assert (out / "popularity.png").stat().st_size > 0
    assert (out / "cold.png").stat().st_size > 0
    assert "| pop |" in capsys.readouterr().out


def test_registry_is_an_extension_point(tmp_path):
    calls = []

    @register_model("test-constant", default=False)
    def _constant(ctx: ModelContext):
        calls.append(ctx.split.kind)
        ctx.record["params"] = {"value": 1}
        from hybridrec.baselines import MostPopular

        return MostPopular(device="cpu").fit(ctx.split.train, ctx.dataset.num_users,
                                             ctx.dataset.num_items)

    try:
        assert not REGISTRY["test-constant"].default
        out = tmp_path / "out"
        main(["--interactions", str(_csv(tmp_path)), "--models", "test-constant",
              "--split", "random", "--out", str(out), "--ks", "5"])
        results = json.loads((out / "results.json").read_text())
        assert calls == ["random"]
        assert results["runs"][0]["params"] == {"value": 1}
    finally:
        del REGISTRY["test-constant"]
