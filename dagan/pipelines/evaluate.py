"""``dagan evaluate``: score generated frames against driving and source frames, and write a report.

Items are matched by file name (stem) across the folders; an item is an image, or a video whose
frames are compared in order. Every metric is computed once per frame and reported with its
protocol; a metric that cannot run says why, and the others still run.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dagan.config import ALL_METRICS
from dagan.errors import DaganError
from dagan.face import Face, FaceAnalyzer, embed_faces, head_pose, load_identity_model
from dagan.io.arrays import read_arrays
from dagan.io.atomic import check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.checkpoint import load_strict, load_torch_file
from dagan.io.image import IMAGE_SUFFIXES, read_image, resize_frame, to_uint8, write_png
from dagan.io.video import VIDEO_SUFFIXES, iter_frames, media_files_by_stem, probe_video, read_audio
from dagan.metrics.audio import MISSING_MFCC, has_mfcc
from dagan.metrics.fid import feature_statistics, frechet_distance
from dagan.metrics.image import l1, psnr, ssim_gaussian, ssim_skimage
from dagan.metrics.lse import FPS, SAMPLE_RATE, MissingOpenCVError, lip_sync_score
from dagan.metrics.niqe import niqe
from dagan.metrics.weights import MissingWeightsError, load_arcface, load_fid_inception, load_lpips
from dagan.nn.arcface import arcface_input
from dagan.nn.syncnet import SyncNet
from dagan.options import EvaluateOptions
from dagan.pipelines.distributed import select_device
from dagan.pipelines.report import ReportEntry, write_report

#: Accepted by name, never computed here (see ``UNAVAILABLE``).
OTHER_METRICS = ("aucon",)
UNAVAILABLE = {
    "aucon": "AUCON needs an action-unit detector (OpenFace or py-feat with its models), which cannot be "
    "installed offline and is not wired in"
}

#: What each frame metric compares the generated frame with, and how it is computed.
FRAME_METRICS = {
    "psnr": ("driving", "PSNR in dB on RGB in [0, 1] against the driving frame (inf when identical)"),
    "ssim": ("driving", "SSIM, skimage convention: 7x7 uniform window, sample covariance, RGB channel mean"),
    "ssim_gaussian": ("driving", "SSIM, MATLAB/BasicSR convention: 11x11 Gaussian (sigma 1.5), valid region"),
    "l1": ("driving", "mean absolute difference on RGB in [0, 1] against the driving frame"),
    "niqe": (None, "NIQE (MATLAB algorithm): BT.601 Y, 96x96 blocks, two scales, LIVE pristine model"),
}
_FUNCTIONS = {"psnr": psnr, "ssim": ssim_skimage, "ssim_gaussian": ssim_gaussian, "l1": l1, "niqe": niqe}

#: Metrics computed by networks whose weights the user supplies (or the torch hub cache holds).
NETWORK_METRICS = {
    "lpips": "LPIPS v0.1, AlexNet trunk (the lpips package's lin layers, shipped), inputs in [-1, 1], "
    "against the driving frame",
    "fid": "FID: pytorch-fid's Inception (pt_inception-2015-12-05) pool3 features of all generated and all driving "
    "frames, Fréchet distance with scipy sqrtm",
}
ARCFACE_CSIM = (
    "cosine similarity between GFPGAN ArcFace ResNet-18 embeddings (grey 128x128 in [-1, 1], whole frame) "
    "of source and generated"
)
#: Face metrics (dagan.face, dlib): what each compares with, and how.
FACE_METRICS = {
    "akd": ("driving", "mean absolute difference of dlib's 68 landmarks (pixels) between driving and generated "
            "(first-order-model's cmp.py; HOG detector, largest face)"),
    "aed": ("driving", "squared L2 distance between L2-normalised dlib 128-d embeddings of driving and generated"),
    "csim": ("source", "cosine similarity between dlib 128-d embeddings of source and generated"),
    "prmse": ("driving", "RMSE in degrees of (pitch, yaw, roll) between driving and generated, solved from six "
              "dlib landmarks against a generic 3-D face with focal = width (not img2pose)"),
}  # fmt: skip
EMBEDDING_METRICS = ("aed", "csim")
SYNTHETIC_AKD = (
    "mean absolute difference (pixels, at the generated size) between the 16 landmarks that the synthetic-head "
    "landmark network (dagan train-landmarks) finds in the generated frame and the ground truth (NAME.npz beside "
    "the driving file; without it, the network's landmarks of the driving frame)"
)
LSE_PROTOCOL = (
    "syncnet_python evaluate: 25 fps, 16 kHz mono MFCC (python_speech_features), 5-frame windows, vshift 15, "
    "frames resized to 224x224 by cv2.resize (8-bit, as the reference) and fed BGR; LSE-D = min over shifts of "
    "the mean distance, LSE-C = median - min"
)


@dataclass
class EvaluationItem:
    """One generated file and the files it is compared with."""

    name: str
    generated: Path
    driving: Path | None = None
    source: Path | None = None


def pair_items(generated: Path, driving: Path | None = None, source: Path | None = None) -> list[EvaluationItem]:
    """Items of ``generated`` with the same-named driving and source files; unmatched names are an error."""
    found = media_files_by_stem(generated)
    if not found:
        raise DaganError(f"no images or videos in {generated}")
    references = {
        "driving": media_files_by_stem(driving) if driving else None,
        "source": media_files_by_stem(source) if source else None,
    }
    for role, files in references.items():
        if files is not None:
            missing = sorted(set(found) - set(files))
            if missing:
                raise DaganError(
                    f"{len(missing)} generated items have no {role} file of the same name, e.g. {missing[0]}"
                )
    return [
        EvaluationItem(
            name,
            path,
            references["driving"][name] if references["driving"] else None,
            references["source"][name] if references["source"] else None,
        )
        for name, path in found.items()
    ]


def resolve_eval_set(eval_set: Path, generated: str) -> tuple[Path, Path, Path]:
    """The reproduction's layout: ``generate_X_self`` pairs with gt_self/source_self, others with *_cross."""
    kind = "self" if generated.rstrip("/").endswith("_self") else "cross"
    paths = (eval_set / generated, eval_set / f"gt_{kind}", eval_set / f"source_{kind}")
    for path in paths:
        if not path.is_dir():
            raise DaganError(f"--eval-set: {path} is not a folder")
    return paths


