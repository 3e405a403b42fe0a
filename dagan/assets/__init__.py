"""Files shipped inside the package: the bundled demo model and its inputs (docs/model-card.md)."""

from __future__ import annotations

from pathlib import Path

from dagan.errors import DaganError

DEMO_DIR = Path(__file__).parent / "demo"
#: Generator, keypoint detector and face-depth network, fp16 (scripts/train_demo_model.sh).
DEMO_MODEL = DEMO_DIR / "model.safetensors"
#: A held-out synthetic identity, and another one's head motion to drive it.
DEMO_SOURCE = DEMO_DIR / "source.png"
DEMO_DRIVING = DEMO_DIR / "driving.mp4"
#: Ground truth of the two: landmarks of the source, in pixels (JSON).
DEMO_SOURCE_LANDMARKS = DEMO_DIR / "source.json"


def bundled(path: Path) -> Path:
    """``path`` if this installation ships it; otherwise a one-line error saying how to get it."""
    if not path.is_file():
        raise DaganError(
            f"the bundled demo file {path} is missing from this installation "
            "(reinstall dagan, or retrain it with scripts/train_demo_model.sh)"
        )
    return path
