"""The animate pipeline: batching, best frame, absolute mode, SPADE, outputs and audio."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from dagan.cli import main
from dagan.io.image import read_image, to_uint8, write_png
from dagan.io.video import iter_frames, probe_video, read_video
from dagan.motion import hull_area, movement_scale, transfer_motion
from dagan.nn import Keypoints
from dagan.pipelines.animate import Animator

from .conftest import DATA, make_clip, make_tiny_weights


@pytest.fixture(scope="module")
def tiny_animator(tiny_files):
    return Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], device="cpu")


@pytest.fixture(scope="module")
def clip_frames(tiny_files):
    frames, _ = read_video(tiny_files["driving"])
    return frames


def _run(animator, source, frames, **kwargs):
    return np.stack([f.prediction for f in animator.animate(source, frames, **kwargs)])


def test_batch_sizes_give_the_same_frames(tiny_animator, tiny_files, clip_frames):
    source = read_image(tiny_files["source"])
    one = _run(tiny_animator, source, clip_frames, batch_size=1)
    four = _run(tiny_animator, source, clip_frames, batch_size=4)
    assert one.shape == (len(clip_frames), 256, 256, 3)
    assert np.abs(one - four).max() < 1e-4
    assert np.abs(one[0] - one[-1]).max() > 1e-3  # the frames really move


@pytest.mark.slow
def test_best_frame_equals_the_original_forward_backward_procedure(tiny_animator, tiny_files, clip_frames):
    source = read_image(tiny_files["source"])
    n = 2
    forward = _run(tiny_animator, source, clip_frames[n:], batch_size=2)
    backward = _run(tiny_animator, source, clip_frames[: n + 1][::-1], batch_size=2)
    original = np.concatenate([backward[::-1], forward[1:]])
    ours = _run(tiny_animator, source, clip_frames, batch_size=3, initial_frame=clip_frames[n])
    assert ours.shape == original.shape
    assert np.abs(ours - original).max() < 1e-4


def test_absolute_mode_uses_driving_keypoints_as_they_are():
    kp_source = Keypoints(torch.rand(1, 3, 2), torch.eye(2).repeat(1, 3, 1, 1))
    kp_driving = Keypoints(torch.rand(2, 3, 2), torch.eye(2).repeat(2, 3, 1, 1) * 1.1)
    kp_initial = Keypoints(torch.rand(1, 3, 2), torch.eye(2).repeat(1, 3, 1, 1) * 0.9)
    out = transfer_motion(kp_source, kp_driving, kp_initial, relative=False, scale=3.0)
    assert out.value is kp_driving.value and out.jacobian is kp_driving.jacobian
    relative = transfer_motion(kp_source, kp_driving, kp_initial, relative=True, scale=1.0)
    assert torch.allclose(relative.value, kp_driving.value - kp_initial.value + kp_source.value)


@pytest.mark.slow
def test_absolute_mode_end_to_end_against_golden(golden_files, golden, golden_state_dicts):
    animator = Animator.from_checkpoint(golden_files["checkpoint"], golden_files["depth"], device="cpu")
    source = read_image(DATA / "src_256.png")
    frames = [f.transpose(1, 2, 0) for f in golden["driving"]]
    ours = _run(animator, source, frames, relative=False, batch_size=3)
    # Absolute mode drives the generator with the driving keypoints themselves.
    with torch.inference_mode():
        expected = animator.networks.generator(
            torch.from_numpy(golden["source"]),
            Keypoints(torch.from_numpy(golden["kp_driving_value"]), torch.from_numpy(golden["kp_driving_jacobian"])),
            Keypoints(torch.from_numpy(golden["kp_source_value"]), torch.from_numpy(golden["kp_source_jacobian"])),
            torch.from_numpy(golden["depth_source"]),
        )["prediction"]
    assert np.abs(ours - expected.permute(0, 2, 3, 1).numpy()).max() < 2e-3
    relative = _run(animator, source, frames, relative=True, batch_size=3)
    assert np.abs(ours - relative).max() > 1e-2  # the modes really differ


def test_adaptive_scale_is_the_hull_area_ratio():
    square = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]) * 0.5
    big = square * 2
    assert movement_scale(Keypoints(square), Keypoints(big)) == pytest.approx(0.5)


def test_hull_area_is_scipys_convex_hull_volume():
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(0)
    for count in (3, 4, 10, 15, 68, 500):
        for _ in range(20):
            points = rng.normal(size=(count, 2)) * rng.uniform(0.01, 10)
            if count > 4:  # repeated and interior points must not change the area
                points[1] = points[0]
            assert hull_area(points) == pytest.approx(ConvexHull(points).volume, rel=1e-12)
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.5, 0.5]])
    assert hull_area(line) == 0.0 and hull_area(line[:2]) == 0.0
    flat = Keypoints(torch.from_numpy(line[None]).float())
    assert movement_scale(flat, Keypoints(torch.rand(1, 5, 2))) == 1.0


def test_cli_writes_side_by_side_depth_and_copies_audio(tiny_files, tmp_path):
    clip = make_clip(tmp_path / "talk.mp4", frames=5, size=48, fps=30, audio=True)
    out, depth = tmp_path / "result.mp4", tmp_path / "depth.mp4"
    argv = ["animate", "--source", str(tiny_files["source"]), "--driving", str(clip), "--checkpoint",
            str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"]), "--output", str(out),
            "--save-depth", str(depth), "--side-by-side", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height, video.frames, video.average_rate) == (1024, 256, 5, 30)
        assert len(container.streams.audio) == 1
    with av.open(str(depth)) as container:
        assert container.streams.video[0].frames == 5 and not container.streams.audio
    frames = list(iter_frames(probe_video(out)))
    assert frames[0][:, 768:].std() > 1 / 255  # the result panel holds an image (frames are in [0, 1])


@pytest.mark.slow
def test_spade_checkpoint_animates(tmp_path, tiny_files, clip_frames):
    from dagan.io.checkpoint import write_original_checkpoint

    groups = make_tiny_weights(seed=3, variant="spade")
    write_original_checkpoint(tmp_path / "spade.pth.tar", {k: groups[k] for k in ("generator", "kp_detector")})
    animator = Animator.from_checkpoint(tmp_path / "spade.pth.tar", tiny_files["depth"], device="cpu")
    assert type(animator.networks.generator).__name__ == "SPADEDepthAwareGenerator"
    source = read_image(tiny_files["source"])
    one = _run(animator, source, clip_frames, batch_size=1)
    three = _run(animator, source, clip_frames, batch_size=3)
    assert np.isfinite(one).all() and np.abs(one - three).max() < 1e-4


def _cli(tiny_files, *extra):
    argv = ["animate", "--quiet", "--source", str(tiny_files["source"]), "--checkpoint", str(tiny_files["checkpoint"])]
    return main([*argv, "--depth-weights", str(tiny_files["depth"]), "--device", "cpu", *map(str, extra)])


@pytest.mark.slow
def test_a_still_driving_image_gives_one_image(tiny_animator, tiny_files, clip_frames, tmp_path):
    driving = tmp_path / "pose.png"
    write_png(driving, clip_frames[3])
    out = tmp_path / "moved.png"
    assert _cli(tiny_files, "--driving", driving, "--output", out, "--save-depth", tmp_path / "depth.png") == 0
    source = read_image(tiny_files["source"])
    # Absolute motion by default: nothing to take the motion relative to.
    expected = _run(tiny_animator, source, [read_image(driving)], relative=False)[0]
    written = read_image(out)
    assert written.shape == expected.shape
    assert np.abs(to_uint8(written).astype(int) - to_uint8(expected).astype(int)).max() <= 1
    assert read_image(tmp_path / "depth.png").shape == expected.shape
    # With --reference, relative to it: the same image as reference moves nothing, whatever the pose.
    assert _cli(tiny_files, "--driving", driving, "--reference", driving, "--output", tmp_path / "still.png") == 0
    expected = _run(tiny_animator, source, [read_image(driving)], initial_frame=read_image(driving))[0]
    written = to_uint8(read_image(tmp_path / "still.png")).astype(int)
    assert np.abs(written - to_uint8(expected).astype(int)).max() <= 1
    assert _cli(tiny_files, "--driving", driving, "--output", tmp_path / "moved.mp4") == 2


@pytest.mark.slow
def test_reference_is_a_driving_frame_or_an_image(tiny_animator, tiny_files, clip_frames, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(clip_frames):
        write_png(frames / f"{i:04d}.png", frame)
    assert _cli(tiny_files, "--driving", frames, "--reference", 2, "--output", f"{tmp_path / 'by_reference'}/") == 0
    assert _cli(tiny_files, "--driving", frames, "--best-frame", 2, "--output", f"{tmp_path / 'by_best'}/") == 0
    by_reference, by_best = (sorted((tmp_path / name).glob("*.png")) for name in ("by_reference", "by_best"))
    assert len(by_reference) == len(clip_frames)
    for a, b in zip(by_reference, by_best, strict=True):
        assert a.read_bytes() == b.read_bytes()
    neutral = tmp_path / "neutral.png"
    write_png(neutral, clip_frames[4])
    assert _cli(tiny_files, "--driving", frames, "--reference", neutral, "--output", f"{tmp_path / 'by_image'}/") == 0
    source = read_image(tiny_files["source"])
    expected = _run(tiny_animator, source, [read_image(f) for f in sorted(frames.iterdir())],
                    initial_frame=read_image(neutral))  # fmt: skip
    written = np.stack([read_image(f) for f in sorted((tmp_path / "by_image").glob("*.png"))])
    assert np.abs(to_uint8(written).astype(int) - to_uint8(expected).astype(int)).max() <= 1
    assert _cli(tiny_files, "--driving", frames, "--reference", 99, "--output", tmp_path / "x.mp4") == 2
    assert (
        _cli(tiny_files, "--driving", frames, "--reference", tmp_path / "no.png", "--output", tmp_path / "x.mp4") == 2
    )
    assert not (tmp_path / "x.mp4").exists()


def test_the_keypoint_smoother_steadies_a_track_and_follows_its_motion():
    from dagan.motion import KeypointSmoother

    rng = np.random.default_rng(0)
    t = np.arange(200)[:, None, None]
    motion = 0.3 * np.sin(2 * np.pi * t / 100)  # a slow head turn, 4 s at 25 fps
    track = torch.tensor(motion + 0.01 * rng.standard_normal((200, 5, 2)), dtype=torch.float32)
    jacobians = torch.eye(2).repeat(200, 5, 1, 1) + 0.01 * torch.randn(200, 5, 2, 2)
    keypoints = Keypoints(track, jacobians)

    def jitter(values: torch.Tensor) -> float:
        return float((values[2:] - 2 * values[1:-1] + values[:-2]).norm(dim=-1).mean())

    assert KeypointSmoother(0)(keypoints) is keypoints  # S = 0: today's motion, untouched
    jitters = [jitter(KeypointSmoother(s)(keypoints).value) for s in (0, 1, 2, 4, 8)]
    assert all(a > b for a, b in zip(jitters, jitters[1:], strict=False))
    assert jitters[2] < 0.5 * jitters[0]
    smoothed = KeypointSmoother(2)(keypoints)
    assert float((smoothed.value - torch.tensor(motion, dtype=torch.float32)).abs().mean()) < 0.02  # follows
    # Causal and stateful: fed in batches, the same track as in one go.
    smoother = KeypointSmoother(2)
    parts = [smoother(Keypoints(track[i : i + 7], jacobians[i : i + 7])) for i in range(0, 200, 7)]
    assert torch.allclose(torch.cat([p.value for p in parts]), smoothed.value)
    assert torch.allclose(torch.cat([p.jacobian for p in parts]), smoothed.jacobian)
    with pytest.raises(ValueError):
        KeypointSmoother(-1)


@pytest.mark.slow
def test_smooth_zero_gives_todays_frames_and_smoothing_is_batch_independent(tiny_animator, tiny_files, clip_frames):
    source = read_image(tiny_files["source"])
    today = _run(tiny_animator, source, clip_frames, batch_size=2)
    assert np.array_equal(_run(tiny_animator, source, clip_frames, batch_size=2, smooth=0.0), today)
    steady = _run(tiny_animator, source, clip_frames, batch_size=1, smooth=3.0)
    assert np.abs(steady - today).max() > 1e-4  # the motion is filtered
    assert np.abs(_run(tiny_animator, source, clip_frames, batch_size=4, smooth=3.0) - steady).max() < 1e-4


@pytest.mark.slow
def test_several_sources_share_one_pass_over_the_driving_video(tiny_files, tmp_path, monkeypatch):
    from dagan.pipelines import animate as animate_module

    portraits = tmp_path / "portraits"
    portraits.mkdir()
    rng = np.random.default_rng(5)
    for name in ("ann", "bob", "cyd"):
        write_png(portraits / f"{name}.png", rng.random((72, 60, 3)).astype(np.float32))
    driving_frames = len(read_video(tiny_files["driving"])[0])
    seen = []
    real = animate_module.Animator.depth_and_keypoints

    def counting(self, images):
        seen.append(images.shape[0])
        return real(self, images)

    monkeypatch.setattr(animate_module.Animator, "depth_and_keypoints", counting)
    out = tmp_path / "together"
    # The last --source given is the one argparse keeps: the folder.
    assert _cli(tiny_files, "--driving", tiny_files["driving"], "--output", f"{out}/", "--batch-size", 2,
                "--source", portraits) == 0  # fmt: skip
    # Each driving frame once, the initial frame once, and each source once: not three passes.
    assert sum(seen) == driving_frames + 1 + 3
    for name in ("ann", "bob", "cyd"):
        alone = tmp_path / f"{name}.mp4"
        argv = ["--driving", tiny_files["driving"], "--batch-size", 2, "--output", alone]
        assert _cli(tiny_files, *argv, "--source", portraits / f"{name}.png") == 0
        together = np.stack(read_video(out / f"{name}.mp4")[0])
        assert together.shape[0] == driving_frames
        assert np.array_equal(together, np.stack(read_video(alone)[0]))
    # Several files work as a folder does, and an output that is not a folder is refused.
    files = [portraits / "ann.png", portraits / "bob.png"]
    assert _cli(tiny_files, "--driving", tiny_files["driving"], "--output", tmp_path / "x.mp4", "--source", *files) == 2
    assert not (tmp_path / "x.mp4").exists()
