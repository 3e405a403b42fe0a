"""``dagan app``: a web page for animating a portrait with a driving video (Gradio, ``pip install 'dagan[app]'``).

The page works offline: no CDN fonts or scripts, no analytics, no share link. The models are
loaded once per server (``AnimationService``); each request works in its own temporary folder,
which is removed when it finishes or fails. At most ``--concurrency`` animations run at once,
and the others wait in Gradio's queue with their place shown.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dagan.errors import DaganError
from dagan.io.image import IMAGE_SUFFIXES
from dagan.io.video import VIDEO_SUFFIXES, video_seconds
from dagan.options import AnimateOptions, AppOptions

#: What the page takes as a source portrait.
SOURCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MISSING_GRADIO = "dagan app needs Gradio: pip install 'dagan[app]'"
BUNDLED_NOTE = (
    "Running the bundled demo model: it only knows synthetic heads (docs/model-card.md). "
    "Start dagan app with --checkpoint and --depth-weights for real faces."
)


@dataclass
class AppSettings:
    """The page's options for one animation (their defaults are ``dagan animate``'s)."""

    relative: bool = AnimateOptions.relative
    adapt_scale: bool = AnimateOptions.adapt_scale
    find_best_frame: bool = AnimateOptions.find_best_frame
    crop: bool = AnimateOptions.crop
    smooth: float = AnimateOptions.smooth


@dataclass
class AppResult:
    """One request's files, all inside ``workdir`` (removed once the page has them)."""

    workdir: Path
    result: Path
    side_by_side: Path | None
    depth: Path | None
    crop_preview: Path | None
    frames: int
    seconds: float


