"""The output policy of ``dagan.io.atomic``: what dagan may replace, what it cleans up, and what it never touches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dagan.cli import main
from dagan.errors import DaganError
from dagan.io.atomic import (
    FRAME_MANIFEST,
    STALE_AFTER_S,
    atomic_output,
    check_outputs,
    recorded_frames,
    remove_stale_temporaries,
    removed_if_failed_empty,
)

from .conftest import make_clip


def _frames(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(count)
    for i in range(count):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def _animate(tiny_files, driving: Path, output: str, *extra: str) -> int:
    argv = ["animate", "--quiet", "--source", str(tiny_files["source"]), "--driving", str(driving)]
    argv += ["--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"])]
    return main([*argv, "--output", output, *extra])


def test_a_frame_folder_is_replaced_only_with_overwrite_and_only_where_dagan_wrote(tiny_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert _animate(tiny_files, _frames(tmp_path / "five", 5), f"{out}/") == 0
    assert recorded_frames(out) == {f"{i:06d}.png" for i in range(5)}
    (out / ".user-notes").write_text("mine")  # hidden: never a frame name, never touched

    assert _animate(tiny_files, _frames(tmp_path / "three", 3), f"{out}/") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in range(5)]

    assert _animate(tiny_files, tmp_path / "three", f"{out}/", "--overwrite") == 0
    # The shorter run drops the earlier run's extra frames, and nothing else.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".user-notes", FRAME_MANIFEST, *(f"{i:06d}.png" for i in range(3))]
    )
    assert (out / ".user-notes").read_text() == "mine"

    (out / "holiday.jpg").write_bytes(b"a photo")
    assert _animate(tiny_files, tmp_path / "three", f"{out}/", "--overwrite") == 2
    assert "holiday.jpg" in capsys.readouterr().err
    assert (out / "holiday.jpg").read_bytes() == b"a photo"


def test_outputs_may_not_name_an_input_or_each_other(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"driving")
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    for same in (clip, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "clip.mp4"):
        with pytest.raises(DaganError, match="would overwrite the input --driving"):
            check_outputs({"--output": same}, {"--driving": clip})
    with pytest.raises(DaganError, match="would overwrite the input"):
        check_outputs({"--output": tmp_path}, {"--driving": clip}, folders=["--output"])
    with pytest.raises(DaganError, match="both name"):
        check_outputs({"--output": tmp_path / "a.mp4", "--save-depth": tmp_path / "a.mp4"}, {})
    with pytest.raises(DaganError, match="empty"):
        check_outputs({"--output": ""}, {})
    check_outputs({"--output": tmp_path / "new.mp4"}, {"--driving": clip, "--source": None})


def test_stale_temporaries_of_dagans_own_naming_are_removed_and_nothing_else(tmp_path):
    old = time.time() - STALE_AFTER_S - 60
    stale = tmp_path / ".result.mp4.ab12cd_3.partial.mp4"
    stale_checkpoint = tmp_path / ".checkpoint.pth.tar.x9y8z7w6.partial.tar"
    stale_staging = tmp_path / ".partial-k2j3h4g5"
    fresh = tmp_path / ".other.mp4.qwertyui.partial.mp4"  # a running job's
    users = [tmp_path / "notes.partial.txt", tmp_path / ".hidden", tmp_path / "result.mp4"]
    for path in (stale, stale_checkpoint, fresh, *users):
        path.write_bytes(b"x")
    stale_staging.mkdir()
    (stale_staging / "000000.png").write_bytes(b"x")
    for path in (stale, stale_checkpoint, stale_staging, *users):
        os.utime(path, (old, old))

    with atomic_output(tmp_path / "new.mp4") as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and not stale_checkpoint.exists() and not stale_staging.exists()
    assert fresh.exists() and all(path.exists() for path in users)
    assert remove_stale_temporaries(tmp_path) == []


def test_temporary_names_stay_within_the_name_limit(tmp_path):
    name = "n" * 250 + ".mp4"  # legal: 254 bytes
    with atomic_output(tmp_path / name) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255
        tmp.write_bytes(b"ok")
    assert (tmp_path / name).read_bytes() == b"ok"


def test_a_failed_run_removes_only_the_empty_folders_it_created(tmp_path):
    with pytest.raises(RuntimeError), removed_if_failed_empty(tmp_path / "a" / "b") as run:
        (run / "logs").mkdir(parents=True)
        raise RuntimeError("failed before writing")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), removed_if_failed_empty(tmp_path / "c") as run:
        run.mkdir()
        (run / "log.jsonl").write_text("{}")
        raise RuntimeError("failed after writing")
    assert (tmp_path / "c" / "log.jsonl").exists()


def test_the_cli_builds_its_parser_without_importing_torch():
    code = "import sys; from dagan.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_terminated_run_leaves_no_temporary_file_and_keeps_the_old_output(tiny_files, tmp_path, signum, code):
    driving = make_clip(tmp_path / "long.mp4", frames=3000, size=64)
    out = tmp_path / "result.mp4"
    out.write_bytes(b"yesterday's result")
    argv = [sys.executable, "-m", "dagan", "animate", "--quiet", "--source", str(tiny_files["source"])]
    argv += ["--driving", str(driving), "--checkpoint", str(tiny_files["checkpoint"])]
    argv += ["--depth-weights", str(tiny_files["depth"]), "--output", str(out)]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".result.mp4.*.partial.mp4")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was signalled"
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"yesterday's result"
    assert not [p.name for p in tmp_path.iterdir() if ".partial" in p.name]