def _frames(path: Path) -> Iterator[np.ndarray]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield read_image(path)
        return
    yield from iter_frames(probe_video(path))


def _same_size(reference: np.ndarray, like: np.ndarray) -> np.ndarray:
    if reference.shape == like.shape:
        return reference
    from skimage.transform import resize

    return resize(reference, like.shape[:2], anti_aliasing=True)


def _thumbnail(image: np.ndarray, size: int = 128) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(to_uint8(image)).resize((size, size), Image.BILINEAR))


@dataclass
class ScoredFrame:
    """One generated frame and what it is compared with, as every metric family receives it."""

    item: EvaluationItem
    index: int
    generated: np.ndarray
    #: The driving frame at the generated frame's size (None without --driving).
    driving: np.ndarray | None
    #: The driving frame as read: ground truth in its pixels is scaled from its own size.
    driving_as_read: np.ndarray | None
    #: The source image (a video's first frame), at its own size.
    source: np.ndarray | None


class MetricFamily:
    """Metrics computed together: ``start`` each item, ``add`` each of its frames, ``finish`` into entries.

    A family that cannot run a metric it was asked for (no weights, no --driving) keeps a
    ``ReportEntry.missing`` for it in ``entries`` instead, so the others still run.
    """

    def __init__(self) -> None:
        self.entries: dict[str, ReportEntry] = {}

    def start(self, item: EvaluationItem) -> None:
        """Begin an item (most families need nothing)."""

    def add(self, frame: ScoredFrame) -> None:
        """Score one frame."""

    def finish(self) -> dict[str, ReportEntry]:
        """The entries of every metric this family was asked for."""
        return self.entries

    def close(self) -> None:
        """Release what the family holds beyond the run (worker processes), finished or not."""

    def _runnable(self, options: EvaluateOptions, names: list[str], table: dict[str, tuple]) -> list[str]:
        """Those of ``names`` whose inputs were given; each other one gets an entry saying what it needs."""
        runnable = []
        for name in names:
            role, protocol = table[name]
            reason = _needs(options, role)
            if reason:
                self.entries[name] = ReportEntry.missing(protocol, reason)
            else:
                runnable.append(name)
        return runnable


