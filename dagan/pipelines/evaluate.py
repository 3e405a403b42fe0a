"""``dagan evaluate``: score generated frames against driving and source frames, and write a report.

Items are matched by file name (stem) across the folders; an item is an image, or a video whose
frames are compared in order. Every metric is computed once per frame and reported with its
protocol; a metric that cannot run says why, and the others still run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dagan.config import ALL_METRICS
from dagan.errors import DaganError
from dagan.face import Face, FaceAnalyzer, head_pose
from dagan.io.arrays import read_arrays
from dagan.io.atomic import atomic_output, check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.checkpoint import load_strict, load_torch_file
from dagan.io.image import IMAGE_SUFFIXES, read_image, resize_frame, to_uint8, write_png
from dagan.io.plots import image_grid, write_histogram
from dagan.io.video import VIDEO_SUFFIXES, iter_frames, media_files_by_stem, probe_video, read_audio
from dagan.metrics.audio import MISSING_MFCC, has_mfcc
from dagan.metrics.fid import feature_statistics, frechet_distance
from dagan.metrics.image import l1, psnr, ssim_gaussian, ssim_skimage
from dagan.metrics.lse import FPS, SAMPLE_RATE, lip_sync_score
from dagan.metrics.niqe import niqe
from dagan.metrics.weights import MissingWeightsError, load_arcface, load_fid_inception, load_lpips
from dagan.nn.arcface import arcface_input
from dagan.nn.syncnet import SyncNet
from dagan.pipelines.distributed import select_device

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
SYNTHETIC_AKD = (
    "mean absolute difference (pixels, at the generated size) between the 16 landmarks that the synthetic-head "
    "landmark network (dagan train-landmarks) finds in the generated frame and the ground truth (NAME.npz beside "
    "the driving file; without it, the network's landmarks of the driving frame)"
)
LSE_PROTOCOL = (
    "syncnet_python evaluate: 25 fps, 16 kHz mono MFCC (python_speech_features), 5-frame windows, vshift 15, "
    "frames resized to 224x224 and fed BGR; LSE-D = min over shifts of the mean distance, LSE-C = median - min"
)


@dataclass
class EvaluationItem:
    """One generated file and the files it is compared with."""

    name: str
    generated: Path
    driving: Path | None = None
    source: Path | None = None


@dataclass
class EvaluateOptions:
    """Everything ``dagan evaluate`` takes."""

    generated: Path
    out: Path
    driving: Path | None = None
    source: Path | None = None
    metrics: tuple[str, ...] = ALL_METRICS
    max_samples: int | None = None
    save_visuals: bool = False
    syncnet_weights: Path | None = None
    lpips_weights: Path | None = None
    arcface_weights: Path | None = None
    fid_weights: Path | None = None
    #: A dagan train-landmarks network: AKD on synthetic heads uses it (and the ground truth) instead of dlib.
    landmark_weights: Path | None = None
    device: str = "auto"
    batch_size: int = 20
    quiet: bool = False


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


def evaluate(options: EvaluateOptions) -> dict:
    """Compute the requested metrics and write metrics.json, metrics.txt and plots under ``options.out``."""
    unknown = sorted(set(options.metrics) - set(ALL_METRICS) - set(OTHER_METRICS))
    if unknown:
        raise DaganError(f"unknown metric {unknown[0]!r}; choose from {','.join(ALL_METRICS + OTHER_METRICS)}")
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
    frame_metrics = [m for m in FRAME_METRICS if (m if m != "ssim_gaussian" else "ssim") in options.metrics]
    report: dict[str, dict] = {}
    runnable = []
    for name in frame_metrics:
        needs = FRAME_METRICS[name][0]
        if needs == "driving" and options.driving is None:
            report[name] = _unavailable(name, FRAME_METRICS[name][1], "needs --driving (or --eval-set)")
        else:
            runnable.append(name)
    for name in OTHER_METRICS:
        if name in options.metrics:
            report[name] = _unavailable(name, "", UNAVAILABLE[name])
    networks = _NetworkMetrics(options, report)

    face_metrics = []
    for name in (m for m in FACE_METRICS if m in options.metrics):
        needs = FACE_METRICS[name][0]
        if getattr(options, needs) is None:
            report[name] = _unavailable(name, FACE_METRICS[name][1], f"needs --{needs} (or --eval-set)")
        else:
            face_metrics.append(name)
    arcface = None
    if "csim" in face_metrics and options.arcface_weights is not None:
        # With GFPGAN's ArcFace (as the DaGAN authors' evaluation), CSIM needs no face detector.
        face_metrics.remove("csim")
        try:
            arcface = load_arcface(options.arcface_weights).eval()
        except MissingWeightsError as exc:
            report["csim"] = _unavailable("csim", ARCFACE_CSIM, str(exc))
    arcface_scores: dict[str, list[float]] = {}
    synthetic_akd = None
    if "akd" in face_metrics and options.landmark_weights is not None:
        face_metrics.remove("akd")
        synthetic_akd = _SyntheticKeypointDistance(options.landmark_weights)
    analyzer = None
    if face_metrics:
        try:
            analyzer = FaceAnalyzer()
        except DaganError as exc:
            for name in face_metrics:
                report[name] = _unavailable(name, FACE_METRICS[name][1], str(exc))
            face_metrics = []
    face_scores: dict[str, dict[str, list[float]]] = {name: {} for name in face_metrics}
    source_faces: dict[Path, Face | None] = {}
    faceless = dict.fromkeys(face_metrics, 0)

    scores = {name: {} for name in runnable}
    visuals: dict[str, list[np.ndarray]] = {}
    started = time.perf_counter()
    frames_seen = 0
    longer: list[str] = []
    for item in tqdm(items, unit="item", disable=options.quiet, file=sys.stderr, desc="evaluate"):
        references = _frames(item.driving) if item.driving else None
        source = next(_frames(item.source)) if item.source else None
        if synthetic_akd is not None:
            synthetic_akd.start(item)
        for index, generated in enumerate(_frames(item.generated)):
            driving = next(references, None) if references is not None else None
            if references is not None and driving is None:
                raise DaganError(f"{item.driving} has fewer frames than {item.generated}")
            if synthetic_akd is not None:
                synthetic_akd.add(item.name, index, generated, driving)
            if driving is not None:
                driving = _same_size(driving, generated)
            for name in list(runnable):
                try:
                    value = _FUNCTIONS[name](generated) if name == "niqe" else _FUNCTIONS[name](generated, driving)
                except ValueError as exc:  # e.g. NIQE on frames smaller than its 96x96 blocks
                    report[name] = _unavailable(name, FRAME_METRICS[name][1], f"{item.generated.name}: {exc}")
                    runnable.remove(name)
                    continue
                scores[name].setdefault(item.name, []).append(value)
            networks.add(item.name, generated, driving)
            if arcface is not None and source is not None:
                if index == 0:
                    source_identity = _arcface_embedding(arcface, source)
                value = float(source_identity @ _arcface_embedding(arcface, generated))
                arcface_scores.setdefault(item.name, []).append(value)
            if face_metrics:
                if index == 0:
                    if item.source is not None and item.source not in source_faces:
                        source_faces[item.source] = analyzer.analyze(source)  # sources repeat across items
                    source_face = source_faces.get(item.source)
                _face_frame(analyzer, generated, driving, source_face, item.name, face_scores, faceless)
            if index == 0:
                panels = [_same_size(p, generated) for p in (source, driving, generated) if p is not None]
                if options.save_visuals:
                    (out / "visuals").mkdir(exist_ok=True)
                    write_png(out / "visuals" / f"{item.name}.png", np.concatenate(panels, axis=1))
                # Small 8-bit thumbnails only: the worst-items grid needs a few, and sets can be large.
                visuals[item.name] = [_thumbnail(p) for p in panels]
            frames_seen += 1
        if references is not None and next(references, None) is not None:
            longer.append(item.driving.name)
    seconds = time.perf_counter() - started
    if longer:
        print(
            f"dagan: warning: {len(longer)} driving files have more frames than their generated ones "
            f"(e.g. {longer[0]}); only the generated frames' count was scored",
            file=sys.stderr,
        )

    for name in runnable:
        report[name] = _summary(scores[name], FRAME_METRICS[name][1])
    report.update(networks.finish())
    if arcface_scores:
        report["csim"] = _summary(arcface_scores, ARCFACE_CSIM)
    if synthetic_akd is not None:
        report["akd"] = _summary(synthetic_akd.scores, SYNTHETIC_AKD)
    for name in face_metrics:
        report[name] = _face_report(name, face_scores[name], faceless[name])
    if {"lse_d", "lse_c"} & set(options.metrics):
        report.update(_lip_sync(items, options))
    report = {name: report[name] for name in [*FRAME_METRICS, *ALL_METRICS, *OTHER_METRICS] if name in report}
    _write_report(out, report, len(items), frames_seen, seconds, visuals)
    return report


class _SyntheticKeypointDistance:
    """AKD on synthetic heads: a landmark network on generated frames against the renderer's landmarks."""

    def __init__(self, weights: Path):
        from dagan.pipelines.landmarks import load_landmark_network

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

    def add(self, name: str, index: int, generated: np.ndarray, driving: np.ndarray | None) -> None:
        """Score one generated frame (``driving`` at its own size)."""
        scale = generated.shape[1]
        if self.truth is not None and index < len(self.truth) and driving is not None:
            truth = self.truth[index] * (scale / driving.shape[1])
        elif driving is not None:
            truth = self._landmarks(driving) * (scale / driving.shape[1])
        else:
            return
        self.scores.setdefault(name, []).append(float(np.abs(self._landmarks(generated) - truth).mean()))


