"""LSE-D / LSE-C: MFCCs, SyncNet's layout, the golden scores through ``dagan evaluate``, and what is missing."""

from __future__ import annotations

import json
import sys

import av
import numpy as np
import pytest
import torch

from dagan.cli import main
from dagan.io.video import read_audio
from dagan.metrics.audio import mfcc
from dagan.metrics.lse import lip_sync_score
from dagan.nn.syncnet import SyncNet

from .conftest import REFERENCE, make_clip
from .random_weights import randomise_

GOLDEN = REFERENCE / "golden" / "syncnet_lse.npz"
needs_golden = pytest.mark.skipif(not GOLDEN.is_file(), reason=f"SyncNet golden not found at {GOLDEN}")


def test_mfcc_matches_python_speech_features():
    reference = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(0)
    for length in (300, 16000, 23456):
        audio = rng.integers(-8000, 8000, length).astype(np.int16)
        assert np.allclose(mfcc(audio), reference.mfcc(audio, 16000), atol=1e-9, rtol=0)


def _write_lossless(path, frames_rgb, audio_int16):
    """FFV1 video and PCM audio in Matroska: both come back bit-exact."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = frames_rgb.shape[2], frames_rgb.shape[1], "bgr0"
        audio = container.add_stream("pcm_s16le", rate=16000)
        audio.layout = "mono"
        for frame in frames_rgb:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for start in range(0, len(audio_int16), 1600):
            chunk = av.AudioFrame.from_ndarray(audio_int16[None, start : start + 1600], format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


@needs_golden
def test_syncnet_layout_matches_the_manifest():
    manifest = json.loads((REFERENCE / "manifests" / "syncnet.json").read_text())["entries"]
    ours = SyncNet().state_dict()
    assert [e["key"] for e in manifest] == list(ours)
    assert all(list(ours[e["key"]].shape) == e["shape"] for e in manifest)


@needs_golden
@pytest.mark.slow
def test_golden_lse_through_a_lossless_video_and_dagan_evaluate(tmp_path):
    golden = np.load(GOLDEN)
    meta = json.loads(str(golden["meta"]))
    sys.path.insert(0, str(REFERENCE))
    try:
        from weights import load_manifest, make_state_dict
    finally:
        sys.path.remove(str(REFERENCE))
    state = {
        k: torch.as_tensor(np.asarray(v))
        for k, v in make_state_dict(load_manifest("syncnet"), meta["weights_seed"]).items()
    }
    state["netfclip.3.weight"] = state["netfclip.3.weight"] * float(golden["fc_scale_lip"])
    state["netfcaud.3.weight"] = state["netfcaud.3.weight"] * float(golden["fc_scale_aud"])
    state["netfclip.3.bias"] = state["netfcaud.3.bias"] = torch.as_tensor(golden["fc_bias"])
    weights = tmp_path / "syncnet_v2.model"
    torch.save(state, weights)
    generated = tmp_path / "generated"
    generated.mkdir()
    _write_lossless(generated / "clip.mkv", golden["frames_rgb"], golden["audio_int16"])
    assert np.array_equal(read_audio(generated / "clip.mkv"), golden["audio_int16"])
    out = tmp_path / "report"
    argv = ["evaluate", "--generated", str(generated), "--out", str(out), "--metrics", "lse_d,lse_c",
            "--syncnet-weights", str(weights), "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert abs(report["lse_d"]["value"] - float(golden["lse_d"])) < 2e-3
    assert abs(report["lse_c"]["value"] - float(golden["lse_c"])) < 2e-3
    network = SyncNet()
    network.load_state_dict(state)
    score = lip_sync_score(network, golden["frames_rgb"], golden["audio_int16"])
    assert score.offset == int(golden["av_offset"])
    assert np.allclose(score.mean_distances, golden["mean_dists"], atol=2e-3)


def test_random_weights_run_the_whole_path_and_missing_inputs_are_reported(tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    make_clip(generated / "talk.mp4", frames=16, size=64, audio=True)
    make_clip(generated / "mute.mp4", frames=8, size=64)
    make_clip(generated / "short.mp4", frames=4, size=64, audio=True)  # under one 5-frame window
    (generated / "._talk.mp4").write_bytes(b"macOS metadata, not a video")
    network = SyncNet()
    randomise_(network, torch.Generator().manual_seed(0))
    weights = tmp_path / "syncnet_v2.model"
    torch.save(network.state_dict(), weights)
    out = tmp_path / "report"
    base = ["evaluate", "--generated", str(generated), "--out", str(out), "--metrics", "lse_d,lse_c,l1", "--quiet"]
    assert main([*base, "--syncnet-weights", str(weights), "--device", "cpu"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["lse_d"]["count"] == 1 and set(report["lse_d"]["per_item"]) == {"talk"}
    assert np.isfinite(report["lse_d"]["value"]) and report["lse_c"]["value"] >= 0
    skipped = report["lse_d"]["skipped_without_audio"]
    assert "mute" in skipped and any(entry.startswith("short (") for entry in skipped)
    assert "--driving" in report["l1"]["unavailable"]  # other metrics still reported
    assert main([*base, "--syncnet-weights", str(tmp_path / "nowhere.model")]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert str(tmp_path / "nowhere.model") in report["lse_c"]["unavailable"]
    assert main(base) == 0
    assert "--syncnet-weights" in json.loads((out / "metrics.json").read_text())["lse_d"]["unavailable"]


def test_without_the_mfcc_package_lip_sync_is_reported_unavailable(tmp_path, monkeypatch):
    from dagan.pipelines.evaluate import EvaluateOptions, _lip_sync

    monkeypatch.setattr("dagan.pipelines.evaluate.has_mfcc", lambda: False)
    report = _lip_sync([], EvaluateOptions(generated=tmp_path, out=tmp_path / "r", metrics=("lse_d", "lse_c")))
    assert set(report) == {"lse_d", "lse_c"}
    assert all("pip install 'dagan[eval]'" in entry.unavailable for entry in report.values())


@pytest.mark.parametrize("size", [160, 256, 301])
def test_frames_of_other_sizes_are_resized_as_syncnet_python_resizes_them(size):
    cv2 = pytest.importorskip("cv2", reason="the reference resize is OpenCV's (pip install 'dagan[eval]')")
    import torch.nn.functional as F

    from dagan.metrics.lse import resize_like_syncnet

    rng = np.random.default_rng(size)
    frames = rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    audio = (rng.normal(0, 3000, 12 * 640)).astype(np.int16)
    network = randomise_(SyncNet(), torch.Generator().manual_seed(0)).eval()
    # The reference: every frame through cv2.resize to 224x224 (8-bit), then the 224 path, which
    # the golden test holds to syncnet_python's own scores.
    reference = np.stack([cv2.resize(frame, (224, 224)) for frame in frames])
    assert np.array_equal(resize_like_syncnet(frames), reference)
    ours = lip_sync_score(network, frames, audio, vshift=3)
    theirs = lip_sync_score(network, reference, audio, vshift=3)
    assert np.array_equal(ours.mean_distances, theirs.mean_distances)
    assert (ours.lse_d, ours.lse_c, ours.offset) == (theirs.lse_d, theirs.lse_c, theirs.offset)
    # The float resize this replaced gives other frames: the test would see a return to it.
    floats = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear")
    assert float((floats - torch.from_numpy(reference).permute(0, 3, 1, 2).float()).abs().max()) >= 0.5


def test_without_opencv_frames_that_need_resizing_are_refused_in_one_line(monkeypatch):
    import builtins

    from dagan.errors import DaganError
    from dagan.metrics.lse import resize_like_syncnet

    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "cv2"
        else real_import(name, *a, **k)
    )  # fmt: skip
    frames = np.zeros((2, 224, 224, 3), np.uint8)
    assert resize_like_syncnet(frames) is frames  # 224x224 needs no OpenCV
    with pytest.raises(DaganError, match=r"pip install 'dagan\[eval\]'"):
        resize_like_syncnet(np.zeros((2, 100, 100, 3), np.uint8))
