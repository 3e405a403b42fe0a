"""The Dockerfile, built and run for real with podman (rootful, Debian's packages, no registry).

No container registry is reachable here, so the ``debian:bookworm-slim`` base is made locally
with debootstrap (cached between runs as a tarball), and the build reaches the package index
through this machine's own pip configuration, mounted into the build. The Dockerfile itself stays
a plain one: ``docker build -t dagan .`` works anywhere with a registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = "docker.io/library/debian:bookworm-slim"
IMAGE = "localhost/dagan-test:latest"
PACKAGES = ["podman", "runc", "debootstrap", "fuse-overlayfs", "slirp4netns", "uidmap"]
#: The base image's root file system, kept between runs on the same machine (about 90 s to make).
BASE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dagan-tests" / "bookworm-minbase.tar"

pytestmark = pytest.mark.slow


def _run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, text=True, capture_output=True, timeout=timeout, **kwargs)


def _mirror() -> str:
    """The Debian mirror this machine's own apt sources name."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*"), Path("/etc/apt/sources.list")]
    for path in sources:
        text = path.read_text() if path.is_file() else ""
        for url in re.findall(r"(?:URIs:|deb)\s+(https?://\S+/debian)\b", text):
            return url
    return "http://deb.debian.org/debian"


#: Where this machine's pip files appear inside the build: beside, never over, the image's own (a CA
#: bundle mounted over /etc/ssl/certs would stop the ca-certificates package from installing).
HOST = "/run/host"


def _pip_settings(workdir: Path) -> tuple[Path, list[str]]:
    """A pip.conf with this machine's settings, its paths under HOST, and the mounts that put them there."""
    listed = _run([sys.executable, "-m", "pip", "config", "list"], 60).stdout
    settings, mounts = {}, set()
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        words = []
        for word in value.strip().strip("'").split():
            # A file: index's pages link to its sibling folders (simple/ -> ../files/): mount its parent.
            path = Path(urlparse(word).path).parent if word.startswith("file:") else Path(word)
            if path.is_absolute() and path.exists():
                mounts.add(f"--volume={path}:{HOST}{path}:ro")
                word = word.replace(str(path), f"{HOST}{path}", 1)
            words.append(word)
        settings[key.split(".", 1)[-1]] = " ".join(words)
    config = workdir / "pip.conf"
    config.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return config, sorted(mounts)


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> dict[str, str]:
    """Podman ready to build: installed, configured for runc, with the base image; the environment to use."""
    if os.geteuid() != 0:
        pytest.skip("the container test needs root (rootful podman)")
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("podman is not installed and there is no apt-get to install it")
        quiet_apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], 600, env=quiet_apt)
        _run(["apt-get", "install", "-y", "-qq", *PACKAGES], 600, env=quiet_apt)
    workdir = tmp_path_factory.mktemp("podman")
    conf = workdir / "containers.conf"
    # crun fails here on rlimits and cgroups; runc with explicit ulimits works.
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n\n[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    if subprocess.run(["podman", "image", "exists", BASE], env=env).returncode != 0:
        if not BASE_CACHE.is_file():
            rootfs = workdir / "rootfs"
            _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), _mirror()], 900)
            BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
            partial = BASE_CACHE.with_suffix(".partial")
            _run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], 300)
            partial.replace(BASE_CACHE)
            shutil.rmtree(rootfs, ignore_errors=True)
        _run(["podman", "import", str(BASE_CACHE), BASE], 300, env=env)
    return env


@pytest.fixture(scope="module")
def image(podman, tmp_path_factory) -> str:
    """The project's Dockerfile, built as users build it (PyTorch with its CUDA libraries); removed afterwards."""
    workdir = tmp_path_factory.mktemp("build")
    pip_conf, paths = _pip_settings(workdir)
    mounts = [f"--volume={pip_conf}:/etc/pip.conf:ro", *paths]
    started = time.monotonic()
    command = ["podman", "build", "--network=host", *mounts, "-t", IMAGE, str(ROOT)]
    build = subprocess.run(command, env=podman, text=True, capture_output=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    size = _run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"], 60, env=podman).stdout.strip()
    print(f"image built in {time.monotonic() - started:.0f} s; {int(size) / 1e9:.2f} GB")
    yield IMAGE
    # Several GB: the image and the build's intermediate layers go; the base image stays for the next run.
    subprocess.run(["podman", "rmi", "--force", IMAGE], env=podman, capture_output=True, timeout=300)
    subprocess.run(["podman", "image", "prune", "--force"], env=podman, capture_output=True, timeout=300)


def test_the_image_runs_dagan_as_a_plain_user(podman, image):
    user = _run(["podman", "run", "--rm", "--entrypoint", "id", image, "-u"], 120, env=podman).stdout.strip()
    assert user != "0"
    help_text = _run(["podman", "run", "--rm", image, "--help"], 120, env=podman).stdout
    assert "animate" in help_text and "app" in help_text
    # The sources were installed and removed; no pip cache stayed; the test suite is not a package in it.
    probe = "test ! -e /src && test ! -e /root/.cache/pip && ! python3 -c 'import tests' 2>/dev/null && echo clean"
    checked = _run(["podman", "run", "--rm", "--entrypoint", "sh", image, "-c", probe], 120, env=podman)
    assert checked.stdout == "clean\n"
    # `dagan train --allocator tcmalloc` finds its library in the image.
    probe = "from dagan.pipelines.memory import find_tcmalloc; print(find_tcmalloc())"
    found = _run(["podman", "run", "--rm", "--entrypoint", "python3", image, "-c", probe], 120, env=podman)
    assert "tcmalloc" in found.stdout


def test_the_image_runs_the_demo_into_a_mounted_folder(podman, image, tmp_path):
    from dagan.io.video import read_video

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the image's user writes here
    _run(["podman", "run", "--rm", f"--volume={out}:/out", image, "demo", "--output", "/out", "--quiet",
          "--device", "cpu"], 600, env=podman)  # fmt: skip
    for name in ("result.mp4", "side_by_side.mp4", "depth.mp4"):
        frames, fps = read_video(out / name)
        assert len(frames) > 10 and fps > 0, name
