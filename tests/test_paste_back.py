"""``dagan animate --crop [--paste-back] [--face N|all]``: real photos and footage, the mask and the seam."""

from __future__ import annotations

import numpy as np
import pytest

from dagan.cli import main
from dagan.face import head_mask
from dagan.io.image import read_image, write_png
from dagan.io.video import read_video
from dagan.pipelines.footage import PasteBack, PhotoFace, driving_clips

from .footage import DRIVING, PORTRAIT, Scene, photo_with_portraits, write_footage

needs_sample = pytest.mark.skipif(
    not (DRIVING.is_file() and PORTRAIT.is_file()), reason=f"the sample video and portrait are not in {DRIVING.parent}"
)
dlib = pytest.importorskip("dlib", reason="--crop needs dlib (pip install 'dagan[face]')")

#: The portrait's size and the photo's canvas in these tests.
PHOTO = (320, (960, 640))

#: A face, a faceless stretch, the face again elsewhere: 36 frames.
WITH_A_GAP = [
    Scene(frames=14, size=220, start=(80, 60), end=(90, 64), background=(70, 110, 160)),
    Scene(frames=8, size=0, start=(0, 0), end=(0, 0), background=(150, 150, 150)),
    Scene(frames=14, size=256, start=(340, 60), end=(340, 60), background=(170, 120, 60)),
]


def _landmarks(side: int) -> np.ndarray:
    """68 landmarks of a plausible face in a square crop: a jaw arc, brows and the inner points."""
    angles = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.stack([0.5 + 0.2 * np.cos(angles), 0.52 + 0.22 * np.sin(angles)], axis=1) * side
    brows = np.stack([np.linspace(0.32, 0.68, 10), np.full(10, 0.42)], axis=1) * side
    inner = np.stack([np.linspace(0.4, 0.6, 41), np.linspace(0.45, 0.68, 41)], axis=1) * side
    return np.concatenate([jaw, brows, inner])


@pytest.mark.parametrize("feather", [0.03, 0.06, 0.12])
def test_the_mask_is_smooth_covers_the_face_and_never_reaches_the_crop_edge(feather):
    side = 400
    landmarks = _landmarks(side)
    mask = head_mask(landmarks, side, feather)
    assert mask.shape == (side, side) and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1
    # No box edge: zero along the crop's border, and no step anywhere.
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert border.max() < 1e-3
    size = max(np.ptp(landmarks[:17, 0]), np.linalg.norm(landmarks[17:27].mean(0) - landmarks[8]))
    steepest_gaussian_edge = 1 / (feather * size * np.sqrt(2 * np.pi))
    rows, cols = np.gradient(mask.astype(np.float64))
    assert np.hypot(rows, cols).max() < 1.2 * steepest_gaussian_edge + 0.02
    # The face itself is pasted whole.
    for x, y in landmarks.astype(int):
        assert mask[y, x] > 0.97
    # A wider feather is gentler.
    if feather < 0.12:
        wider = head_mask(landmarks, side, 0.12)
        assert np.hypot(*np.gradient(wider.astype(np.float64))).max() < np.hypot(rows, cols).max()


def test_paste_back_changes_the_photo_only_through_the_mask():
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 1, size=(300, 420, 3)).astype(np.float32)
    side = 200
    mask = head_mask(_landmarks(side), side, 0.06)
    # The box runs past the photo's top and left: only the part inside is pasted.
    face = PhotoFace(0, (-30, -20, side - 30, side - 20), mask)
    composer = PasteBack(photo, [face])
    white = composer.compose([np.ones((64, 64, 3), np.float32)])
    black = composer.compose([np.zeros((64, 64, 3), np.float32)])
    assert white.shape == photo.shape and white.dtype == np.uint8
    changed = np.abs(white.astype(int) - black.astype(int)).max(axis=2) > 1
    inside = np.zeros(photo.shape[:2], bool)
    inside[: side - 20, : side - 30] = mask[20:, 30:] > 1 / 255  # a change of over one grey level
    assert not (changed & ~inside).any(), "nothing outside the mask may change"
    assert changed[inside].mean() > 0.9
    # Where the mask is 1 the prediction shows as it is; where 0, the photo.
    full = np.argwhere(mask[20:, 30:] > 0.999)[0]
    assert white[full[0], full[1]].min() == 255 and black[full[0], full[1]].max() == 0


def test_the_driving_clips_are_one_face_at_a_time():
    from dagan.pipelines.crop import Clip

    clips = [Clip("a", 0, 0, 50, (0, 0, 1, 1)), Clip("b", 1, 10, 30, (0, 0, 1, 1)),
             Clip("c", 1, 50, 60, (0, 0, 1, 1)), Clip("d", 2, 55, 90, (0, 0, 1, 1))]  # fmt: skip
    assert [c.file for c in driving_clips(clips)] == ["a", "d"]


@pytest.fixture(scope="module")
def driving_with_a_gap(tmp_path_factory):
    path = tmp_path_factory.mktemp("footage") / "talk.mp4"
    write_footage(path, WITH_A_GAP)
    return path


