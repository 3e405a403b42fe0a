"""Hostile inputs: every command refuses crafted, malformed or self-destructive inputs cleanly.

Each corpus case must end with exit code 2 and a single ``dagan: error:`` line (argparse refusals:
``dagan COMMAND: error:``) that names the offending file, without a traceback. The case's working folder
must be left exactly as it was: no file created, changed or deleted and no empty folder left behind. Where a
case has an output, a good earlier output is planted first, so a refused run that clobbers it shows up.

Inputs that could hang or exhaust memory (a FIFO, decompression bombs) run under a time limit: in a
subprocess where the work happens on a background thread, under ``SIGALRM`` where it stays on the main one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dagan.cli import main
from dagan.io.checkpoint import DAGAN_GROUPS, DEPTH_GROUPS, write_original_checkpoint
from dagan.nn.landmark_net import LandmarkNet

from .conftest import REPO, make_clip, make_tiny_weights, write_aligned_training_checkpoint

GOOD = b"a good result from yesterday"
TINY_CONFIG = REPO / "configs" / "tiny-64.yaml"
#: A refusal costs a model load at most; bombs get this long before they count as accepted.
BOMB_SECONDS = 10
#: A subprocess pays for importing torch before it can refuse anything.
SUBPROCESS_SECONDS = 30


class _Exploit:
    """Pickles into a call of ``os.system``: if it is ever unpickled, ``marker`` appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass(frozen=True)
class Shared:
    """Inputs built once per module; cases copy or link what they need into their own folder."""

    root: Path
    checkpoint: Path
    depth: Path
    source: Path
    clip: Path
    frames: Path
    bomb: Path
    data: Path
    landmarks: Path
    groups: dict
    watched: tuple[Path, ...]


@dataclass
class Spec:
    """What one case runs and what its error line must hold besides the generic contract."""

    argv: list[str]
    #: At least one of these must appear in the error line (the offending file's name).
    names: tuple[str, ...] = ()
    #: Created only if a pickle in the inputs was executed.
    marker: Path | None = None
    cwd: Path | None = None
    #: "inprocess", "alarm" (in-process under SIGALRM) or "subprocess".
    mode: str = "inprocess"
    must_say: tuple[str, ...] = ()
    must_say_any: tuple[str, ...] = ()
    must_not_say: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path, Shared], Spec]
    #: chmod cannot stop root from writing, so the case means nothing there.
    needs_non_root: bool = False


CASES: list[Case] = []


def case(case_id: str, needs_non_root: bool = False):
    def register(setup: Callable[[Path, Shared], Spec]) -> Callable[[Path, Shared], Spec]:
        CASES.append(Case(case_id, setup, needs_non_root))
        return setup

    return register


# ---------------------------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def shared(tiny_files, tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp("hostile_shared")
    # A 64x64 model: a case dagan fails to refuse runs to the end, and that must stay cheap.
    checkpoint = write_aligned_training_checkpoint(root / "model64.pth.tar")
    rng = np.random.default_rng(7)
    frames = root / "frames"
    frames.mkdir()
    for i in range(6):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(frames / f"{i:06d}.png")
    bomb = root / "bomb.png"
    # 10^8 pixels: past PIL's warning threshold, under its error threshold, about 100 KB on disk.
    Image.fromarray(np.zeros((10000, 10000), np.uint8)).save(bomb, compress_level=9)
    data = root / "data"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
        for name in ("id0#a.mp4", "id1#b.mp4"):
            shutil.copyfile(tiny_files["driving"], data / split / name)
    landmarks = root / "landmarks.pth"
    torch.save({"state_dict": LandmarkNet(16).state_dict(), "num_landmarks": 16, "size": 64}, landmarks)
    return Shared(
        root=root,
        checkpoint=checkpoint,
        depth=tiny_files["depth"],
        source=tiny_files["source"],
        clip=tiny_files["driving"],
        frames=frames,
        bomb=bomb,
        data=data,
        landmarks=landmarks,
        groups=make_tiny_weights(),
        watched=(root, tiny_files["checkpoint"].parent),
    )


# ---------------------------------------------------------------------------------------------- helpers


