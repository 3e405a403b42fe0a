"""Evaluation pairs with ground truth, rendered from a ``dagan synth`` dataset's held-out identities.

Synthetic heads make cross-identity reenactment measurable: the truth for "identity A driven by
B's clip" is A rendered with B's head motion and expression. Layout (what ``dagan evaluate
--eval-set`` reads; every clip has ``NAME.npz`` with ``landmarks`` beside it):

- ``source_self/NAME.png`` frame 0 of a test clip; ``gt_self/NAME.mp4`` the rest of the clip, which
  also drives;
- ``source_cross/NAME.png`` identity A in the first pose of B's clip; ``driving_cross/NAME.mp4``
  B's clip; ``gt_cross/NAME.mp4`` A with B's motion;
- ``still_self/``, ``still_cross/``: the source repeated for every frame, the do-nothing baseline;
- ``demo/``: ``source.png``, ``source.json`` (its landmarks) and a longer ``driving.mp4``, as
  ``dagan demo`` ships them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dagan.data.synth import Motion, random_identity, random_motion, render_clip, write_clip_mp4
from dagan.errors import DaganError
from dagan.options import SynthEvalOptions

#: Motion seeds above any clip index of the dataset, for the demo's longer driving clip.
DEMO_MOTION_SEED = 1000


@dataclass
class SynthEvalReport:
    """What ``write_eval_set`` produced."""

    self_pairs: int
    cross_pairs: int
    frames: int
    out: Path


def _dataset_meta(data: Path) -> dict:
    meta_path = data / "synth.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        test = [int(name.removeprefix("id")) for name in meta["test_identities"]]
        for key, low in (("seed", 0), ("frames", 1), ("size", 2), ("clips_per_identity", 1)):
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} is {value!r}, not a whole number of at least {low}")
        return {**meta, "test": test}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DaganError(f"{data} is not a dagan synth dataset (no readable synth.json: {exc})") from exc


def _first(motion: Motion, frames: int) -> Motion:
    return Motion(**{name: value[:frames] for name, value in vars(motion).items()})


def _write_clip(path: Path, frames: np.ndarray, landmarks: np.ndarray | None) -> None:
    from dagan.io.atomic import atomic_output

    write_clip_mp4(path, frames)
    if landmarks is not None:
        with atomic_output(path.with_suffix(".npz")) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, landmarks=landmarks.astype(np.float32))


def write_eval_set(
    data: str | Path,
    out: str | Path,
    size: int | None = SynthEvalOptions.size,
    demo_frames: int = 100,
    quiet: bool = SynthEvalOptions.quiet,
) -> SynthEvalReport:
    """Render self- and cross-identity pairs of ``data``'s test identities (at ``size``) into ``out``."""
    from dagan.io.atomic import atomic_output, check_writable_directory
    from dagan.io.image import write_png

    data, out = Path(data), Path(out)
    meta = _dataset_meta(data)
    seed, frames, test = int(meta["seed"]), int(meta["frames"]), meta["test"]
    size = int(size or meta["size"])
    if frames < 2:
        raise DaganError(f"{data} has clips of {frames} frame; self-reenactment needs at least 2")
    if len(test) < 2:
        raise DaganError(f"{data} has {len(test)} test identities; cross-identity pairs need at least 2")
    folders = ("source_self", "gt_self", "still_self", "source_cross", "driving_cross", "gt_cross", "still_cross")
    for folder in (*folders, "demo"):
        check_writable_directory(out / folder)
    identities = {i: random_identity(np.random.default_rng([seed, i])) for i in test}
    clips = int(meta["clips_per_identity"])
    motions = {
        (i, k): random_motion(np.random.default_rng([seed, i, k + 1]), frames) for i in test for k in range(clips)
    }
    # Each test clip is both a self pair and the driver of a cross pair: render it once.
    rendered: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def test_clip(identity: int, k: int) -> dict[str, np.ndarray]:
        if (identity, k) not in rendered:
            rendered[identity, k] = render_clip(identities[identity], motions[identity, k], size)
        return rendered[identity, k]

    self_pairs = cross_pairs = 0
    with tqdm(total=2 * len(test) * clips + 1, unit="pair", disable=quiet, desc="synth-eval", file=sys.stderr) as bar:
        for position, a in enumerate(test):
            b = test[(position + 1) % len(test)]
            for k in range(clips):
                own = test_clip(a, k)
                name = f"id{a:04d}#clip{k:02d}"
                write_png(out / "source_self" / f"{name}.png", own["frames"][0])
                _write_clip(out / "gt_self" / f"{name}.mp4", own["frames"][1:], own["landmarks"][1:])
                _write_clip(out / "still_self" / f"{name}.mp4", np.repeat(own["frames"][:1], frames - 1, 0), None)
                self_pairs += 1
                bar.update(1)

                driver = test_clip(b, k)
                truth = render_clip(identities[a], motions[b, k], size)
                name = f"id{a:04d}_id{b:04d}#clip{k:02d}"
                write_png(out / "source_cross" / f"{name}.png", truth["frames"][0])
                _write_clip(out / "driving_cross" / f"{name}.mp4", driver["frames"], driver["landmarks"])
                _write_clip(out / "gt_cross" / f"{name}.mp4", truth["frames"], truth["landmarks"])
                _write_clip(out / "still_cross" / f"{name}.mp4", np.repeat(truth["frames"][:1], frames, 0), None)
                cross_pairs += 1
                bar.update(1)

        # The demo: the first test identity, driven by a longer clip of the second one.
        a, b = test[0], test[1]
        motion = random_motion(np.random.default_rng([seed, b, DEMO_MOTION_SEED]), demo_frames)
        source = render_clip(identities[a], _first(motion, 1), size)
        write_png(out / "demo" / "source.png", source["frames"][0])
        names = list(meta.get("landmarks", []))
        with atomic_output(out / "demo" / "source.json") as tmp:
            tmp.write_text(json.dumps({"landmarks": dict(zip(names, source["landmarks"][0].tolist(), strict=True))}))
        _write_clip(out / "demo" / "driving.mp4", render_clip(identities[b], motion, size)["frames"], None)
        bar.update(1)
    return SynthEvalReport(self_pairs, cross_pairs, frames, out)