def _needs(options: EvaluateOptions, role: str | None) -> str | None:
    """Why a metric comparing with ``role`` ("driving", "source" or None) cannot run, if it cannot."""
    if role is not None and getattr(options, role) is None:
        return f"needs --{role} (or --eval-set)"
    return None


class FrameMetrics(MetricFamily):
    """PSNR, the two SSIMs, L1 and NIQE: a function of each frame (and its driving frame)."""

    def __init__(self, options: EvaluateOptions):
        super().__init__()
        # ssim_gaussian is asked for with ssim: the two conventions are reported side by side.
        wanted = [m for m in FRAME_METRICS if (m if m != "ssim_gaussian" else "ssim") in options.metrics]
        self.running = self._runnable(options, wanted, FRAME_METRICS)
        self.scores: dict[str, dict[str, list[float]]] = {name: {} for name in self.running}

    def add(self, frame: ScoredFrame) -> None:
        for name in list(self.running):
            function = _FUNCTIONS[name]
            try:
                value = function(frame.generated) if name == "niqe" else function(frame.generated, frame.driving)
            except ValueError as exc:  # e.g. NIQE on frames smaller than its 96x96 blocks
                self.entries[name] = ReportEntry.missing(FRAME_METRICS[name][1], f"{frame.item.generated.name}: {exc}")
                self.running.remove(name)
                continue
            self.scores[name].setdefault(frame.item.name, []).append(value)

    def finish(self) -> dict[str, ReportEntry]:
        for name in self.running:
            self.entries[name] = ReportEntry.of_frames(self.scores[name], FRAME_METRICS[name][1])
        return self.entries


class NotComputed(MetricFamily):
    """Metrics accepted by name that this package does not compute (see ``UNAVAILABLE``)."""

    def __init__(self, options: EvaluateOptions):
        super().__init__()
        for name in OTHER_METRICS:
            if name in options.metrics:
                self.entries[name] = ReportEntry.missing("", UNAVAILABLE[name])


