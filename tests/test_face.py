"""The dlib face toolkit and the face metrics of ``dagan evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dagan.cli import main
from dagan.face import GENERIC_FACE_POINTS, POSE_LANDMARKS, head_pose
from dagan.io.image import read_image, write_png

from .conftest import DATA

PORTRAIT = DATA / "src_256.png"
needs_portrait = pytest.mark.skipif(not PORTRAIT.is_file(), reason=f"sample portrait not found at {PORTRAIT}")
dlib = pytest.importorskip("dlib", reason="the face metrics need dlib (pip install 'dagan[face]')")


@pytest.mark.parametrize("angles", [(10.0, -20.0, 5.0), (-12.0, 30.0, -8.0), (0.0, 0.0, 0.0)])
def test_head_pose_recovers_a_known_rotation(angles):
    model = GENERIC_FACE_POINTS * np.array([1.0, -1.0, -1.0])
    camera = Rotation.from_euler("xyz", angles, degrees=True).apply(model) + np.array([20.0, -10.0, 2500.0])
    landmarks = np.zeros((68, 2))
    landmarks[POSE_LANDMARKS] = camera[:, :2] * 256 / camera[:, 2:3] + 128
    assert np.allclose(head_pose(landmarks, 256, 256), angles, atol=1e-3)


@needs_portrait
def test_face_metrics_on_identical_and_shifted_portraits(tmp_path):
    from dagan.face import FaceAnalyzer

    portrait = read_image(PORTRAIT)[..., :3]
    face = FaceAnalyzer().analyze(portrait)
    assert face is not None and face.landmarks.shape == (68, 2) and face.embedding.shape == (128,)
    shifted = np.roll(portrait, 6, axis=1)
    for folder, images in (("gen", [portrait, shifted]), ("gt", [portrait, portrait]), ("src", [portrait, portrait])):
        (tmp_path / folder).mkdir()
        for name, image in zip(("same", "shifted"), images, strict=True):
            write_png(tmp_path / folder / f"{name}.png", image)
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"),
            "--source", str(tmp_path / "src"), "--out", str(out), "--metrics", "akd,aed,csim,prmse",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["akd"]["per_item"]["same"] == 0 and report["aed"]["per_item"]["same"] == 0
    assert report["csim"]["per_item"]["same"] == pytest.approx(1.0) and report["prmse"]["per_item"]["same"] == 0
    # A 6-pixel shift moves x by 6 and y by 0: a mean absolute difference of about 3.
    assert 2.0 < report["akd"]["per_item"]["shifted"] < 4.0
    assert 0 < report["aed"]["per_item"]["shifted"] < 0.1 and report["csim"]["per_item"]["shifted"] > 0.95
    assert report["prmse"]["per_item"]["shifted"] < 5.0
    assert all(report[m]["frames_without_face"] == 0 for m in ("akd", "aed", "csim", "prmse"))


def test_faceless_frames_are_counted_and_reported(tmp_path):
    for folder in ("gen", "gt"):
        (tmp_path / folder).mkdir()
        write_png(tmp_path / folder / "flat.png", np.full((128, 128, 3), 0.5))
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"), "--out", str(out),
            "--metrics", "akd,csim", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert "no face found" in report["akd"]["unavailable"]
    assert "--source" in report["csim"]["unavailable"]


@needs_portrait
def test_find_best_frame_picks_the_pose_closest_to_the_source(tmp_path, tiny_files, capsys):
    from PIL import Image

    from dagan.face import best_matching_frame

    portrait = read_image(PORTRAIT)[..., :3]
    tilted = np.asarray(Image.fromarray((portrait * 255).astype(np.uint8)).rotate(20, resample=Image.BILINEAR)) / 255
    frames = [np.full_like(portrait, 0.4), tilted, np.roll(portrait, (5, -4), axis=(0, 1)), tilted]
    assert best_matching_frame(portrait, frames) == 2
    driving = tmp_path / "driving"
    driving.mkdir()
    for i, frame in enumerate(frames):
        write_png(driving / f"{i:04d}.png", frame)
    argv = ["animate", "--source", str(PORTRAIT), "--driving", str(driving), "--checkpoint",
            str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"]), "--find-best-frame",
            "--output", str(tmp_path / "out.mp4")]  # fmt: skip
    assert main(argv) == 0
    assert "best driving frame: 2" in capsys.readouterr().err
    with pytest.raises(Exception, match="no face found in the source"):
        best_matching_frame(np.full_like(portrait, 0.5), frames)


@needs_portrait
def test_background_face_analysis_scores_each_frame_of_each_item(tmp_path, monkeypatch):
    """Faces come back from the worker processes through a queue shorter than the videos: each
    item's AKD, and its PRMSE from the poses the workers solve, equal those computed in this
    process from the same frames."""
    from dagan.face import FaceAnalyzer, head_pose
    from dagan.io.video import Mp4Writer, iter_frames, probe_video
    from dagan.pipelines import evaluate as evaluation

    monkeypatch.setattr(evaluation, "FACE_QUEUE", 2)
    portrait = read_image(PORTRAIT)[..., :3]
    shifts = {"a": [0, 3, 9], "b": [12, 1, 6, 15]}
    for folder in ("gen", "gt"):
        (tmp_path / folder).mkdir()
    for name, item_shifts in shifts.items():
        for folder in ("gen", "gt"):
            writer = Mp4Writer(tmp_path / folder / f"{name}.mp4", 25)
            for s in item_shifts:
                writer.write(np.roll(portrait, s, axis=1) if folder == "gen" else portrait)
            writer.close()
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"),
            "--out", str(out), "--metrics", "akd,prmse", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    analyzer = FaceAnalyzer()
    expected, expected_prmse = {}, {}
    h, w = portrait.shape[:2]
    for name in shifts:
        generated = [analyzer.analyze(f) for f in iter_frames(probe_video(tmp_path / "gen" / f"{name}.mp4"))]
        driving = [analyzer.analyze(f) for f in iter_frames(probe_video(tmp_path / "gt" / f"{name}.mp4"))]
        pairs = list(zip(generated, driving, strict=True))
        expected[name] = np.mean([np.mean(np.abs(d.landmarks - g.landmarks)) for g, d in pairs])
        squared = [np.mean((head_pose(d.landmarks, w, h) - head_pose(g.landmarks, w, h)) ** 2) for g, d in pairs]
        expected_prmse[name] = np.sqrt(np.mean(squared))
    assert expected["b"] > expected["a"] + 0.5  # a mix-up of frames between the items would show
    assert expected_prmse["b"] > expected_prmse["a"] + 1e-3
    for name, value in expected.items():
        assert report["akd"]["per_item"][name] == pytest.approx(value, rel=1e-9)
        assert report["prmse"]["per_item"][name] == pytest.approx(expected_prmse[name], rel=1e-9)
    assert report["akd"]["frames_without_face"] == 0


@needs_portrait
def test_face_metrics_without_fork_analyse_in_a_thread(tmp_path, monkeypatch):
    """Where processes cannot fork (Windows), the same scores come from a thread."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    test_face_metrics_on_identical_and_shifted_portraits(tmp_path)


