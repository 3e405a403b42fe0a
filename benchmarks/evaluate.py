"""Throughput of ``dagan evaluate`` on this machine: pairs/s for the full image metric set, and per group.

Pairs are frames of the sample driving video (or a synthetic pattern when ../shared is absent),
256x256: generated = frame i shifted by two pixels, driving = frame i, source = frame 0. The
network metrics use deterministic random weights (the pretrained ones cannot be downloaded here;
the cost is the same). Each group runs on 4 pairs (a fresh process's start-up: weights, dlib's
models, the face worker), then ``--repeats`` times on 4 and on ``--pairs`` pairs, alternating: the
difference of the median times gives the cost of one more pair. FID's Fréchet distance (a
2048-d matrix square root, 10-15 s, once per run whatever its length) is timed inside each run,
left out of the per-pair cost and start-up, and its median printed on its own line: left in,
its run-to-run spread (about a second) would swamp the per-pair cost. Each group also prints its
CPU seconds a pair, over all of its processes (the face workers included), and how many cores
that kept busy: wall time per pair cannot fall below the CPU time over the cores. LSE is timed
separately on a 3-second 25 fps video with audio.

    python benchmarks/evaluate.py [--pairs 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fixtures import randomise_, sample_frames  # noqa: E402

from dagan.io.image import to_uint8, write_png  # noqa: E402
from dagan.metrics.fid import frechet_distance  # noqa: E402
from dagan.nn.fid_inception import FidInception  # noqa: E402
from dagan.nn.syncnet import SyncNet  # noqa: E402
from dagan.pipelines import evaluate as evaluation  # noqa: E402
from dagan.pipelines.evaluate import EvaluateOptions, evaluate  # noqa: E402
from dagan.pipelines.memory import keep_freed_memory  # noqa: E402

GROUPS = {
    "psnr, ssim (both), l1": "psnr,ssim,l1",
    "niqe": "niqe",
    "lpips": "lpips",
    "fid": "fid",
    "akd, aed, csim, prmse (dlib)": "akd,aed,csim,prmse",
    "all image metrics": "psnr,ssim,l1,lpips,fid,niqe,akd,aed,csim,prmse",
}
#: Pairs of the short run whose time, taken from the long run's, leaves the per-pair cost.
STARTUP_PAIRS = 4


def main() -> None:
    """Write the pairs and weights, time each metric group, print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64, help=f"pairs of the long run (more than {STARTUP_PAIRS})")
    parser.add_argument("--repeats", type=int, default=3, help="short and long runs of each group, for medians")
    args = parser.parse_args()
    if args.pairs <= STARTUP_PAIRS:
        parser.error(f"--pairs must be more than {STARTUP_PAIRS}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    keep_freed_memory()  # as the `dagan evaluate` command does before anything else
    with tempfile.TemporaryDirectory(prefix="dagan-eval-bench-") as tmp:
        root = Path(tmp)
        frames = sample_frames()
        for count in (STARTUP_PAIRS, args.pairs):
            for folder in ("gen", "gt", "src"):
                (root / f"{folder}{count}").mkdir()
            for i in range(count):
                frame = frames[(i * 5) % len(frames)]
                write_png(root / f"gt{count}" / f"{i:04d}.png", frame)
                write_png(root / f"gen{count}" / f"{i:04d}.png", np.roll(frame, 2, axis=1))
                write_png(root / f"src{count}" / f"{i:04d}.png", frames[0])
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), root / "alexnet.pth")
        torch.save(randomise_(FidInception(), torch.Generator().manual_seed(1)).state_dict(), root / "inception.pth")
        rows = []
        cores = evaluation._usable_cores()  # the count the face workers are sized from
        frechet_seconds: list[float] = []  # of the current run
        frechet_cpu: list[float] = []  # of the current run
        frechet_runs: list[float] = []  # of every run that had FID

        def timed_frechet(*statistics_) -> float:
            cpu, started = _cpu_seconds(), time.perf_counter()
            try:
                return frechet_distance(*statistics_)
            finally:
                frechet_seconds.append(time.perf_counter() - started)
                frechet_cpu.append(_cpu_seconds() - cpu)

        evaluation.frechet_distance = timed_frechet

        def run(metrics: str, count: int) -> tuple[float, float, float]:
            """Seconds of one evaluation, of its Fréchet distance (0 without FID), and its CPU seconds without it."""
            options = EvaluateOptions(
                generated=root / f"gen{count}", driving=root / f"gt{count}", source=root / f"src{count}",
                out=root / f"report{count}", metrics=tuple(metrics.split(",")), lpips_weights=root / "alexnet.pth",
                fid_weights=root / "inception.pth", device="cpu", quiet=True,
            )  # fmt: skip
            frechet_seconds.clear()
            frechet_cpu.clear()
            cpu, started = _cpu_seconds(), time.perf_counter()
            evaluate(options)
            if frechet_seconds:
                frechet_runs.append(sum(frechet_seconds))
            return time.perf_counter() - started, sum(frechet_seconds), _cpu_seconds() - cpu - sum(frechet_cpu)

        for label, metrics in GROUPS.items():
            # The start-up (loading weights and dlib's models, starting the face worker) is paid
            # once per run: the per-pair cost is the difference between runs of --pairs pairs and
            # of STARTUP_PAIRS, all after a first short run that fills what this process keeps
            # between runs (dlib's models, oneDNN's kernels). That first run gives the start-up
            # of a fresh process.
            first, first_frechet, _ = run(metrics, STARTUP_PAIRS)
            shorts, longs = [], []
            for _ in range(args.repeats):
                shorts.append(run(metrics, STARTUP_PAIRS))
                longs.append(run(metrics, args.pairs))
            extra_pairs = args.pairs - STARTUP_PAIRS
            short = statistics.median(total - frechet for total, frechet, _ in shorts)
            long = statistics.median(total - frechet for total, frechet, _ in longs)
            whole = statistics.median(total for total, _, _ in longs)
            per_pair = (long - short) / extra_pairs
            # The CPU time of a pair, over every process (the face workers are reaped at each run's
            # end): with all cores busy, wall time per pair cannot fall below it / cores.
            cpu_long, cpu_short = (statistics.median(cpu for *_, cpu in runs) for runs in (longs, shorts))
            cpu_per_pair = (cpu_long - cpu_short) / extra_pairs
            startup = first - first_frechet - STARTUP_PAIRS * per_pair
            busy = f"CPU {cpu_per_pair:.3f} core-s/pair, {cpu_per_pair / per_pair:.2f} of {cores} cores busy"
            rows.append((label, f"{1 / per_pair:.2f} pairs/s  ({per_pair:.3f} s/pair; start-up {startup:.1f} s; "
                                f"a whole run of {args.pairs}: {whole / args.pairs:.3f} s/pair; {busy})"))  # fmt: skip
        rows.append(("fid: Fréchet distance, once per run (2048-d sqrtm, median of the runs above)",
                     f"{statistics.median(frechet_runs):.1f} s"))  # fmt: skip
        (root / "video").mkdir()
        _write_talking_video(root / "video" / "talk.mp4", [np.asarray(f) for f in frames[:75]])
        torch.save(randomise_(SyncNet(), torch.Generator().manual_seed(2)).state_dict(), root / "syncnet.model")
        options = EvaluateOptions(
            generated=root / "video", out=root / "report_lse", metrics=("lse_d", "lse_c"),
            syncnet_weights=root / "syncnet.model", device="cpu", quiet=True,
        )  # fmt: skip
        started = time.perf_counter()
        evaluate(options)
        rows.append(("lse_d, lse_c (75-frame video)", f"{time.perf_counter() - started:.2f} s/video"))
        rows.extend(against_hand_written(np.asarray(frames[0]), np.roll(frames[0], 2, axis=1)))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.pairs} pairs of 256x256")
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")