class NetworkMetrics(MetricFamily):
    """LPIPS and FID: frames are batched through the networks, features computed once per frame."""

    def __init__(self, options: EvaluateOptions):
        super().__init__()
        self.batch_size = options.batch_size
        self.device = None
        self.lpips = self.inception = None
        wanted = [m for m in NETWORK_METRICS if m in options.metrics]
        needs = {name: ("driving", protocol) for name, protocol in NETWORK_METRICS.items()}
        for name in self._runnable(options, wanted, needs):
            given = options.lpips_weights if name == "lpips" else options.fid_weights
            try:
                network = load_lpips(given) if name == "lpips" else load_fid_inception(given)
            except MissingWeightsError as exc:
                self.entries[name] = ReportEntry.missing(NETWORK_METRICS[name], str(exc))
                continue
            self.device = self.device or select_device(options.device)
            setattr(self, "lpips" if name == "lpips" else "inception", network.eval().to(self.device))
        if self.inception is not None:
            self.inception.fold_batch_norms()
        # On CPU, oneDNN runs these convolutions channels-last about twice as fast (Inception, with
        # its batch norms folded, 110 -> 50 ms a frame; LPIPS 20 -> 13.5 ms a pair); values move by
        # float rounding (5e-7 relative).
        self.layout = torch.channels_last if self.device is not None and self.device.type == "cpu" else None
        for network in (self.lpips, self.inception):
            if network is not None and self.layout is not None:
                network.to(memory_format=self.layout)
        self.pending: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.lpips_scores: dict[str, list[float]] = {}
        self.features: dict[str, list[np.ndarray]] = {"generated": [], "driving": []}

    def add(self, frame: ScoredFrame) -> None:
        if (self.lpips is None and self.inception is None) or frame.driving is None:
            return
        if self.pending and self.pending[0][1].shape != frame.generated.shape:
            self._flush()
        self.pending.append((frame.item.name, frame.generated, frame.driving))
        if len(self.pending) >= self.batch_size:
            self._flush()

    @torch.inference_mode()
    def _flush(self) -> None:
        if not self.pending:
            return

        def batch(index: int) -> torch.Tensor:
            stacked = np.stack([entry[index] for entry in self.pending]).transpose(0, 3, 1, 2)
            frames = torch.from_numpy(np.ascontiguousarray(stacked)).float().to(self.device)
            return frames if self.layout is None else frames.contiguous(memory_format=self.layout)

        generated, driving = batch(1), batch(2)
        if self.lpips is not None:
            for (item, _, _), value in zip(self.pending, self.lpips(generated, driving).cpu().tolist(), strict=True):
                self.lpips_scores.setdefault(item, []).append(float(value))
        if self.inception is not None:
            self.features["generated"].append(self.inception(generated).double().cpu().numpy())
            self.features["driving"].append(self.inception(driving).double().cpu().numpy())
        self.pending = []

    def finish(self) -> dict[str, ReportEntry]:
        self._flush()
        if self.lpips is not None and self.lpips_scores:
            self.entries["lpips"] = ReportEntry.of_frames(self.lpips_scores, NETWORK_METRICS["lpips"])
        if self.inception is not None and self.features["generated"]:
            self.entries["fid"] = self._fid()
        return self.entries

    def _fid(self) -> ReportEntry:
        generated = np.concatenate(self.features["generated"])
        driving = np.concatenate(self.features["driving"])
        if len(generated) < 2:
            return ReportEntry.missing(NETWORK_METRICS["fid"], "FID needs at least two frames")
        try:
            distance = frechet_distance(*feature_statistics(generated), *feature_statistics(driving))
        except ValueError as exc:  # e.g. a complex square root: say so, keep the other metrics
            return ReportEntry.missing(NETWORK_METRICS["fid"], str(exc))
        # FID compares two sets: there is no per-item value.
        return ReportEntry(NETWORK_METRICS["fid"], value=distance, count=len(generated))


class ArcFaceIdentity(MetricFamily):
    """CSIM with GFPGAN's ArcFace, as the DaGAN authors evaluate it: whole frames, no face detector."""

    def __init__(self, weights: Path):
        super().__init__()
        self.network = None
        try:
            self.network = load_arcface(weights).eval()
        except MissingWeightsError as exc:
            self.entries["csim"] = ReportEntry.missing(ARCFACE_CSIM, str(exc))
        self.scores: dict[str, list[float]] = {}
        self.source_identity: np.ndarray | None = None

    def add(self, frame: ScoredFrame) -> None:
        if self.network is None or frame.source is None:
            return
        if frame.index == 0:
            self.source_identity = _arcface_embedding(self.network, frame.source)
        value = float(self.source_identity @ _arcface_embedding(self.network, frame.generated))
        self.scores.setdefault(frame.item.name, []).append(value)

    def finish(self) -> dict[str, ReportEntry]:
        if self.scores:
            self.entries["csim"] = ReportEntry.of_frames(self.scores, ARCFACE_CSIM)
        return self.entries


