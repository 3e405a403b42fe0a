"""``dagan evaluate``: pairing, the report's format, unavailable metrics and the reproduction's layout."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from dagan.cli import main
from dagan.errors import DaganError
from dagan.io.image import read_image, write_png
from dagan.io.video import Mp4Writer
from dagan.metrics.image import l1, psnr, ssim_skimage
from dagan.metrics.niqe import niqe


def _write_set(root, names, size=192, noise=0.04, seed=0):
    rng = np.random.default_rng(seed)
    for folder in ("gt", "gen", "src"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        y, x = np.mgrid[0:size, 0:size] / size
        truth = np.stack([0.5 + 0.4 * np.sin(6 * x + i), 0.5 + 0.4 * np.cos(5 * y), 0.3 + 0.4 * x * y], -1)
        generated = truth if i == 0 else np.clip(truth + rng.normal(0, noise * i, truth.shape), 0, 1)
        write_png(root / "gt" / f"{name}.png", truth)
        write_png(root / "gen" / f"{name}.png", generated)
        write_png(root / "src" / f"{name}.png", truth[::-1])


def test_image_folders_report_every_metric_or_why_not(tmp_path, capsys):
    names = ["a", "b", "c"]
    _write_set(tmp_path, names)
    out = tmp_path / "report"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"),
            "--source", str(tmp_path / "src"), "--out", str(out), "--save-visuals", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    for name in ("psnr", "ssim", "ssim_gaussian", "l1", "niqe"):
        entry = report[name]
        assert {"value", "protocol", "count", "per_item"} <= set(entry) and entry["count"] == 3, name
    gen_b, gt_b = read_image(tmp_path / "gen" / "b.png"), read_image(tmp_path / "gt" / "b.png")
    assert report["l1"]["per_item"]["b"] == pytest.approx(l1(gen_b, gt_b), abs=1e-12)
    assert report["ssim"]["per_item"]["b"] == pytest.approx(ssim_skimage(gen_b, gt_b), abs=1e-12)
    assert report["psnr"]["per_item"]["b"] == pytest.approx(psnr(gen_b, gt_b), abs=1e-9)
    assert report["psnr"]["per_item"]["a"] == "inf" and report["psnr"]["value"] == "inf"
    assert report["l1"]["per_item"]["a"] == 0.0
    assert report["niqe"]["per_item"]["c"] == pytest.approx(niqe(read_image(tmp_path / "gen" / "c.png")))
    for name in ("fid", "lpips"):  # no weights in the hub cache here: where we looked is reported
        assert report[name]["value"] is None and "weights not found at" in report[name]["unavailable"]
    for name in ("akd", "aed", "csim", "prmse"):  # patterns, not faces (or no dlib installed)
        assert report[name]["value"] is None
        assert "no face found" in report[name]["unavailable"] or "dagan[face]" in report[name]["unavailable"]
    assert "--syncnet-weights" in report["lse_d"]["unavailable"]  # images have no audio, and no weights were given
    text = (out / "metrics.txt").read_text()
    assert "unavailable" in text and "l1" in text
    assert (out / "plots" / "l1_histogram.png").is_file()
    worst = read_image(out / "plots" / "worst_l1.png")
    assert worst.shape[0] == 3 * 128 and worst.std() > 0.05  # three rows of real thumbnails, not blanks
    triplet = read_image(out / "visuals" / "b.png")
    assert triplet.shape == (192, 3 * 192, 3)
    assert "unavailable: " in capsys.readouterr().out


def test_reproduction_layout_and_metrics_without_references(tmp_path):
    _write_set(tmp_path / "set", ["x", "y"])
    (tmp_path / "set" / "gen").rename(tmp_path / "set" / "generate_dagan_self")
    (tmp_path / "set" / "gt").rename(tmp_path / "set" / "gt_self")
    (tmp_path / "set" / "src").rename(tmp_path / "set" / "source_self")
    out = tmp_path / "r"
    argv = ["evaluate", "--eval-set", str(tmp_path / "set"), "--generated", "generate_dagan_self", "--out", str(out),
            "--metrics", "l1,niqe,aucon", "--max-samples", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report) == {"l1", "niqe", "aucon"} and report["l1"]["count"] == 1
    assert "action-unit detector" in report["aucon"]["unavailable"]
    # NIQE needs neither driving nor source; L1 without --driving says what it needs.
    out2 = tmp_path / "r2"
    assert main(["evaluate", "--generated", str(tmp_path / "set" / "generate_dagan_self"), "--out", str(out2),
                 "--metrics", "l1,niqe", "--quiet"]) == 0  # fmt: skip
    report = json.loads((out2 / "metrics.json").read_text())
    assert report["niqe"]["count"] == 2 and "--driving" in report["l1"]["unavailable"]


def test_video_folders_compare_frames_in_order(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.random((64, 64, 3)) for _ in range(5)]
    for folder in ("gen", "gt"):
        (tmp_path / folder).mkdir()
        writer = Mp4Writer(tmp_path / folder / "clip.mp4", Fraction(25))
        for frame in frames:
            writer.write(frame)
        writer.close()
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"), "--out", str(out),
            "--metrics", "l1,psnr,niqe", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["l1"]["count"] == 5 and report["l1"]["value"] == 0.0  # the same file decodes identically
    assert "96x96 blocks" in report["niqe"]["unavailable"]  # 64x64 frames are smaller than NIQE's blocks


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    _write_set(tmp_path, ["a", "b"])
    (tmp_path / "gt" / "b.png").unlink()
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--driving", str(tmp_path / "gt"), "--out",
            str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "no driving file of the same name" in capsys.readouterr().err
    assert (
        main(["evaluate", "--generated", str(tmp_path / "gen"), "--out", str(tmp_path / "r"), "--metrics", "mos"]) == 2
    )


def test_report_entries_keep_the_json_fields_in_their_order():
    from dagan.pipelines.report import ReportEntry

    scored = ReportEntry.of_frames({"a": [1.0, 3.0], "b": [8.0]}, "mean", frames_without_face=2)
    assert list(scored.as_dict()) == ["value", "protocol", "count", "per_item", "frames_without_face"]
    assert scored.as_dict()["value"] == 4.0 and scored.per_item == {"a": 2.0, "b": 8.0} and scored.count == 3
    rooted = ReportEntry.of_frames({"a": [1.0, 3.0]}, "rms", lambda v: np.sqrt(np.mean(v)))
    assert rooted.value == pytest.approx(np.sqrt(2.0))
    missing = ReportEntry.missing("how", "why").as_dict()
    assert missing == {"value": None, "protocol": "how", "count": 0, "per_item": {}, "unavailable": "why"}
    assert list(missing) == ["value", "protocol", "count", "per_item", "unavailable"]


def test_each_asked_metric_is_reported_once_by_one_family(tmp_path):
    from dagan.config import ALL_METRICS
    from dagan.pipelines.evaluate import (
        REPORT_ORDER,
        ArcFaceIdentity,
        EvaluateOptions,
        FaceMetrics,
        evaluate,
        metric_families,
    )

    names = ["a", "b"]
    _write_set(tmp_path, names, size=128)
    options = EvaluateOptions(
        generated=tmp_path / "gen", out=tmp_path / "report", driving=tmp_path / "gt", source=tmp_path / "src",
        metrics=(*ALL_METRICS, "aucon"), arcface_weights=tmp_path / "missing.pth", quiet=True,
    )  # fmt: skip
    families = metric_families(options)
    # With ArcFace weights asked for, CSIM is ArcFace's (here unavailable: the file is missing), not dlib's.
    arcface = next(f for f in families if isinstance(f, ArcFaceIdentity))
    assert "missing.pth" in arcface.entries["csim"].unavailable
    assert "csim" not in next(f for f in families if isinstance(f, FaceMetrics)).running
    report = evaluate(options)
    assert list(report) == [name for name in REPORT_ORDER if name in report]
    assert set(report) == {*ALL_METRICS, "ssim_gaussian", "aucon"}
    for entry in report.values():
        assert (entry["value"] is None) == ("unavailable" in entry)
    assert json.loads((options.out / "metrics.json").read_text())["l1"]["per_item"].keys() == set(names)
    with pytest.raises(DaganError, match="unknown metric 'sharpness'"):
        metric_families(EvaluateOptions(generated=tmp_path, out=tmp_path / "r", metrics=("sharpness",)))
