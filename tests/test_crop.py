"""``dagan crop``: tracking, scene cuts, VoxCeleb framing, clips with their audio, tracks.csv and the preview."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
from PIL import Image

from dagan.cli import main
from dagan.config import CropConfig
from dagan.io.image import read_image, write_png
from dagan.io.video import read_audio
from dagan.pipelines.crop import Detections, FaceTracker, crop_square, cut_square, framing_box, iou

from .footage import (
    AUDIO_RATE,
    DRIVING,
    PORTRAIT,
    TWO_SCENES,
    audio_seconds,
    photo_with_portraits,
    tone_envelope,
    video_frames,
    write_footage,
)

needs_sample = pytest.mark.skipif(
    not (DRIVING.is_file() and PORTRAIT.is_file()), reason=f"the sample video and portrait are not in {DRIVING.parent}"
)
dlib = pytest.importorskip("dlib", reason="dagan crop needs dlib (pip install 'dagan[face]')")

#: Where the face sits in the sample driving video's 256-pixel frames (the union of its landmarks).
SAMPLE_FACE = (63, 78, 199, 220)


def _track(config: CropConfig, detections: list[tuple[int, list[tuple[float, float, float, float]]]], cut_at=()):
    tracker = FaceTracker(config)
    for frame, boxes in detections:
        if frame in cut_at:
            tracker.cut()
        tracker.update(Detections(frame, boxes))
    tracker.cut()
    return sorted(tracker.finished, key=lambda t: t.start)


def test_a_face_that_leaves_its_box_goes_on_as_the_same_face_in_a_new_clip():
    config = CropConfig(iou=0.5)
    moving = [(frame, [(10.0 + 4 * frame, 10.0, 110.0 + 4 * frame, 110.0)]) for frame in range(0, 40, 5)]
    tracks = _track(config, moving)
    assert len(tracks) >= 2 and {t.face for t in tracks} == {0}
    for before, after in zip(tracks, tracks[1:], strict=False):
        assert before.end == after.start  # no frame falls between two clips of one face
        assert iou(before.first_box, after.first_box) < config.iou
    for track in tracks:
        assert all(iou(box, track.first_box) >= config.iou for _, box in track.keys)


def test_a_lost_face_ends_at_its_last_detection_and_a_cut_ends_every_clip():
    config = CropConfig(lost_after=2)
    box = (10.0, 10.0, 110.0, 110.0)
    other = (300.0, 10.0, 400.0, 110.0)
    detections = [(0, [box, other]), (5, [box, other]), (10, [other]), (15, [other]), (20, [other, box])]
    tracks = _track(config, detections, cut_at={15})
    spans = sorted((t.face, t.start, t.end) for t in tracks)
    # Face 0 is missed twice (frames 10 and 15): lost, ending after frame 5; it comes back as a new face.
    # The cut at 15 ends face 1's clip at its last detection, frame 10, and starts a new one.
    assert spans == [(0, 0, 6), (1, 0, 11), (2, 15, 21), (3, 20, 21)]


def test_an_occasional_missed_detection_does_not_split_a_clip():
    box = (10.0, 10.0, 110.0, 110.0)
    tracks = _track(CropConfig(lost_after=2), [(0, [box]), (5, []), (10, [box])])
    assert [(t.start, t.end) for t in tracks] == [(0, 11)]


def test_framing_is_square_centred_as_measured_and_holds_every_box():
    config = CropConfig()
    face = np.array([[100.0, 100.0, 200.0, 200.0]])
    left, top, right, bottom = framing_box(face, config)
    assert right - left == bottom - top == round(100 / config.face_fraction)
    assert (left + right) / 2 == pytest.approx(150 - 100 * config.face_offset_x, abs=1)
    assert (top + bottom) / 2 == pytest.approx(150 - 100 * config.face_offset_y, abs=1)
    moving = np.array([[0.0, 100.0, 100.0, 200.0], [400.0, 100.0, 500.0, 200.0]])
    box = framing_box(moving, config)
    assert box[0] <= 0 and box[2] >= 500 and box[2] - box[0] == box[3] - box[1]
    wider = framing_box(face, CropConfig(increase=0.1))
    assert wider[2] - wider[0] == round((right - left) * 1.2)


def test_boxes_past_the_edge_are_padded_by_replication_not_shifted():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    region = cut_square(image, (-2, -1, 4, 5))
    assert region.shape == (6, 6, 3)
    assert np.array_equal(region[1:, 2:], image[:, :4])  # the inside is where it was
    assert np.array_equal(region[0], region[1]) and np.array_equal(region[:, 0], region[:, 2])
    frame = crop_square(image, (-2, -1, 4, 5), 16)
    assert frame.shape == (16, 16, 3) and frame.dtype == np.float32 and frame.max() <= 1


@needs_sample
@pytest.mark.slow
def test_the_default_framing_reproduces_the_sample_voxceleb_crop():
    from dagan.io.video import iter_pixels, probe_video
    from dagan.pipelines.crop import FaceFinder

    finder = FaceFinder()
    boxes = [b[0] for b in (finder.boxes(p, 1.0) for p in iter_pixels(probe_video(DRIVING))) if b]
    framed = framing_box(np.array(boxes))
    assert iou(framed, (0, 0, 256, 256)) > 0.9, framed


@needs_sample
def test_two_scenes_give_one_clip_each_with_its_audio(tmp_path):
    video = tmp_path / "talk.mp4"
    spans = write_footage(video, TWO_SCENES)
    out = tmp_path / "crops"
    assert main(["crop", "--input", str(video), "--out", str(out), "--quiet"]) == 0
    with open(out / "tracks.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "face", "start", "end", "x0", "y0", "x1", "y1"]
    clips = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(clips) == len(TWO_SCENES)
    fps = 25
    for clip, (scene_start, scene_end, _pasted), scene in zip(clips, spans, TWO_SCENES, strict=True):
        start, end = int(clip["start"]), int(clip["end"])
        assert scene_start <= start < end <= scene_end, "a clip must not span the cut"
        assert end - start >= scene.frames - CropConfig.detect_every
        x0, y0, x1, y1 = (int(clip[k]) for k in ("x0", "y0", "x1", "y1"))
        assert x1 - x0 == y1 - y0 > 0
        # The face, wherever it went in the scene, stays inside the clip's one box.
        scale = scene.size / 256
        for corner in (scene.start, scene.end):
            face = [corner[i % 2] + SAMPLE_FACE[i] * scale for i in range(4)]
            assert x0 <= face[0] and y0 <= face[1] and face[2] <= x1 and face[3] <= y1, (clip, face)
        path = out / clip["file"]
        assert clip["file"] == f"talk_{clips.index(clip)}.mp4"
        frames, rate = video_frames(path)
        assert frames == end - start and rate == fps
        with av.open(str(path)) as container:
            assert container.streams.video[0].width == CropConfig.size
        # The audio is the clip's span: as long (to an AAC frame), and as loud as the tone was then.
        assert abs(audio_seconds(path) - frames / fps) < 2 * 1024 / AUDIO_RATE
        sound = read_audio(path, AUDIO_RATE).astype(np.float64) / 32768
        middle = len(sound) // 2
        amplitude = np.sqrt(2 * np.mean(sound[middle - 1600 : middle + 1600] ** 2))
        expected = tone_envelope((start + end) / 2 / fps, spans[-1][1] / fps)
        assert amplitude == pytest.approx(expected, rel=0.1)
    preview = Image.open(out / "preview.jpg")
    preview.verify()


@needs_sample
def test_png_format_writes_frame_folders(tmp_path):
    video = tmp_path / "talk.mp4"
    write_footage(video, TWO_SCENES, audio=False)
    out = tmp_path / "crops"
    assert main(["crop", "--input", str(video), "--out", str(out), "--format", "png", "--size", "128", "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "tracks.csv", encoding="utf-8")))
    for row in rows:
        frames = sorted((out / row["file"]).glob("*.png"))
        assert len(frames) == int(row["end"]) - int(row["start"])
        assert read_image(frames[0]).shape == (128, 128, 3)


@needs_sample
def test_a_photo_gives_one_crop_per_face_left_to_right(tmp_path):
    photo = tmp_path / "group.jpg"
    photo_with_portraits(photo, [(700, 300), (100, 150)])
    out = tmp_path / "crops"
    assert main(["crop", "--input", str(photo), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "tracks.csv", encoding="utf-8")))
    assert [row["file"] for row in rows] == ["group_0.png", "group_1.png"]
    assert [(row["start"], row["end"]) for row in rows] == [("0", "1"), ("0", "1")]
    assert int(rows[0]["x0"]) < 400 < int(rows[1]["x0"])
    for row in rows:
        assert read_image(out / row["file"]).shape == (256, 256, 3)


@needs_sample
def test_faces_too_small_are_warned_about_and_skipped(tmp_path, capsys):
    from dagan.pipelines.crop import crop_files

    photo = tmp_path / "small.png"
    photo_with_portraits(photo, [(100, 100)])
    report = crop_files(photo, tmp_path / "out", CropConfig(min_face=1000), quiet=True)
    assert report.clips == []
    assert "too small to animate" in capsys.readouterr().err


@needs_sample
def test_a_folder_of_inputs_and_a_faceless_image(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo_with_portraits(inputs / "one.png", [(100, 100)])
    write_png(inputs / "wall.png", np.full((200, 300, 3), 0.5, dtype=np.float32))
    out = tmp_path / "out"
    assert main(["crop", "--input", str(inputs), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "tracks.csv", encoding="utf-8")))
    assert [row["file"] for row in rows] == ["one_0.png"]


def test_crop_refuses_a_folder_that_is_not_empty_and_bad_options(tmp_path, capsys):
    image = tmp_path / "face.png"
    write_png(image, np.zeros((64, 64, 3), dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["crop", "--input", str(image), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as exit_info:
        main(["crop", "--input", str(image), "--out", str(tmp_path / "o2"), "--iou", "0"])
    assert exit_info.value.code == 2
    assert main(["crop", "--input", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o3")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o3").exists()


@needs_sample
def test_inputs_sharing_a_stem_are_all_cropped_under_their_full_names(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo_with_portraits(inputs / "talk.png", [(100, 100)])
    write_footage(inputs / "talk.mp4", TWO_SCENES[1:], audio=False)
    out = tmp_path / "out"
    assert main(["crop", "--input", str(inputs), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "tracks.csv", encoding="utf-8")))
    assert sorted(row["file"] for row in rows) == ["talk_mp4_0.mp4", "talk_png_0.png"]


@needs_sample
def test_a_failure_part_way_through_a_folder_leaves_no_crops_behind(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo_with_portraits(inputs / "a.png", [(100, 100)])
    (inputs / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    out = tmp_path / "out"
    assert main(["crop", "--input", str(inputs), "--out", str(out), "--quiet"]) == 2
    assert "b.mp4" in capsys.readouterr().err
    assert not out.exists(), "the new --out folder, with the crops made before the failure, must go"


def test_a_frame_folder_of_mixed_sizes_is_refused_by_name(tmp_path):
    from dagan.errors import DaganError
    from dagan.io.video import iter_timed_pixels, probe_video

    frames = tmp_path / "frames"
    frames.mkdir()
    write_png(frames / "000000.png", np.zeros((64, 64, 3), np.float32))
    write_png(frames / "000001.png", np.zeros((80, 64, 3), np.float32))
    stream = iter_timed_pixels(probe_video(frames), 32)
    seconds, first = next(stream)
    assert seconds == 0 and first.shape == (32, 32, 3) and first.dtype == np.uint8
    with pytest.raises(DaganError, match="000001.png.*one size"):
        next(stream)
