"""Config values as users type them: YAML 1.1 reads `1e-3` as a string, which must not reach the optimizer."""

from __future__ import annotations

import pytest

from rspretrain.config import load_config


def test_exponent_without_dot_is_a_float():
    cfg = load_config(None, ["train.lr=1e-3", "train.blr=2e-4", "model.mask_ratio=8e-1"])
    assert (cfg.train.lr, cfg.train.blr, cfg.model.mask_ratio) == (1e-3, 2e-4, 0.8)


def test_a_word_for_a_number_names_the_option():
    with pytest.raises(ValueError, match="train.lr must be a number, got 'fast'"):
        load_config(None, ["train.lr=fast"])
