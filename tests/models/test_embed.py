"""Patch embedding: per-channel log power of each token, against a naive loop."""

from __future__ import annotations

import numpy as np
import torch

from isoprobe.data.modalities import ModalityGroup
from isoprobe.data.tokens import TokenConfig, channels_per_token, patchify
from isoprobe.models.components.embed import patch_log_power
from isoprobe.training.trainer import jitter_gain
from tests.tolerance import assert_close


def test_patch_log_power_matches_a_loop_over_patches_and_channels():
    generator = np.random.default_rng(0)
    windows = generator.normal(size=(3, 40, 5)).astype(np.float32) * np.array([0.1, 1, 2, 3, 4], dtype=np.float32)
    group = ModalityGroup("emg", "emg", tuple(range(5)))
    config = TokenConfig(patch_ms=5.0)  # 10 samples per patch at 2 kHz -> 4 tokens
    tokens = torch.from_numpy(patchify(windows, group, config, 2000.0))
    power = patch_log_power(tokens, channels_per_token(config, 5)).numpy()
    expected = np.empty((3, 4, 5))
    for b in range(3):
        for p in range(4):
            for c in range(5):
                expected[b, p, c] = np.log(np.mean(windows[b, p * 10 : (p + 1) * 10, c].astype(np.float64) ** 2) + 1e-4)
    assert_close(power, expected)  # float32 against float64 log powers of size ~5


def test_channel_and_grid_tokens_hold_one_and_tile_many_channels():
    assert channels_per_token(TokenConfig(patch="channel"), 12) == 1
    assert channels_per_token(TokenConfig(patch="grid", tile=(4, 4)), 128) == 16
    assert channels_per_token(TokenConfig(), 36) == 36


def test_gain_jitter_scales_whole_channels_of_each_window():
    torch.manual_seed(0)
    windows = torch.randn(4, 50, 3)
    jittered = jitter_gain(windows, 0.3)
    ratio = jittered / windows
    # one gain per window and channel, constant over time, not all equal
    assert torch.allclose(ratio, ratio[:, :1, :].expand_as(ratio), atol=1e-5)
    assert ratio[:, 0, :].std() > 0.05
    assert torch.equal(jitter_gain(windows, 0.0), windows)