class AnimationService:
    """The networks, loaded once, and the limits every request is checked against."""

    def __init__(self, options: AppOptions):
        from dagan.pipelines.animate import Animator
        from dagan.pipelines.demo import weights_or_bundled

        self.options = options
        self.bundled = options.checkpoint is None
        checkpoint, depth_weights = weights_or_bundled(options.checkpoint, options.depth_weights)
        self.checkpoint, self.depth_weights = checkpoint, depth_weights
        self.animator = Animator.from_checkpoint(checkpoint, depth_weights, device=options.device)

    def check_inputs(self, source: Path, driving: Path) -> None:
        """Refuse, with one line the page shows, what this server does not animate."""
        limit = self.options.max_upload_mb * 1024 * 1024
        for role, path, suffixes in (("source portrait", source, SOURCE_SUFFIXES), ("driving video", driving, None)):
            if not path.is_file():
                raise DaganError(f"the {role} did not arrive; upload it again")
            if path.stat().st_size > limit:
                size = path.stat().st_size / 1024 / 1024
                most = self.options.max_upload_mb
                raise DaganError(f"the {role} is {size:.1f} MB; this server takes at most {most} MB")
            suffix = path.suffix.lower()
            if suffixes is not None and suffix not in suffixes:
                raise DaganError(f"the {role} must be a PNG, JPEG or WebP image, not {suffix or 'a file without type'}")
            if suffixes is None and suffix not in VIDEO_SUFFIXES:
                if suffix in IMAGE_SUFFIXES:
                    raise DaganError("the driving input must be a video, not an image")
                kinds = ", ".join(VIDEO_SUFFIXES)
                raise DaganError(f"the driving video must be one of {kinds}, not {suffix or 'a file without type'}")
        seconds = video_seconds(driving, "driving video")
        if seconds > self.options.max_seconds:
            raise DaganError(
                f"the driving video lasts {seconds:.1f} s; this server animates at most {self.options.max_seconds:g} s"
            )

    def animate(self, source: Path, driving: Path, settings: AppSettings) -> AppResult:
        """Animate one request into a new temporary folder (removed here if anything fails)."""
        if settings.crop and settings.find_best_frame:
            raise DaganError(
                "Find best frame does not work with Crop and paste back: "
                "each driving clip starts from its own first frame"
            )
        self.check_inputs(source, driving)
        workdir = Path(tempfile.mkdtemp(prefix="dagan-app-"))
        try:
            return self._animate(source, driving, settings, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _animate(self, source: Path, driving: Path, settings: AppSettings, workdir: Path) -> AppResult:
        from dagan.pipelines.animate import animate_files
        from dagan.pipelines.footage import animate_footage

        result = workdir / "result.mp4"
        motion = {"relative": settings.relative, "adapt_scale": settings.adapt_scale, "smooth": settings.smooth}
        if settings.crop:
            preview = workdir / "crop_preview.png"
            report = animate_footage(
                source, driving, self.checkpoint, self.depth_weights, result, paste_back=True,
                preview=preview, animator=self.animator, **motion,
            )  # fmt: skip
            return AppResult(workdir, result, None, None, preview, report.frames, report.seconds)
        side_by_side, depth = workdir / "side_by_side.mp4", workdir / "depth.mp4"
        report = animate_files(
            source, driving, self.checkpoint, self.depth_weights, result, save_depth=depth,
            save_side_by_side=side_by_side, find_best_frame=settings.find_best_frame, animator=self.animator,
            **motion,
        )  # fmt: skip
        return AppResult(workdir, result, side_by_side, depth, None, report.frames, report.seconds)


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before the import: it reads this once
    try:
        import gradio
    except ImportError:
        raise DaganError(MISSING_GRADIO) from None
    return gradio


def _offline_theme(gr):
    """A theme with the system's own fonts: Gradio's default fetches Google Fonts."""
    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def build_page(service: AnimationService):
    """The Gradio Blocks of the page, wired to ``service``."""
    from dagan.assets import DEMO_DRIVING, DEMO_SOURCE, bundled

    gr = _gradio()

    track = gr.Progress(track_tqdm=True)  # Gradio reports animate's own tqdm bar: frames done of total

    def animate(source, driving, motion, adapt_scale, find_best_frame, crop, smooth, progress=track):
        if not source:
            raise gr.Error("Upload a source portrait first.")
        if not driving:
            raise gr.Error("Upload a driving video first.")
        settings = AppSettings(motion == "relative", adapt_scale, find_best_frame, crop, float(smooth))
        try:
            done = service.animate(Path(source), Path(driving), settings)
        except DaganError as exc:
            raise gr.Error(str(exc)) from None
        try:
            files = (done.result, done.side_by_side, done.depth, done.crop_preview)
            # Gradio copies what is yielded into its own cache before it resumes the generator, so the
            # request's folder can go right after, whether the caller is the page or the API.
            yield (*[str(path) if path else None for path in files], f"{done.frames} frames in {done.seconds:.1f} s")
        finally:
            shutil.rmtree(done.workdir, ignore_errors=True)

    # Gradio keeps uploads and results in its cache; files older than an hour go, checked every 10 minutes.
    with gr.Blocks(title="DaGAN", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("# DaGAN: depth-aware talking heads")
        if service.bundled:
            gr.Markdown(BUNDLED_NOTE)
        with gr.Row():
            with gr.Column():
                source = gr.Image(
                    label="Source portrait", type="filepath", sources=["upload"], elem_id="source", height=300
                )
                driving = gr.Video(label="Driving video", sources=["upload"], elem_id="driving", height=300)
                gr.Examples([[str(bundled(DEMO_SOURCE)), str(bundled(DEMO_DRIVING))]], [source, driving])
                motion = gr.Radio(["relative", "absolute"], value="relative", label="Motion")
                adapt_scale = gr.Checkbox(True, label="Adaptive scale")
                find_best_frame = gr.Checkbox(False, label="Find best frame (needs dagan[face])")
                crop = gr.Checkbox(False, label="Crop and paste back (real photos and videos; needs dagan[face])")
                smooth = gr.Slider(0, 10, value=0, step=0.5, label="Smoothing (--smooth, frames)")
                button = gr.Button("Animate", variant="primary", elem_id="animate")
            with gr.Column():
                result = gr.Video(label="Result", interactive=False, elem_id="result", height=300)
                side_by_side = gr.Video(label="Side by side", interactive=False, elem_id="side_by_side")
                depth = gr.File(label="Depth", interactive=False, elem_id="depth")
                preview = gr.Image(label="Crop preview", interactive=False, elem_id="crop_preview", height=240)
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
        inputs = [source, driving, motion, adapt_scale, find_best_frame, crop, smooth]
        button.click(animate, inputs, [result, side_by_side, depth, preview, status], api_name="animate")
    return page


def serve(options: AppOptions) -> None:
    """Load the models, build the page and serve it until interrupted."""
    gr = _gradio()
    if options.host not in LOOPBACK:
        print(
            f"dagan: warning: serving on {options.host}: anyone who can reach this machine can use the page",
            file=sys.stderr,
        )
    service = AnimationService(options)
    page = build_page(service)
    page.queue(default_concurrency_limit=options.concurrency)
    try:
        _launch(gr, page, options)
    except OSError as exc:  # the port is taken, or the host does not resolve
        raise DaganError(f"cannot serve on {options.host}:{options.port}: {exc}") from None


def _launch(gr, page, options: AppOptions) -> None:
    page.launch(
        server_name=options.host,
        server_port=options.port,
        share=False,
        max_file_size=f"{options.max_upload_mb}mb",
        theme=_offline_theme(gr),
        show_error=True,
        inbrowser=False,
        ssr_mode=False,  # server-side rendering would need Node.js
    )
