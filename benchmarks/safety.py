"""What the resource guards cost and save: CLI start-up, refusing a decompression bomb, reading a large photo.

Each figure is measured against a plain path in the same run, in fresh processes (peak memory is per process):

- ``dagan --version`` and ``dagan --help`` against ``python -c pass`` and against importing torch;
- refusing a 10000x10000 PNG (97 KB on disk) against decoding it, as the previous reader did;
- reading a 6144x8000 photo for a 256x256 network with ``read_image(..., working_size=256)`` against
  decoding it whole in float64 and resizing with skimage (the previous path), with the largest pixel
  difference between the two results.

    .venv/bin/python benchmarks/safety.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec.
_MEASURE = """
import json, time
started = time.perf_counter()
{body}
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024}}))
"""


def _run(body: str) -> dict:
    out = subprocess.run([PYTHON, "-c", _MEASURE.format(body=body)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wall(argv: list[str], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def startup() -> None:
    dagan = [PYTHON, "-m", "dagan"]
    python = _wall([PYTHON, "-c", "pass"])
    torch = _wall([PYTHON, "-c", "import torch"], repeats=2)
    print(f"python -c pass            {python:6.3f} s")
    print(f"python -c 'import torch'  {torch:6.3f} s")
    for flag in ("--version", "--help"):
        seconds = _wall([*dagan, flag])
        print(f"dagan {flag:<20}{seconds:6.3f} s  ({seconds / python:.1f}x bare python, {seconds / torch:.2f}x torch)")


def bomb(folder: Path) -> None:
    path = folder / "bomb.png"
    Image.fromarray(np.zeros((10000, 10000), np.uint8)).save(path, compress_level=9)
    refuse = _run(
        f"from dagan.io.image import read_image\nfrom dagan.errors import DaganError\n"
        f"try:\n    read_image({str(path)!r}, working_size=256)\nexcept DaganError as exc:\n    print(exc)"
    )
    plain = _run(
        f"import numpy as np\nfrom PIL import Image\nImage.MAX_IMAGE_PIXELS = None\n"
        f"a = np.asarray(Image.open({str(path)!r}).convert('RGB')).astype(np.float64) / 255"
    )
    print(f"bomb ({path.stat().st_size // 1024} KB, 100 Mpx): refused in {refuse['seconds']:.3f} s, "
          f"{refuse['peak_mb']:.0f} MB; decoding it to float64 alone takes {plain['seconds']:.2f} s, "
          f"{plain['peak_mb']:.0f} MB ({plain['peak_mb'] / refuse['peak_mb']:.1f}x the memory)")  # fmt: skip


def large_photo(folder: Path) -> None:
    texture = ROOT.parent / "shared" / "data" / "baboon.png"  # fine fur: the hardest case for a reduced decode
    if texture.is_file():
        tile = np.asarray(Image.open(texture).convert("RGB"))
    else:
        tile = np.random.default_rng(0).integers(0, 256, (480, 492, 3), dtype=np.uint8)
    photo = np.tile(tile, (18, 14, 1))[:8000, :6144]
    for suffix in ("png", "jpg"):
        path = folder / f"photo.{suffix}"
        Image.fromarray(photo).save(path, **({"quality": 92} if suffix == "jpg" else {}))
        guarded = _run(
            f"import numpy as np\nfrom dagan.io.image import read_image, resize_frame\n"
            f"image = resize_frame(read_image({str(path)!r}, working_size=256), 256)\n"
            f"np.save({str(folder / 'guarded.npy')!r}, image)"
        )
        plain = _run(
            f"import numpy as np\nfrom PIL import Image\nfrom skimage.transform import resize\n"
            f"a = np.asarray(Image.open({str(path)!r})).astype(np.float64) / 255\n"
            f"np.save({str(folder / 'exact.npy')!r}, resize(a, (256, 256)).astype(np.float32))"
        )
        difference = np.abs(np.load(folder / "guarded.npy") - np.load(folder / "exact.npy")) * 255
        print(f"6144x8000 {suffix.upper()} to 256x256: {guarded['seconds']:.2f} s, {guarded['peak_mb']:.0f} MB "
              f"against {plain['seconds']:.2f} s, {plain['peak_mb']:.0f} MB for float64 + skimage at full size "
              f"({plain['seconds'] / guarded['seconds']:.1f}x faster, {plain['peak_mb'] / guarded['peak_mb']:.1f}x "
              f"less memory); difference mean {difference.mean():.2f}/255, max {difference.max():.2f}/255")  # fmt: skip


if __name__ == "__main__":
    startup()
    with tempfile.TemporaryDirectory() as tmp:
        bomb(Path(tmp))
        large_photo(Path(tmp))
