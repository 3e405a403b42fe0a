"""DaGAN: depth-aware talking-head video generation (Hong et al., CVPR 2022).

The public API, loaded on first use so that ``import dagan`` (and ``dagan --help``) stays fast::

    from dagan import Animator, animate_files, read_image, read_video

    animator = Animator.from_checkpoint("DaGAN_vox_adv_256.pth.tar", "weights_19")
    result = animator("portrait.jpg", "driving.mp4")  # paths, arrays or PIL images
    result.save("result.mp4")

Frames are (H, W, 3) float32 RGB in [0, 1] everywhere (``dagan.io``). The commands' jobs are
here too: ``animate_files``, ``animate_footage``, ``crop_files``, ``train``, ``train_depth``,
``generate`` and ``evaluate``, with their options dataclasses (``dagan.options``, which the
command line is generated from).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_EXPORTS = {
    "Animator": "dagan.pipelines.animate",
    "AnimationOutput": "dagan.pipelines.animate",
    "animate_files": "dagan.pipelines.animate",
    "AnimateOptions": "dagan.options",
    "animate_footage": "dagan.pipelines.footage",
    "crop_files": "dagan.pipelines.crop",
    "read_image": "dagan.io.image",
    "read_video": "dagan.io.video",
    "train": "dagan.pipelines.train",
    "TrainOptions": "dagan.options",
    "train_depth": "dagan.pipelines.depth_train",
    "DepthTrainOptions": "dagan.options",
    "generate": "dagan.pipelines.generate",
    "GenerateOptions": "dagan.options",
    "evaluate": "dagan.pipelines.evaluate",
    "EvaluateOptions": "dagan.options",
    "DaganError": "dagan.errors",
}

# Spelled out for linters and type checkers; a test checks it names exactly _EXPORTS.
__all__ = [
    "__version__",
    "Animator",
    "AnimationOutput",
    "animate_files",
    "AnimateOptions",
    "animate_footage",
    "crop_files",
    "read_image",
    "read_video",
    "train",
    "TrainOptions",
    "train_depth",
    "DepthTrainOptions",
    "generate",
    "GenerateOptions",
    "evaluate",
    "EvaluateOptions",
    "DaganError",
]

if TYPE_CHECKING:
    from dagan.errors import DaganError
    from dagan.io.image import read_image
    from dagan.io.video import read_video
    from dagan.options import AnimateOptions, DepthTrainOptions, EvaluateOptions, GenerateOptions, TrainOptions
    from dagan.pipelines.animate import AnimationOutput, Animator, animate_files
    from dagan.pipelines.crop import crop_files
    from dagan.pipelines.depth_train import train_depth
    from dagan.pipelines.evaluate import evaluate
    from dagan.pipelines.footage import animate_footage
    from dagan.pipelines.generate import generate
    from dagan.pipelines.train import train


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first asked for (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dagan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for completion in notebooks."""
    return sorted(__all__)
