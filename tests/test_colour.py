"""The colour jitter's adjustments against torchvision's, to the bit."""

from __future__ import annotations

import pytest
import torch

from dagan.data import colour


def _frames(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(2, 3, 23, 31, generator=generator)
    frames[0, :, :4] = frames[0, :1, :4]  # grey pixels: all channels equal
    frames[1, 1, :3] = frames[1, 0, :3]  # ties between two channels
    frames[1, 2, 3:6] = frames[1, 1, 3:6]
    frames[0, :, 5, :4] = torch.tensor([0.0, 1.0, 0.5]).view(3, 1)  # each channel at its bounds
    return frames


@pytest.mark.parametrize("seed", range(4))
def test_adjustments_match_torchvision_to_the_bit(seed):
    tf = pytest.importorskip("torchvision.transforms.v2.functional")
    frames = _frames(seed)
    generator = torch.Generator().manual_seed(100 + seed)
    for _ in range(8):
        factor = float(torch.rand((), generator=generator)) * 1.6 + 0.2
        shift = float(torch.rand((), generator=generator)) - 0.5
        for ours, theirs, amount in (
            (colour.adjust_brightness, tf.adjust_brightness, factor),
            (colour.adjust_contrast, tf.adjust_contrast, factor),
            (colour.adjust_saturation, tf.adjust_saturation, factor),
            (colour.adjust_hue, tf.adjust_hue, shift),
        ):
            for frame in (frames, frames[0]):  # a batch and a single frame
                assert torch.equal(ours(frame, amount), theirs(frame, amount)), (ours.__name__, amount)


def test_hue_round_trip_keeps_the_frame_and_a_half_turn_changes_it():
    frames = _frames(7)
    assert torch.allclose(colour.adjust_hue(frames, 0.0), frames, atol=1e-6)
    turned = colour.adjust_hue(frames, 0.5)
    assert (turned - frames).abs().max() > 0.3
    assert torch.allclose(colour.adjust_hue(turned, -0.5), frames, atol=1e-5)
