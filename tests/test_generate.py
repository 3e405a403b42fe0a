"""``dagan generate``: pairing, absolute motion for image pairs, resume, sharding, and generate -> evaluate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dagan.cli import main
from dagan.io.image import read_image, to_uint8
from dagan.io.video import read_audio, read_video
from dagan.pipelines import generate as generate_module
from dagan.pipelines.animate import Animator
from dagan.pipelines.generate import GenerateOptions, generate, pairs_from_csv

from .conftest import make_clip


@pytest.fixture
def pair_folders(tiny_files, tmp_path):
    sources, drivers = tmp_path / "source_self", tmp_path / "gt_self"
    sources.mkdir()
    drivers.mkdir()
    frames, _ = read_video(tiny_files["driving"])
    from dagan.io.image import write_png

    write_png(sources / "a.png", frames[0])
    write_png(drivers / "a.png", frames[3])
    shutil.copy(tiny_files["source"], sources / "b.png")
    make_clip(drivers / "b.mp4", frames=6, size=64, audio=True)
    return sources, drivers


def _argv(tiny_files, out, *extra):
    return ["generate", "--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"]),
            "--out", str(out), "--quiet", *extra]  # fmt: skip


@pytest.mark.slow
def test_folder_pairs_generate_then_evaluate(tiny_files, pair_folders, tmp_path, capsys):
    sources, drivers = pair_folders
    out = tmp_path / "generate_tiny_self"
    assert (
        main(_argv(tiny_files, out, "--source-dir", str(sources), "--driving-dir", str(drivers), "--mode", "self")) == 0
    )
    assert "generated 2 outputs" in capsys.readouterr().out
    # An image pair uses absolute keypoints.
    animator = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    expected = next(
        iter(animator.animate(read_image(sources / "a.png"), [read_image(drivers / "a.png")], relative=False))
    )
    written = to_uint8(read_image(out / "a.png")).astype(int)
    assert np.abs(written - to_uint8(expected.prediction).astype(int)).max() <= 1
    video, _ = read_video(out / "b.mp4")
    assert len(video) == len(read_video(drivers / "b.mp4")[0])
    assert read_audio(out / "b.mp4").size > 0  # the driving audio goes along, for the lip-sync metrics
    # Resume: finished outputs are skipped.
    assert main(_argv(tiny_files, out, "--source-dir", str(sources), "--driving-dir", str(drivers))) == 0
    assert "generated 0 outputs" in capsys.readouterr().out
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--generated", str(out), "--driving", str(drivers), "--source", str(sources),
                 "--out", str(report_dir), "--metrics", "psnr,ssim,l1", "--quiet"]) == 0  # fmt: skip
    report = json.loads((report_dir / "metrics.json").read_text())
    assert report["l1"]["count"] == 1 + len(video) and 0 < report["l1"]["value"] < 1


@pytest.mark.slow
def test_ranks_share_the_pairs_and_match_one_process(tiny_files, pair_folders, tmp_path, monkeypatch):
    sources, drivers = pair_folders
    common = {"checkpoint": tiny_files["checkpoint"], "depth_weights": tiny_files["depth"], "source_dir": sources,
              "driving_dir": drivers, "device": "cpu", "quiet": True}  # fmt: skip
    generate(GenerateOptions(out=tmp_path / "single", **common))
    counts = []
    for rank in (0, 1):
        monkeypatch.setattr(generate_module, "setup_distributed", lambda rank=rank: (rank, 2, 0))
        counts.append(generate(GenerateOptions(out=tmp_path / "sharded", **common))["written"])
    assert counts == [1, 1]
    assert np.array_equal(read_image(tmp_path / "single" / "a.png"), read_image(tmp_path / "sharded" / "a.png"))
    a, _ = read_video(tmp_path / "single" / "b.mp4")
    b, _ = read_video(tmp_path / "sharded" / "b.mp4")
    assert np.array_equal(np.stack(a), np.stack(b))


@pytest.mark.slow
def test_pairs_csv_paths_frames_and_errors(tiny_files, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(tiny_files["driving"], root / "clip.mp4")
    table = tmp_path / "pairs.csv"
    table.write_text(f"source,driving,frame\nclip.mp4,clip.mp4,2\n{tiny_files['source']},clip.mp4,\n")
    pairs = pairs_from_csv(table, root)
    assert [p.source_frame for p in pairs] == [2, 0]
    assert pairs[0].source == root / "clip.mp4" and pairs[1].source == tiny_files["source"]
    assert len({p.name for p in pairs}) == 2
    out = tmp_path / "csv_out"
    assert main(_argv(tiny_files, out, "--pairs", str(table), "--root", str(root), "--batch-size", "2")) == 0
    assert len(list(out.glob("*.mp4"))) == 2
    table.write_text("clip.mp4,clip.mp4,two\n")
    assert main(_argv(tiny_files, tmp_path / "bad", "--pairs", str(table), "--root", str(root))) == 2
    assert "is not a number" in capsys.readouterr().err
    assert main(_argv(tiny_files, tmp_path / "bad", "--source-dir", str(root))) == 2


@pytest.mark.slow
def test_image_pairs_in_one_batch_match_one_at_a_time(tiny_files, tmp_path):
    frames, _ = read_video(tiny_files["driving"])
    sources, drivers = tmp_path / "s", tmp_path / "d"
    sources.mkdir()
    drivers.mkdir()
    from dagan.io.image import write_png

    for i in range(3):
        write_png(sources / f"p{i}.png", frames[i])
        write_png(drivers / f"p{i}.png", frames[5 - i])
    options = GenerateOptions(checkpoint=tiny_files["checkpoint"], depth_weights=tiny_files["depth"],
                              out=tmp_path / "out", source_dir=sources, driving_dir=drivers, batch_size=3,
                              device="cpu", quiet=True)  # fmt: skip
    assert generate(options)["written"] == 3
    animator = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    for i in range(3):
        alone = next(iter(animator.animate(read_image(sources / f"p{i}.png"), [read_image(drivers / f"p{i}.png")],
                                           relative=False))).prediction  # fmt: skip
        batched = read_image(tmp_path / "out" / f"p{i}.png")
        # Within one 8-bit level (compared as 8-bit values: frames are float32, dagan.io's frame contract).
        assert np.abs(to_uint8(batched).astype(int) - to_uint8(alone).astype(int)).max() <= 1