@torch.inference_mode()
def _arcface_embedding(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The unit-length ArcFace embedding of an RGB frame in [0, 1]."""
    batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])).float()
    embedding = network(arcface_input(batch))[0].double().numpy()
    return embedding / np.linalg.norm(embedding)


class _SyntheticKeypointDistance(MetricFamily):
    """AKD on synthetic heads: a landmark network on generated frames against the renderer's landmarks."""

    def __init__(self, weights: Path):
        from dagan.pipelines.landmarks import load_landmark_network

        super().__init__()
        self.network, self.size = load_landmark_network(weights)
        self.scores: dict[str, list[float]] = {}
        self.truth: np.ndarray | None = None

    def start(self, item: EvaluationItem) -> None:
        """Read the ground truth of ``item``'s driving file, if it has one."""
        truth = item.driving.with_suffix(".npz") if item.driving is not None else None
        self.truth = None
        if truth is not None and truth.is_file():
            self.truth = read_arrays(truth, optional=("landmarks",)).get("landmarks")

    @torch.inference_mode()
    def _landmarks(self, image: np.ndarray) -> np.ndarray:
        """Landmarks in ``image``'s pixels."""
        tensor = torch.from_numpy(resize_frame(image, self.size)).permute(2, 0, 1)[None]
        return self.network(tensor)[0].numpy() * (image.shape[1] / self.size)

    def add(self, frame: ScoredFrame) -> None:
        """Score one generated frame against the ground truth (in the driving frame's own pixels)."""
        driving = frame.driving_as_read
        if driving is None:
            return
        scale = frame.generated.shape[1] / driving.shape[1]
        if self.truth is not None and frame.index < len(self.truth):
            truth = self.truth[frame.index] * scale
        else:
            truth = self._landmarks(driving) * scale
        distance = float(np.abs(self._landmarks(frame.generated) - truth).mean())
        self.scores.setdefault(frame.item.name, []).append(distance)

    def finish(self) -> dict[str, ReportEntry]:
        return {"akd": ReportEntry.of_frames(self.scores, SYNTHETIC_AKD)}


_worker_analyzer: FaceAnalyzer | None = None


def _start_face_worker() -> None:
    global _worker_analyzer
    _worker_analyzer = FaceAnalyzer()


@dataclass
class FramePairFaces:
    """What a face worker finds in a generated frame and its driving frame (no embeddings yet)."""

    generated: Face | None
    driving: Face | None = None
    #: Head poses (pitch, yaw, roll) of the generated and the driving face, when PRMSE is asked for.
    poses: tuple[np.ndarray, np.ndarray] | None = None


def _analyze_frame_faces(generated: np.ndarray, driving: np.ndarray | None, poses: bool = False) -> FramePairFaces:
    """The generated frame's face and, when it has one, the driving frame's (and their poses, if asked)."""
    face = _worker_analyzer.analyze(generated, embed=False)
    if face is None or driving is None:
        return FramePairFaces(face)
    other = _worker_analyzer.analyze(driving, embed=False)
    if other is None or not poses:
        return FramePairFaces(face, other)
    # Both frames are at the generated frame's size. The pose solver is pure Python: in the
    # worker, it runs beside the main process's work instead of in it.
    h, w = generated.shape[:2]
    return FramePairFaces(face, other, (head_pose(face.landmarks, w, h), head_pose(other.landmarks, w, h)))


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, which container limits set), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


#: Frames sent to the face workers and not yet analysed, at most: the rest of the evaluation runs
#: faster than dlib, and each waiting pair holds its pixels.
FACE_QUEUE = 16
#: Frame pairs whose faces go through the identity network together (up to three faces each).
EMBED_BATCH = 8


