"""The bundled demo model, ``dagan demo``, and the synthetic evaluation set that scores it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dagan.assets import DEMO_DRIVING, DEMO_MODEL, DEMO_SOURCE, DEMO_SOURCE_LANDMARKS
from dagan.cli import main
from dagan.config import load_config
from dagan.data.synth_eval import write_eval_set
from dagan.io.checkpoint import DEPTH_CLASSIFIER_KEYS, read_safetensors
from dagan.io.image import read_image
from dagan.io.video import probe_video, read_video
from dagan.nn.keypoint_detector import KeypointDetector
from dagan.nn.landmark_net import LandmarkNet
from dagan.pipelines.evaluate import EvaluateOptions, evaluate
from dagan.pipelines.landmarks import landmark_error, load_clips, train_landmarks
from dagan.pipelines.networks import build_generator, load_animation_networks


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    """A tiny dagan synth dataset (2 test identities) and its evaluation set."""
    root = tmp_path_factory.mktemp("synth_eval")
    data = root / "data"
    assert main(["synth", "--out", str(data), "--identities", "10", "--clips-per-identity", "1",
                 "--frames", "6", "--size", "32", "--seed", "3", "--quiet"]) == 0  # fmt: skip
    write_eval_set(data, root / "eval", demo_frames=8, quiet=True)
    return data, root / "eval"


def _shapes(network: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}


def _video(path):
    frames, fps = read_video(path)  # frames in [0, 1] already (dagan.io's frame contract)
    return np.stack(frames).astype(np.float64), fps


def test_eval_set_has_ground_truth_for_cross_identity_pairs(synth_set):
    _, eval_set = synth_set
    names = sorted(p.stem for p in (eval_set / "gt_cross").glob("*.mp4"))
    assert names == ["id0008_id0009#clip00", "id0009_id0008#clip00"]
    assert sorted(p.stem for p in (eval_set / "gt_self").glob("*.mp4")) == ["id0008#clip00", "id0009#clip00"]
    # Self-reenactment: the source is frame 0, the clip's other frames drive and are the truth.
    assert len(read_video(eval_set / "gt_self" / "id0008#clip00.mp4")[0]) == 5
    for name in names:
        truth, _ = _video(eval_set / "gt_cross" / f"{name}.mp4")
        driving, _ = _video(eval_set / "driving_cross" / f"{name}.mp4")
        still, _ = _video(eval_set / "still_cross" / f"{name}.mp4")
        source = read_image(eval_set / "source_cross" / f"{name}.png")
        assert truth.shape == driving.shape == still.shape == (6, 32, 32, 3)
        # The source is the truth's first frame (up to H.264 at 32x32); the truth is another person
        # than the driver.
        compression = np.abs(source - truth[0]).mean()
        assert compression < 0.05
        assert np.abs(driving - truth).mean() > 2 * compression
        assert np.abs(still - source).mean() < 0.05
        with (
            np.load(eval_set / "gt_cross" / f"{name}.npz") as gt,
            np.load(eval_set / "driving_cross" / f"{name}.npz") as dr,
        ):
            assert gt["landmarks"].shape == dr["landmarks"].shape == (6, 16, 2)
            # Same motion, different head shapes: close but not equal landmarks.
            assert 0 < np.abs(gt["landmarks"] - dr["landmarks"]).mean() < 3
    demo_source = read_image(eval_set / "demo" / "source.png")
    assert demo_source.shape == (32, 32, 3)
    assert len(read_video(eval_set / "demo" / "driving.mp4")[0]) == 8
    landmarks = json.loads((eval_set / "demo" / "source.json").read_text())["landmarks"]
    assert set(landmarks) >= {"mouth_top", "left_eye_center", "right_eye_center"}


def test_synthetic_akd_compares_the_landmark_network_with_the_ground_truth(synth_set, tmp_path):
    _, eval_set = synth_set
    torch.manual_seed(0)
    network = LandmarkNet(16)
    weights = tmp_path / "landmarks.pth"
    torch.save({"state_dict": network.state_dict(), "num_landmarks": 16, "size": 32}, weights)
    report = evaluate(
        EvaluateOptions(
            generated=eval_set / "gt_self",
            driving=eval_set / "gt_self",
            out=tmp_path / "report",
            metrics=("akd",),
            landmark_weights=weights,
            quiet=True,
        )
    )
    frames, truth = load_clips(eval_set / "gt_self", 32)
    expected = landmark_error(network.eval(), frames, truth)
    assert report["akd"]["value"] == pytest.approx(expected, rel=1e-4)
    assert "ground truth" in report["akd"]["protocol"]


@pytest.mark.slow
def test_landmark_training_beats_the_untrained_network(synth_set, tmp_path):
    data, _ = synth_set
    frames, truth = load_clips(data / "test", 32)
    torch.manual_seed(0)
    untrained = landmark_error(LandmarkNet(16).eval(), frames, truth)
    result = train_landmarks(data, tmp_path / "landmarks.pth", size=32, steps=300, batch_size=16, quiet=True)
    assert result.test_error < 0.75 * untrained
    assert (tmp_path / "landmarks.pth").is_file()


def test_inference_only_conversion_drops_what_animation_never_runs(tiny_files, tmp_path):
    bundle = tmp_path / "bundle.safetensors"
    assert main(["convert", str(tiny_files["checkpoint"]), str(bundle), "--depth-weights",
                 str(tiny_files["depth"]), "--half", "--inference-only"]) == 0  # fmt: skip
    groups = read_safetensors(bundle).groups
    assert "discriminator" not in groups
    assert not set(DEPTH_CLASSIFIER_KEYS) & set(groups["depth_encoder"])
    full = load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"])
    lean = load_animation_networks(bundle)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(full.depth(image), lean.depth(image), atol=2e-3)


def test_depth_weights_without_checkpoint_is_one_error_line(capsys, tmp_path):
    code = main(["animate", "--source", str(DEMO_SOURCE), "--driving", str(DEMO_DRIVING),
                 "--depth-weights", str(tmp_path), "--output", str(tmp_path / "out.mp4")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason=f"the bundled model {DEMO_MODEL} is not in this checkout")
@pytest.mark.slow
def test_demo_animates_the_bundled_portrait(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for name in ("result.mp4", "side_by_side.mp4", "depth.mp4"):
        assert str(tmp_path / "demo" / name) in printed
    driving = probe_video(DEMO_DRIVING)
    result, fps = _video(tmp_path / "demo" / "result.mp4")
    assert len(result) == driving.frame_count and fps == driving.fps
    for name in ("side_by_side.mp4", "depth.mp4"):
        assert len(read_video(tmp_path / "demo" / name)[0]) == driving.frame_count
    source = read_image(DEMO_SOURCE)
    assert result.shape[1:] == source.shape
    landmarks = json.loads(DEMO_SOURCE_LANDMARKS.read_text())["landmarks"]
    for feature in ("mouth_top", "mouth_bottom", "left_eye_center", "right_eye_center"):
        x, y = (int(round(v)) for v in landmarks[feature])
        window = (slice(None), slice(max(y - 3, 0), y + 4), slice(max(x - 3, 0), x + 4))
        change = np.abs(result[window] - source[window[1:]]).mean(axis=(1, 2, 3))
        assert change.max() > 0.03, f"the {feature} region never changes"


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason=f"the bundled model {DEMO_MODEL} is not in this checkout")
def test_the_bundled_model_is_the_one_its_recipe_config_describes():
    recipe = load_config(Path(__file__).parents[1] / "configs" / "demo-64.yaml")
    bundled = load_animation_networks(DEMO_MODEL)
    for built, shipped in (
        (build_generator(recipe.model.generator), bundled.generator),
        (KeypointDetector(recipe.model.kp_detector), bundled.kp_detector),
    ):
        assert _shapes(built) == _shapes(shipped)
    # What no tensor shows is recorded in the file.
    assert bundled.config.generator.dense_motion.align_corners == recipe.model.generator.dense_motion.align_corners
    assert bundled.frame_size == recipe.data.frame_shape[0]


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason=f"the bundled model {DEMO_MODEL} is not in this checkout")
def test_animate_without_weights_uses_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["animate", "--source", str(DEMO_SOURCE), "--driving", str(DEMO_DRIVING),
                 "--output", str(out), "--quiet"]) == 0  # fmt: skip
    notice = [line for line in capsys.readouterr().err.splitlines() if "bundled demo model" in line]
    assert len(notice) == 1
    assert len(read_video(out)[0]) == probe_video(DEMO_DRIVING).frame_count


def test_models_run_at_the_frame_size_they_were_trained_at(tiny_files, tmp_path):
    assert load_animation_networks(tiny_files["checkpoint"], tiny_files["depth"]).frame_size == 256
    raw = torch.load(tiny_files["checkpoint"], weights_only=True)
    raw["config"] = {"data": {"frame_shape": [64, 64, 3]}}  # what dagan train records
    trained = tmp_path / "trained.pth.tar"
    torch.save(raw, trained)
    assert load_animation_networks(trained, tiny_files["depth"]).frame_size == 64
    bundle = tmp_path / "trained.safetensors"
    assert main(["convert", str(trained), str(bundle), "--depth-weights", str(tiny_files["depth"])]) == 0
    assert load_animation_networks(bundle).frame_size == 64
    out = tmp_path / "out.mp4"
    assert main(["animate", "--source", str(tiny_files["source"]), "--driving", str(tiny_files["driving"]),
                 "--checkpoint", str(bundle), "--output", str(out), "--quiet"]) == 0  # fmt: skip
    assert read_video(out)[0][0].shape == (64, 64, 3)


def test_the_landmark_network_sees_frames_in_zero_to_one_in_training_and_in_evaluation(synth_set, tmp_path):
    from dagan.pipelines import landmarks
    from dagan.pipelines.evaluate import EvaluationItem, ScoredFrame, _SyntheticKeypointDistance

    data, eval_set = synth_set
    # Training: frames go in as the renderer drew them, not divided by 255 twice (it once fed [0, 0.004]).
    frames, _ = landmarks.load_clips(data / "train", 32)
    batch = landmarks._batch(frames, np.arange(len(frames)))
    assert 0 <= float(batch.min()) and 0.5 < float(batch.max()) <= 1
    # Evaluation: the same range, through the AKD metric's own path.
    weights = tmp_path / "landmarks.pth"
    landmarks.train_landmarks(data, weights, size=32, steps=1, quiet=True)
    metric = _SyntheticKeypointDistance(weights)
    seen = []
    network = metric.network
    metric.network = lambda tensor: seen.append(tensor) or network(tensor)
    clip = next((eval_set / "gt_self").glob("*.mp4"))
    metric.start(EvaluationItem(clip.stem, clip, clip, None))
    video, _ = _video(clip)
    frame = video[0].astype(np.float32)
    metric.add(ScoredFrame(EvaluationItem(clip.stem, clip, clip, None), 0, frame, frame, frame, None))
    assert seen and 0 <= float(seen[0].min()) and 0.5 < float(seen[0].max()) <= 1


def test_the_depth_video_is_visible_and_its_colours_hold_still(tmp_path):
    from dagan.io.colormap import VideoDisparityColours
    from dagan.pipelines.animate import Animator, depth_renderer

    frames, _ = read_video(DEMO_DRIVING)
    animator = Animator.from_checkpoint(DEMO_MODEL, device="cpu")
    shown = list(animator.animate(read_image(DEMO_SOURCE), frames[:: len(frames) // 6][:6]))
    colour, grey = depth_renderer("colour"), depth_renderer("original")
    coloured = np.stack([colour(f.driving_depth) for f in shown])
    original = np.stack([grey(f.driving_depth) for f in shown])
    # The original's 1 - d / max d leaves the bundled model's depth nearly black; the default spreads it.
    assert original.max() < 0.2
    assert np.percentile(coloured, 99) - np.percentile(coloured, 1) > 0.5
    # One range for the whole video: a disparity value keeps its colour from frame to frame, where
    # a range of each frame's own (colorize_disparity, right for single images) would flicker.
    from dagan.io.colormap import colorize_disparity

    narrow, wide = np.linspace(0.2, 0.6, 101).reshape(1, 101), np.linspace(0.0, 1.0, 101).reshape(1, 101)
    colours = VideoDisparityColours()
    assert np.allclose(colours(narrow)[0, 50], colours(wide)[0, 40])  # both are 0.4
    assert not np.allclose(colorize_disparity(narrow)[0, 50], colorize_disparity(wide)[0, 40], atol=0.05)
    with pytest.raises(SystemExit) as refused:
        main(["animate", "--quiet", "--save-depth", str(tmp_path / "d.mp4"), "--depth-style", "sepia",
              "--source", str(DEMO_SOURCE), "--driving", str(DEMO_DRIVING)])  # fmt: skip
    assert refused.value.code == 2
