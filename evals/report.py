"""Human-readable outputs: image grids (PNG) and markdown tables."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB."""
    arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def image_grid(rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, scale: int = 3, pad: int = 2) -> Image.Image:
    """Tile images (each (3, H, W) in [0, 1]) into a labelled grid.

    Args:
        rows: a list of rows, each a list of images of equal size.
        row_labels: text drawn left of each row.
        col_labels: text drawn above each column.
        scale: nearest-neighbour upscaling factor (tiny images are hard to see at 1x).
        pad: pixels between tiles.
    """
    h, w = rows[0][0].shape[-2] * scale, rows[0][0].shape[-1] * scale
    ncol = max(len(r) for r in rows)
    left = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    top = 16 if col_labels else 0
    grid = Image.new("RGB", (left + ncol * (w + pad), top + len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels or []):
        draw.text((left + j * (w + pad) + 2, 2), label, fill="black")
    for i, row in enumerate(rows):
        if row_labels:
            draw.text((4, top + i * (h + pad) + h // 2 - 5), row_labels[i], fill="black")
        for j, img in enumerate(row):
            grid.paste(to_pil(img).resize((w, h), Image.NEAREST), (left + j * (w + pad), top + i * (h + pad)))
    return grid


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed with 3 decimals."""

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def save_text(path: str | os.PathLike, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def scatter_plot(points: Sequence[tuple[str, float, float]], x_label: str, y_label: str, log_y: bool = False,
                 size: tuple[int, int] = (520, 380)) -> Image.Image:
    """A labelled scatter plot drawn with PIL (no plotting dependency).

    Args:
        points: (label, x, y) triples; non-finite or (with ``log_y``) non-positive y are drawn at the bottom.
        x_label, y_label: axis titles.
        log_y: log10 y axis (forget quality spans many decades).
        size: image size in pixels.
    """
    import math

    w, h = size
    left, right, top, bottom = 60, 20, 20, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)

    def ty(v: float) -> float:
        if v is None or not math.isfinite(v) or (log_y and v <= 0):
            return float("nan")
        return math.log10(v) if log_y else v

    xs = [p[1] for p in points]
    ys = [ty(p[2]) for p in points]
    finite = [y for y in ys if math.isfinite(y)] or [0.0, 1.0]
    x0, x1 = min(xs + [0.0]), max(xs + [1.0])
    y0, y1 = min(finite), max(finite)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for frac in (0.0, 0.5, 1.0):
        xv, yv = x0 + frac * (x1 - x0), y0 + frac * (y1 - y0)
        d.text((px(xv) - 10, h - bottom + 4), f"{xv:.2f}", fill="black")
        d.text((4, py(yv) - 5), f"1e{yv:.1f}" if log_y else f"{yv:.2f}", fill="black")
    d.text((w // 2 - 60, h - 20), x_label, fill="black")
    d.text((4, 4), y_label, fill="black")
    for (label, x, _), y in zip(points, ys):
        yy = py(y) if math.isfinite(y) else h - bottom
        d.ellipse([px(x) - 4, yy - 4, px(x) + 4, yy + 4], fill=(31, 119, 180))
        d.text((px(x) + 6, yy - 6), label, fill="black")
    return img
