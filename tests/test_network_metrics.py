"""LPIPS and FID networks against the reference packages (lpips, pytorch-fid) with shared random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from dagan.cli import main
from dagan.io.image import write_png
from dagan.metrics.weights import load_fid_inception, load_lpips
from dagan.nn.fid_inception import FidInception

from .random_weights import randomise_


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "alexnet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hub") / "pt_inception.pth"
    network = FidInception()
    randomise_(network, torch.Generator().manual_seed(1))
    torch.save(network.state_dict(), path)
    return path


def test_lpips_matches_the_lpips_package(alexnet_file):
    reference_package = pytest.importorskip("lpips")
    ours = load_lpips(alexnet_file).eval()
    reference = reference_package.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    trunk = torch.load(alexnet_file, weights_only=True)
    slices = [
        reference.net.slice1,
        reference.net.slice2,
        reference.net.slice3,
        reference.net.slice4,
        reference.net.slice5,
    ]
    for module in slices:
        for name, layer in module.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(trunk[f"features.{name}.weight"])
                layer.bias.data.copy_(trunk[f"features.{name}.bias"])
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.random((3, 3, 64, 80))).float() for _ in range(2))
    with torch.no_grad():
        expected = reference(a, b, normalize=True).flatten()
        got = ours(a, b)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    assert float(ours(a, a).abs().max()) == 0.0


def test_lpips_builds_only_alexnets_trunk_with_initialised_weights():
    from dagan.nn.lpips import LPIPS

    network = LPIPS()
    trunk = torchvision.models.alexnet(weights=None).features
    assert [tuple(p.shape) for p in network.features.parameters()] == [tuple(p.shape) for p in trunk.parameters()]
    for parameter in network.features.parameters():
        assert parameter.device.type == "cpu" and torch.isfinite(parameter).all()
        # torch's default initialisation, not leftover memory (nor zeros)
        assert 0 < float(parameter.std()) and float(parameter.abs().max()) < 1.0


@pytest.mark.slow
def test_fid_inception_matches_pytorch_fid(inception_file, monkeypatch):
    reference_package = pytest.importorskip("pytorch_fid.inception")
    state = torch.load(inception_file, weights_only=True)
    monkeypatch.setattr(reference_package, "load_state_dict_from_url", lambda *args, **kwargs: state)
    reference = reference_package.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    ours = load_fid_inception(inception_file).eval()
    images = torch.from_numpy(np.random.default_rng(1).random((2, 3, 128, 128))).float()
    with torch.no_grad():
        expected = reference(images)[0].flatten(1)
        got = ours(images)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_inception_with_folded_batch_norms_gives_the_same_features(inception_file):
    plain = load_fid_inception(inception_file).eval()
    folded = load_fid_inception(inception_file).fold_batch_norms()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    images = torch.from_numpy(np.random.default_rng(3).random((2, 3, 96, 96))).float()
    with torch.no_grad():
        expected, got = plain(images), folded(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    assert float(expected.std()) > 1e-3  # features that vary: the comparison can fail


@pytest.mark.slow
def test_evaluate_with_network_weights_and_fid_of_a_set_with_itself(alexnet_file, inception_file, tmp_path):
    rng = np.random.default_rng(2)
    for folder in ("gen", "gt", "other"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        truth = rng.random((64, 64, 3))
        write_png(tmp_path / "gt" / f"{i}.png", truth)
        write_png(tmp_path / "gen" / f"{i}.png", truth)
        write_png(tmp_path / "other" / f"{i}.png", np.clip(truth * 0.5 + 0.4, 0, 1))
    runs = {}
    for generated in ("gen", "other"):
        out = tmp_path / f"report_{generated}"
        argv = ["evaluate", "--generated", str(tmp_path / generated), "--driving", str(tmp_path / "gt"),
                "--out", str(out), "--metrics", "lpips,fid", "--lpips-weights", str(alexnet_file),
                "--fid-weights", str(inception_file), "--batch-size", "3", "--device", "cpu", "--quiet"]  # fmt: skip
        assert main(argv) == 0
        runs[generated] = json.loads((out / "metrics.json").read_text())
    assert runs["gen"]["lpips"]["value"] == 0.0 and runs["gen"]["lpips"]["count"] == 4
    assert abs(runs["gen"]["fid"]["value"]) < 1e-6
    assert runs["other"]["lpips"]["value"] > 0 and runs["other"]["fid"]["value"] > 1e-3
    # On CPU the networks run channels-last: the values are those of the plain layout.
    from dagan.io.image import read_image

    def frames(folder: str) -> torch.Tensor:
        images = [read_image(tmp_path / folder / f"{i}.png")[..., :3] for i in range(4)]
        return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float()

    with torch.no_grad():
        direct = load_lpips(alexnet_file).eval()(frames("other"), frames("gt"))
    assert runs["other"]["lpips"]["value"] == pytest.approx(float(direct.double().mean()), rel=1e-5)


def test_csim_with_arcface_weights(tmp_path):
    from dagan.nn.arcface import ArcFaceResNet18, arcface_input

    network = randomise_(ArcFaceResNet18(), torch.Generator().manual_seed(3)).eval()
    weights = tmp_path / "arcface_resnet18.pth"
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, weights)  # as DataParallel saved it
    rng = np.random.default_rng(4)
    for folder in ("gen", "src"):
        (tmp_path / folder).mkdir()
    source = rng.random((96, 96, 3))
    write_png(tmp_path / "src" / "a.png", source)
    write_png(tmp_path / "src" / "b.png", source)
    write_png(tmp_path / "gen" / "a.png", source)
    other = rng.random((96, 96, 3))
    write_png(tmp_path / "gen" / "b.png", other)
    out = tmp_path / "r"
    argv = ["evaluate", "--generated", str(tmp_path / "gen"), "--source", str(tmp_path / "src"), "--out", str(out),
            "--metrics", "csim", "--arcface-weights", str(weights), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())["csim"]
    assert "ArcFace" in report["protocol"] and report["per_item"]["a"] == pytest.approx(1.0)

    def embed(image):
        from dagan.io.image import read_image

        batch = torch.from_numpy(read_image(image).transpose(2, 0, 1)[None].copy()).float()
        with torch.no_grad():
            e = network(arcface_input(batch))[0].double()
        return e / e.norm()

    expected = float(embed(tmp_path / "src" / "b.png") @ embed(tmp_path / "gen" / "b.png"))
    assert report["per_item"]["b"] == pytest.approx(expected, abs=1e-6) and expected < 0.999
    assert main([*argv[:-3], "--arcface-weights", str(tmp_path / "missing.pth"), "--quiet"]) == 0
    assert "missing.pth" in json.loads((out / "metrics.json").read_text())["csim"]["unavailable"]