@needs_portrait
def test_face_workers_end_when_the_run_fails(tmp_path):
    """A run stopped by a bad input (a driving video shorter than its generated one) leaves no worker behind."""
    import multiprocessing

    from dagan.io.video import Mp4Writer

    portrait = read_image(PORTRAIT)[..., :3]
    for folder, count in (("gen", 3), ("gt", 1)):
        (tmp_path / folder).mkdir()
        writer = Mp4Writer(tmp_path / folder / "clip.mp4", 25)
        for _ in range(count):
            writer.write(portrait)
        writer.close()
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"),
            "--out", str(tmp_path / "r"), "--metrics", "akd", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert multiprocessing.active_children() == []


def _portrait_variants() -> list[np.ndarray]:
    """The sample portrait moved, scaled, turned and relit: faces whose chips all differ."""
    from PIL import Image

    portrait = read_image(PORTRAIT)[..., :3]
    pixels = Image.fromarray((portrait * 255).round().astype(np.uint8))
    variants = [portrait, np.roll(portrait, (7, -5), axis=(0, 1)), np.clip(portrait * 0.8 + 0.1, 0, 1)]
    variants.append(np.asarray(pixels.rotate(12, resample=Image.BILINEAR)) / 255)
    variants.append(np.asarray(pixels.resize((320, 320), Image.BICUBIC)) / 255)
    variants.append(np.asarray(pixels.crop((20, 10, 236, 246))) / 255)
    return variants


@needs_portrait
def test_identity_network_matches_dlibs_own_descriptor():
    """The torch network computes dlib's face_recognition_model_v1 descriptor, batched, to float rounding."""
    from dagan.face import FaceAnalyzer, _dlib, _shape_predictor, embed_faces, identity_model_path
    from dagan.io.image import to_uint8

    reference = _dlib().face_recognition_model_v1(str(identity_model_path()))
    analyzer = FaceAnalyzer()
    faces, expected = [], []
    for image in _portrait_variants():
        pixels = np.ascontiguousarray(to_uint8(image))
        face = analyzer.analyze(pixels, embed=False)
        assert face is not None and face.embedding is None
        shape = _shape_predictor()(pixels, _dlib().rectangle(*face.box))
        expected.append(np.array(reference.compute_face_descriptor(pixels, shape)))
        faces.append(face)
    embed_faces(faces)
    ours = np.stack([face.embedding for face in faces])
    expected = np.stack(expected)
    assert np.abs(ours - expected).max() < 1e-5
    # The faces differ from each other by far more than the rounding: the comparison can fail.
    assert np.abs(expected[1:] - expected[0]).max() > 1e-2
    alone = analyzer.analyze(to_uint8(_portrait_variants()[3]))
    assert np.abs(alone.embedding - ours[3]).max() < 1e-6  # one face alone gives the batch's value


