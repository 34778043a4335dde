"""The cold-start stage: items of degree 0 scored by content, prior and offset; its content
prior's regression; its validation search; save -> load and growth through the mix."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hybridrec.data.errors import DataError
from hybridrec.models import Mix, Tower
from hybridrec.models.cold import GRID, ColdStart, fit_content_prior, search_cold_start
from hybridrec.run import load_scorer


def _mix(num_users=5, num_items=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    towers = {name: Tower(torch.randn(num_users, 3, generator=g),
                          torch.randn(num_items, 3, generator=g))
              for name in ("gnn", "als", "lightgcn")}
    degree = torch.tensor([3.0, 1, 0, 2, 0, 5, 1, 4])[:num_items]
    for name in ("als", "lightgcn"):  # the collaborative towers never saw items of degree 0
        towers[name].item[degree == 0] = 0
    return Mix(towers, torch.ones(num_users), degree)


def _z(scores):
    return (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, keepdim=True)


def test_items_of_degree_zero_are_scored_by_the_stage_and_the_others_are_not():
    plain = _mix()
    staged = _mix()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    stage = ColdStart(0.5, 0.25, 2.0, torch.tensor([1.0, -1.0, 0.5, 0.0]), 0.1)
    staged.set_cold(stage, stage.prior(x))
    users = torch.arange(5)
    cold = plain.item_degree == 0
    z_gnn = _z(plain.towers["gnn"].user @ plain.towers["gnn"].item.t())
    expected = 0.5 * z_gnn + 0.25 + 2.0 * (x @ stage.weight + 0.1)
    score = staged.score(users)
    torch.testing.assert_close(score[:, cold], expected[:, cold])
    torch.testing.assert_close(score[:, ~cold], plain.score(users)[:, ~cold])
    parts = staged.parts(users)
    torch.testing.assert_close(sum(parts[n] for n in staged.names), score)
    assert bool((parts["gate"][:, cold] == 1).all())
    assert bool((parts["als"][:, cold] == 0).all())
    with pytest.raises(ValueError, match="item_prior"):
        staged.set_cold(stage, torch.zeros(3))


def test_save_load_copy_and_growth_keep_the_stage(tmp_path):
    mix = _mix()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    stage = ColdStart(1.0, -0.5, 1.0, torch.randn(4, generator=torch.Generator()), 0.0)
    mix.set_cold(stage, stage.prior(x))
    (tmp_path / "run").mkdir()
    mix.save(tmp_path / "run" / "scorers.safetensors")
    loaded = load_scorer(tmp_path / "run")
    users = torch.arange(5)
    torch.testing.assert_close(loaded.score(users), mix.score(users))
    assert loaded.cold.settings() == stage.settings()
    # A new item (degree 0, zero collaborative rows) is scored by the stage at once.
    grown = loaded.copy()
    new_x = torch.randn(1, 4)
    rows = {name: torch.zeros(1, 3) for name in grown.names}
    rows["gnn"] = torch.randn(1, 3)
    with pytest.raises(ValueError, match="prior per item"):
        grown.add_items(rows, torch.zeros(1))
    grown.add_items(rows, torch.zeros(1), stage.prior(new_x))
    assert grown.num_items == 9 and loaded.num_items == 8
    z = _z(grown.towers["gnn"].user @ grown.towers["gnn"].item.t())[:, 8]
    torch.testing.assert_close(grown.score(users)[:, 8], z - 0.5 + float(stage.prior(new_x)))


def test_a_spoilt_stage_in_the_file_is_refused(tmp_path):
    mix = _mix()
    stage = ColdStart(1.0, 0.0, 1.0, torch.zeros(4), 0.0)
    mix.set_cold(stage, torch.zeros(8))
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "scorers.safetensors"
    mix.save(path)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    meta = json.loads(metadata["mix"])
    meta["cold"]["shift"] = "nan"
    save_file(tensors, str(path), metadata={**metadata, "mix": json.dumps(meta)})
    with pytest.raises(DataError, match="mix.cold"):
        load_scorer(tmp_path / "run")
    meta["cold"]["shift"] = 0.0
    tensors["cold.item_prior"] = torch.zeros(7)
    save_file(tensors, str(path), metadata={**metadata, "mix": json.dumps(meta)})
    with pytest.raises(DataError, match="cold.item_prior"):
        load_scorer(tmp_path / "run")


def test_the_content_prior_recovers_a_linear_truth_from_warm_items_only():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 5, generator=g)
    w = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.25])
    truth = x @ w + 0.3
    warm = torch.arange(300) < 250
    target = torch.where(warm, truth, torch.full_like(truth, 99.0))  # cold rows are not read
    weight, bias = fit_content_prior(target, x, warm)
    prior = x @ weight + bias
    torch.testing.assert_close(prior[~warm], truth[~warm], atol=0.05, rtol=0.0)


def test_the_search_finds_the_best_stage_and_keeps_it_only_when_it_beats_the_plain_mix():
    best = {"scale": 0.5, "shift": 0.5, "prior_scale": 2.0}
    assert all(v in GRID[k] for k, v in best.items())

    def validate(stage):
        if stage is None:
            return 0.0
        return 1.0 - sum(abs(getattr(stage, k) - v) for k, v in best.items())

    stage, report = search_cold_start(validate, torch.zeros(3), 0.0)
    assert stage is not None and report["kept"]
    assert {k: getattr(stage, k) for k in best} == best
    assert report["valid"] == 1.0 and report["valid_plain"] == 0.0
    assert len(report["trials"]) > 1
    stage, report = search_cold_start(lambda s: 2.0 if s is None else validate(s),
                                      torch.zeros(3), 0.0)
    assert stage is None and not report["kept"]
