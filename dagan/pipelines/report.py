"""The evaluation report: one ``ReportEntry`` per metric, written as metrics.json, metrics.txt and plots."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dagan.io.atomic import atomic_output
from dagan.io.image import write_png
from dagan.io.plots import image_grid, write_histogram


@dataclass
class ReportEntry:
    """One metric's result: its value over all frames, each item's value, and how it was computed."""

    protocol: str
    #: None when the metric could not run; ``unavailable`` then says why.
    value: float | None = None
    count: int = 0
    per_item: dict[str, float] = field(default_factory=dict)
    unavailable: str | None = None
    #: What a family adds beside its value, e.g. ``frames_without_face`` or ``skipped_without_audio``.
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def missing(cls, protocol: str, reason: str) -> ReportEntry:
        """The entry of a metric that could not be computed, and why."""
        return cls(protocol, unavailable=reason)

    @classmethod
    def of_frames(
        cls, per_frame: Mapping[str, list[float]], protocol: str, reduce: Callable = np.mean, **extra: object
    ) -> ReportEntry:
        """The entry of per-frame values grouped by item: ``reduce`` over all frames, and over each item's."""
        every = np.concatenate([np.asarray(values, dtype=np.float64) for values in per_frame.values()])
        return cls(
            protocol,
            value=float(reduce(every)),  # inf (identical frames in PSNR) and NaN stay visible
            count=int(every.size),
            per_item={item: float(reduce(np.asarray(values, dtype=np.float64))) for item, values in per_frame.items()},
            extra=extra,
        )

    def as_dict(self) -> dict:
        """The entry as metrics.json holds it (this key order is the file's)."""
        entry = {"value": self.value, "protocol": self.protocol, "count": self.count, "per_item": dict(self.per_item)}
        if self.unavailable is not None:
            entry["unavailable"] = self.unavailable
        return {**entry, **self.extra}


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf": JSON has no infinity
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def write_report(
    out: Path, report: Mapping[str, ReportEntry], items: int, frames: int, seconds: float, thumbnails: dict
) -> None:
    """metrics.json, metrics.txt, a histogram per metric and a grid of the worst items under ``out``."""
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_json_safe({name: entry.as_dict() for name, entry in report.items()}), indent=2))
    lines = [f"{items} items, {frames} frames, {frames / max(seconds, 1e-9):.2f} frames/s", ""]
    for name, entry in report.items():
        if entry.unavailable:
            lines.append(f"{name:<14} unavailable: {entry.unavailable}")
        else:
            lines.append(f"{name:<14} {entry.value:.6g}  (n={entry.count})  {entry.protocol}")
    with atomic_output(out / "metrics.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for name, entry in report.items():
        if entry.per_item:
            write_histogram(plots / f"{name}_histogram.png", np.array(list(entry.per_item.values())), name)
    worst_by = next((m for m in ("l1", "psnr", "niqe") if m in report and report[m].per_item), None)
    if worst_by:
        per_item = report[worst_by].per_item
        order = sorted(per_item, key=per_item.get, reverse=worst_by != "psnr")[:8]
        rows = [thumbnails[name] for name in order if name in thumbnails]
        labels = [f"{name}: {worst_by} {per_item[name]:.4g}" for name in order if name in thumbnails]
        write_png(plots / f"worst_{worst_by}.png", image_grid(rows, labels))
