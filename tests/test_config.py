"""Configs: paper defaults, presets, dotted overrides, unknown keys rejected."""

from __future__ import annotations

import tomllib

import pytest

from alexnet.config import Config, load_config, parse_override, presets, to_toml, config_from_dict
from alexnet.errors import UserError
from alexnet.paper import DATA, LEARNING


def test_paper_preset_is_the_paper() -> None:
    c = load_config("paper")
    assert c.optim.batch_size == LEARNING.batch_size and c.optim.lr == LEARNING.lr
    assert c.optim.momentum == LEARNING.momentum and c.optim.weight_decay == LEARNING.weight_decay
    assert c.data.crop == DATA.crop_size and c.data.pca_std == DATA.pca_std
    assert c.schedule.max_reductions == LEARNING.lr_reductions and c.schedule.max_epochs == LEARNING.epochs
    assert c.model.reading == "paper"


def test_every_preset_loads() -> None:
    assert {"paper", "code2012", "demo", "cifar10", "imagenette", "fashion-mnist"} <= set(presets())
    for name in presets():
        load_config(name)
    assert load_config("code2012").model.reading == "code2012"


def test_overrides_are_typed() -> None:
    c = load_config("paper", ["optim.lr=0.02", "model.variants=tanh,no-lrn", "data.pca=false", "run.device=cpu"])
    assert c.optim.lr == 0.02 and c.model.variants == ["tanh", "no-lrn"] and c.data.pca is False
    assert c.run.device == "cpu"
    assert load_config("paper", ["optim.lr=1"]).optim.lr == 1.0
    assert parse_override("schedule.drop_epochs=[1, 2]") == ("schedule", "drop_epochs", [1, 2])


def test_unknown_keys_list_the_valid_ones() -> None:
    with pytest.raises(UserError, match=r"unknown key optim.learning_rate; valid keys in \[optim\]: lr, momentum"):
        load_config("paper", ["optim.learning_rate=0.1"])
    with pytest.raises(UserError, match="unknown section 'optimizer'; valid sections: data, model, optim"):
        load_config("paper", ["optimizer.lr=0.1"])
    with pytest.raises(UserError, match="preset: unknown value 'alexnet'; allowed: "):
        load_config("alexnet")
    with pytest.raises(UserError, match="data.pca: must be true or false"):
        load_config("paper", ["data.pca=3"])
    with pytest.raises(UserError, match="expected section.key=value"):
        load_config("paper", ["lr=3"])


def test_resolved_config_round_trips_through_toml(tmp_path) -> None:
    c = load_config("demo", ["optim.lr=0.5"])
    text = to_toml(c)
    assert config_from_dict(tomllib.loads(text)) == c
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(file=path) == c
    with pytest.raises(UserError, match="does not exist"):
        load_config(file=tmp_path / "missing.toml")
    assert isinstance(c, Config)


def test_the_choices_restated_in_config_are_those_of_their_modules() -> None:
    from alexnet.config import CHOICES
    from alexnet.net.model import INITS
    from alexnet.runtime import AMP_CHOICES
    from alexnet.training.schedule import SCHEDULE_KINDS

    assert CHOICES["model.init"] == INITS and CHOICES["schedule.kind"] == SCHEDULE_KINDS
    assert CHOICES["run.amp"] == AMP_CHOICES


def test_values_are_checked_in_one_place_with_their_key() -> None:
    from alexnet.config import validate

    with pytest.raises(UserError, match="must be at least 1, got 0") as err:
        load_config("paper", ["optim.batch_size=0"])
    assert err.value.key == "optim.batch_size"
    config = load_config("paper")
    config.data.workers = -1  # a library caller that skips load_config
    with pytest.raises(UserError, match="data.workers: must be at least 0"):
        validate(config)
    assert load_config("paper", ["schedule.drop_epochs=3,5"]).schedule.drop_epochs == [3, 5]


def test_the_choices_config_checks_are_the_ones_the_code_accepts() -> None:
    """config.py sits below the modules that define the choices, so it restates them: they must not drift."""
    from alexnet.config import CHOICES
    from alexnet.data.augment import MEAN_MODES
    from alexnet.data.norm import CHANNEL_ORDERS
    from alexnet.net.model import ARCHS, DROPOUTS, INITS
    from alexnet.paper import READINGS
    from alexnet.runtime import AMP_CHOICES
    from alexnet.training.schedule import SCHEDULE_KINDS

    assert CHOICES["data.mean"] == MEAN_MODES and CHOICES["data.channels"] == CHANNEL_ORDERS
    assert CHOICES["model.init"] == INITS and tuple(CHOICES["model.arch"]) == tuple(ARCHS)
    assert CHOICES["model.dropout"] == DROPOUTS
    assert CHOICES["model.reading"] == READINGS and CHOICES["run.amp"] == AMP_CHOICES
    assert CHOICES["schedule.kind"] == SCHEDULE_KINDS


def test_small_data_presets_start_from_he_scaled_and_the_faithful_ones_from_section_5() -> None:
    # docs/fidelity.md "initialisation of the small-data presets": §5's init stays in the readings of the paper
    for name in ("paper", "code2012"):
        c = load_config(name)
        assert c.model.init == "paper" and c.schedule.warmup_steps == 0, name
    for name in ("demo", "cifar10", "imagenette-128"):
        assert load_config(name).model.init == "he-scaled", name
    # a warm-up of about one epoch where the full rate from step 1 was measured to kill fc6/fc7's ReLUs:
    # the demo's 2,700 training images in batches of 64 (43 steps); Imagenette's 8,969 in batches of 128 (70)
    assert load_config("demo").schedule.warmup_steps == 43
    assert load_config("imagenette-128").schedule.warmup_steps == 70
