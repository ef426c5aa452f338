"""Human-readable outputs: image grids (PNG) and markdown tables."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB."""
    arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def image_grid(rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, scale: int = 3, pad: int = 2,
               captions: Sequence[Sequence[str]] | None = None) -> Image.Image:
    """Tile images (each (3, H, W) in [0, 1]) into a labelled grid.

    Args:
        rows: a list of rows, each a list of images of equal size.
        row_labels: text drawn left of each row.
        col_labels: text drawn above each column.
        scale: nearest-neighbour upscaling factor (tiny images are hard to see at 1x).
        pad: pixels between tiles.
        captions: text under each image (same shape as ``rows``), e.g. the judge's verdict; long text is cut to
            the tile's width.
    """
    h, w = rows[0][0].shape[-2] * scale, rows[0][0].shape[-1] * scale
    ncol = max(len(r) for r in rows)
    if captions is not None:
        w = max(w, 96)  # room for a short verdict under tiny images
    cap = 12 if captions is not None else 0
    left = 8 + 7 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    top = 16 if col_labels else 0
    grid = Image.new("RGB", (left + ncol * (w + pad), top + len(rows) * (h + cap + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels or []):
        draw.text((left + j * (w + pad) + 2, 2), label, fill="black")
    for i, row in enumerate(rows):
        y = top + i * (h + cap + pad)
        if row_labels:
            draw.text((4, y + h // 2 - 5), row_labels[i], fill="black")
        for j, img in enumerate(row):
            side = rows[0][0].shape[-1] * scale
            grid.paste(to_pil(img).resize((side, h), Image.NEAREST), (left + j * (w + pad) + (w - side) // 2, y))
            if captions is not None and j < len(captions[i]):
                draw.text((left + j * (w + pad) + 1, y + h + 1), str(captions[i][j])[: w // 6], fill="black")
    return grid


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed with 3 decimals, None as n/a."""

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def save_text(path: str | os.PathLike, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_between_markers(path: str | os.PathLike, name: str, block: str) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the markdown file ``path``
    with ``block`` (a README table an experiment script keeps current); ``ValueError`` without the markers."""
    import re
    from pathlib import Path

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    path = Path(path)
    text = path.read_text()
    pattern = re.escape(start) + r".*?" + re.escape(end)
    if not re.search(pattern, text, flags=re.S):
        raise ValueError(f"{path} has no {start} ... {end} block to fill")
    path.write_text(re.sub(pattern, lambda _: f"{start}\n{block}\n{end}", text, flags=re.S))


def resumable_results(out: str | os.PathLike, resume: bool) -> dict:
    """An experiment's out/results.json to add to: {} for a fresh run; refuses to overwrite an earlier one unasked
    (``SystemExit`` naming --resume)."""
    import json
    from pathlib import Path

    done = Path(out) / "results.json"
    if done.is_file() and not resume:
        raise SystemExit(f"{done} exists: --resume adds to it, or give another --out")
    return json.loads(done.read_text()) if done.is_file() else {}


def save_results(out: str | os.PathLike, results: dict) -> None:
    """Write out/results.json atomically (a reader never sees half a file), e.g. after every run of a long sweep."""
    import json
    from pathlib import Path

    from erasure.files import atomic_write_text

    atomic_write_text(Path(out) / "results.json", json.dumps(results, indent=2))


def tuning_settings(settings: dict | None) -> dict:
    """An experiment's ``--settings`` JSON (steps, lr, batch_size, "options": {method options}) -> ``erase``
    keyword arguments that replace the recommended settings (a tuning run); {} when none are given."""
    if not settings:
        return {}
    return {"recommended": False, **{k: v for k, v in settings.items() if k != "options"},
            **settings.get("options", {})}


def add_table_options(parser: Any, out: str, marker: str, kept: str = "rows") -> None:
    """An experiment's ``--out`` (default ``out``), ``--resume`` (keep the ``kept`` already in OUT/results.json) and
    ``--readme`` (``publish_table`` writes the table between the ``marker`` markers) options."""
    parser.add_argument("--out", default=out)
    parser.add_argument("--resume", action="store_true", help=f"keep the {kept} already in OUT/results.json")
    parser.add_argument("--readme", help=f"write the table into this README between its {marker} markers")


def publish_table(out: str | os.PathLike, block: str, readme: str | os.PathLike | None = None,
                  marker: str | None = None) -> None:
    """An experiment's table: ``out``/table.md, and the same block in ``readme`` between its ``marker`` markers when
    a README is given."""
    from pathlib import Path

    save_text(Path(out) / "table.md", block + "\n")
    if readme:
        write_between_markers(readme, marker, block)
