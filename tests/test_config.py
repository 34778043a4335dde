"""RunConfig: frozen, round-trips through JSON, rejects unknown keys, --set parses by type."""
import dataclasses
import json

import pytest

from hybridrec.config import DataConfig, ModelConfig, RunConfig, TrainConfig, apply_overrides


def test_round_trip_through_json(tmp_path):
    config = RunConfig(DataConfig(split="cold-items", ratios=(0.7, 0.2, 0.1)),
                       ModelConfig(use_kg=False), TrainConfig(lr=0.01, loss="bpr"))
    config.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == config
    assert json.loads((tmp_path / "config.json").read_text())["data"]["ratios"] == [0.7, 0.2, 0.1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0  # type: ignore[misc]


def test_missing_keys_keep_defaults():
    config = RunConfig.from_dict({"train": {"epochs": 3}})
    assert config.train.epochs == 3 and config.model == ModelConfig()


def test_a_retired_training_key_of_an_earlier_run_is_dropped():
    """Runs saved with the gate's former hold-out share still load (it only steered training);
    in a model section the same key is unknown."""
    config = RunConfig.from_dict({"train": {"gate_holdout": 0.1, "epochs": 3}})
    assert config.train.epochs == 3 and "gate_holdout" not in config.to_dict()["train"]
    with pytest.raises(ValueError, match="config.model: unknown key 'gate_holdout'"):
        RunConfig.from_dict({"model": {"gate_holdout": 0.1}})


@pytest.mark.parametrize("data, message", [
    ({"trian": {}}, "unknown key 'trian'; valid keys are data, model, train"),
    ({"train": {"learning_rate": 1}}, "config.train: unknown key 'learning_rate'; valid keys are "
                                      "epochs, batch_size, lr"),
    ({"train": {"epochs": "ten"}}, "config.train.epochs: expected an integer, got 'ten'"),
    ({"train": {"loss": "hinge"}}, "expected one of 'softmax', 'bpr'"),
    ({"model": {"use_text": 1}}, "expected true or false"),
    ({"data": {"ratios": [0.8, 0.2]}}, "expected a list of 3 values"),
])
def test_bad_dicts_name_the_key(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunConfig.from_dict(data)


def test_set_parses_by_field_type():
    config = apply_overrides(RunConfig(), [
        "train.lr=0.01", "train.epochs=7", "model.use_gate=false", "data.ratios=0.6,0.2,0.2",
        "data.test_file=none", "data.valid_file=b.csv", "model.conv=lightgcn"])
    assert config.train.lr == 0.01 and config.train.epochs == 7
    assert config.model.use_gate is False and config.model.conv == "lightgcn"
    assert config.data.ratios == (0.6, 0.2, 0.2)
    assert config.data.test_file is None and config.data.valid_file == "b.csv"


@pytest.mark.parametrize("assignment, message", [
    ("train.lr", "expected section.key=value"),
    ("lr=0.1", "expected section.key=value"),
    ("optim.lr=0.1", "unknown section 'optim'; valid sections are data, model, train"),
    ("train.rate=0.1", "unknown key 'rate' in train; valid keys are epochs"),
    ("train.epochs=1.5", "expected an integer, got '1.5'"),
    ("model.use_kg=maybe", "expected true or false"),
    ("train.loss=hinge", "expected one of"),
])
def test_bad_assignments_are_explained(assignment, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RunConfig(), [assignment])
