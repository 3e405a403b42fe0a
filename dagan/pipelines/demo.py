"""``dagan demo``: the bundled model animates the bundled portrait, with nothing to download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagan.assets import DEMO_DRIVING, DEMO_MODEL, DEMO_SOURCE, bundled
from dagan.errors import DaganError
from dagan.io.atomic import check_writable_directory, removed_if_failed_empty
from dagan.options import DemoOptions
from dagan.pipelines.animate import AnimateReport, animate_files

#: Said once whenever the bundled model stands in for weights the user did not give.
BUNDLED_MODEL_NOTICE = (
    "using the bundled demo model (64x64 synthetic heads, docs/model-card.md); "
    "pass --checkpoint and --depth-weights for real faces"
)


@dataclass
class DemoOutputs:
    """The three videos ``dagan demo`` writes."""

    result: Path
    side_by_side: Path
    depth: Path
    report: AnimateReport


def run_demo(
    output_dir: str | Path = DemoOptions.output_dir, device: str = DemoOptions.device, quiet: bool = DemoOptions.quiet
) -> DemoOutputs:
    """Animate the bundled source with the bundled driving clip into ``output_dir``."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise DaganError(f"--output {out} exists and is not a directory")
    outputs = {"result": out / "result.mp4", "side_by_side": out / "side_by_side.mp4", "depth": out / "depth.mp4"}
    with removed_if_failed_empty(out):
        check_writable_directory(out)
        report = _animate_bundled(outputs, device, quiet)
    return DemoOutputs(report=report, **outputs)


def _animate_bundled(outputs: dict[str, Path], device: str, quiet: bool) -> AnimateReport:
    return animate_files(
        bundled(DEMO_SOURCE),
        bundled(DEMO_DRIVING),
        bundled(DEMO_MODEL),
        None,
        outputs["result"],
        save_depth=outputs["depth"],
        save_side_by_side=outputs["side_by_side"],
        device=device,
        quiet=quiet,
    )


def weights_or_bundled(checkpoint: str | Path | None, depth_weights: str | Path | None) -> tuple[Path, Path | None]:
    """The user's weights, or the bundled model when neither ``--checkpoint`` nor ``--depth-weights`` is given."""
    if checkpoint is not None:
        return Path(checkpoint), Path(depth_weights) if depth_weights is not None else None
    if depth_weights is not None:
        raise DaganError("--depth-weights needs --checkpoint (leave both out to use the bundled demo model)")
    return bundled(DEMO_MODEL), None
