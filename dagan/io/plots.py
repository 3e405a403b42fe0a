"""Small PNG charts without a plotting library: histograms, line charts and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dagan.io.image import to_uint8, write_png


def histogram_image(values: np.ndarray, title: str, bins: int = 20, size: tuple[int, int] = (480, 300)) -> np.ndarray:
    """A labelled histogram of finite ``values`` as a uint8 RGB image."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    draw.text((10, 6), f"{title}  (n={finite.size})", fill="black")
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        counts, edges = np.histogram(finite, bins=bins, range=(low, high if high > low else low + 1e-9))
        left, right, top, bottom = 40, width - 10, 30, height - 30
        bar = (right - left) / bins
        peak = max(int(counts.max()), 1)
        for i, count in enumerate(counts):
            x0 = left + i * bar
            y0 = bottom - (bottom - top) * count / peak
            draw.rectangle([x0 + 1, y0, x0 + bar - 1, bottom], fill=(70, 110, 180))
        draw.line([left, bottom, right, bottom], fill="black")
        draw.text((left, bottom + 6), f"{edges[0]:.4g}", fill="black")
        draw.text((right - 60, bottom + 6), f"{edges[-1]:.4g}", fill="black")
        draw.text((4, top), str(peak), fill="black")
    return np.asarray(canvas)


def write_histogram(path: str | Path, values: np.ndarray, title: str) -> None:
    """Write ``histogram_image`` as a PNG, atomically."""
    write_png(path, histogram_image(values, title))


def line_chart_image(
    steps: list[float],
    series: dict[str, list[float]],
    title: str,
    references: dict[str, float] | None = None,
    size: tuple[int, int] = (480, 300),
) -> np.ndarray:
    """Lines of ``series`` against ``steps`` and dashed horizontal ``references``, as a uint8 RGB image."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 6), title, fill="black")
    references = references or {}
    values = [v for line in series.values() for v in line if np.isfinite(v)]
    values += [v for v in references.values() if np.isfinite(v)]
    if not steps or not values:
        return np.asarray(canvas)
    left, right, top, bottom = 50, width - 110, 30, height - 30
    low, high = min(values), max(values)
    high = high if high > low else low + 1e-9
    first, last = min(steps), max(steps)
    last = last if last > first else first + 1

    def point(step: float, value: float) -> tuple[float, float]:
        return (
            left + (right - left) * (step - first) / (last - first),
            bottom - (bottom - top) * (value - low) / (high - low),
        )

    draw.line([left, bottom, right, bottom], fill="black")
    draw.line([left, top, left, bottom], fill="black")
    draw.text((left, bottom + 6), f"{first:g}", fill="black")
    draw.text((right - 30, bottom + 6), f"{last:g}", fill="black")
    draw.text((4, top), f"{high:.4g}", fill="black")
    draw.text((4, bottom - 10), f"{low:.4g}", fill="black")
    colours = [(70, 110, 180), (200, 80, 60), (60, 150, 80), (150, 90, 170)]
    legend_y = top
    for i, (name, line) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        points = [point(s, v) for s, v in zip(steps, line, strict=True) if np.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((right + 8, legend_y), name, fill=colour)
        legend_y += 14
    for name, value in references.items():
        _, y = point(first, value)
        for x in range(left, right, 8):
            draw.line([x, y, min(x + 4, right), y], fill=(120, 120, 120))
        draw.text((right + 8, y - 6), f"{name} {value:.4g}", fill=(120, 120, 120))
    return np.asarray(canvas)


def image_grid(rows: list[list[np.ndarray]], labels: list[str] | None = None, cell: int = 128) -> np.ndarray:
    """Rows of RGB images ([0, 1] float or uint8), each resized to ``cell`` pixels square, labelled per row."""
    label_width = 160 if labels else 0
    columns = max(len(row) for row in rows)
    canvas = Image.new("RGB", (label_width + columns * cell, len(rows) * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            pixels = np.asarray(image)[..., :3]
            pixels = pixels if pixels.dtype == np.uint8 else to_uint8(pixels)
            tile = Image.fromarray(pixels).resize((cell, cell), Image.BILINEAR)
            canvas.paste(tile, (label_width + c * cell, r * cell))
        if labels:
            draw.text((6, r * cell + cell // 2 - 6), labels[r], fill="black")
    return np.asarray(canvas)
