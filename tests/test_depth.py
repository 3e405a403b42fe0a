"""Self-supervised depth: geometry, losses, auto-masking, training outputs and ``dagan depth``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import uniform_filter
from scipy.spatial.transform import Rotation

from dagan.cli import main
from dagan.data.synth import write_dataset
from dagan.errors import DaganError
from dagan.geometry import axisangle_to_matrix, backproject, pose_matrix, project
from dagan.io.checkpoint import read_depth_weights
from dagan.pipelines.depth_eval import evaluate_depth
from dagan.pipelines.depth_losses import min_reprojection, photometric_error, ssim_loss
from dagan.pipelines.depth_train import DepthTrainOptions, train_depth
from dagan.pipelines.networks import load_depth_network

from .rigid_scene import INTRINSICS as RIGID_INTRINSICS
from .rigid_scene import write_rigid_scene

K = torch.tensor([[[40.0, 0.0, 15.5], [0.0, 42.0, 11.5], [0.0, 0.0, 1.0]]], dtype=torch.float64)


def test_axis_angle_matches_scipy():
    vectors = torch.tensor([[0.1, -0.4, 0.25], [1e-9, 0.0, 0.0], [-1.2, 0.3, 0.9]], dtype=torch.float64)
    ours = axisangle_to_matrix(vectors).numpy()
    assert np.allclose(ours, Rotation.from_rotvec(vectors.numpy()).as_matrix(), atol=1e-7)


def test_pose_matrix_inverse():
    axisangle, translation = torch.tensor([[0.2, -0.1, 0.05]]), torch.tensor([[0.3, -0.2, 0.1]])
    product = pose_matrix(axisangle, translation, invert=True) @ pose_matrix(axisangle, translation)
    assert torch.allclose(product, torch.eye(4).unsqueeze(0), atol=1e-6)


def test_projection_round_trip_with_known_intrinsics():
    h, w = 24, 32
    depth = torch.rand(1, 1, h, w, dtype=torch.float64) * 3 + 2
    points = backproject(depth, K)
    assert torch.allclose(points[:, 2].view(1, 1, h, w), depth)
    grid = project(points, K, torch.eye(4, dtype=torch.float64).unsqueeze(0), h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    assert torch.allclose(grid[0, ..., 0], xs / (w - 1) * 2 - 1, atol=1e-9)
    assert torch.allclose(grid[0, ..., 1], ys / (h - 1) * 2 - 1, atol=1e-9)
    # Move the points, project, back-project with the new depth, and move them back.
    transform = pose_matrix(
        torch.tensor([[0.05, -0.03, 0.02]], dtype=torch.float64), torch.tensor([[0.1, 0.05, -0.2]], dtype=torch.float64)
    )
    moved = transform[:, :3, :3] @ points + transform[:, :3, 3:]
    pixels = K @ moved
    uv = pixels[:, :2] / pixels[:, 2:]
    rays = torch.linalg.inv(K) @ torch.cat([uv, torch.ones_like(uv[:, :1])], 1)
    recovered = torch.linalg.inv(transform)[:, :3, :3] @ (rays * moved[:, 2:]) + torch.linalg.inv(transform)[:, :3, 3:]
    assert torch.allclose(recovered, points, atol=1e-9)


def test_ssim_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    x, y = rng.random((1, 3, 20, 20)), rng.random((1, 3, 20, 20))
    ours = ssim_loss(torch.from_numpy(x), torch.from_numpy(y)).numpy()

    def mean(a):  # 3x3 box filter with mirrored borders (torch's "reflect")
        return uniform_filter(a, size=(1, 1, 3, 3), mode="mirror")

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert np.allclose(ours, np.clip((1 - ssim) / 2, 0, 1), atol=1e-10)
    assert float(ssim_loss(torch.from_numpy(x), torch.from_numpy(x)).max()) < 1e-8


def test_automask_keeps_static_pixels_out_of_the_loss():
    target = torch.rand(1, 3, 8, 8)
    static_source = target.clone()  # a neighbour identical to the target: nothing moved
    identity = torch.cat([photometric_error(static_source, target)] * 2, 1)
    reprojection = torch.rand(1, 2, 8, 8, requires_grad=True)
    loss, mask = min_reprojection(reprojection + 0.05, identity, torch.Generator().manual_seed(0))
    assert float(mask.sum()) == 0.0
    loss.mean().backward()
    assert float(reprojection.grad.abs().sum()) == 0.0
    moving = torch.full((1, 2, 8, 8), 0.5)
    loss, mask = min_reprojection(torch.zeros(1, 2, 8, 8), moving)
    assert float(mask.mean()) == 1.0


@pytest.fixture(scope="module")
def depth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth_synth")
    write_dataset(root, identities=6, clips_per_identity=2, frames=10, size=64, seed=9, quiet=True)
    return root


@pytest.mark.slow
def test_trainer_writes_original_format_that_loads_strictly_and_animates(depth_data, tmp_path, tiny_files):
    out = tmp_path / "depth_run"
    result = train_depth(DepthTrainOptions(data=depth_data, out=out, size=64, max_steps=2, workers=0, quiet=True))
    assert result.step == 2
    raw = torch.load(out / "encoder.pth", weights_only=True)
    assert raw["height"] == 64 and raw["width"] == 64 and raw["use_stereo"] is False
    network = load_depth_network(read_depth_weights(out))
    assert network.config.num_layers == 18
    assert list((out / "visuals").glob("*.png")) and (out / "intrinsics.json").is_file()
    frames = tmp_path / "animated"
    clip = sorted((depth_data / "test").glob("*.mp4"))[0]
    argv = ["animate", "--source", str(tiny_files["source"]), "--driving", str(clip), "--quiet"]
    argv += ["--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(out), "--output", f"{frames}/"]
    assert main(argv) == 0 and len(list(frames.glob("*.png"))) == 10


def test_known_intrinsics_replace_the_learnt_camera(depth_data, tmp_path):
    from dagan.data.dataset import FrameTripletDataset
    from dagan.geometry import intrinsics_from_fractions
    from dagan.pipelines.depth_train import DepthTrainer

    frames = FrameTripletDataset(depth_data, "train", 64, stride=2, augment=False, seed=1)[0]["frames"].unsqueeze(0)
    known = (0.9, 0.8, 0.45, 0.55)
    trainer = DepthTrainer(DepthTrainOptions(data=depth_data, out=tmp_path / "k", size=64, workers=0, quiet=True,
                                             intrinsics=known))  # fmt: skip
    loss, info = trainer.losses(frames)
    expected = torch.tensor([[57.6, 0.0, 28.8], [0.0, 51.2, 35.2], [0.0, 0.0, 1.0]])
    assert torch.allclose(info["intrinsics"][0], expected)
    assert torch.equal(intrinsics_from_fractions(known, 64, 64, frames)[0], info["intrinsics"][0])
    loss.backward()
    assert not trainer.pose.decoder.intrinsics.weight.requires_grad  # the learnt camera plays no part
    assert float(trainer.pose.decoder.motion.weight.grad.abs().sum()) > 0
    learnt = DepthTrainer(DepthTrainOptions(data=depth_data, out=tmp_path / "l", size=64, workers=0, quiet=True))
    assert not torch.allclose(learnt.losses(frames)[1]["intrinsics"][0], expected)
    with pytest.raises(SystemExit) as bad_flag:
        main(["train-depth", "--data", str(depth_data), "--out", str(tmp_path / "c"), "--intrinsics", "1,2"])
    assert bad_flag.value.code == 2


@pytest.mark.slow
def test_learning_rate_drops_for_the_last_quarter_and_can_be_replaced_on_resume(depth_data, tmp_path):
    import json

    out = tmp_path / "schedule"
    common = {"data": depth_data, "out": out, "size": 64, "workers": 0, "quiet": True, "log_every": 1}
    train_depth(DepthTrainOptions(max_steps=4, learning_rate=1e-3, **common))
    rates = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])
    train_depth(DepthTrainOptions(max_steps=8, learning_rate=5e-4, override_learning_rate=True, resume=True, **common))
    rates = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    assert rates[4:] == pytest.approx([5e-4, 5e-4, 5e-5, 5e-5])  # steps 5-8 of 8: the last quarter decays


def test_translation_scale_scales_translation_only_and_must_match_on_resume(depth_data, tmp_path):
    from dagan.config import DepthConfig
    from dagan.nn.pose import PoseNetwork

    frames = torch.rand(2, 3, 64, 64)
    torch.manual_seed(0)
    default = PoseNetwork(DepthConfig(height=64, width=64)).eval()
    torch.manual_seed(0)
    tenfold = PoseNetwork(DepthConfig(height=64, width=64), translation_scale=0.1).eval()
    a, b = default(frames, frames.flip(0)), tenfold(frames, frames.flip(0))
    assert torch.allclose(b["translation"], 10 * a["translation"], rtol=1e-4, atol=1e-7)
    assert torch.equal(a["axisangle"], b["axisangle"]) and torch.equal(a["intrinsics"], b["intrinsics"])

    out = tmp_path / "scaled"
    common = {"data": depth_data, "out": out, "size": 64, "workers": 0, "quiet": True, "log_every": 1}
    train_depth(DepthTrainOptions(max_steps=1, translation_scale=0.1, **common))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logged = [record for record in records if "loss" in record][-1]
    assert 0.0 <= logged["near_bound"] <= 1.0
    with pytest.raises(DaganError, match="translation-scale 0.1"):
        train_depth(DepthTrainOptions(max_steps=2, resume=True, **common))


def test_preloaded_clips_give_the_same_triplets_without_decoding_again(depth_data, monkeypatch):
    from dagan.data import dataset as dataset_module
    from dagan.data.dataset import FrameTripletDataset

    plain = FrameTripletDataset(depth_data, "train", 48, stride=2, seed=4)
    cached = FrameTripletDataset(depth_data, "train", 48, stride=2, seed=4, cache_clips=100)
    cached.reader.preload(cached.clips)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a preloaded clip was decoded again")

    expected = [plain[i]["frames"] for i in range(len(plain))]
    monkeypatch.setattr(dataset_module, "iter_frames", no_decoding)
    for i, frames in enumerate(expected):
        assert torch.equal(cached[i]["frames"], frames)


def _depth_ddp_worker(rank: int, world: int, port: int, data: str, out: str, intrinsics) -> None:
    import os

    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world),
         "LOCAL_RANK": str(rank)}
    )  # fmt: skip
    torch.set_num_threads(1)
    options = DepthTrainOptions(data=Path(data), out=Path(out), size=64, max_steps=2, workers=0, quiet=True,
                                device="cpu", intrinsics=intrinsics)  # fmt: skip
    result = train_depth(options)
    torch.save(result.depth.state_dict(), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("intrinsics", [None, (0.95, 0.95, 0.5, 0.5)], ids=["learnt-camera", "known-camera"])
def test_two_process_depth_training(depth_data, tmp_path, intrinsics):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Two steps: a gradient bucket that never fills would fail the second step's forward.
    mp.spawn(_depth_ddp_worker, args=(2, port, str(depth_data), str(tmp_path), intrinsics), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[key], b[key]) for key in a if "running" not in key and "num_batches" not in key)


@pytest.mark.slow
def test_short_run_lowers_the_photometric_loss_on_a_fixed_batch(depth_data, tmp_path):
    from dagan.data.dataset import FrameTripletDataset
    from dagan.pipelines.depth_train import DepthTrainer

    fixed = FrameTripletDataset(depth_data, "train", 64, stride=2, augment=False, seed=1)
    frames = torch.stack([fixed[i]["frames"] for i in range(4)])

    def loss_on_fixed(trainer) -> float:
        with torch.no_grad():
            return float(trainer.losses(frames, torch.Generator().manual_seed(0))[0])

    trainer = DepthTrainer(DepthTrainOptions(data=depth_data, out=tmp_path / "learn", size=64, max_steps=80, workers=0,
                                             quiet=True, stride=2, seed=3, learning_rate=2e-4))  # fmt: skip
    before = loss_on_fixed(trainer)
    trainer.run()
    after = loss_on_fixed(trainer)
    assert after < 0.9 * before, (before, after)
    report = evaluate_depth(trainer.depth, depth_data, "test", frames_per_clip=2)
    assert set(report) == {"model", "constant", "untrained"}
    assert all(np.isfinite(list(values.values())).all() for values in report.values())


@pytest.mark.slow
def test_validation_scores_the_test_split_without_changing_training(depth_data, tmp_path):
    common = {"data": depth_data, "size": 64, "workers": 0, "quiet": True, "validation_frames": 2}
    plain = train_depth(DepthTrainOptions(out=tmp_path / "plain", max_steps=3, validate_every=0, **common))
    checked = train_depth(DepthTrainOptions(out=tmp_path / "checked", max_steps=3, validate_every=2, **common))
    assert plain.validation == [] and not (tmp_path / "plain" / "validation.png").exists()
    assert [record["step"] for record in checked.validation] == [0, 2, 3]
    final = evaluate_depth(checked.depth, depth_data, "test", frames_per_clip=2, size=64)
    assert checked.validation[-1]["val_abs_rel"] == pytest.approx(final["model"]["abs_rel"], rel=1e-6)
    assert checked.validation[0]["val_abs_rel"] != checked.validation[-1]["val_abs_rel"]
    logged = [json.loads(line) for line in (tmp_path / "checked" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "val_abs_rel" in r] == [0, 2, 3]
    chart = np.asarray(Image.open(tmp_path / "checked" / "validation.png"))
    assert chart.ndim == 3 and chart.std() > 0
    # Scoring must not touch the weights, the batch-norm statistics or the random draws.
    a, b = plain.depth.state_dict(), checked.depth.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    resumed = train_depth(
        DepthTrainOptions(out=tmp_path / "checked", max_steps=4, validate_every=2, resume=True, **common)
    )
    assert [record["step"] for record in resumed.validation] == [0, 2, 3, 4]


def test_validation_is_skipped_for_videos_without_ground_truth(depth_data, tmp_path):
    data = tmp_path / "videos"
    shutil.copytree(depth_data, data, ignore=shutil.ignore_patterns("*.npz"))
    result = train_depth(DepthTrainOptions(data=data, out=tmp_path / "run", size=64, max_steps=2, workers=0,
                                           quiet=True, validate_every=1))  # fmt: skip
    assert result.validation == [] and not (tmp_path / "run" / "validation.png").exists()


@pytest.mark.slow
def test_training_on_a_rigid_scene_beats_the_untrained_network_on_abs_rel(tmp_path):
    # Talking heads need far longer than a test can take (docs/depth.md); a rigid textured dome
    # before a translating camera is learnt within a few hundred steps if the geometry, the
    # losses and the optimisation are right, and stays at the untrained level if any is wrong.
    data = write_rigid_scene(tmp_path / "scene", size=64)
    options = DepthTrainOptions(data=data, out=tmp_path / "run", size=64, max_steps=800, stride=2,
                                learning_rate=2e-4, translation_scale=0.05, intrinsics=RIGID_INTRINSICS,
                                lr_decay_at=1.0, workers=0, seed=3, quiet=True)  # fmt: skip
    result = train_depth(options)
    report = evaluate_depth(result.depth, data, "test", frames_per_clip=4)
    abs_rel = {name: values["abs_rel"] for name, values in report.items()}
    assert abs_rel["model"] < 0.8 * abs_rel["untrained"], abs_rel
    assert abs_rel["model"] < 0.8 * abs_rel["constant"], abs_rel


def test_depth_cli_writes_pictures_raw_maps_and_point_clouds(depth_data, tiny_files, tmp_path):
    out = tmp_path / "depth_out"
    image = tiny_files["source"]
    assert main(["depth", "--weights", str(tiny_files["depth"]), "--input", str(image), "--out", str(out),
                 "--ply", "--size", "64", "--quiet"]) == 0  # fmt: skip
    assert (out / "source_disp.png").is_file()
    depth = np.load(out / "source_depth.npy")
    assert depth.shape == (64, 64) and (depth > 0).all()
    data = (out / "source.ply").read_bytes()
    header, _, body = data.partition(b"end_header\n")
    assert b"element vertex 4096" in header and len(body) == 4096 * 15
    clip = sorted((depth_data / "test").glob("*.mp4"))[0]
    video_out = tmp_path / "video_depth"
    assert main(["depth", "--weights", str(tiny_files["depth"]), "--input", str(clip), "--out", str(video_out),
                 "--raw", "png16", "--size", "64", "--quiet"]) == 0  # fmt: skip
    assert (video_out / "disparity.mp4").is_file() and len(list(video_out.glob("*_depth.png"))) == 10
