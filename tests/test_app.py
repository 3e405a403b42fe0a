"""``dagan app``: the page in a real browser (Debian's Chromium driven by Playwright), and the service behind it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dagan.errors import DaganError
from dagan.io.image import write_png
from dagan.io.video import read_video

from .conftest import make_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Set to a path (say docs/app.png) to keep the screenshot the browser test takes after an animation.
SCREENSHOT = os.environ.get("DAGAN_APP_SCREENSHOT")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``dagan app`` on a free loopback port and wait until it answers."""
    port = _free_port()
    command = [sys.executable, "-m", "dagan.cli", "app", "--port", str(port), "--device", "cpu", *args]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagan app exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise AssertionError(f"dagan app did not answer within 120 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tiny_files, tmp_path_factory):
    """A ``dagan app`` with tiny random-weight networks and a 1 MB upload limit."""
    pytest.importorskip("gradio", reason="the app tests need dagan[app] (gradio)")
    log = tmp_path_factory.mktemp("app") / "server.log"
    weights = ["--checkpoint", str(tiny_files["checkpoint"]), "--depth-weights", str(tiny_files["depth"])]
    process, url = _serve([*weights, "--max-upload-mb", "1", "--max-seconds", "5"], log)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


@pytest.mark.slow
def test_the_page_animates_an_upload_into_a_result_video(server, browser, tiny_files, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server)
    for label in ("Source portrait", "Driving video", "Result", "Side by side", "Depth"):
        page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)  # visible, or this fails
    assert page.get_by_text("only knows synthetic heads").count() == 0  # real weights were given
    _upload(page, "source", tiny_files["source"])
    _upload(page, "driving", tiny_files["driving"])
    page.locator("#driving video").wait_for(timeout=30_000)  # the upload has arrived
    started = time.monotonic()
    page.get_by_role("button", name="Animate").click()
    result = page.locator("#result video")
    result.wait_for(timeout=120_000)
    seconds = time.monotonic() - started
    source = result.get_attribute("src")
    download = page.request.get(source)
    assert download.ok
    (tmp_path / "result.mp4").write_bytes(download.body())
    frames, fps = read_video(tmp_path / "result.mp4")
    driving, driving_fps = read_video(tiny_files["driving"])
    assert len(frames) == len(driving) and fps == driving_fps
    page.locator("#side_by_side video").wait_for(timeout=10_000)
    assert "frames in" in page.locator("#status textarea").input_value()
    # Offline: every request the page made went to the server itself (no CDN fonts or scripts, no analytics).
    elsewhere = [url for url in requested if not url.startswith((server, "data:", "blob:"))]
    assert elsewhere == []
    print(f"click to result: {seconds:.1f} s")


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused_on_the_page(server, browser, tmp_path):
    big = tmp_path / "big.png"
    write_png(big, np.random.default_rng(0).random((900, 900, 3)))  # noise does not compress: about 2.4 MB
    assert big.stat().st_size > 1024 * 1024
    page = browser.new_page()
    page.goto(server)
    _upload(page, "source", big)
    # Gradio refuses it in the page before the upload starts, naming the limit and the file.
    message = re.compile(r"exceed the maximum allowed size of 1(\.0)? ?MB", re.IGNORECASE)
    page.get_by_text(message).wait_for(timeout=30_000)
    assert page.locator("#source img").count() == 0  # nothing was taken


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """A ``dagan app`` without weights: the bundled demo model."""
    pytest.importorskip("gradio", reason="the app tests need dagan[app] (gradio)")
    process, url = _serve([], tmp_path_factory.mktemp("demo-app") / "server.log")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_the_bundled_model_page_says_what_it_knows_and_animates_its_example(demo_server, browser, tmp_path):
    from dagan.assets import DEMO_DRIVING, DEMO_SOURCE

    page = browser.new_page(viewport={"width": 1280, "height": 1150})
    page.goto(demo_server)
    page.get_by_text("it only knows synthetic heads").wait_for(timeout=30_000)
    _upload(page, "source", DEMO_SOURCE)
    _upload(page, "driving", DEMO_DRIVING)
    page.locator("#driving video").wait_for(timeout=30_000)
    started = time.monotonic()
    page.get_by_role("button", name="Animate").click()
    page.locator("#result video").wait_for(timeout=120_000)
    seconds = time.monotonic() - started
    page.locator("#side_by_side video").wait_for(timeout=10_000)
    # Both players show a frame before the picture is taken.
    page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 2)", timeout=30_000)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    if SCREENSHOT:
        shutil.copyfile(tmp_path / "app.png", SCREENSHOT)
    print(f"bundled demo, click to result: {seconds:.1f} s")


def _service(tiny_files, **limits):
    from dagan.app import AnimationService
    from dagan.options import AppOptions

    options = AppOptions(checkpoint=tiny_files["checkpoint"], depth_weights=tiny_files["depth"], device="cpu", **limits)
    return AnimationService(options)


