"""``dagan generate``: animate many (source, driving) pairs into an evaluation set.

Pairs come from two folders matched by file name (the reproduction's ``source_self``/``gt_self``
layout) or from the original ``source,driving[,frame]`` CSVs. Each output is named after its pair
so that ``dagan evaluate`` can match it with the driving folder. Finished outputs are skipped, so a
run can be resumed; under ``torchrun`` every rank takes every ``world``-th pair.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dagan.errors import DaganError
from dagan.io.atomic import check_outputs, check_writable_directory, removed_if_failed_empty
from dagan.io.image import IMAGE_SUFFIXES, read_image, write_png
from dagan.io.video import Mp4Writer, iter_frames, media_files_by_stem, probe_video
from dagan.options import GenerateOptions
from dagan.pipelines.animate import Animator, default_batch_size
from dagan.pipelines.distributed import setup_distributed


@dataclass
class GeneratePair:
    """One output: animate ``source`` (frame ``source_frame`` of a video) with ``driving``."""

    name: str
    source: Path
    driving: Path
    source_frame: int = 0


def pairs_from_folders(source_dir: Path, driving_dir: Path) -> list[GeneratePair]:
    """Pairs of same-named files (by stem) in the two folders; a driving file without a source is an error."""
    sources, drivings = media_files_by_stem(source_dir), media_files_by_stem(driving_dir)
    if not drivings:
        raise DaganError(f"no images or videos in {driving_dir}")
    missing = sorted(set(drivings) - set(sources))
    if missing:
        raise DaganError(
            f"{len(missing)} driving files have no source of the same name in {source_dir}, e.g. {missing[0]}"
        )
    return [GeneratePair(name, sources[name], drivings[name]) for name in drivings]


def pairs_from_csv(csv_path: Path, root: Path | None) -> list[GeneratePair]:
    """Rows ``source,driving[,frame]`` (a header row is allowed); relative paths are under ``root``."""
    if not csv_path.is_file():
        raise DaganError(f"--pairs {csv_path} does not exist")
    base = root or csv_path.parent
    pairs = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                row = [cell.strip() for cell in row]
                if not row or not any(row) or (number == 1 and row[0].lower() == "source"):
                    continue
                if len(row) < 2:
                    raise DaganError(f"{csv_path}:{number}: expected source,driving[,frame]")
                source, driving = (Path(cell) if Path(cell).is_absolute() else base / cell for cell in row[:2])
                try:
                    frame = int(row[2]) if len(row) > 2 and row[2] else 0
                except ValueError:
                    raise DaganError(f"{csv_path}:{number}: frame {row[2]!r} is not a number") from None
                name = f"{len(pairs):05d}_{source.stem}_{driving.stem}"
                pairs.append(GeneratePair(name, source, driving, frame))
    except UnicodeDecodeError:
        raise DaganError(f"--pairs {csv_path} is not a UTF-8 text file") from None
    except csv.Error as exc:
        raise DaganError(f"--pairs {csv_path} is not a readable CSV ({exc})") from None
    if not pairs:
        raise DaganError(f"{csv_path} lists no pairs")
    return pairs


def _source_image(pair: GeneratePair) -> np.ndarray:
    if pair.source.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(pair.source)
    for index, frame in enumerate(iter_frames(probe_video(pair.source, "source"))):
        if index == pair.source_frame:
            return frame
    raise DaganError(f"{pair.source} has no frame {pair.source_frame}")


def output_path(out: Path, pair: GeneratePair) -> Path:
    """Where a pair's result goes: a PNG for an image driver, an MP4 for a video."""
    suffix = ".png" if pair.driving.suffix.lower() in IMAGE_SUFFIXES else ".mp4"
    return out / f"{pair.name}{suffix}"


def generate(options: GenerateOptions) -> dict[str, int]:
    """Animate this rank's share of the pairs; returns counts of written and skipped outputs."""
    if options.pairs_csv is not None:
        pairs = pairs_from_csv(options.pairs_csv, options.root)
    elif options.source_dir is not None and options.driving_dir is not None:
        pairs = pairs_from_folders(options.source_dir, options.driving_dir)
    else:
        raise DaganError("give --source-dir and --driving-dir, or --pairs (with --root)")
    rank, world, local_rank = setup_distributed()
    device = options.device
    if device in ("auto", "cuda") and world > 1:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{local_rank}"
    out = Path(options.out)
    inputs = {"--source-dir": options.source_dir, "--driving-dir": options.driving_dir, "--root": options.root}
    check_outputs(
        {"--out": out}, {**inputs, "--pairs": options.pairs_csv, "--checkpoint": options.checkpoint}, ["--out"]
    )
    animator = Animator.from_checkpoint(options.checkpoint, options.depth_weights, device, options.inference)
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        return _generate_pairs(animator, pairs[rank::world], out, options, rank)


def _generate_pairs(
    animator: Animator, mine: list[GeneratePair], out: Path, options: GenerateOptions, rank: int
) -> dict[str, int]:
    counts = {"written": 0, "skipped": 0}
    todo = [pair for pair in mine if not output_path(out, pair).exists()]
    counts["skipped"] = len(mine) - len(todo)
    images = [pair for pair in todo if output_path(out, pair).suffix == ".png"]
    videos = [pair for pair in todo if output_path(out, pair).suffix != ".png"]
    bar = tqdm(total=len(todo), unit="pair", disable=options.quiet or rank != 0, file=sys.stderr, desc="generate")
    # Image pairs go through the networks in batches, each source with its own driver. One driving
    # image has no initial frame to take motion relative to: absolute keypoints.
    step = options.batch_size or default_batch_size(animator.device)
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        predictions = animator.animate_pairs([_source_image(p) for p in chunk], [read_image(p.driving) for p in chunk])
        for pair, prediction in zip(chunk, predictions, strict=True):
            write_png(output_path(out, pair), prediction)
        counts["written"] += len(chunk)
        bar.update(len(chunk))
    for pair in videos:
        target = output_path(out, pair)
        source = _source_image(pair)
        info = probe_video(pair.driving)
        # Self-reenactment reconstructs the driving frames (absolute keypoints, as the original's
        # reconstruction mode); cross-identity transfers motion relative to the first frame.
        relative = options.mode == "cross"
        # The driving audio goes along: lip-sync metrics read it from the generated file.
        with Mp4Writer(target, info.fps or Fraction(25), info.path if info.has_audio else None) as writer:
            frames = animator.animate(source, iter_frames(info), relative=relative, batch_size=options.batch_size)
            for frame in frames:
                writer.write(frame.prediction)
        counts["written"] += 1
        bar.update(1)
    bar.close()
    return counts
