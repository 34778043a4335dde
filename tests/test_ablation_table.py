"""benchmarks.ablation: the hybrid variants are registered and the table averages over seeds."""
from benchmarks.ablation import ablation_table
from benchmarks.registry import REGISTRY, load_extensions


def test_variants_are_registered_and_only_the_full_hybrid_runs_by_default():
    load_extensions()
    names = ["hybrid", "hybrid_no_text", "hybrid_no_kg", "hybrid_no_mf", "hybrid_gate",
             "hybrid_no_lightgcn"]
    assert all(name in REGISTRY for name in names)
    assert [n for n in names if REGISTRY[n].default] == ["hybrid"]


def _run(model, split, seed, ndcg, cold):
    return {"model": model, "split": split, "seed": seed, "best_epoch": 10 + seed,
            "train_seconds": 5.0, "gate": {"head": 0.2, "torso": 0.3, "tail": 0.4, "cold": None},
            "test": {"recall@20": 0.3, "ndcg@20": ndcg,
                     "by_popularity": {"tail": {"recall@20": 0.05}}},
            "test_cold_only": None if cold is None else {"recall@20": cold, "ndcg@20": cold / 2}}


def test_table_has_one_row_per_variant_and_split():
    results = {"runs": [_run("hybrid", "random", 0, 0.30, None),
                        _run("hybrid", "random", 1, 0.32, None),
                        _run("hybrid_no_kg", "cold-items", 0, 0.28, 0.4)]}
    table = ablation_table(results)
    assert "### split: random" in table and "### split: cold-items" in table
    row = next(line for line in table.splitlines() if line.startswith("| hybrid |"))
    assert "0.3100 ± 0.0141" in row and row.endswith("| 2 |")
    cold = next(line for line in table.splitlines() if line.startswith("| hybrid_no_kg |"))
    assert "0.4000" in cold and "0.2000" in cold