class FaceMetrics(MetricFamily):
    """AKD, AED, CSIM and PRMSE from dlib's face of each frame; frames without a needed face are counted.

    dlib holds the GIL and uses one core, so faces are found and aligned (and head poses solved) in
    worker processes while the network metrics use the main one; when the faces come back, their
    identity embeddings (AED, CSIM) are computed in batches in the main process and each frame's
    scores are taken in order.
    """

    def __init__(self, options: EvaluateOptions, names: list[str]):
        super().__init__()
        self.running = self._runnable(options, names, FACE_METRICS)
        self.embeds = any(name in EMBEDDING_METRICS for name in self.running)
        self.poses = "prmse" in self.running
        self.workers: Executor | None = None
        if self.running:
            try:
                FaceAnalyzer()  # dlib and its models are there (one clear error, not one per worker)
                if self.embeds:
                    load_identity_model()
            except DaganError as exc:
                self.entries.update(
                    {name: ReportEntry.missing(FACE_METRICS[name][1], str(exc)) for name in self.running}
                )
                self.running = []
        if self.running and "fork" in multiprocessing.get_all_start_methods():
            # Forked: the workers need only dlib, which the parent has loaded, and no re-import of torch.
            self.workers = ProcessPoolExecutor(
                max(1, min(4, _usable_cores() - 1)), multiprocessing.get_context("fork"), _start_face_worker
            )
        elif self.running:  # no fork (Windows): one thread, in order, as fast as analysing in place
            self.workers = ThreadPoolExecutor(1, initializer=_start_face_worker)
        self.scores: dict[str, dict[str, list[float]]] = {name: {} for name in self.running}
        self.faceless = dict.fromkeys(self.running, 0)
        self.source_faces: dict[Path, Future] = {}  # sources repeat across items
        self.pending: deque[tuple[Future, Future | None, str]] = deque()

    def add(self, frame: ScoredFrame) -> None:
        if not self.running:
            return
        source_face = None
        source = frame.item.source
        if source is not None and any(FACE_METRICS[name][0] == "source" for name in self.running):
            if source not in self.source_faces:
                self.source_faces[source] = self.workers.submit(_analyze_frame_faces, to_uint8(frame.source), None)
            source_face = self.source_faces[source]
        driving = to_uint8(frame.driving) if frame.driving is not None else None
        faces = self.workers.submit(_analyze_frame_faces, to_uint8(frame.generated), driving, self.poses)
        self.pending.append((faces, source_face, frame.item.name))
        if len(self.pending) > FACE_QUEUE:
            self._score_oldest()

    def _score_oldest(self) -> None:
        """Score the oldest waiting frames, in order, with their embeddings computed in one batch."""
        batch = [self.pending.popleft() for _ in range(min(EMBED_BATCH, len(self.pending)))]
        found = []
        for faces, source_face, item in batch:
            source = source_face.result().generated if source_face is not None else None
            found.append((faces.result(), source, item))
        if self.embeds:
            # Only the faces an identity metric compares: AED the driving one, CSIM the source.
            roles = {FACE_METRICS[name][0] for name in self.running if name in EMBEDDING_METRICS}
            wanted = [
                (pair.generated, pair.driving if "driving" in roles else None, source if "source" in roles else None)
                for pair, source, _ in found
            ]
            embed_faces([face for trio in wanted for face in trio if face is not None])
        for pair, source, item in found:
            for name in self.running:
                other = source if FACE_METRICS[name][0] == "source" else pair.driving
                if pair.generated is None or other is None:
                    self.faceless[name] += 1
                else:
                    self.scores[name].setdefault(item, []).append(_face_score(name, other, pair))

    def close(self) -> None:
        if self.workers is not None:
            self.workers.shutdown(cancel_futures=True)
            self.workers = None

    def finish(self) -> dict[str, ReportEntry]:
        while self.pending:
            self._score_oldest()
        self.close()
        for name in self.running:
            protocol = FACE_METRICS[name][1]
            if not self.scores[name]:
                reason = f"no face found in any of the {self.faceless[name]} frames"
                self.entries[name] = ReportEntry.missing(protocol, reason)
                continue
            # PRMSE keeps squared angle errors per frame: the root comes after the mean.
            reduce = (lambda values: np.sqrt(np.mean(values))) if name == "prmse" else np.mean
            self.entries[name] = ReportEntry.of_frames(
                self.scores[name], protocol, reduce, frames_without_face=self.faceless[name]
            )
        return self.entries


def _face_score(name: str, other: Face, pair: FramePairFaces) -> float:
    """One frame's value of face metric ``name`` between the generated face of ``pair`` and ``other``.

    PRMSE compares with the driving face, whose pose the worker solved with the generated one's
    (``pair.poses``); ``other`` is then ``pair.driving``.
    """
    generated = pair.generated
    if name == "akd":
        return float(np.mean(np.abs(other.landmarks - generated.landmarks)))
    if name == "aed":
        a = other.embedding / np.linalg.norm(other.embedding)
        b = generated.embedding / np.linalg.norm(generated.embedding)
        return float(np.sum((a - b) ** 2))
    if name == "csim":
        a, b = other.embedding, generated.embedding
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    # prmse: squared angle errors, averaged over the three angles, rooted after averaging frames
    generated_pose, driving_pose = pair.poses
    return float(np.mean((driving_pose - generated_pose) ** 2))


