"""Synthetic talking heads: layout, determinism and ground truth that agrees with the images."""

from __future__ import annotations

import json

import numpy as np

from dagan.cli import main
from dagan.data.dataset import FramesDataset, identity_of, list_clips
from dagan.data.synth import LANDMARK_NAMES, random_identity, random_motion, render_clip
from dagan.io.video import read_video
from dagan.pipelines.generate import pairs_from_csv


def test_cli_writes_voxceleb_layout_with_disjoint_identities(tmp_path):
    out = tmp_path / "synth"
    code = main(["synth", "--out", str(out), "--identities", "5", "--clips-per-identity", "2", "--frames", "6",
                 "--size", "64", "--seed", "7", "--quiet"])  # fmt: skip
    assert code == 0
    train, test = list_clips(out / "train"), list_clips(out / "test")
    assert len(train) == 8 and len(test) == 2
    assert {identity_of(c) for c in train}.isdisjoint({identity_of(c) for c in test})
    assert all("#clip" in c.name for c in train + test)
    frames, fps = read_video(train[0])
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3) and fps == 25
    truth = np.load(train[0].with_suffix(".npz"))
    assert truth["depth"].shape == (6, 64, 64) and truth["landmarks"].shape == (6, len(LANDMARK_NAMES), 2)
    assert truth["pose"].shape == (6, 7) and truth["intrinsics"].shape == (3, 3)
    meta = json.loads((out / "synth.json").read_text())
    assert meta["test_identities"] == ["id0004"]


def test_rendering_is_deterministic_and_seed_dependent():
    def clip(seed):
        rng = np.random.default_rng(seed)
        return render_clip(random_identity(rng), random_motion(rng, 4), size=48)

    a, b, c = clip(1), clip(1), clip(2)
    assert np.array_equal(a["frames"], b["frames"]) and np.array_equal(a["depth"], b["depth"])
    assert not np.array_equal(a["frames"], c["frames"])


def test_ground_truth_agrees_with_the_image():
    rng = np.random.default_rng(5)
    identity, motion = random_identity(rng), random_motion(rng, 8)
    motion.yaw[:] = np.linspace(-30, 30, 8)
    motion.mouth[:] = np.linspace(0, 1, 8)
    clip = render_clip(identity, motion, size=96)
    depth, frames, landmarks = clip["depth"], clip["frames"], clip["landmarks"]
    face = depth > 0
    assert 0.15 < face.mean() < 0.9  # a head and shoulders, and some background
    assert np.abs(frames[~face].astype(int) - frames[~face].mean(0)).max() < 256  # background exists
    nose = landmarks[:, LANDMARK_NAMES.index("nose_tip")]
    x, y = np.clip(nose.round().astype(int), 0, 95).T
    assert (depth[np.arange(8), y, x] > 0).all()  # the nose tip projects onto the head
    # The nose is the closest point of a frontal face; turning the head moves it sideways.
    assert abs(nose[-1, 0] - nose[0, 0]) > 10
    mouth = LANDMARK_NAMES.index("mouth_top"), LANDMARK_NAMES.index("mouth_bottom")
    assert np.isfinite(landmarks).all() and landmarks[:, mouth[1], 1].min() > landmarks[:, mouth[0], 1].min()
    # Shading: depth shows in the image, so brightness varies over the face.
    assert frames[0][face[0]].std() > 10
    assert not np.array_equal(frames[0], frames[-1])


def test_dataset_reads_pairs_and_is_deterministic_per_epoch(tmp_path):
    out = tmp_path / "synth"
    main(["synth", "--out", str(out), "--identities", "3", "--clips-per-identity", "2", "--frames", "5", "--size", "32",
          "--quiet"])  # fmt: skip
    from dagan.config import DataConfig

    data = FramesDataset(out, "train", DataConfig(frame_shape=(32, 32, 3)), seed=4)
    first = data[1]
    assert first["source"].shape == (3, 32, 32) and first["driving"].dtype.is_floating_point
    again = data[1]
    assert np.array_equal(first["source"].numpy(), again["source"].numpy())
    data.set_epoch(1)
    assert len(data) == 2  # identities, with identity sampling
    (tmp_path / "pairs.csv").write_text("source,driving\ntrain/a.mp4,test/b.mp4\n")
    pairs = pairs_from_csv(tmp_path / "pairs.csv", root=out)
    assert pairs[0].source == out / "train/a.mp4" and pairs[0].source_frame == 0


def test_still_head_keeps_the_pose_and_shares_the_camera_path():
    moving = random_motion(np.random.default_rng(11), 12)
    still = random_motion(np.random.default_rng(11), 12, still_head=True)
    for name in ("yaw", "pitch", "roll", "scale"):
        assert np.ptp(getattr(moving, name)) > 0
        assert np.ptp(getattr(still, name)) == 0 and getattr(still, name)[0] == getattr(moving, name)[0]
    assert np.array_equal(still.translation, moving.translation) and np.ptp(still.translation[:, 2]) > 0
    assert np.array_equal(still.mouth, moving.mouth)
