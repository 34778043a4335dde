import json

import numpy as np
import pytest

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


def test_cold_start_benchmark_compares_the_three_ways_on_a_cold_split_run(tmp_path, capsys):
    import torch

    from benchmarks.cold_start import VARIANTS
    from benchmarks.cold_start import main as cold_start_main
    from hybridrec.testing import EXAMPLE_DATA, EXAMPLE_SMALL
    from hybridrec.train import main as train_main

    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        assert train_main(EXAMPLE_DATA + EXAMPLE_SMALL + [
            "--split", "cold-items", "--cold-fraction", "0.3", "--cold-start",
            "--out", str(run)]) == 0
        assert cold_start_main(["--runs", str(run), "--out", str(tmp_path / "out")]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "out" / "cold_start.json").read_text())
    (one,) = result["runs"]
    assert one["split"] == "cold-items" and one["stage_search"]["simulated_cold_items"] == 0
    assert one["simulated_search"]["simulated_cold_items"] >= 1
    for variant in VARIANTS:
        test = one[variant]["test"]
        assert 0 <= test["cold share"] <= 1 and 0 < test["cold positive share"] <= 1
        # Slots on cold items without a test positive are some of the cold items' slots.
        assert 0 <= test["idle cold share"] <= test["cold share"] + 1e-9
    # Without a kept stage, "stage" is the plain mix itself.
    if not one["stage_search"]["kept"]:
        assert one["stage"]["test"] == one["plain"]["test"]
    assert "| plain |" in capsys.readouterr().out
    assert train_main(EXAMPLE_DATA + EXAMPLE_SMALL + ["--out", str(tmp_path / "plain")]) == 0
    with pytest.raises(SystemExit, match="trained without --cold-start"):
        cold_start_main(["--runs", str(tmp_path / "plain"), "--out", str(tmp_path / "o")])