class LipSync(MetricFamily):
    """LSE-D and LSE-C: SyncNet on each whole generated video and its own audio track."""

    def __init__(self, options: EvaluateOptions):
        super().__init__()
        self.options = options
        self.items: list[EvaluationItem] = []

    def start(self, item: EvaluationItem) -> None:
        self.items.append(item)

    def finish(self) -> dict[str, ReportEntry]:
        return _lip_sync(self.items, self.options) if {"lse_d", "lse_c"} & set(self.options.metrics) else {}


def _lip_sync(items: list[EvaluationItem], options: EvaluateOptions) -> dict[str, ReportEntry]:
    """LSE-D and LSE-C of every generated video that has audio, or why they could not be computed."""
    names = [m for m in ("lse_d", "lse_c") if m in options.metrics]

    def unavailable(reason: str) -> dict[str, ReportEntry]:
        return {name: ReportEntry.missing(LSE_PROTOCOL, reason) for name in names}

    if not has_mfcc():
        return unavailable(MISSING_MFCC)
    weights = options.syncnet_weights
    if weights is None:
        return unavailable("needs --syncnet-weights syncnet_v2.model (syncnet_python's weights; not downloadable here)")
    if not Path(weights).is_file():
        return unavailable(f"SyncNet weights not found at {weights}")
    network = SyncNet()
    load_strict(network, load_torch_file(weights), "SyncNet", str(weights))
    device = select_device(options.device)
    scores: dict[str, dict[str, float]] = {name: {} for name in names}
    skipped = []
    for item in items:
        if item.generated.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        audio = read_audio(item.generated, SAMPLE_RATE)
        if audio.size == 0:
            skipped.append(item.name)
            continue
        info = probe_video(item.generated)
        if info.fps != FPS:
            skipped.append(f"{item.name} ({float(info.fps):g} fps; SyncNet needs {FPS})")
            continue
        # SyncNet's reference reads 8-bit frames: the exact values back from the [0, 1] frames.
        frames = np.stack([to_uint8(frame) for frame in iter_frames(info)])
        try:
            score = lip_sync_score(network, frames, audio, batch_size=options.batch_size, device=device)
        except ValueError as exc:  # too short for one 5-frame window
            skipped.append(f"{item.name} ({exc})")
            continue
        except MissingOpenCVError as exc:  # frames to resize, and no OpenCV to resize them as the reference does
            return unavailable(str(exc))
        for name in names:
            scores[name][item.name] = score.lse_d if name == "lse_d" else score.lse_c
    if not scores[names[0]]:
        return unavailable("no generated video with an audio track" + (f" (e.g. {skipped[0]})" if skipped else ""))
    extra = {"skipped_without_audio": skipped} if skipped else {}
    return {
        name: ReportEntry(LSE_PROTOCOL, float(np.mean(list(per_item.values()))), len(per_item), per_item, extra=extra)
        for name, per_item in scores.items()
    }


#: The order of metrics.json and metrics.txt.
REPORT_ORDER = tuple(dict.fromkeys([*FRAME_METRICS, *ALL_METRICS, *OTHER_METRICS]))


def metric_families(options: EvaluateOptions) -> list[MetricFamily]:
    """The families that compute ``options.metrics``; CSIM and AKD use ArcFace or the landmark network when given."""
    _check_metric_names(options.metrics)
    families: list[MetricFamily] = [FrameMetrics(options), NotComputed(options), NetworkMetrics(options)]
    face_names = [m for m in FACE_METRICS if m in options.metrics]
    if "csim" in face_names and options.source is not None and options.arcface_weights is not None:
        face_names.remove("csim")
        families.append(ArcFaceIdentity(options.arcface_weights))
    if "akd" in face_names and options.driving is not None and options.landmark_weights is not None:
        face_names.remove("akd")
        families.append(_SyntheticKeypointDistance(options.landmark_weights))
    return [*families, FaceMetrics(options, face_names), LipSync(options)]


