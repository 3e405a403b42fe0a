"""Networks only: no file or network I/O happens in this package."""

from dagan.nn.common import Keypoints
from dagan.nn.dense_motion import DenseMotionNetwork
from dagan.nn.depth_decoder import DepthDecoder
from dagan.nn.depth_encoder import DepthEncoder
from dagan.nn.discriminator import MultiScaleDiscriminator
from dagan.nn.generator import DepthAwareGenerator, SourceEncoding
from dagan.nn.keypoint_detector import KeypointDetector
from dagan.nn.spade_generator import SPADEDepthAwareGenerator

__all__ = [
    "DenseMotionNetwork",
    "DepthAwareGenerator",
    "DepthDecoder",
    "DepthEncoder",
    "Keypoints",
    "KeypointDetector",
    "MultiScaleDiscriminator",
    "SPADEDepthAwareGenerator",
    "SourceEncoding",
]