def test_the_service_refuses_what_the_page_does_not_take(tiny_files, tmp_path):
    from dagan.app import AppSettings

    service = _service(tiny_files, max_upload_mb=1, max_seconds=0.1)
    (tmp_path / "notes.txt").write_text("not a portrait")
    with pytest.raises(DaganError, match="PNG, JPEG or WebP"):
        service.check_inputs(tmp_path / "notes.txt", tiny_files["driving"])
    with pytest.raises(DaganError, match="must be a video, not an image"):
        service.check_inputs(tiny_files["source"], tiny_files["source"])
    with pytest.raises(DaganError, match="lasts 0.2 s; this server animates at most 0.1 s"):
        service.check_inputs(tiny_files["source"], tiny_files["driving"])  # 6 frames at 25 fps
    big = tmp_path / "big.png"
    write_png(big, np.random.default_rng(0).random((900, 900, 3)))
    with pytest.raises(DaganError, match=r"is 2\.\d MB; this server takes at most 1 MB"):
        service.check_inputs(big, tiny_files["driving"])
    with pytest.raises(DaganError, match="did not arrive"):
        service.check_inputs(tmp_path / "gone.png", tiny_files["driving"])
    # WebM and Matroska headers hold no frame count: the length still comes out, and is refused.
    webm = make_clip(tmp_path / "talk.webm", frames=6, size=64, codec="libvpx-vp9")
    with pytest.raises(DaganError, match="lasts 0.2 s"):
        service.check_inputs(tiny_files["source"], webm)
    with pytest.raises(DaganError, match="Find best frame does not work with Crop and paste back"):
        service.animate(tiny_files["source"], tiny_files["driving"], AppSettings(crop=True, find_best_frame=True))


def test_the_service_animates_with_its_loaded_networks_and_removes_failed_work(tiny_files, tmp_path, monkeypatch):
    from dagan.app import AppSettings

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    service = _service(tiny_files)
    loaded = service.animator
    done = service.animate(tiny_files["source"], tiny_files["driving"], AppSettings(smooth=1.0))
    assert service.animator is loaded  # one set of networks for every request
    assert done.workdir.parent == tmp_path and done.frames == 6
    for path in (done.result, done.side_by_side, done.depth):
        assert len(read_video(path)[0]) == 6
    shutil.rmtree(done.workdir)

    def fail_halfway(source, driving, checkpoint, depth_weights, output, **kwargs):
        Path(output).write_bytes(b"half a video")
        raise DaganError("the driving video broke off")

    monkeypatch.setattr("dagan.pipelines.animate.animate_files", fail_halfway)
    with pytest.raises(DaganError, match="broke off"):
        service.animate(tiny_files["source"], tiny_files["driving"], AppSettings())
    assert [p for p in tmp_path.iterdir() if p.name.startswith("dagan-app-")] == []


def test_the_app_binds_to_loopback_unless_told_and_warns_when_told(monkeypatch, capsys):
    pytest.importorskip("gradio", reason="the app needs dagan[app] (gradio)")
    from dagan import app
    from dagan.cli import main

    launched = {}
    monkeypatch.setattr(app, "AnimationService", lambda options: None)
    monkeypatch.setattr(app, "build_page", lambda service: _FakePage(launched))
    assert main(["app", "--port", "7999"]) == 0
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    assert "warning" not in capsys.readouterr().err
    assert main(["app", "--host", "0.0.0.0", "--max-upload-mb", "3", "--concurrency", "2"]) == 0
    assert launched["server_name"] == "0.0.0.0" and launched["max_file_size"] == "3mb"
    assert launched["concurrency"] == 2
    assert "dagan: warning: serving on 0.0.0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["app", "--port", "70000"])
    assert refused.value.code == 2

    def port_taken(gr, page, options):
        raise OSError(f"Cannot find empty port in range: {options.port}-{options.port}")

    monkeypatch.setattr(app, "_launch", port_taken)
    assert main(["app", "--port", "7999"]) == 2
    assert "dagan: error: cannot serve on 127.0.0.1:7999: Cannot find empty port" in capsys.readouterr().err


class _FakePage:
    def __init__(self, launched: dict):
        self.launched = launched

    def queue(self, default_concurrency_limit: int) -> None:
        self.launched["concurrency"] = default_concurrency_limit

    def launch(self, **kwargs) -> None:
        self.launched.update(kwargs)


def test_cropping_refuses_a_photo_without_a_face(tiny_files):
    pytest.importorskip("dlib", reason="cropping needs dagan[face] (dlib)")
    from dagan.app import AppSettings

    service = _service(tiny_files)
    with pytest.raises(DaganError, match="no face found in the source photo"):
        service.animate(tiny_files["source"], tiny_files["driving"], AppSettings(crop=True))


@pytest.mark.slow
def test_cropping_pastes_the_face_back_and_shows_the_crop_preview(tiny_files, tmp_path):
    pytest.importorskip("dlib", reason="cropping needs dagan[face] (dlib)")
    from dagan.app import AppSettings
    from dagan.io.image import read_image

    from .footage import PORTRAIT, photo_with_portraits, write_footage
    from .test_paste_back import PHOTO, WITH_A_GAP

    if not PORTRAIT.is_file():
        pytest.skip(f"the sample portrait is not in {PORTRAIT.parent}")
    photo = tmp_path / "photo.png"
    photo_with_portraits(photo, [(320, 200)], *PHOTO)
    driving = tmp_path / "talk.mp4"
    write_footage(driving, WITH_A_GAP)
    done = _service(tiny_files).animate(photo, driving, AppSettings(crop=True))
    frames, _ = read_video(done.result)
    assert len(frames) == len(read_video(driving)[0]) and frames[0].shape == read_image(photo).shape
    assert done.side_by_side is None and done.depth is None
    preview = read_image(done.crop_preview)
    assert preview.shape[1] >= 2 * 320  # the boxed photo and at least one driving clip's first crop
    shutil.rmtree(done.workdir)
