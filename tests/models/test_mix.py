"""Mix: per-user standardised towers, fixed weights or a gate; save -> load; growth."""
import pytest
import torch

from hybridrec.models import Mix, ScoreGate, Tower


def _towers(num_users=4, num_items=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {name: Tower(torch.randn(num_users, 3, generator=g), torch.randn(num_items, 3,
                                                                               generator=g))
            for name in ("gnn", "als", "lightgcn")}


def _z(scores):
    return (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, keepdim=True)


def test_fixed_mix_is_the_mean_of_standardised_scores():
    towers = _towers()
    mix = Mix(towers, torch.ones(4), torch.ones(6))
    users = torch.tensor([0, 2])
    expected = sum(_z(t.user[users] @ t.item.t()) for t in towers.values()) / 3
    torch.testing.assert_close(mix.score(users), expected)
    parts = mix.parts(users)
    assert set(parts) == {"gnn", "als", "lightgcn", "gate"}
    torch.testing.assert_close(parts["gate"], torch.full((2, 6), 1 / 3))
    assert mix.score(torch.zeros(0, dtype=torch.long)).shape == (0, 6)
    with pytest.raises(IndexError, match="unknown user_index 4"):
        mix.score(torch.tensor([4]))


def test_weights_and_gate_prior():
    towers = _towers()
    mix = Mix(towers, torch.ones(4), torch.ones(6), weights={"gnn": 2, "als": 1, "lightgcn": 1})
    assert mix.weights["gnn"] == 0.5 and mix.fixed_gate == 0.5
    # A fresh gate with the fixed mix's prior scores exactly as the fixed mix.
    gated = Mix(_towers(), torch.ones(4), torch.ones(6), weights=mix.weights,
                gate=ScoreGate(3, 8, prior=mix.fixed_gate))
    users = torch.arange(4)
    torch.testing.assert_close(gated.score(users), mix.score(users))
    with pytest.raises(ValueError, match="one positive weight per tower"):
        Mix(towers, torch.ones(4), torch.ones(6), weights={"gnn": 1})


def test_a_zero_row_scores_every_item_alike():
    towers = _towers()
    towers["als"].user[1] = 0
    mix = Mix(towers, torch.ones(4), torch.ones(6))
    assert torch.equal(mix.parts(torch.tensor([1]))["als"], torch.zeros(1, 6))


def test_save_load_equal_scores_with_a_gate(tmp_path):
    gate = ScoreGate(3, 8, prior=1 / 3)
    torch.nn.init.normal_(gate.item_mlp[2].weight)  # as after training
    mix = Mix(_towers(), torch.arange(4.0), torch.arange(6.0), gate=gate)
    mix.save(tmp_path / "mix.safetensors")
    loaded = Mix.load(tmp_path / "mix.safetensors")
    users = torch.arange(4)
    torch.testing.assert_close(loaded.score(users), mix.score(users))
    assert repr(loaded).startswith("Mix(gnn 0.333")


def test_growth_adds_users_and_items_and_keeps_the_copy_apart():
    mix = Mix(_towers(), torch.ones(4), torch.ones(6))
    grown = mix.copy()
    grown.add_items({name: torch.randn(2, 3) for name in mix.names}, torch.zeros(2))
    grown.set_users([5], {name: torch.randn(1, 3) for name in mix.names}, torch.tensor([3.0]))
    assert (grown.num_users, grown.num_items) == (6, 8)
    assert (mix.num_users, mix.num_items) == (4, 6)
    assert grown.score(torch.tensor([5])).shape == (1, 8)
    users = {name: grown.towers[name].user[[5]] for name in grown.names}
    parts = grown.parts_of(users)
    torch.testing.assert_close(sum(parts[n] for n in grown.names), grown.score(torch.tensor([5])))


def test_a_tower_zeroes_the_rows_its_scorer_never_saw():
    tower = Tower.from_scorer(torch.ones(3, 2), torch.ones(4, 2),
                              user_known=torch.tensor([True, False, True]),
                              item_known=torch.tensor([True, True, False, True]))
    assert tower.user[1].abs().sum() == 0 and tower.item[2].abs().sum() == 0
    assert tower.user[0].abs().sum() == 2 and tower.item[3].abs().sum() == 2