def _cpu_seconds() -> float:
    """User and system seconds of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _hand_written_ssim(a: np.ndarray, b: np.ndarray, mean, covariance_factor: float = 1.0) -> float:
    """SSIM in float64 by hand: the alternative to scikit-image for the uniform convention."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    values = []
    for x, y in ((a[..., c], b[..., c]) for c in range(a.shape[-1])):
        mx, my = mean(x), mean(y)
        vx, vy = (mean(x * x) - mx * mx) * covariance_factor, (mean(y * y) - my * my) * covariance_factor
        cxy = (mean(x * y) - mx * my) * covariance_factor
        c1, c2 = 0.01**2, 0.03**2
        values.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean())
    return float(np.mean(values))


def against_hand_written(a: np.ndarray, b: np.ndarray, repeats: int = 10) -> list[tuple[str, str]]:
    """PSNR and the SSIMs by hand in float64 against scikit-image: time ratio and largest difference.

    dagan keeps its own arithmetic only where this shows it clearly faster (PSNR, Gaussian SSIM).
    """
    from scipy.ndimage import uniform_filter
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from dagan.metrics.image import psnr, ssim_gaussian, ssim_skimage

    def as64(x: np.ndarray) -> np.ndarray:  # inside the timing: frames arrive as float32
        return np.asarray(x, np.float64)

    def uniform_cropped(z: np.ndarray) -> np.ndarray:
        return uniform_filter(z, 7, mode="reflect")[3:-3, 3:-3]

    def skimage_gaussian() -> float:
        return structural_similarity(as64(a), as64(b), channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)  # fmt: skip

    pairs = {  # name: (by hand in float64, scikit-image, which dagan uses)
        "psnr": (lambda: psnr(a, b), lambda: peak_signal_noise_ratio(as64(a), as64(b), data_range=1), "by hand"),
        "ssim (7x7 uniform, sample covariance)": (
            lambda: _hand_written_ssim(a, b, uniform_cropped, 49 / 48),
            lambda: ssim_skimage(a, b),
            "scikit-image",
        ),
        "ssim_gaussian (11x11, valid region)": (lambda: ssim_gaussian(a, b), skimage_gaussian, "by hand"),
    }

    def timed(function) -> tuple[float, float]:
        value = function()
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        return (time.perf_counter() - started) / repeats, value

    rows = []
    for name, (by_hand, library, used) in pairs.items():
        hand, hand_value = timed(by_hand)
        theirs, their_value = timed(library)
        rows.append(
            (
                f"{name}: by hand in float64 against scikit-image (one 256x256 pair; dagan uses {used})",
                f"{hand * 1e3:.2f} ms against {theirs * 1e3:.2f} ms (by hand {theirs / hand:.2f}x as fast); "
                f"diff {abs(hand_value - their_value):.1e}",
            )
        )
    return rows


def _write_talking_video(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 frames at 25 fps with a 16 kHz mono tone of the same length (AAC)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(to_uint8(frame), format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        t = np.arange(len(frames) * 640) / 16000
        tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None],
                                          format="fltp", layout="mono")  # fmt: skip
        tone.sample_rate = 16000
        for packet in audio.encode(tone):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)


if __name__ == "__main__":
    main()