def _check_metric_names(metrics: tuple[str, ...]) -> None:
    unknown = sorted(set(metrics) - set(ALL_METRICS) - set(OTHER_METRICS))
    if unknown:
        raise DaganError(f"unknown metric {unknown[0]!r}; choose from {','.join(ALL_METRICS + OTHER_METRICS)}")


def evaluate(options: EvaluateOptions) -> dict:
    """Compute the requested metrics and write metrics.json, metrics.txt and plots under ``options.out``."""
    _check_metric_names(options.metrics)
    items = pair_items(options.generated, options.driving, options.source)
    if options.max_samples is not None:
        items = items[: options.max_samples]
    out = Path(options.out)
    check_outputs(
        {"--out": out},
        {"--generated": options.generated, "--driving": options.driving, "--source": options.source},
        ["--out"],
    )
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        return _evaluate_items(options, items, out)


def _evaluate_items(options: EvaluateOptions, items: list[EvaluationItem], out: Path) -> dict:
    """The loop: every frame of every item goes to every family; then the report is written."""
    families = metric_families(options)
    thumbnails: dict[str, list[np.ndarray]] = {}
    longer: list[str] = []
    frames_seen = 0
    started = time.perf_counter()
    entries: dict[str, ReportEntry] = {}
    try:
        for item in tqdm(items, unit="item", disable=options.quiet, file=sys.stderr, desc="evaluate"):
            for family in families:
                family.start(item)
            for frame in _scored_frames(item, longer):
                for family in families:
                    family.add(frame)
                if frame.index == 0:
                    thumbnails[item.name] = _first_frame_panels(frame, options.save_visuals, out)
                frames_seen += 1
        seconds = time.perf_counter() - started
        for family in families:  # the face metrics wait here for their last frames' faces
            entries.update(family.finish())
    finally:
        for family in families:
            family.close()
    if longer:
        print(
            f"dagan: warning: {len(longer)} driving files have more frames than their generated ones "
            f"(e.g. {longer[0]}); only the generated frames' count was scored",
            file=sys.stderr,
        )
    report = {name: entries[name] for name in REPORT_ORDER if name in entries}
    write_report(out, report, len(items), frames_seen, seconds, thumbnails)
    return {name: entry.as_dict() for name, entry in report.items()}


def _scored_frames(item: EvaluationItem, longer: list[str]) -> Iterator[ScoredFrame]:
    """``item``'s generated frames with their driving frames; a driving file with frames left is noted in ``longer``."""
    references = _frames(item.driving) if item.driving else None
    source = next(_frames(item.source)) if item.source else None
    for index, generated in enumerate(_frames(item.generated)):
        driving = next(references, None) if references is not None else None
        if references is not None and driving is None:
            raise DaganError(f"{item.driving} has fewer frames than {item.generated}")
        resized = _same_size(driving, generated) if driving is not None else None
        yield ScoredFrame(item, index, generated, resized, driving, source)
    if references is not None and next(references, None) is not None:
        longer.append(item.driving.name)


def _first_frame_panels(frame: ScoredFrame, save_visuals: bool, out: Path) -> list[np.ndarray]:
    """Thumbnails of source, driving and generated for the worst-items grid (and visuals/NAME.png if asked)."""
    panels = [_same_size(p, frame.generated) for p in (frame.source, frame.driving, frame.generated) if p is not None]
    if save_visuals:
        (out / "visuals").mkdir(exist_ok=True)
        write_png(out / "visuals" / f"{frame.item.name}.png", np.concatenate(panels, axis=1))
    # Small 8-bit thumbnails only: the worst-items grid needs a few, and sets can be large.
    return [_thumbnail(p) for p in panels]