def test_residual_sum_of_unequal_shapes_is_taken_over_the_larger_one():
    """dlib adds tensors of different channel counts and sizes aligned at the top-left, zero elsewhere."""
    import torch

    from dagan.nn.dlib_face_resnet import add_aligned

    shortcut = torch.arange(2 * 2 * 2, dtype=torch.float32).view(1, 2, 2, 2)
    block = torch.full((1, 3, 1, 1), 10.0)
    total = add_aligned(shortcut, block)
    assert total.shape == (1, 3, 2, 2)
    assert torch.equal(total[0, :2], shortcut[0] + torch.tensor([[10.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(total[0, 2], torch.tensor([[10.0, 0.0], [0.0, 0.0]]))


def test_a_damaged_identity_model_file_gets_one_clear_error(tmp_path):
    from dagan.errors import DaganError
    from dagan.face import _model_folder, identity_model_path
    from dagan.io.dlib_net import read_dlib_face_resnet

    original = identity_model_path().read_bytes()
    for name, data in (("cut.dat", original[: len(original) // 2]), ("noise.dat", bytes(range(256)) * 64)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DaganError, match=name):
            read_dlib_face_resnet(tmp_path / name)
    with pytest.raises(DaganError, match="cannot read"):
        read_dlib_face_resnet(tmp_path / "absent.dat")
    # Bytes changed in the fc layer's sizes and tensor header and in the file's last numbers (its
    # float settings): read, or one DaganError, never another exception (a reshape's ValueError
    # once escaped). Bytes inside the weights cannot be told from good ones.
    fc = original.index(b"\x04fc_2")
    flips = [(at, mask) for at in range(fc + 5, fc + 21) for mask in (0x02, 0x5A)]
    flips += [(at, 0x02) for at in range(len(original) - 48, len(original))]
    for offset, mask in flips:
        damaged = bytearray(original)
        damaged[offset] ^= mask
        (tmp_path / "flipped.dat").write_bytes(bytes(damaged))
        try:
            read_dlib_face_resnet(tmp_path / "flipped.dat")
        except DaganError:
            pass
    renamed = original.replace(b"con_4", b"con_5", 1)
    (tmp_path / "newer.dat").write_bytes(renamed)
    with pytest.raises(DaganError, match="con_5"):
        read_dlib_face_resnet(tmp_path / "newer.dat")
    other = _model_folder() / "shape_predictor_5_face_landmarks.dat"
    if other.is_file():
        with pytest.raises(DaganError):
            read_dlib_face_resnet(other)


@needs_portrait
def test_identity_metrics_through_the_workers_equal_dlibs_own(tmp_path, monkeypatch):
    """AED and CSIM with faces from the workers and embeddings batched across items and a short
    queue equal the values from dlib's own descriptor, frame by frame in this process."""
    from dagan.face import _dlib, _shape_predictor, identity_model_path
    from dagan.io.image import to_uint8
    from dagan.io.video import Mp4Writer, iter_frames, probe_video
    from dagan.pipelines import evaluate as evaluation

    monkeypatch.setattr(evaluation, "FACE_QUEUE", 2)
    monkeypatch.setattr(evaluation, "EMBED_BATCH", 3)
    variants = _portrait_variants()[:4]
    items = {"a": [1, 2, 3], "b": [3, 0, 2, 1, 2]}
    for folder in ("gen", "gt", "src"):
        (tmp_path / folder).mkdir()
    for name, order in items.items():
        for folder, frames in (("gen", [variants[i] for i in order]), ("gt", [variants[0]] * len(order))):
            writer = Mp4Writer(tmp_path / folder / f"{name}.mp4", 25)
            for frame in frames:
                writer.write(frame)
            writer.close()
        write_png(tmp_path / "src" / f"{name}.png", variants[0 if name == "a" else 1])
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"),
            "--source", str(tmp_path / "src"), "--out", str(out), "--metrics", "aed,csim", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())

    reference = _dlib().face_recognition_model_v1(str(identity_model_path()))
    detector = _dlib().get_frontal_face_detector()

    def descriptor(image: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(to_uint8(image[..., :3]))
        rect = max(detector(pixels, 0), key=lambda r: r.width() * r.height())
        return np.array(reference.compute_face_descriptor(pixels, _shape_predictor()(pixels, rect)))

    def frames(path):
        return [descriptor(frame) for frame in iter_frames(probe_video(path))]

    for name in items:
        source = descriptor(read_image(tmp_path / "src" / f"{name}.png"))
        aed, csim = [], []
        for generated, driving in zip(
            frames(tmp_path / "gen" / f"{name}.mp4"), frames(tmp_path / "gt" / f"{name}.mp4"), strict=True
        ):
            a, b = driving / np.linalg.norm(driving), generated / np.linalg.norm(generated)
            aed.append(np.sum((a - b) ** 2))
            csim.append(source @ generated / (np.linalg.norm(source) * np.linalg.norm(generated)))
        assert report["aed"]["per_item"][name] == pytest.approx(np.mean(aed), abs=1e-6)
        assert report["csim"]["per_item"][name] == pytest.approx(np.mean(csim), abs=1e-6)
    assert abs(report["aed"]["per_item"]["b"] - report["aed"]["per_item"]["a"]) > 1e-4  # items kept apart
