"""Mini-canvas and UnlearnCanvas as ``datasets`` datasets with one record schema.

Every record has: ``image`` (PIL), ``style``, ``object``, ``prompt`` ("A {object} image in {style} style."),
``style_id``, ``object_id`` and ``index``. The real UnlearnCanvas layout on local disk is
``ROOT/{style}/{object}/{idx}.jpg`` (plus an optional ``Seed_Images`` folder, which has no style and is skipped).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from datasets import Dataset, Features, Image as ImageFeature, Value

from canvas_data.mini_canvas import OBJECTS, STYLES, make_prompt, render
from diffusion.pipeline import to_tensor  # noqa: F401  (re-exported: images -> tensors lives with the pipeline)

FEATURES = Features(
    {
        "image": ImageFeature(),
        "style": Value("string"),
        "object": Value("string"),
        "prompt": Value("string"),
        "style_id": Value("int32"),
        "object_id": Value("int32"),
        "index": Value("int32"),
    }
)


def build_mini_canvas(
    per_pair: int = 20,
    start_index: int = 0,
    styles: Sequence[str] = STYLES,
    objects: Sequence[str] = OBJECTS,
    size: int = 32,
    pose: str = "narrow",
) -> Dataset:
    """Render mini-canvas into a ``datasets.Dataset`` (seeded: the same arguments give the same data).

    Args:
        per_pair: images per (style, object) pair (UnlearnCanvas has 20).
        start_index: first image index; use disjoint ranges for train and held-out splits.
        styles: the styles to render (default: all ten).
        objects: the objects to render (default: all ten).
        size: image side in pixels.
        pose: pose jitter of the objects ("narrow" or "wide", see ``mini_canvas.render``).

    Returns:
        A dataset with the schema in ``FEATURES``.
    """
    if per_pair < 1:
        raise ValueError("per_pair must be at least 1")

    def gen() -> Iterator[dict]:
        for style in styles:
            for obj in objects:
                for i in range(start_index, start_index + per_pair):
                    yield {
                        "image": render(style, obj, seed=i, size=size, pose=pose),
                        "style": style,
                        "object": obj,
                        "prompt": make_prompt(obj, style),
                        "style_id": STYLES.index(style),
                        "object_id": OBJECTS.index(obj),
                        "index": i,
                    }

    return Dataset.from_list(list(gen()), features=FEATURES)


def load_unlearncanvas(root: str | os.PathLike, styles: Sequence[str] | None = None,
                       objects: Sequence[str] | None = None, max_per_pair: int | None = None) -> Dataset:
    """Read the real UnlearnCanvas images from ``root/{style}/{object}/{idx}.jpg`` into the same schema.

    Args:
        root: the dataset folder on local disk.
        styles: restrict to these styles (default: every style folder, sorted; ``Seed_Images`` skipped).
        objects: restrict to these objects (default: every object folder found, sorted).
        max_per_pair: keep at most this many images per pair (lowest indices first).

    Returns:
        A dataset with the schema in ``FEATURES``; ``style_id``/``object_id`` index the sorted name lists.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"UnlearnCanvas root {str(root)!r} does not exist")
    all_styles = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "Seed_Images")
    style_list = list(styles) if styles else all_styles
    unknown = sorted(set(style_list) - set(all_styles))
    if unknown:
        raise ValueError(f"styles not found under {root}: {unknown}")
    all_objects = sorted({p.name for s in style_list for p in (root / s).iterdir() if p.is_dir()})
    object_list = list(objects) if objects else all_objects
    rows = []
    for s in style_list:
        for o in object_list:
            files = sorted((root / s / o).glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
            for f in files[:max_per_pair]:
                rows.append({"image": str(f), "style": s, "object": o,
                             "prompt": make_prompt(o.replace("_", " "), s.replace("_", " ")),
                             "style_id": style_list.index(s), "object_id": object_list.index(o),
                             "index": int(f.stem) if f.stem.isdigit() else len(rows)})
    if not rows:
        raise ValueError(f"no images found under {root} in the style/object/idx.jpg layout")
    return Dataset.from_list(rows, features=FEATURES)