def place(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target


def plant(path: Path, data: bytes = GOOD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def onnx_export(shared: Shared) -> Path:
    """The shared model exported once, on first use: a broken exporter then fails its own case, not the corpus."""
    out = shared.root / "onnx"
    if not (out / "onnx.json").is_file():
        argv = ["export-onnx", "--checkpoint", str(shared.checkpoint), "--depth-weights", str(shared.depth)]
        assert main([*argv, "--out", str(out)]) == 0
    return out


def depth_folder(folder: Path, shared: Shared, encoder: Path | None = None) -> Path:
    """A depth weights folder of links to the shared 60 MB files (copying them per case costs seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.pth", "depth.pth"):
        if not (folder / name).exists():
            (folder / name).symlink_to(shared.depth / name)
    return folder


def evil_pickle(path: Path, marker: Path, layout: str = "checkpoint") -> Path:
    payload = {"generator": _Exploit(marker), "kp_detector": {}} if layout == "checkpoint" else {"x": _Exploit(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def object_npz(path: Path, marker: Path, key: str) -> Path:
    np.savez(path, **{key: np.array([_Exploit(marker), None], dtype=object)})
    return path


def mutated_checkpoint(path: Path, shared: Shared, group: str, key: str, value: torch.Tensor) -> Path:
    groups = {g: dict(shared.groups[g]) for g in ("generator", "kp_detector")}
    groups[group][key] = value
    write_original_checkpoint(path, groups)
    return path


def safetensors_file(path: Path, shared: Shared, metadata: dict[str, str], with_depth: bool = False) -> Path:
    from safetensors.torch import save_file

    names = (*DAGAN_GROUPS[:2], *(DEPTH_GROUPS if with_depth else ()))
    flat = {f"{g}.{k}": v.contiguous() for g in names for k, v in shared.groups[g].items()}
    save_file(flat, str(path), metadata=metadata)
    return path


def flags(values: dict[str, object]) -> list[str]:
    argv: list[str] = []
    for flag, value in values.items():
        if value is None:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def animate_argv(shared: Shared, work: Path, overrides: dict[str, object] | None = None) -> list[str]:
    values: dict[str, object] = {
        "--source": place(shared.source, work / "source.png"),
        "--driving": place(shared.clip, work / "clip.mp4"),
        "--checkpoint": shared.checkpoint,
        "--depth-weights": shared.depth,
        "--output": plant(work / "good.mp4"),
        "--device": "cpu",
    }
    values.update(overrides or {})
    return ["animate", "--quiet", *flags(values)]


def depth_argv(shared: Shared, work: Path, overrides: dict[str, object] | None = None) -> list[str]:
    values: dict[str, object] = {
        "--weights": shared.depth,
        "--input": place(shared.source, work / "portrait.png"),
        "--out": work / "out",
        "--size": 64,
        "--device": "cpu",
    }
    values.update(overrides or {})
    return ["depth", "--quiet", *flags(values)]


def evaluate_argv(shared: Shared, work: Path, overrides: dict[str, object]) -> list[str]:
    values: dict[str, object] = {
        "--generated": place(shared.clip, work / "generated" / "x.mp4").parent,
        "--driving": place(shared.clip, work / "driving" / "x.mp4").parent,
        "--out": work / "report",
        "--device": "cpu",
    }
    values.update(overrides)
    return ["evaluate", "--quiet", *flags(values)]


def train_argv(shared: Shared, work: Path, config: Path, overrides: dict[str, object] | None = None) -> list[str]:
    values: dict[str, object] = {
        "--config": config,
        "--data": place(shared.data, work / "data"),
        "--out": work / "run",
        "--depth-weights": shared.depth,
        "--max-steps": 1,
        "--workers": 0,
        "--device": "cpu",
    }
    values.update(overrides or {})
    return ["train", "--quiet", *flags(values)]


def tiny_config(work: Path, old: str = "", new: str = "") -> Path:
    text = TINY_CONFIG.read_text()
    assert not old or old in text, old
    return plant(work / "cfg.yaml", text.replace(old, new).encode())


def generate_argv(shared: Shared, work: Path, rows: str, overrides: dict[str, object] | None = None) -> list[str]:
    place(shared.source, work / "source.png")
    place(shared.clip, work / "clip.mp4")
    values: dict[str, object] = {
        "--checkpoint": shared.checkpoint,
        "--depth-weights": shared.depth,
        "--pairs": plant(work / "pairs.csv", rows.encode()),
        "--root": work,
        "--out": work / "generated",
        "--device": "cpu",
    }
    values.update(overrides or {})
    return ["generate", "--quiet", *flags(values)]


# ---------------------------------------------------------------------------------------------- run_case


class _TooSlow(BaseException):
    """Raised by SIGALRM; a BaseException so that no ``except Exception`` in dagan swallows it."""


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: folders, links (their target), files (sha256), anything else (its type)."""
    entries: dict[str, tuple] = {}
    for directory, subdirs, files in os.walk(folder):
        for name in (*subdirs, *files):
            path = Path(directory) / name
            mode = path.lstat().st_mode
            key = str(path.relative_to(folder))
            if stat.S_ISLNK(mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                entries[key] = ("dir",)
            elif stat.S_ISREG(mode):
                entries[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:  # a FIFO must not be read: that would block
                entries[key] = ("special", stat.S_IFMT(mode))
    return entries


def fingerprint(folders: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Size and mtime of the shared inputs: hashing 60 MB of weights per case would dominate the runtime."""
    prints = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                prints[str(path)] = (info.st_size, info.st_mtime_ns)
    return prints


def _dagan_frame(frames: list[tuple[str, int]]) -> str:
    inside = [(f, n) for f, n in frames if f"{os.sep}dagan{os.sep}" in f and f"{os.sep}tests{os.sep}" not in f]
    if not inside:
        return "outside dagan/"
    filename, line = inside[-1]
    return f"{Path(filename).relative_to(REPO)}:{line}"


def _run(argv: list[str], spec: Spec, capfd, cwd: Path) -> tuple[int | None, str, list[str], bool]:
    """Exit code (None: did not finish in time), stderr, problems found on the way, whether argparse exited."""
    problems: list[str] = []
    if spec.mode == "subprocess":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        try:
            result = subprocess.run(
                [sys.executable, "-m", "dagan", *argv],
                capture_output=True,
                text=True,
                timeout=SUBPROCESS_SECONDS,
                cwd=cwd,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return None, err, [f"still running after {SUBPROCESS_SECONDS} s (killed)"], False
        err = result.stderr
        if "Traceback" in err:
            frames = [(f, int(n)) for f, n in re.findall(r'File "([^"]+)", line (\d+)', err)]
            problems.append(f"traceback: {err.strip().splitlines()[-1][:200]} at {_dagan_frame(frames)}")
        usage = err.lstrip().startswith("usage:")
        return result.returncode, err, problems, usage

    capfd.readouterr()
    exited, warned = False, []
    previous = None
    if spec.mode == "alarm":

        def too_slow(signum, frame):
            raise _TooSlow

        previous = signal.signal(signal.SIGALRM, too_slow)
        signal.alarm(BOMB_SECONDS)
    try:
        # pytest records warnings instead of printing them; a user's terminal shows them on stderr.
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", hidden)
            try:
                code = main(argv)
            finally:
                warned = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in shown]
    except SystemExit as exc:
        code, exited = (exc.code if isinstance(exc.code, int) else 1), True
    except _TooSlow:
        code = None
        problems.append(f"not refused within {BOMB_SECONDS} s")
    except Exception as exc:  # what a user would see as a traceback (and exit code 1)
        code = 1
        frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        problems.append(f"traceback: {type(exc).__name__}: {message} at {_dagan_frame(frames)}")
    finally:
        if spec.mode == "alarm":
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    err = capfd.readouterr().err
    return code, "".join(f"{line}\n" for line in warned) + err, problems, exited


def run_case(argv: list[str], watched_dir: Path, spec: Spec, capfd, shared: Shared | None = None) -> None:
    """Run ``argv`` and check the whole contract at once, so a failure lists every way the case went wrong."""
    before = snapshot(watched_dir)
    shared_before = fingerprint(shared.watched) if shared else {}
    code, err, problems, argparse_exit = _run(argv, spec, capfd, spec.cwd or watched_dir)
    after = snapshot(watched_dir)

    if code != 2:
        problems.insert(0, f"exit code {code}, want 2")
    if "Traceback" in err and not any(p.startswith("traceback") for p in problems):
        problems.append("stderr holds a traceback")
    lines = err.strip().splitlines()
    if argparse_exit:
        line = lines[0] if len(lines) == 1 else ""
        if len(lines) != 1 or "error:" not in lines[0]:
            problems.append(f"argparse's stderr is {len(lines)} lines, want one 'error:' line: {lines[:4]}")
    else:
        line = lines[0] if len(lines) == 1 else ""
        if code is not None and (len(lines) != 1 or not lines[0].startswith("dagan: error:")):
            problems.append(f"stderr is {len(lines)} lines, want one 'dagan: error:' line: {lines[:4]}")
    if line:
        if spec.names and not any(name in line for name in spec.names):
            problems.append(f"error line names none of {spec.names}")
        problems += [f"error line lacks {word!r}" for word in spec.must_say if word not in line]
        if spec.must_say_any and not any(word in line.lower() for word in spec.must_say_any):
            problems.append(f"error line mentions none of {spec.must_say_any}")
    problems += [f"stderr says {word!r}" for word in spec.must_not_say if word in err]
    if spec.marker is not None and spec.marker.exists():
        problems.append(f"a pickle was executed ({spec.marker.name} exists)")
    created = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    for label, entries in (("created", created), ("deleted", deleted), ("changed", changed)):
        if entries:
            shown = ", ".join(entries[:6]) + (f", ... ({len(entries) - 6} more)" if len(entries) > 6 else "")
            problems.append(f"{label}: {shown}")
    if shared and fingerprint(shared.watched) != shared_before:
        problems.append("the shared inputs changed")
    assert not problems, f"{' | '.join(problems)}\nstderr: {err.strip()[-600:]}"


@pytest.mark.parametrize("hostile", CASES, ids=lambda c: c.id)
def test_hostile_input_is_refused_cleanly(hostile: Case, shared, tmp_path, capfd, monkeypatch):
    if hostile.needs_non_root and os.geteuid() == 0:
        pytest.skip("root writes through chmod 0o555; the path-under-a-file case covers the same code")
    work = tmp_path / "work"
    work.mkdir()
    spec = hostile.setup(work, shared)
    if spec.cwd is not None:
        monkeypatch.chdir(spec.cwd)
    try:
        run_case(spec.argv, work, spec, capfd, shared)
    finally:
        for path in work.rglob("*"):  # read-only folders would stop pytest cleaning up
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)


# ---------------------------------------------------------------------------------------------- animate


@case("animate-output-names-the-driving-clip")
def _output_is_driving(w: Path, s: Shared) -> Spec:
    clip = place(s.clip, w / "clip.mp4")
    return Spec(animate_argv(s, w, {"--driving": clip, "--output": clip}), names=("clip.mp4",))


@case("animate-output-is-the-driving-frame-folder")
def _output_is_driving_frames(w: Path, s: Shared) -> Spec:
    frames = place(s.frames, w / "frames")
    return Spec(animate_argv(s, w, {"--driving": frames, "--output": f"{frames}/"}), names=("frames",))


@case("animate-output-folder-holds-user-photos")
def _output_is_user_photos(w: Path, s: Shared) -> Spec:
    photos = w / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):  # numbered like dagan's frames, but nobody's dagan output
        Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(photos / f"{i:06d}.png")
    return Spec(animate_argv(s, w, {"--output": f"{photos}/"}), names=("photos",))


@case("animate-empty-output-in-a-folder-of-frames")
def _output_is_empty(w: Path, s: Shared) -> Spec:
    for name in ("000005.png", "000010.png"):
        shutil.copyfile(s.frames / "000000.png", w / name)
    return Spec(animate_argv(s, w, {"--output": ""}), cwd=w)


@case("animate-save-depth-names-the-output")
def _depth_is_output(w: Path, s: Shared) -> Spec:
    out = plant(w / "X.mp4")
    return Spec(animate_argv(s, w, {"--output": out, "--save-depth": out}), names=("X.mp4",))


@case("animate-save-side-by-side-names-the-output")
def _side_is_output(w: Path, s: Shared) -> Spec:
    out = plant(w / "X.mp4")
    return Spec(animate_argv(s, w, {"--output": out, "--save-side-by-side": out}), names=("X.mp4",))


@case("animate-save-depth-names-save-side-by-side")
def _depth_is_side(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--save-depth": w / "Y.mp4", "--save-side-by-side": w / "Y.mp4"}), names=("Y.mp4",))


@case("animate-save-depth-names-the-driving-clip")
def _depth_is_driving(w: Path, s: Shared) -> Spec:
    clip = place(s.clip, w / "clip.mp4")
    return Spec(animate_argv(s, w, {"--driving": clip, "--save-depth": clip}), names=("clip.mp4",))


@case("animate-output-is-a-symlink-to-the-driving-clip")
def _output_symlink(w: Path, s: Shared) -> Spec:
    place(s.clip, w / "clip.mp4")
    (w / "out.mp4").symlink_to("clip.mp4")
    return Spec(animate_argv(s, w, {"--output": w / "out.mp4"}), names=("out.mp4", "clip.mp4"))


@case("animate-output-is-a-hard-link-to-the-driving-clip")
def _output_hardlink(w: Path, s: Shared) -> Spec:
    clip = place(s.clip, w / "clip.mp4")
    os.link(clip, w / "out.mp4")
    return Spec(animate_argv(s, w, {"--output": w / "out.mp4"}), names=("out.mp4", "clip.mp4"))


@case("animate-save-depth-is-a-hard-link-to-the-driving-clip")
def _depth_hardlink(w: Path, s: Shared) -> Spec:
    clip = place(s.clip, w / "clip.mp4")
    os.link(clip, w / "depth.mp4")
    return Spec(animate_argv(s, w, {"--save-depth": w / "depth.mp4"}), names=("depth.mp4", "clip.mp4"))


@case("animate-source-is-a-decompression-bomb")
def _source_bomb(w: Path, s: Shared) -> Spec:
    bomb = place(s.bomb, w / "bomb.png")
    return Spec(animate_argv(s, w, {"--source": bomb}), names=("bomb.png",), mode="alarm",
                must_say_any=("pixel", "limit"))  # fmt: skip


@case("animate-driving-folder-holds-a-decompression-bomb")
def _driving_bomb(w: Path, s: Shared) -> Spec:
    # The frames decode on a background thread, which SIGALRM cannot stop: a subprocess can be killed.
    frames = w / "frames"
    for name in ("000000.png", "000001.png"):
        place(s.frames / name, frames / name)
    place(s.bomb, frames / "bomb.png")
    return Spec(animate_argv(s, w, {"--driving": frames}), names=("bomb.png",), mode="subprocess",
                must_say_any=("pixel", "limit"))  # fmt: skip


@case("animate-source-is-a-nan-float-tiff")
def _source_nan_tiff(w: Path, s: Shared) -> Spec:
    image = np.full((64, 64), np.nan, np.float32)
    image[::2] = 0.5
    Image.fromarray(image, mode="F").save(w / "nan.tiff")
    return Spec(animate_argv(s, w, {"--source": w / "nan.tiff"}), names=("nan.tiff",))


@case("animate-checkpoint-keypoint-head-is-a-scalar")
def _kp_scalar(w: Path, s: Shared) -> Spec:
    bad = mutated_checkpoint(w / "scalar_kp.pth.tar", s, "kp_detector", "kp.weight", torch.tensor(1.0))
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-checkpoint-keypoint-head-is-1d")
def _kp_1d(w: Path, s: Shared) -> Spec:
    bad = mutated_checkpoint(w / "flat_kp.pth.tar", s, "kp_detector", "kp.weight", torch.zeros(3))
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-checkpoint-jacobian-head-is-a-scalar")
def _jacobian_scalar(w: Path, s: Shared) -> Spec:
    bad = mutated_checkpoint(w / "scalar_jac.pth.tar", s, "kp_detector", "jacobian.weight", torch.tensor(1.0))
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-checkpoint-holds-nan")
def _checkpoint_nan(w: Path, s: Shared) -> Spec:
    weight = s.groups["generator"]["first.conv.weight"].clone()
    weight[0, 0, 0, 0] = float("nan")
    bad = mutated_checkpoint(w / "nan.pth.tar", s, "generator", "first.conv.weight", weight)
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-checkpoint-holds-inf")
def _checkpoint_inf(w: Path, s: Shared) -> Spec:
    weight = s.groups["kp_detector"]["kp.weight"].clone()
    weight[0, 0, 0, 0] = float("inf")
    bad = mutated_checkpoint(w / "inf.pth.tar", s, "kp_detector", "kp.weight", weight)
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-safetensors-metadata-is-not-json")
def _safetensors_bad_json(w: Path, s: Shared) -> Spec:
    bad = safetensors_file(w / "bad_meta.safetensors", s, {"dagan.frame_size": "{64"})
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-safetensors-frame-size-is-a-string")
def _safetensors_string_size(w: Path, s: Shared) -> Spec:
    bad = safetensors_file(w / "string_size.safetensors", s, {"dagan.frame_size": json.dumps("64")})
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-safetensors-depth-height-is-a-string")
def _safetensors_string_height(w: Path, s: Shared) -> Spec:
    bad = safetensors_file(w / "string_height.safetensors", s, {"dagan.height": json.dumps("tall")}, with_depth=True)
    return Spec(animate_argv(s, w, {"--checkpoint": bad, "--depth-weights": None}), names=(bad.name,))


@case("animate-safetensors-is-garbage")
def _safetensors_garbage(w: Path, s: Shared) -> Spec:
    bad = plant(w / "junk.safetensors", np.random.default_rng(0).bytes(3000))
    return Spec(animate_argv(s, w, {"--checkpoint": bad}), names=(bad.name,))


@case("animate-onnx-export-with-a-negative-size")
def _onnx_negative_size(w: Path, s: Shared) -> Spec:
    export = w / "export"
    export.mkdir()
    graphs = onnx_export(s)
    for graph in graphs.glob("*.onnx"):
        (export / graph.name).symlink_to(graph)
    manifest = json.loads((graphs / "onnx.json").read_text())
    plant(export / "onnx.json", json.dumps({**manifest, "size": -64}).encode())
    argv = animate_argv(s, w, {"--checkpoint": export, "--depth-weights": None, "--backend": "onnxruntime"})
    return Spec(argv, names=("onnx.json",))


@case("animate-batch-size-beyond-any-int")
def _batch_size_huge(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--batch-size": 10**20}))


@case("animate-batch-size-is-not-a-number")
def _batch_size_text(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--batch-size": "abc"}), must_not_say=("_positive_int",))


@case("animate-best-frame-is-negative")
def _best_frame_negative(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--best-frame": -1}))


@case("animate-reference-frame-past-the-end")
def _reference_past_end(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--reference": 999}), names=("999",))


@case("animate-reference-image-is-missing")
def _reference_missing(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--reference": w / "neutral.png"}), names=("neutral.png",))


@case("animate-output-names-the-reference-image")
def _output_is_reference(w: Path, s: Shared) -> Spec:
    neutral = place(s.source, w / "neutral.png")
    still = place(s.source, w / "pose.png")
    argv = animate_argv(s, w, {"--driving": still, "--reference": neutral, "--output": neutral})
    return Spec(argv, names=("neutral.png",))


@case("animate-still-driving-image-to-an-mp4")
def _still_to_mp4(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--driving": place(s.source, w / "pose.png")}), names=("good.mp4",))


@case("animate-still-driving-image-with-a-reference-frame")
def _still_with_reference_frame(w: Path, s: Shared) -> Spec:
    argv = animate_argv(s, w, {"--driving": place(s.source, w / "pose.png"), "--reference": 3, "--output": None})
    return Spec(argv, names=("--reference",))


@case("animate-depth-style-is-unknown")
def _depth_style_unknown(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--depth-style": "sepia"}), names=("sepia",))


@case("animate-smooth-is-negative")
def _smooth_negative(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--smooth": -2}), names=("-2",))


@case("animate-smooth-is-nan")
def _smooth_nan(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--smooth": "nan"}), names=("nan",))


@case("animate-several-sources-into-one-file")
def _sources_into_a_file(w: Path, s: Shared) -> Spec:
    folder = w / "portraits"
    place(s.source, folder / "ann.png")
    place(s.source, folder / "bob.png")
    return Spec(animate_argv(s, w, {"--source": folder}), names=("good.mp4",))


@case("animate-two-sources-with-the-same-name")
def _sources_same_stem(w: Path, s: Shared) -> Spec:
    a, b = place(s.source, w / "a" / "face.png"), place(s.source, w / "b" / "face.png")
    argv = animate_argv(s, w, {"--output": f"{w / 'out'}/"})
    at = argv.index("--source")
    return Spec([*argv[:at], "--source", str(a), str(b), *argv[at + 2 :]], names=("face",))


@case("animate-source-folder-holds-no-images")
def _sources_empty_folder(w: Path, s: Shared) -> Spec:
    (w / "empty").mkdir()
    return Spec(animate_argv(s, w, {"--source": w / "empty", "--output": f"{w / 'out'}/"}), names=("empty",))


@case("animate-max-pixels-is-zero")
def _max_pixels_zero(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--max-pixels": 0}), names=("--max-pixels",))


@case("animate-max-pixels-below-the-source")
def _max_pixels_below_source(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--max-pixels": 100}), names=("source.png",), must_say_any=("limit",))


@case("animate-driving-is-a-fifo")
def _driving_fifo(w: Path, s: Shared) -> Spec:
    os.mkfifo(w / "pipe.mp4")
    return Spec(animate_argv(s, w, {"--driving": w / "pipe.mp4"}), names=("pipe.mp4",), mode="subprocess")


@case("animate-checkpoint-runs-code")
def _checkpoint_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    evil = evil_pickle(w / "evil.pth.tar", marker)
    return Spec(animate_argv(s, w, {"--checkpoint": evil}), names=(evil.name,), marker=marker)


@case("animate-depth-encoder-runs-code")
def _depth_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    weights = depth_folder(w / "weights", s, evil_pickle(w / "weights" / "encoder.pth", marker, "state"))
    return Spec(animate_argv(s, w, {"--depth-weights": weights}), names=("encoder.pth",), marker=marker)


@case("animate-checkpoint-is-empty")
def _checkpoint_empty(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--checkpoint": plant(w / "empty.pth.tar", b"")}), names=("empty.pth.tar",))


@case("animate-checkpoint-is-a-text-file")
def _checkpoint_text(w: Path, s: Shared) -> Spec:
    notes = plant(w / "notes.pth.tar", b"these are not weights\n")
    return Spec(animate_argv(s, w, {"--checkpoint": notes}), names=("notes.pth.tar",))


@case("animate-checkpoint-is-a-folder")
def _checkpoint_folder(w: Path, s: Shared) -> Spec:
    (w / "ckpt.pth.tar").mkdir()
    return Spec(animate_argv(s, w, {"--checkpoint": w / "ckpt.pth.tar"}), names=("ckpt.pth.tar",))


@case("animate-depth-weights-is-a-file")
def _depth_is_file(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--depth-weights": plant(w / "depth.txt")}), names=("depth.txt",))


@case("animate-source-is-a-folder")
def _source_folder(w: Path, s: Shared) -> Spec:
    (w / "portrait.png").mkdir()
    return Spec(animate_argv(s, w, {"--source": w / "portrait.png"}), names=("portrait.png",))


@case("animate-source-is-a-zero-byte-png")
def _source_empty(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--source": plant(w / "empty.png", b"")}), names=("empty.png",))


@case("animate-source-png-has-a-truncated-idat")
def _source_truncated(w: Path, s: Shared) -> Spec:
    data = s.source.read_bytes()
    return Spec(animate_argv(s, w, {"--source": plant(w / "cut.png", data[: len(data) * 3 // 5])}), names=("cut.png",))


@case("animate-driving-frame-is-a-zero-byte-png")
def _driving_frame_empty(w: Path, s: Shared) -> Spec:
    frames = place(s.frames, w / "frames")
    plant(frames / "000003.png", b"")
    return Spec(animate_argv(s, w, {"--driving": frames}), names=("000003.png",))


@case("animate-driving-frame-has-a-broken-idat")
def _driving_frame_crc(w: Path, s: Shared) -> Spec:
    frames = place(s.frames, w / "frames")
    data = bytearray((frames / "000002.png").read_bytes())
    start = data.find(b"IDAT") + 4
    data[start : start + 64] = bytes(64)  # keeps the chunk's length, breaks its zlib stream and CRC
    plant(frames / "000002.png", bytes(data))
    return Spec(animate_argv(s, w, {"--driving": frames}), names=("000002.png",))


# ---------------------------------------------------------------------------------------------- demo


@case("demo-output-under-a-file")
def _demo_under_file(w: Path, s: Shared) -> Spec:
    plant(w / "notes.txt")
    return Spec(["demo", "--quiet", "--device", "cpu", "--output", str(w / "notes.txt" / "sub")], names=("notes.txt",))


@case("demo-empty-output")
def _demo_empty_output(w: Path, s: Shared) -> Spec:
    plant(w / "result.mp4")
    return Spec(["demo", "--quiet", "--device", "cpu", "--output", ""], cwd=w)


@case("demo-output-in-a-read-only-folder", needs_non_root=True)
def _demo_read_only(w: Path, s: Shared) -> Spec:
    (w / "readonly").mkdir()
    (w / "readonly").chmod(0o555)
    argv = ["demo", "--quiet", "--device", "cpu", "--output", str(w / "readonly" / "demo-out")]
    return Spec(argv, names=("readonly", "demo-out"))


@case("demo-output-is-an-existing-file")
def _demo_output_file(w: Path, s: Shared) -> Spec:
    out = plant(w / "result.mp4")
    return Spec(["demo", "--quiet", "--device", "cpu", "--output", str(out)], names=("result.mp4",))


# ---------------------------------------------------------------------------------------------- convert


@case("convert-input-runs-code")
def _convert_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    evil = evil_pickle(w / "evil.pth.tar", marker)
    return Spec(["convert", str(evil), str(w / "out.safetensors")], names=(evil.name,), marker=marker)


@case("convert-depth-folder-encoder-runs-code")
def _convert_depth_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    weights = depth_folder(w / "weights", s, evil_pickle(w / "weights" / "encoder.pth", marker, "state"))
    return Spec(["convert", str(weights), str(w / "out.safetensors")], names=("encoder.pth",), marker=marker)


@case("convert-output-is-the-input")
def _convert_onto_itself(w: Path, s: Shared) -> Spec:
    model = place(s.checkpoint, w / "model.pth.tar")
    return Spec(["convert", str(model), str(model)], names=("model.pth.tar",))


@case("convert-safetensors-onto-itself")
def _convert_safetensors_onto_itself(w: Path, s: Shared) -> Spec:
    model = safetensors_file(w / "model.safetensors", s, {})
    return Spec(["convert", str(model), str(model)], names=("model.safetensors",))


@case("convert-input-metadata-is-not-json")
def _convert_bad_json(w: Path, s: Shared) -> Spec:
    bad = safetensors_file(w / "bad_meta.safetensors", s, {"dagan.align_corners": "tru"})
    return Spec(["convert", str(bad), str(w / "out.pth.tar")], names=(bad.name,))


@case("convert-input-is-empty")
def _convert_empty(w: Path, s: Shared) -> Spec:
    empty = plant(w / "empty.pth.tar", b"")
    return Spec(["convert", str(empty), str(w / "out.safetensors")], names=(empty.name,))


# ---------------------------------------------------------------------------------------------- synth, synth-eval

SYNTH_SMALL = ["--identities", "2", "--clips-per-identity", "1", "--frames", "2", "--size", "16", "--quiet"]


@case("synth-out-is-an-existing-file")
def _synth_out_file(w: Path, s: Shared) -> Spec:
    return Spec(["synth", "--out", str(plant(w / "dataset")), *SYNTH_SMALL], names=("dataset",))


@case("synth-out-under-a-file")
def _synth_out_under_file(w: Path, s: Shared) -> Spec:
    plant(w / "notes.txt")
    return Spec(["synth", "--out", str(w / "notes.txt" / "dataset"), *SYNTH_SMALL], names=("notes.txt",))


def _synth_json(w: Path, **changes: object) -> Path:
    meta = {"seed": 0, "frames": 4, "size": 16, "clips_per_identity": 1, "test_identities": ["id0001", "id0002"]}
    plant(w / "synth" / "synth.json", json.dumps({**meta, **changes}).encode())
    return w / "synth"


@case("synth-eval-synth-json-has-a-text-seed")
def _synth_eval_text_seed(w: Path, s: Shared) -> Spec:
    data = _synth_json(w, seed="abc")
    return Spec(["synth-eval", "--data", str(data), "--out", str(w / "eval"), "--quiet"], names=("synth.json",))


@case("synth-eval-synth-json-has-a-text-frame-count")
def _synth_eval_text_frames(w: Path, s: Shared) -> Spec:
    data = _synth_json(w, frames="many")
    return Spec(["synth-eval", "--data", str(data), "--out", str(w / "eval"), "--quiet"], names=("synth.json",))


@case("synth-eval-synth-json-is-binary")
def _synth_eval_binary(w: Path, s: Shared) -> Spec:
    plant(w / "synth" / "synth.json", b"\xff\xfe\x00\x81garbage")
    return Spec(["synth-eval", "--data", str(w / "synth"), "--out", str(w / "eval"), "--quiet"], names=("synth.json",))


# ---------------------------------------------------------------------------------------------- train, train-depth


@case("train-config-is-binary")
def _train_binary_config(w: Path, s: Shared) -> Spec:
    config = plant(w / "cfg.yaml", b"\x89PNG\r\n\x1a\n\xff\xfe" + np.random.default_rng(1).bytes(200))
    return Spec(train_argv(s, w, config), names=("cfg.yaml",))


@case("train-config-batch-size-zero")
def _train_batch_zero(w: Path, s: Shared) -> Spec:
    return Spec(train_argv(s, w, tiny_config(w, "batch_size: 4", "batch_size: 0")), names=("cfg.yaml",))


@case("train-config-batch-size-is-text")
def _train_batch_text(w: Path, s: Shared) -> Spec:
    return Spec(train_argv(s, w, tiny_config(w, "batch_size: 4", "batch_size: four")), names=("cfg.yaml",))


@case("train-config-num-kp-negative")
def _train_negative_kp(w: Path, s: Shared) -> Spec:
    return Spec(train_argv(s, w, tiny_config(w, "num_kp: 5", "num_kp: -5")), names=("cfg.yaml",))


@case("train-config-frame-shape-is-text")
def _train_frame_shape_text(w: Path, s: Shared) -> Spec:
    return Spec(train_argv(s, w, tiny_config(w, "frame_shape: [64, 64, 3]", "frame_shape: big")), names=("cfg.yaml",))


@case("train-low-memory-with-compile")
def _train_low_memory_compile(w: Path, s: Shared) -> Spec:
    argv = train_argv(s, w, tiny_config(w), {"--low-memory": True, "--compile": True})
    return Spec(argv, must_say=("--low-memory", "--compile"))


@case("train-low-memory-given-a-value")
def _train_low_memory_value(w: Path, s: Shared) -> Spec:
    return Spec([*train_argv(s, w, tiny_config(w)), "--low-memory=yes"], must_say=("--low-memory",))


@case("train-out-is-an-existing-file")
def _train_out_file(w: Path, s: Shared) -> Spec:
    argv = train_argv(s, w, tiny_config(w), {"--out": plant(w / "run")})
    return Spec(argv, names=("run",))


@case("train-allocator-unknown")
def _train_allocator_unknown(w: Path, s: Shared) -> Spec:
    return Spec(train_argv(s, w, tiny_config(w), {"--allocator": "jemalloc"}), must_say=("--allocator",))


@case("train-allocator-tcmalloc-out-is-an-existing-file")
def _train_allocator_out_file(w: Path, s: Shared) -> Spec:
    # A process of its own: --allocator tcmalloc replaces it, and the re-run must refuse as cleanly.
    argv = train_argv(s, w, tiny_config(w), {"--out": plant(w / "run"), "--allocator": "tcmalloc"})
    return Spec(argv, names=("run", "libtcmalloc_minimal"), mode="subprocess")


@case("train-resume-checkpoint-runs-code")
def _train_resume_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    evil_pickle(w / "run" / "checkpoint.pth.tar", marker)
    argv = train_argv(s, w, tiny_config(w), {"--resume": True})
    return Spec(argv, names=("checkpoint.pth.tar",), marker=marker)


@case("train-depth-eval-ground-truth-is-an-object-array")
def _train_depth_object_npz(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    place(s.clip, w / "data" / "test" / "clip.mp4")
    object_npz(w / "data" / "test" / "clip.npz", marker, "depth")
    run = depth_folder(w / "run", s)
    argv = ["train-depth", "--eval", "--data", str(w / "data"), "--out", str(run), "--device", "cpu", "--quiet"]
    return Spec(argv, names=("clip.npz",), marker=marker)


@case("train-depth-resume-state-runs-code")
def _train_depth_resume_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    run = depth_folder(w / "run", s)
    evil_pickle(run / "train_state.pth", marker, "state")
    argv = ["train-depth", "--data", str(place(s.data, w / "data")), "--out", str(run), "--resume", "--size", "64",
            "--max-steps", "1", "--workers", "0", "--device", "cpu", "--quiet"]  # fmt: skip
    return Spec(argv, names=("train_state.pth",), marker=marker)


@case("train-depth-data-has-no-clips")
def _train_depth_no_clips(w: Path, s: Shared) -> Spec:
    for split in ("train", "test"):
        (w / "empty" / split).mkdir(parents=True)
    argv = ["train-depth", "--data", str(w / "empty"), "--out", str(w / "run"), "--size", "64", "--max-steps", "1",
            "--workers", "0", "--device", "cpu", "--quiet"]  # fmt: skip
    return Spec(argv, names=("empty",))


@case("train-depth-allocator-given-no-value")
def _train_depth_allocator_empty(w: Path, s: Shared) -> Spec:
    argv = ["train-depth", "--data", str(place(s.data, w / "data")), "--out", str(w / "run"), "--allocator"]
    return Spec(argv, must_say=("--allocator",))


# ---------------------------------------------------------------------------------------------- depth


@case("depth-focal-zero-with-ply")
def _depth_focal_zero(w: Path, s: Shared) -> Spec:
    return Spec(depth_argv(s, w, {"--ply": True, "--focal": 0}))


@case("depth-focal-nan-with-ply")
def _depth_focal_nan(w: Path, s: Shared) -> Spec:
    return Spec(depth_argv(s, w, {"--ply": True, "--focal": "nan"}))


@case("depth-intrinsics-json-is-malformed")
def _depth_intrinsics_malformed(w: Path, s: Shared) -> Spec:
    weights = depth_folder(w / "weights", s)
    plant(weights / "intrinsics.json", b'{"intrinsics": [[0.9, 0, 0.5], ')
    return Spec(depth_argv(s, w, {"--weights": weights, "--ply": True}), names=("intrinsics.json",))


@case("depth-intrinsics-json-has-size-zero")
def _depth_intrinsics_size_zero(w: Path, s: Shared) -> Spec:
    weights = depth_folder(w / "weights", s)
    intrinsics = {"intrinsics": [[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]], "size": 0}
    plant(weights / "intrinsics.json", json.dumps(intrinsics).encode())
    return Spec(depth_argv(s, w, {"--weights": weights, "--ply": True}), names=("intrinsics.json",))


@case("depth-intrinsics-are-singular")
def _depth_intrinsics_singular(w: Path, s: Shared) -> Spec:
    weights = depth_folder(w / "weights", s)
    plant(weights / "intrinsics.json", json.dumps({"intrinsics": [[0, 0, 0]] * 3, "size": 64}).encode())
    return Spec(depth_argv(s, w, {"--weights": weights, "--ply": True}), names=("intrinsics.json",))


@case("depth-input-is-a-decompression-bomb")
def _depth_bomb(w: Path, s: Shared) -> Spec:
    argv = depth_argv(s, w, {"--input": place(s.bomb, w / "bomb.png")})
    return Spec(argv, names=("bomb.png",), mode="alarm", must_say_any=("pixel", "limit"))


@case("depth-encoder-runs-code")
def _depth_encoder_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    weights = depth_folder(w / "weights", s, evil_pickle(w / "weights" / "encoder.pth", marker, "state"))
    return Spec(depth_argv(s, w, {"--weights": weights}), names=("encoder.pth",), marker=marker)


@case("depth-out-is-the-input-folder")
def _depth_out_is_input(w: Path, s: Shared) -> Spec:
    frames = place(s.frames, w / "frames")
    return Spec(depth_argv(s, w, {"--input": frames, "--out": frames}), names=("frames",))


@case("depth-out-is-an-existing-file")
def _depth_out_file(w: Path, s: Shared) -> Spec:
    return Spec(depth_argv(s, w, {"--out": plant(w / "out")}), names=("out",))


# ---------------------------------------------------------------------------------------------- crop, animate --crop


def crop_argv(shared: Shared, work: Path, overrides: dict[str, object] | None = None) -> list[str]:
    values: dict[str, object] = {"--input": place(shared.clip, work / "clip.mp4"), "--out": work / "crops"}
    values.update(overrides or {})
    return ["crop", "--quiet", *flags(values)]


@case("crop-out-is-the-input-video")
def _crop_out_is_input(w: Path, s: Shared) -> Spec:
    clip = place(s.clip, w / "clip.mp4")
    return Spec(crop_argv(s, w, {"--input": clip, "--out": clip}), names=("clip.mp4",))


@case("crop-out-is-the-folder-of-inputs")
def _crop_out_holds_input(w: Path, s: Shared) -> Spec:
    frames = place(s.frames, w / "frames")
    return Spec(crop_argv(s, w, {"--input": frames, "--out": frames}), names=("frames",))


@case("crop-out-holds-other-files")
def _crop_out_not_empty(w: Path, s: Shared) -> Spec:
    plant(w / "crops" / "tracks.csv", b"file,face\nmine,0\n")
    return Spec(crop_argv(s, w), names=("crops",), must_say=("not empty",))


@case("crop-input-is-a-decompression-bomb")
def _crop_bomb(w: Path, s: Shared) -> Spec:
    bomb = place(s.bomb, w / "bomb.png")
    return Spec(crop_argv(s, w, {"--input": bomb}), names=("bomb.png",), mode="alarm", must_say_any=("pixel", "limit"))


@case("crop-input-is-not-a-video-or-image")
def _crop_text(w: Path, s: Shared) -> Spec:
    notes = plant(w / "notes.txt", b"not a video")
    return Spec(crop_argv(s, w, {"--input": notes}), names=("notes.txt",))


@case("crop-input-video-is-truncated-garbage")
def _crop_garbage(w: Path, s: Shared) -> Spec:
    broken = plant(w / "broken.mp4", s.clip.read_bytes()[:300])
    return Spec(crop_argv(s, w, {"--input": broken}), names=("broken.mp4",))


@case("crop-input-folder-holds-no-media")
def _crop_empty_folder(w: Path, s: Shared) -> Spec:
    plant(w / "in" / "readme.txt", b"nothing to see")
    return Spec(crop_argv(s, w, {"--input": w / "in"}), names=("in",))


@case("crop-size-is-odd")
def _crop_odd_size(w: Path, s: Shared) -> Spec:
    return Spec(crop_argv(s, w, {"--size": 255}))


@case("crop-min-frames-is-zero")
def _crop_min_frames_zero(w: Path, s: Shared) -> Spec:
    return Spec(crop_argv(s, w, {"--min-frames": 0}))


@case("animate-paste-back-without-crop")
def _paste_back_alone(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--paste-back": True}), must_say=("--crop",))


@case("animate-crop-output-names-the-source-photo")
def _crop_output_is_source(w: Path, s: Shared) -> Spec:
    source = place(s.source, w / "photo.png")
    return Spec(animate_argv(s, w, {"--source": source, "--output": source, "--crop": True}), names=("photo.png",))


@case("animate-crop-source-is-a-decompression-bomb")
def _crop_source_bomb(w: Path, s: Shared) -> Spec:
    bomb = place(s.bomb, w / "bomb.png")
    return Spec(animate_argv(s, w, {"--source": bomb, "--crop": True}), names=("bomb.png",), mode="alarm",
                must_say_any=("pixel", "limit"))  # fmt: skip


@case("animate-crop-mask-feather-is-huge")
def _crop_feather_huge(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--crop": True, "--paste-back": True, "--mask-feather": 5}), must_say=("feather",))


@case("animate-crop-face-is-not-a-number")
def _crop_face_word(w: Path, s: Shared) -> Spec:
    return Spec(animate_argv(s, w, {"--crop": True, "--face": "largest"}), must_say=("--face",))


# ---------------------------------------------------------------------------------------------- export-onnx


@case("export-onnx-checkpoint-runs-code")
def _export_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    evil = evil_pickle(w / "evil.pth.tar", marker)
    argv = ["export-onnx", "--checkpoint", str(evil), "--depth-weights", str(s.depth), "--out", str(w / "graphs")]
    return Spec(argv, names=(evil.name,), marker=marker)


@case("export-onnx-out-is-an-existing-file")
def _export_out_file(w: Path, s: Shared) -> Spec:
    out = plant(w / "graphs")
    argv = ["export-onnx", "--checkpoint", str(s.checkpoint), "--depth-weights", str(s.depth), "--out", str(out)]
    return Spec(argv, names=("graphs",))


@case("export-onnx-checkpoint-holds-inf")
def _export_inf(w: Path, s: Shared) -> Spec:
    weight = s.groups["generator"]["first.conv.weight"].clone()
    weight[0, 0, 0, 0] = float("-inf")
    bad = mutated_checkpoint(w / "inf.pth.tar", s, "generator", "first.conv.weight", weight)
    argv = ["export-onnx", "--checkpoint", str(bad), "--depth-weights", str(s.depth), "--out", str(w / "graphs"),
            "--size", "64"]  # fmt: skip
    return Spec(argv, names=(bad.name,))


# ---------------------------------------------------------------------------------------------- generate


@case("generate-pairs-csv-is-not-utf8")
def _generate_not_utf8(w: Path, s: Shared) -> Spec:
    argv = generate_argv(s, w, "")
    plant(w / "pairs.csv", b"source,driving\n\xff\xfe\xfa.png,clip.mp4\n")
    return Spec(argv, names=("pairs.csv",))


@case("generate-missing-source-is-called-a-source")
def _generate_missing_source(w: Path, s: Shared) -> Spec:
    argv = generate_argv(s, w, "missing.mp4,clip.mp4\n")
    return Spec(argv, names=("missing.mp4",), must_say=("source",), must_not_say=("driving input",))


@case("generate-out-under-a-file")
def _generate_out_under_file(w: Path, s: Shared) -> Spec:
    plant(w / "notes.txt")
    argv = generate_argv(s, w, "source.png,clip.mp4\n", {"--out": w / "notes.txt" / "generated"})
    return Spec(argv, names=("notes.txt",))


@case("generate-out-in-a-read-only-folder", needs_non_root=True)
def _generate_read_only(w: Path, s: Shared) -> Spec:
    (w / "readonly").mkdir()
    (w / "readonly").chmod(0o555)
    argv = generate_argv(s, w, "source.png,clip.mp4\n", {"--out": w / "readonly" / "generated"})
    return Spec(argv, names=("readonly", "generated"))


@case("generate-out-is-the-driving-folder")
def _generate_out_is_driving(w: Path, s: Shared) -> Spec:
    place(s.source, w / "sources" / "x.png")
    drivers = place(s.clip, w / "drivers" / "x.mp4").parent
    argv = ["generate", "--quiet", "--checkpoint", str(s.checkpoint), "--depth-weights", str(s.depth),
            "--source-dir", str(w / "sources"), "--driving-dir", str(drivers), "--out", str(drivers),
            "--device", "cpu"]  # fmt: skip
    return Spec(argv, names=("drivers",))


@case("generate-checkpoint-runs-code")
def _generate_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    evil = evil_pickle(w / "evil.pth.tar", marker)
    argv = generate_argv(s, w, "source.png,clip.mp4\n", {"--checkpoint": evil})
    return Spec(argv, names=(evil.name,), marker=marker)


# ---------------------------------------------------------------------------------------------- evaluate


@case("evaluate-out-is-an-existing-file")
def _evaluate_out_file(w: Path, s: Shared) -> Spec:
    return Spec(evaluate_argv(s, w, {"--out": plant(w / "report"), "--metrics": "psnr"}), names=("report",))


@case("evaluate-out-under-a-file")
def _evaluate_out_under_file(w: Path, s: Shared) -> Spec:
    plant(w / "notes.txt")
    return Spec(evaluate_argv(s, w, {"--out": w / "notes.txt" / "report", "--metrics": "psnr"}), names=("notes.txt",))


@case("evaluate-out-in-a-read-only-folder", needs_non_root=True)
def _evaluate_read_only(w: Path, s: Shared) -> Spec:
    (w / "readonly").mkdir()
    (w / "readonly").chmod(0o555)
    argv = evaluate_argv(s, w, {"--out": w / "readonly" / "report", "--metrics": "psnr"})
    return Spec(argv, names=("readonly", "report"))


@case("evaluate-unknown-metric")
def _evaluate_unknown_metric(w: Path, s: Shared) -> Spec:
    return Spec(evaluate_argv(s, w, {"--metrics": "psnr,sharpness"}), names=("sharpness",))


def _wrong_keys(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv.weight": torch.zeros(2, 2), "features.99.weight": torch.zeros(3)}, path)
    return path


@case("evaluate-lpips-weights-have-the-wrong-keys")
def _evaluate_lpips_keys(w: Path, s: Shared) -> Spec:
    weights = _wrong_keys(w / "lpips.pth")
    return Spec(evaluate_argv(s, w, {"--metrics": "lpips", "--lpips-weights": weights}), names=("lpips.pth",))


@case("evaluate-lpips-weights-are-text")
def _evaluate_lpips_text(w: Path, s: Shared) -> Spec:
    weights = plant(w / "lpips.pth", b"these are not weights\n")
    return Spec(evaluate_argv(s, w, {"--metrics": "lpips", "--lpips-weights": weights}), names=("lpips.pth",))


@case("evaluate-lpips-weights-run-code")
def _evaluate_lpips_pickle(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    weights = evil_pickle(w / "lpips.pth", marker, "state")
    argv = evaluate_argv(s, w, {"--metrics": "lpips", "--lpips-weights": weights})
    return Spec(argv, names=("lpips.pth",), marker=marker)


@case("evaluate-fid-weights-have-the-wrong-keys")
def _evaluate_fid_keys(w: Path, s: Shared) -> Spec:
    weights = _wrong_keys(w / "fid.pth")
    return Spec(evaluate_argv(s, w, {"--metrics": "fid", "--fid-weights": weights}), names=("fid.pth",))


@case("evaluate-arcface-weights-are-text")
def _evaluate_arcface_text(w: Path, s: Shared) -> Spec:
    weights = plant(w / "arcface.pth", b"these are not weights\n")
    sources = place(s.source, w / "sources" / "x.png").parent
    argv = evaluate_argv(s, w, {"--metrics": "csim", "--source": sources, "--arcface-weights": weights})
    return Spec(argv, names=("arcface.pth",))


@case("evaluate-arcface-weights-have-the-wrong-keys")
def _evaluate_arcface_keys(w: Path, s: Shared) -> Spec:
    weights = _wrong_keys(w / "arcface.pth")
    sources = place(s.source, w / "sources" / "x.png").parent
    argv = evaluate_argv(s, w, {"--metrics": "csim", "--source": sources, "--arcface-weights": weights})
    return Spec(argv, names=("arcface.pth",))


@case("evaluate-syncnet-weights-are-text")
def _evaluate_syncnet_text(w: Path, s: Shared) -> Spec:
    weights = plant(w / "syncnet.model", b"these are not weights\n")
    argv = evaluate_argv(s, w, {"--metrics": "lse_d", "--syncnet-weights": weights})
    return Spec(argv, names=("syncnet.model",))


@case("evaluate-syncnet-weights-have-the-wrong-keys")
def _evaluate_syncnet_keys(w: Path, s: Shared) -> Spec:
    weights = _wrong_keys(w / "syncnet.model")
    argv = evaluate_argv(s, w, {"--metrics": "lse_d", "--syncnet-weights": weights})
    return Spec(argv, names=("syncnet.model",))


@case("evaluate-landmark-truth-is-an-object-array")
def _evaluate_object_npz(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    argv = evaluate_argv(s, w, {"--metrics": "akd", "--landmark-weights": s.landmarks})
    object_npz(w / "driving" / "x.npz", marker, "landmarks")
    return Spec(argv, names=("x.npz",), marker=marker)


# ---------------------------------------------------------------------------------------------- train-landmarks


@case("train-landmarks-truth-is-an-object-array")
def _landmarks_object_npz(w: Path, s: Shared) -> Spec:
    marker = w / "code_ran"
    for split in ("train", "test"):
        place(s.clip, w / "data" / split / "clip.mp4")
        object_npz(w / "data" / split / "clip.npz", marker, "landmarks")
    argv = ["train-landmarks", "--data", str(w / "data"), "--out", str(w / "landmarks.pth"), "--steps", "1",
            "--size", "16", "--quiet"]  # fmt: skip
    return Spec(argv, names=("clip.npz",), marker=marker)


@case("train-landmarks-out-is-a-folder")
def _landmarks_out_folder(w: Path, s: Shared) -> Spec:
    for split in ("train", "test"):
        place(s.clip, w / "data" / split / "clip.mp4")
        np.savez(w / "data" / split / "clip.npz", landmarks=np.full((6, 16, 2), 32, np.float32))
    (w / "existing_dir").mkdir()
    argv = ["train-landmarks", "--data", str(w / "data"), "--out", str(w / "existing_dir"), "--steps", "1",
            "--size", "16", "--quiet"]  # fmt: skip
    return Spec(argv, names=("existing_dir",))


@case("train-landmarks-out-names-a-training-clip")
def _landmarks_out_is_clip(w: Path, s: Shared) -> Spec:
    for split in ("train", "test"):
        place(s.clip, w / "data" / split / "clip.mp4")
        np.savez(w / "data" / split / "clip.npz", landmarks=np.full((6, 16, 2), 32, np.float32))
    argv = ["train-landmarks", "--data", str(w / "data"), "--out", str(w / "data" / "train" / "clip.mp4"),
            "--steps", "1", "--size", "16", "--quiet"]  # fmt: skip
    return Spec(argv, names=("clip.mp4",))


# ---------------------------------------------------------------------------------------------- app
# Each case fails before the server would start; the alarm stops a case that would serve instead.


def app_argv(shared: Shared, overrides: dict[str, object] | None = None) -> list[str]:
    values: dict[str, object] = {"--checkpoint": shared.checkpoint, "--depth-weights": shared.depth, "--port": "7999",
                                 "--device": "cpu"}  # fmt: skip
    values.update(overrides or {})
    return ["app", *flags(values)]


@case("app-checkpoint-is-a-text-file")
def _app_checkpoint_text(w: Path, s: Shared) -> Spec:
    notes = plant(w / "notes.pth.tar", b"these are not weights\n")
    return Spec(app_argv(s, {"--checkpoint": notes}), names=("notes.pth.tar",), mode="alarm")


@case("app-depth-weights-without-a-checkpoint")
def _app_depth_alone(w: Path, s: Shared) -> Spec:
    return Spec(app_argv(s, {"--checkpoint": None}), must_say=("--checkpoint",), mode="alarm")


@case("app-port-out-of-range")
def _app_port(w: Path, s: Shared) -> Spec:
    return Spec(app_argv(s, {"--port": "70000"}), must_say=("--port",), mode="alarm")


@case("app-upload-limit-of-zero")
def _app_upload_zero(w: Path, s: Shared) -> Spec:
    return Spec(app_argv(s, {"--max-upload-mb": "0"}), must_say=("--max-upload-mb",), mode="alarm")


# ---------------------------------------------------------------------------------------------- outside the corpus


def test_a_long_but_legal_output_name_is_accepted(shared, tmp_path, capfd):
    # 245 characters: legal on every common file system, though a temporary name built from it may not be.
    out = tmp_path / ("r" * 241 + ".mp4")
    assert len(out.name) == 245
    code = main(animate_argv(shared, tmp_path, {"--output": out}))
    err = capfd.readouterr().err
    assert code == 0, err
    assert out.is_file() and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_evaluate_says_when_the_driving_video_is_longer_than_the_generated_one(shared, tmp_path, capfd):

    argv = evaluate_argv(shared, tmp_path, {"--metrics": "psnr"})
    make_clip(tmp_path / "driving" / "x.mp4", frames=12, size=64)
    main(argv)
    err = capfd.readouterr().err
    assert "x.mp4" in err and ("longer" in err or "frames" in err)


def test_the_corpus_is_large_and_covers_every_command():
    commands = {
        "animate", "demo", "convert", "synth", "synth-eval", "train", "train-depth", "depth", "export-onnx",
        "generate", "evaluate", "train-landmarks", "crop", "app",
    }  # fmt: skip
    ids = [c.id for c in CASES]
    assert len(ids) >= 45 and len(set(ids)) == len(ids)
    covered = {command for command in commands if any(i.startswith(f"{command}-") for i in ids)}
    assert covered == commands


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 KB file system: where a full disk is met for real (needs root's mount, else the test skips)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({made.stderr.decode().strip() or 'not permitted'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dagan: error:") and "Traceback" not in err, lines
    return lines[0]


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(shared, tiny_disk, tmp_path, capfd):
    long_clip = tmp_path / "long.mp4"
    make_clip(long_clip, frames=100, size=64)
    argv = animate_argv(shared, tmp_path, {"--driving": long_clip, "--output": tiny_disk / "result.mp4"})
    assert main(argv) == 2
    assert "result.mp4" in _one_clean_line(capfd.readouterr().err)
    assert list(tiny_disk.iterdir()) == []
    assert main(["convert", str(shared.checkpoint), str(tiny_disk / "model.safetensors")]) == 2
    assert "model.safetensors" in _one_clean_line(capfd.readouterr().err)
    assert list(tiny_disk.iterdir()) == []


def test_a_refused_pickle_is_named_in_one_plain_line(shared, tmp_path, capfd):
    import collections

    checkpoint = tmp_path / "odd.pth.tar"
    # torch's own refusal of this one is a page of advice with terminal escape codes.
    torch.save({"generator": collections.Counter(a=1), "kp_detector": {}}, checkpoint)
    assert main(animate_argv(shared, tmp_path, {"--checkpoint": checkpoint})) == 2
    line = _one_clean_line(capfd.readouterr().err)
    assert "odd.pth.tar" in line and "\x1b" not in line and "weights_only" not in line


def test_ssim_on_frames_smaller_than_its_window_says_why(tmp_path, capfd):
    for folder in ("generated", "driving"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(tmp_path / folder / "x.png")
    argv = ["evaluate", "--quiet", "--generated", str(tmp_path / "generated"), "--driving", str(tmp_path / "driving")]
    assert main([*argv, "--out", str(tmp_path / "report"), "--metrics", "ssim,psnr"]) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["ssim"]["value"] is None and "window" in report["ssim"]["unavailable"]
    assert report["psnr"]["value"] == "inf"  # the metrics that can run still run
