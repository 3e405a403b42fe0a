"""Where a demo model's error comes from, on self-reenactment pairs of a ``dagan synth-eval`` set.

For frame 0 of each test clip driven by its frame ``--frame`` (absolute keypoints), prints the
mean L1 to the truth of: the source itself (the still baseline), the source warped by the
model's motion (``deformed``), the model's output, and the output when the driving frame is the
source itself (what the decoder loses with no motion at all), plus the blend mask's mean.

python scripts/demo_diagnostics.py --eval-set runs/demo/eval [--checkpoint MODEL.safetensors]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dagan.assets import DEMO_MODEL
from dagan.io.image import read_image
from dagan.io.video import read_video
from dagan.pipelines.networks import load_animation_networks


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image[..., :3])).float().permute(2, 0, 1).unsqueeze(0)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-set", required=True, type=Path, help="a dagan synth-eval folder")
    parser.add_argument("--checkpoint", type=Path, default=Path(DEMO_MODEL), help="a model .safetensors")
    parser.add_argument("--frame", type=int, default=15, help="the driving frame of each clip")
    args = parser.parse_args()
    nets = load_animation_networks(args.checkpoint)
    errors: dict[str, list[float]] = {"still": [], "deformed": [], "output": [], "identity": [], "mask": []}
    with torch.no_grad():
        for source_path in sorted((args.eval_set / "source_self").glob("*.png")):
            source = _tensor(read_image(source_path))
            frames, _ = read_video(args.eval_set / "gt_self" / f"{source_path.stem}.mp4")
            truth = _tensor(frames[args.frame])
            depth_source = nets.depth(source)
            kp_source = nets.kp_detector(torch.cat([source, depth_source], 1))
            kp_truth = nets.kp_detector(torch.cat([truth, nets.depth(truth)], 1))
            moved = nets.generator(source, kp_truth, kp_source, depth_source)
            still = nets.generator(source, kp_source, kp_source, depth_source)
            errors["still"].append(float((source - truth).abs().mean()))
            errors["deformed"].append(float((moved["deformed"] - truth).abs().mean()))
            errors["output"].append(float((moved["prediction"] - truth).abs().mean()))
            errors["identity"].append(float((still["prediction"] - source).abs().mean()))
            if "blend_mask" in moved:
                errors["mask"].append(float(moved["blend_mask"].mean()))
    print(f"{len(errors['still'])} pairs, frame 0 driven by frame {args.frame}")
    base = np.mean(errors["still"])
    for name, values in errors.items():
        if values and name != "mask":
            print(f"  {name:9s} L1 {np.mean(values):.4f} ({np.mean(values) / base:.2f}x still)")
    if errors["mask"]:
        print(f"  blend mask mean {np.mean(errors['mask']):.2f} (1: all warped source)")


if __name__ == "__main__":
    main()
