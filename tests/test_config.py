"""The typed config and the original YAML."""

from __future__ import annotations

import pytest
import yaml

from dagan.config import config_from_dict, config_to_dict, load_config
from dagan.errors import DaganError


def test_original_vox_config_reads_unchanged():
    config = load_config()
    assert config.model.kp_detector.num_channels == 4  # RGB + depth
    assert config.model.kp_detector.num_kp == 10  # as the original file says; checkpoints override it
    assert config.model.generator.dense_motion.scale_factor == 0.25
    assert config.model.discriminator.scales == (1,)
    assert config.train.loss_weights.perceptual == (10, 10, 10, 10, 10)
    assert config.train.scales == (1, 0.5, 0.25, 0.125)
    assert config.data.horizontal_flip and config.data.jitter_hue == 0.1


def test_own_schema_round_trips(tmp_path):
    config = load_config().model.with_num_kp(15)
    text = yaml.safe_dump({"model": config_to_dict(config)})
    path = tmp_path / "own.yaml"
    path.write_text(text)
    assert load_config(path).model == config
    assert config_from_dict({"model": config_to_dict(config)}).model.generator.dense_motion.num_kp == 15


def test_unknown_keys_are_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  generator:\n    block_expansoin: 3\n")
    with pytest.raises(DaganError, match="block_expansoin"):
        load_config(path)


def test_a_switch_that_is_not_true_or_false_is_refused(tmp_path):
    path = tmp_path / "switch.yaml"
    path.write_text("model:\n  generator:\n    dense_motion: {align_corners: 1}\n")
    with pytest.raises(DaganError, match="align_corners must be true or false"):
        load_config(path)


def test_missing_config_is_a_clean_error(tmp_path):
    with pytest.raises(DaganError, match="cannot read config"):
        load_config(tmp_path / "none.yaml")


def test_a_retired_key_of_an_earlier_config_is_read_and_dropped(tmp_path):
    written = config_to_dict(load_config())
    written["train"]["checkpoint_freq"] = 10  # what dagan's earlier versions wrote
    config = config_from_dict(written)
    assert config.train.batch_size == load_config().train.batch_size
    assert "checkpoint_freq" not in config_to_dict(config)["train"]