@torch.inference_mode()
def _arcface_embedding(network: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The unit-length ArcFace embedding of an RGB frame in [0, 1]."""
    batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])).float()
    embedding = network(arcface_input(batch))[0].double().numpy()
    return embedding / np.linalg.norm(embedding)


class _NetworkMetrics:
    """LPIPS and FID: frames are batched through the networks, features computed once per frame."""

    def __init__(self, options: EvaluateOptions, report: dict[str, dict]):
        self.batch_size = options.batch_size
        self.device = None
        self.lpips = self.inception = None
        wanted = [m for m in NETWORK_METRICS if m in options.metrics]
        for name in wanted:
            if options.driving is None:
                report[name] = _unavailable(name, NETWORK_METRICS[name], "needs --driving (or --eval-set)")
                continue
            given = options.lpips_weights if name == "lpips" else options.fid_weights
            try:
                network = load_lpips(given) if name == "lpips" else load_fid_inception(given)
            except MissingWeightsError as exc:
                report[name] = _unavailable(name, NETWORK_METRICS[name], str(exc))
                continue
            self.device = self.device or select_device(options.device)
            setattr(self, "lpips" if name == "lpips" else "inception", network.eval().to(self.device))
        self.pending: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.lpips_scores: dict[str, list[float]] = {}
        self.features: dict[str, list[np.ndarray]] = {"generated": [], "driving": []}

    def add(self, item: str, generated: np.ndarray, driving: np.ndarray | None) -> None:
        if (self.lpips is None and self.inception is None) or driving is None:
            return
        if self.pending and self.pending[0][1].shape != generated.shape:
            self._flush()
        self.pending.append((item, generated, driving))
        if len(self.pending) >= self.batch_size:
            self._flush()

    @torch.inference_mode()
    def _flush(self) -> None:
        if not self.pending:
            return

        def batch(index: int) -> torch.Tensor:
            stacked = np.stack([entry[index] for entry in self.pending]).transpose(0, 3, 1, 2)
            return torch.from_numpy(np.ascontiguousarray(stacked)).float().to(self.device)

        generated, driving = batch(1), batch(2)
        if self.lpips is not None:
            for (item, _, _), value in zip(self.pending, self.lpips(generated, driving).cpu().tolist(), strict=True):
                self.lpips_scores.setdefault(item, []).append(float(value))
        if self.inception is not None:
            self.features["generated"].append(self.inception(generated).double().cpu().numpy())
            self.features["driving"].append(self.inception(driving).double().cpu().numpy())
        self.pending = []

    def finish(self) -> dict[str, dict]:
        self._flush()
        out = {}
        if self.lpips is not None and self.lpips_scores:
            out["lpips"] = _summary(self.lpips_scores, NETWORK_METRICS["lpips"])
        if self.inception is not None and self.features["generated"]:
            generated = np.concatenate(self.features["generated"])
            driving = np.concatenate(self.features["driving"])
            if len(generated) < 2:
                return {**out, "fid": _unavailable("fid", NETWORK_METRICS["fid"], "FID needs at least two frames")}
            try:
                distance = frechet_distance(*feature_statistics(generated), *feature_statistics(driving))
            except ValueError as exc:  # e.g. a complex square root: say so, keep the other metrics
                return {**out, "fid": _unavailable("fid", NETWORK_METRICS["fid"], str(exc))}
            out["fid"] = {"value": distance, "protocol": NETWORK_METRICS["fid"], "count": len(generated),
                          "per_item": {}}  # fmt: skip
        return out


def _face_frame(
    analyzer: FaceAnalyzer,
    generated: np.ndarray,
    driving: np.ndarray | None,
    source_face: Face | None,
    item: str,
    scores: dict[str, dict[str, list[float]]],
    faceless: dict[str, int],
) -> None:
    """Add one frame's face metrics; frames where a needed face is not found are counted, not scored."""
    generated_face = analyzer.analyze(generated)
    driving_face = analyzer.analyze(driving) if driving is not None and generated_face is not None else None
    for name in scores:
        other = source_face if FACE_METRICS[name][0] == "source" else driving_face
        if generated_face is None or other is None:
            faceless[name] += 1
            continue
        if name == "akd":
            value = float(np.mean(np.abs(other.landmarks - generated_face.landmarks)))
        elif name == "aed":
            a = other.embedding / np.linalg.norm(other.embedding)
            b = generated_face.embedding / np.linalg.norm(generated_face.embedding)
            value = float(np.sum((a - b) ** 2))
        elif name == "csim":
            a, b = other.embedding, generated_face.embedding
            value = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        else:  # prmse: squared angle errors, averaged over the three angles, rooted after averaging frames
            h, w = generated.shape[:2]
            difference = head_pose(other.landmarks, w, h) - head_pose(generated_face.landmarks, w, h)
            value = float(np.mean(difference**2))
        scores[name].setdefault(item, []).append(value)


def _face_report(name: str, per_frame: dict[str, list[float]], faceless: int) -> dict:
    protocol = FACE_METRICS[name][1]
    if not per_frame:
        return _unavailable(name, protocol, f"no face found in any of the {faceless} frames")
    # PRMSE keeps squared angle errors per frame: the root comes after the mean.
    reduce = (lambda values: np.sqrt(np.mean(values))) if name == "prmse" else np.mean
    return {**_summary(per_frame, protocol, reduce), "frames_without_face": faceless}


def _lip_sync(items: list[EvaluationItem], options: EvaluateOptions) -> dict[str, dict]:
    """LSE-D and LSE-C of every generated video that has audio, or why they could not be computed."""
    names = [m for m in ("lse_d", "lse_c") if m in options.metrics]

    def unavailable(reason: str) -> dict[str, dict]:
        return {name: _unavailable(name, LSE_PROTOCOL, reason) for name in names}

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
        for name in names:
            scores[name][item.name] = score.lse_d if name == "lse_d" else score.lse_c
    if not scores[names[0]]:
        return unavailable("no generated video with an audio track" + (f" (e.g. {skipped[0]})" if skipped else ""))
    return {
        name: {
            "value": float(np.mean(list(per_item.values()))),
            "protocol": LSE_PROTOCOL,
            "count": len(per_item),
            "per_item": per_item,
            **({"skipped_without_audio": skipped} if skipped else {}),
        }
        for name, per_item in scores.items()
    }


def _summary(per_frame: dict[str, list[float]], protocol: str, reduce=np.mean) -> dict:
    """A report entry from per-item frame values: ``reduce`` over all frames, and over each item's."""
    every = np.concatenate([np.asarray(values, dtype=np.float64) for values in per_frame.values()])
    return {
        "value": float(reduce(every)),  # inf (identical frames in PSNR) and NaN stay visible
        "protocol": protocol,
        "count": int(every.size),
        "per_item": {item: float(reduce(np.asarray(values, dtype=np.float64))) for item, values in per_frame.items()},
    }


def _unavailable(name: str, protocol: str, reason: str) -> dict:
    return {"value": None, "protocol": protocol, "count": 0, "per_item": {}, "unavailable": reason}


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf": JSON has no infinity
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _write_report(out: Path, report: dict, items: int, frames: int, seconds: float, visuals: dict) -> None:
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_json_safe(report), indent=2))
    lines = [f"{items} items, {frames} frames, {frames / max(seconds, 1e-9):.2f} frames/s", ""]
    for name, entry in report.items():
        if entry.get("unavailable"):
            lines.append(f"{name:<14} unavailable: {entry['unavailable']}")
        else:
            lines.append(f"{name:<14} {entry['value']:.6g}  (n={entry['count']})  {entry['protocol']}")
    with atomic_output(out / "metrics.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for name, entry in report.items():
        if entry.get("per_item"):
            write_histogram(plots / f"{name}_histogram.png", np.array(list(entry["per_item"].values())), name)
    worst_by = next((m for m in ("l1", "psnr", "niqe") if report.get(m, {}).get("per_item")), None)
    if worst_by:
        per_item = report[worst_by]["per_item"]
        order = sorted(per_item, key=per_item.get, reverse=worst_by != "psnr")[:8]
        rows = [visuals[name] for name in order if name in visuals]
        labels = [f"{name}: {worst_by} {per_item[name]:.4g}" for name in order if name in visuals]
        write_png(plots / f"worst_{worst_by}.png", image_grid(rows, labels))
