"""Image and video input/output."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from skimage.transform import resize

from dagan.io.image import read_image, resize_frame, to_uint8
from dagan.io.video import Mp4Writer, iter_frames, probe_video, read_audio, read_video, video_seconds

from .conftest import make_clip


def test_rgba_gray_and_16_bit_images_read_as_rgb(tmp_path):
    rng = np.random.default_rng(1)
    rgb = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    alpha = np.full((20, 30, 1), 17, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    gray16 = (rng.random((20, 30)) * 65535).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")

    # The frame contract: float32 RGB in [0, 1], the nearest float32 to each 8-bit value / 255.
    rgba = read_image(tmp_path / "rgba.png")
    assert rgba.dtype == np.float32 and np.array_equal(rgba, (rgb / 255.0).astype(np.float32))
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (20, 30, 3) and np.array_equal(gray[..., 1], (rgb[..., 0] / 255.0).astype(np.float32))
    wide = read_image(tmp_path / "gray16.png")
    assert wide.shape == (20, 30, 3) and np.allclose(wide[..., 2], gray16 / 65535.0)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape == (40, 20, 3)


def test_resize_matches_skimage_and_keeps_256_inputs_as_they_are():
    rng = np.random.default_rng(2)
    big = rng.random((300, 410, 3))
    assert np.allclose(resize_frame(big), resize(big, (256, 256)).astype(np.float32))
    exact = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    assert np.array_equal(resize_frame(exact), (exact / 255.0).astype(np.float32))


def test_to_uint8_rounds_to_nearest():
    assert to_uint8(np.array([0.0, 0.5 / 255, 0.6 / 255, 1.0, 1.7, -3])).tolist() == [0, 0, 1, 255, 255, 0]


@pytest.mark.parametrize(
    "suffix, codec", [(".mp4", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9"), (".gif", "gif")]
)
def test_driving_formats_decode(tmp_path, suffix, codec):
    clip = make_clip(tmp_path / f"clip{suffix}", frames=4, size=32, codec=codec)
    info = probe_video(clip)
    frames = list(iter_frames(info))
    assert len(frames) == 4 and frames[0].shape == (32, 32, 3) and frames[0].dtype == np.float32
    assert 0 <= frames[0].min() and 0.2 < frames[0].max() <= 1  # [0, 1], not 0-255 nor 0-1/255


def test_mp4_writer_copies_audio_and_keeps_fps(tmp_path):
    clip = make_clip(tmp_path / "talk.mp4", frames=10, size=32, fps=30, audio=True)
    info = probe_video(clip)
    assert info.has_audio and info.fps == 30
    writer = Mp4Writer(tmp_path / "out.mp4", info.fps, audio_from=clip)
    for frame in iter_frames(info):
        writer.write(frame)
    writer.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].average_rate == 30
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].frames == 10
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"


def test_audio_that_mp4_cannot_hold_is_reencoded(tmp_path):
    source = tmp_path / "pcm.mkv"
    with av.open(str(source), mode="w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=16000)
        audio.layout = "mono"
        for _ in range(5):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        samples = (np.sin(np.arange(3200) / 5) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    writer = Mp4Writer(tmp_path / "out.mp4", Fraction(25), audio_from=source)
    writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    # A span of it (a crop clip's), cut to the sample: the PCM track's unnamed layout is no obstacle.
    with Mp4Writer(tmp_path / "span.mp4", Fraction(25), audio_from=source, audio_span=(0.04, 0.12)) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    cut = read_audio(tmp_path / "span.mp4", 16000)
    whole = (np.sin(np.arange(3200) / 5) * 8000)[640:1920]
    assert len(whole) <= len(cut) <= len(whole) + 2048  # AAC frames of 1024 samples, and its priming
    assert 0.5 < np.abs(cut).max() / 8000 < 1.2


def test_frame_folder_is_read_in_name_order(tmp_path):
    for i in (2, 0, 1):
        Image.fromarray(np.full((8, 8, 3), i * 50, np.uint8)).save(tmp_path / f"f{i}.png")
    frames, fps = read_video(tmp_path)
    assert [round(f[0, 0, 0] * 255) for f in frames] == [0, 50, 100]
    assert fps == 25


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9")])
def test_a_videos_length_in_seconds(tmp_path, suffix, codec):
    clip = make_clip(tmp_path / f"clip{suffix}", frames=10, fps=20, codec=codec)
    assert video_seconds(clip) == pytest.approx(0.5, abs=0.051)  # a container's duration may add a frame
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{i}.png")
    assert video_seconds(folder) == pytest.approx(5 / 25)


def test_a_frame_that_will_not_convert_is_one_clean_error(tmp_path):
    from dagan.errors import DaganError
    from dagan.io.video import _rgb

    class Unconvertible:
        width, height = 16, 16

        def to_ndarray(self, format):
            raise ValueError("Conversion to numpy array with format `rgb24` is not yet supported")

    info = probe_video(make_clip(tmp_path / "clip.mp4", frames=2, size=16))
    with pytest.raises(DaganError, match="clip.mp4 has a frame that cannot be read as RGB"):
        _rgb(Unconvertible(), info, 16, 16)
    assert _rgb(next(_av_frames(info)), info, 8, 8).shape == (8, 8, 3)


def _av_frames(info):
    with av.open(str(info.path)) as container:
        yield from container.decode(video=0)
