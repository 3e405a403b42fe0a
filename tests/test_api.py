"""The public API: ``from dagan import ...``, loaded lazily, and ``Animator(source, driving)``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dagan
from dagan.errors import DaganError
from dagan.io.image import to_uint8


@pytest.mark.slow
def test_import_dagan_stays_light_and_names_load_on_first_use():
    code = "import sys, dagan; print('torch' in sys.modules); dagan.Animator; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_the_public_names_are_the_modules_own():
    from dagan.io.image import read_image
    from dagan.io.video import read_video
    from dagan.pipelines.animate import Animator, animate_files

    assert set(dagan.__all__) == {"__version__", *dagan._EXPORTS}
    assert (dagan.Animator, dagan.animate_files, dagan.read_image, dagan.read_video) == (
        Animator, animate_files, read_image, read_video)  # fmt: skip
    for name in dagan.__all__:
        assert getattr(dagan, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'animate_everything'"):
        dagan.animate_everything  # noqa: B018


@pytest.fixture(scope="module")
def animator(tiny_files):
    return dagan.Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], device="cpu")


@pytest.mark.slow
def test_animator_takes_paths_arrays_and_pil_images_alike(animator, tiny_files, tmp_path):
    by_path = animator(tiny_files["source"], tiny_files["driving"])
    frames, fps = dagan.read_video(tiny_files["driving"])
    assert len(by_path.frames) == len(frames) == 6 and by_path.fps == fps
    assert by_path.frames[0].shape == (animator.size, animator.size, 3) and by_path.frames[0].dtype == np.float32
    source_pixels = np.asarray(Image.open(tiny_files["source"]).convert("RGB"))
    by_arrays = animator(source_pixels, [to_uint8(frame) for frame in frames])
    by_pil = animator(Image.fromarray(source_pixels), [Image.fromarray(to_uint8(frame)) for frame in frames])
    by_frames = animator(dagan.read_image(tiny_files["source"]), np.stack(frames))
    for other in (by_arrays, by_pil, by_frames):
        assert max(float(np.abs(a - b).max()) for a, b in zip(by_path.frames, other.frames, strict=True)) < 1e-5

    # The same frames as the command, which writes them (here losslessly, as PNGs).
    out = tmp_path / "frames"
    dagan.animate_files(tiny_files["source"], tiny_files["driving"], tiny_files["checkpoint"], tiny_files["depth"],
                        f"{out}/", animator=animator, quiet=True)  # fmt: skip
    written, _ = dagan.read_video(out)
    assert all(np.array_equal(to_uint8(a), to_uint8(b)) for a, b in zip(by_path.frames, written, strict=True))


def test_one_driving_image_gives_absolute_motion_and_saves(animator, tiny_files, tmp_path):
    frames, _ = dagan.read_video(tiny_files["driving"])
    single = animator(tiny_files["source"], frames[3])
    absolute = animator(tiny_files["source"], [frames[3]], relative=False)
    relative = animator(tiny_files["source"], [frames[3]], reference=frames[0])
    assert len(single.frames) == 1 and np.array_equal(single.frames[0], absolute.frames[0])
    assert not np.array_equal(single.frames[0], relative.frames[0])
    assert single.save(tmp_path / "one.png") == tmp_path / "one.png"
    video = animator(tiny_files["source"], tiny_files["driving"]).save(tmp_path / "out.mp4")
    assert len(dagan.read_video(video)[0]) == 6


def test_animator_refuses_what_is_not_an_image_in_one_line(animator, tiny_files, tmp_path):
    for bad, says in ((42, "not int"), (np.zeros((4, 4, 3), np.int8), "not int8"),
                      (np.full((8, 8, 3), 255.0), "values up to 255")):  # fmt: skip
        with pytest.raises(DaganError, match=says):
            animator(bad, tiny_files["driving"])
    with pytest.raises(DaganError, match="give an .mp4"):
        animator(tiny_files["source"], tiny_files["driving"]).save(tmp_path / "out.avi")


def test_as_frame_keeps_16_bits_from_pil_images_and_any_byte_order(tmp_path):
    from dagan.io.image import as_frame, read_image

    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as image:
        by_pil = as_frame(image)
    assert np.allclose(by_pil, read_image(tmp_path / "grey16.png"))
    assert abs(float(by_pil.mean()) - 30000 / 65535) < 1e-4  # not clipped to white
    assert abs(float(as_frame(np.full((8, 8, 3), 30000, ">u2")).mean()) - 30000 / 65535) < 1e-4
