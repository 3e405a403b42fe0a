"""ONNX export and the onnxruntime backend of ``dagan animate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dagan.cli import main
from dagan.config import InferenceConfig
from dagan.io.image import read_image
from dagan.io.video import probe_video, read_video
from dagan.pipelines.animate import Animator

from .conftest import write_aligned_training_checkpoint

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def onnx_export(tiny_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    code = main(["export-onnx", "--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights",
                 str(tiny_files["depth"]), "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def _animate(tiny_files, checkpoint, output, *extra: str) -> int:
    source, driving = str(tiny_files["source"]), str(tiny_files["driving"])
    argv = ["animate", "--source", source, "--driving", driving, "--checkpoint", str(checkpoint)]
    return main([*argv, "--output", str(output), "--quiet", *extra])


def test_export_writes_four_graphs_and_a_manifest(onnx_export):
    import onnx

    for name in ("depth", "keypoints", "source_encoder", "generator"):
        model = onnx.load(onnx_export / f"{name}.onnx")
        onnx.checker.check_model(model)
    manifest = json.loads((onnx_export / "onnx.json").read_text())
    assert manifest["size"] == 256 and manifest["jacobians"] is True and manifest["num_kp"] == 5
    assert not list(onnx_export.glob("*.tmp*"))


@pytest.mark.slow
def test_onnxruntime_frames_match_torch(onnx_export, tiny_files):
    torch_path = Animator.from_checkpoint(tiny_files["checkpoint"], tiny_files["depth"], "cpu")
    runtime = Animator.from_checkpoint(onnx_export, device="cpu", inference=InferenceConfig(backend="onnxruntime"))
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    a = np.stack([f.prediction for f in torch_path.animate(source, frames, batch_size=2)])
    b = np.stack([f.prediction for f in runtime.animate(source, frames, batch_size=4)])  # another batch size
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-3
    assert np.abs(b[0] - b[-1]).max() > 1e-3


def test_animate_cli_with_the_onnxruntime_backend(onnx_export, tiny_files, tmp_path, capsys):
    out = tmp_path / "result.mp4"
    code = _animate(tiny_files, onnx_export, out, "--backend", "onnxruntime")
    assert code == 0
    assert probe_video(out).frame_count == probe_video(tiny_files["driving"]).frame_count


def test_onnxruntime_backend_rejects_other_precisions(onnx_export, tiny_files, tmp_path, capsys):
    code = _animate(tiny_files, onnx_export, tmp_path / "x.mp4", "--backend", "onnxruntime", "--precision", "bf16")
    err = capsys.readouterr().err
    assert code == 2 and "fp32" in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_fp16_on_cpu_is_a_clear_error(tiny_files, tmp_path, capsys):
    depth = str(tiny_files["depth"])
    code = _animate(tiny_files, tiny_files["checkpoint"], tmp_path / "x.mp4", "--depth-weights", depth,
                    "--precision", "fp16", "--device", "cpu")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "bf16" in err and "Traceback" not in err


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path, tiny_files, capsys):
    (tmp_path / "empty").mkdir()
    code = _animate(tiny_files, tmp_path / "empty", tmp_path / "x.mp4", "--backend", "onnxruntime")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_the_demo_models_aligned_warps_and_blend_survive_export(tiny_files, tmp_path):
    trained = write_aligned_training_checkpoint(tmp_path / "aligned.pth.tar", seed=1, blend_deformed=True)
    out = tmp_path / "onnx"
    argv = ["export-onnx", "--checkpoint", str(trained), "--depth-weights", str(tiny_files["depth"])]
    assert main([*argv, "--out", str(out)]) == 0
    torch_path = Animator.from_checkpoint(trained, tiny_files["depth"], "cpu")
    assert torch_path.networks.generator.dense_motion_network.config.align_corners is True
    assert torch_path.networks.generator.blend is not None
    runtime = Animator.from_checkpoint(out, device="cpu", inference=InferenceConfig(backend="onnxruntime"))
    source = read_image(tiny_files["source"])
    frames, _ = read_video(tiny_files["driving"])
    a = np.stack([f.prediction for f in torch_path.animate(source, frames, batch_size=2)])
    b = np.stack([f.prediction for f in runtime.animate(source, frames, batch_size=2)])
    assert np.abs(a - b).max() < 1e-3