@needs_sample
@pytest.mark.slow
def test_paste_back_keeps_the_photo_away_from_the_face_and_animates_inside_it(tmp_path, driving_with_a_gap):
    photo = photo_with_portraits(tmp_path / "photo.png", [(320, 200)], *PHOTO)
    out = tmp_path / "out.mp4"
    argv = ["animate", "--source", str(tmp_path / "photo.png"), "--driving", str(driving_with_a_gap),
            "--crop", "--paste-back", "--output", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    frames, _ = read_video(out)
    assert len(frames) == sum(scene.frames for scene in WITH_A_GAP)
    assert frames[0].shape == photo.shape
    difference = np.stack([np.abs(frame - photo).mean(axis=2) for frame in frames])
    far = np.ones(photo.shape[:2], bool)
    far[100:620, 200:760] = False  # the portrait's crop box with room to spare
    assert difference[:, far].mean() < 2 / 255 and np.percentile(difference[:, far], 99.9) < 8 / 255
    face = (slice(300, 420), slice(420, 540))
    assert difference[:, face[0], face[1]].mean() > 4 / 255, "the face must be animated"
    # The faceless stretch repeats the last animated frame: no jump, no return to the still photo.
    gap = range(WITH_A_GAP[0].frames, WITH_A_GAP[0].frames + WITH_A_GAP[1].frames)
    for index in gap:
        assert np.abs(frames[index] - frames[gap[0] - 1]).mean() < 1.5 / 255


@needs_sample
@pytest.mark.slow
def test_all_faces_of_a_photo_each_get_their_crop_and_paste(tmp_path, driving_with_a_gap, capsys):
    photo = photo_with_portraits(tmp_path / "two.png", [(40, 160), (560, 120)], *PHOTO)
    common = ["animate", "--source", str(tmp_path / "two.png"), "--driving", str(driving_with_a_gap), "--crop"]
    assert main([*common, "--face", "all", "--output", str(tmp_path / "faces") + "/", "--quiet"]) == 0
    crops = sorted((tmp_path / "faces").glob("*.mp4"))
    assert [p.name for p in crops] == ["two_0.mp4", "two_1.mp4"]
    assert read_video(crops[0])[0][0].shape == (64, 64, 3)  # the bundled model's size
    assert main([*common, "--face", "all", "--paste-back", "--output", str(tmp_path / "both.mp4"), "--quiet"]) == 0
    frames, _ = read_video(tmp_path / "both.mp4")
    change = np.abs(frames[10] - photo).mean(axis=2)
    assert change[260:380, 150:250].mean() > 4 / 255 and change[220:340, 670:770].mean() > 4 / 255
    assert main([*common, "--face", "1", "--output", str(tmp_path / "one.mp4"), "--quiet"]) == 0
    assert main([*common, "--face", "2", "--output", str(tmp_path / "none.mp4")]) == 2
    assert "has 2 face(s)" in capsys.readouterr().err and not (tmp_path / "none.mp4").exists()


@needs_sample
def test_no_face_in_the_photo_or_the_driving_video_is_one_line(tmp_path, driving_with_a_gap, capsys):
    wall = tmp_path / "wall.png"
    write_png(wall, np.full((300, 400, 3), 0.4, np.float32))
    out = tmp_path / "out.mp4"
    assert main(["animate", "--source", str(wall), "--driving", str(driving_with_a_gap), "--crop",
                 "--output", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "no face found in the source photo wall.png" in err and len(err.strip().splitlines()) <= 2
    faceless = tmp_path / "faceless.mp4"
    write_footage(faceless, [Scene(12, 0, (0, 0), (0, 0), (120, 90, 60))], audio=False)
    photo_with_portraits(tmp_path / "photo.png", [(100, 100)], *PHOTO)
    assert main(["animate", "--source", str(tmp_path / "photo.png"), "--driving", str(faceless), "--crop",
                 "--output", str(out), "--quiet"]) == 2  # fmt: skip
    assert "no face found in the driving video" in capsys.readouterr().err
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_footage_flags_need_crop(tmp_path, capsys):
    image = tmp_path / "a.png"
    write_png(image, np.zeros((64, 64, 3), np.float32))
    for extra in (["--paste-back"], ["--face", "all"], ["--mask-feather", "0.1"], ["--detect-every", "2"]):
        assert main(["animate", "--source", str(image), "--driving", str(image), *extra]) == 2
        assert "works with --crop only" in capsys.readouterr().err
    for extra in (["--reference", "0"], ["--side-by-side"], ["--save-depth", str(tmp_path / "d.mp4")]):
        assert main(["animate", "--source", str(image), "--driving", str(image), "--crop", *extra]) == 2
        assert "does not work with --crop" in capsys.readouterr().err
    for word in ("left", "²", "-1"):
        assert main(["animate", "--source", str(image), "--driving", str(image), "--crop", "--face", word]) == 2
        assert "--face takes a face index" in capsys.readouterr().err
    assert main(["animate", "--source", str(image), "--driving", str(image), "--crop", "--mask-feather", "0.1"]) == 2
    assert "--mask-feather works with --paste-back only" in capsys.readouterr().err
    assert main(["animate", "--source", str(image), "--driving", str(image), "--mask-feather", "0"]) == 2
    assert "works with --crop only" in capsys.readouterr().err
    assert read_image(image).shape == (64, 64, 3)


@needs_sample
@pytest.mark.slow
def test_published_layout_checkpoints_animate_real_footage_at_their_own_size(tmp_path, tiny_files, driving_with_a_gap):
    photo_with_portraits(tmp_path / "photo.png", [(320, 200)], *PHOTO)
    weights = ["--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"])]
    common = ["animate", "--source", str(tmp_path / "photo.png"), "--driving", str(driving_with_a_gap), "--crop",
              *weights, "--quiet"]  # fmt: skip
    assert main([*common, "--output", str(tmp_path / "crop.mp4")]) == 0
    frames, _ = read_video(tmp_path / "crop.mp4")
    assert len(frames) == sum(scene.frames for scene in WITH_A_GAP) and frames[0].shape == (256, 256, 3)
    assert main([*common, "--paste-back", "--smooth", "2", "--output", str(tmp_path / "pasted.mp4")]) == 0
    assert read_video(tmp_path / "pasted.mp4")[0][0].shape == (640, 960, 3)
