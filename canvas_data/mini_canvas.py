"""Mini-canvas: a procedural, seeded stand-in for UnlearnCanvas (styles x objects).

UnlearnCanvas (Zhang et al. 2024, https://arxiv.org/abs/2402.11846) pairs 60 artistic styles with 20
object classes and prompts "A {object} image in {style} style.". Mini-canvas keeps that structure and
prompt template but draws every image procedurally, so the toolkit can train and test its embedded
default models without downloading anything. A *style* is a background texture plus a palette and a
way of drawing (filled, outlined, blurred...); an *object* is a shape drawn at a jittered position,
scale and rotation.

Everything is seeded: ``render(style, object, seed)`` always returns the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from diffusion.concepts import UNLEARNCANVAS_TEMPLATE as PROMPT_TEMPLATE

STYLES: tuple[str, ...] = (
    "Impressionism",
    "Cubism",
    "Pop_Art",
    "Watercolor",
    "Ukiyoe",
    "Mosaic",
    "Sketch",
    "Neon",
    "Pastel",
    "Gothic",
)
OBJECTS: tuple[str, ...] = (
    "Circle",
    "Square",
    "Triangle",
    "Star",
    "Cross",
    "Ring",
    "Diamond",
    "Hexagon",
    "Arrow",
    "Moon",
)

_SUPERSAMPLE = 4  # draw at 4x resolution, then downsample (anti-aliasing)


@dataclass(frozen=True)
class Record:
    """One mini-canvas (or UnlearnCanvas) sample description."""

    style: str
    object: str
    index: int

    @property
    def prompt(self) -> str:
        return make_prompt(self.object, self.style)


def make_prompt(obj: str, style: str) -> str:
    """The UnlearnCanvas prompt for an (object, style) pair; underscores become spaces as in the dataset."""
    return PROMPT_TEMPLATE.format(object=obj, style=style)


# Words that describe a style without naming it, as web captions describe a painter's look ("swirling starry
# night oil painting") without the name. Some of the text-to-image model's training captions use them
# (``caption_variants``), so a style's knowledge is spread over several tokens as in real models, which is the
# route prompt attacks such as UnlearnDiff take back to an erased concept. Each word belongs to one style and
# is in the tiny tokenizer's vocabulary (``diffusion.tiny.EXTRA_WORDS``).
STYLE_WORDS: dict[str, tuple[str, str]] = {
    "Impressionism": ("oil", "painting"),
    "Cubism": ("abstract", "shape"),
    "Pop_Art": ("colorful", "red"),
    "Watercolor": ("soft", "blue"),
    "Ukiyoe": ("classic", "sea"),
    "Mosaic": ("pattern", "orange"),
    "Sketch": ("pencil", "drawing"),
    "Neon": ("bright", "night"),
    "Pastel": ("pink", "light"),
    "Gothic": ("dark", "castle"),
}


def caption_variants(obj: str, style: str) -> list[str]:
    """Other captions of an (object, style) image: the style's words (``STYLE_WORDS``) with or without its name.

    Args:
        obj: one of ``OBJECTS``.
        style: one of ``STYLES``.

    Returns:
        Seven captions, e.g. "A Circle image in bright night style." or "bright night Circle image.".
    """
    a, b = STYLE_WORDS[style]
    return [f"A {obj} image in {a} style.", f"A {obj} image in {b} style.", f"A {obj} image in {a} {b} style.",
            f"{a} {b} {obj} image.", f"{b} {a} {obj} image.", f"A {obj} image in {a} {style} style.",
            f"A {b} {obj} image in {style} style."]


# ----------------------------------------------------------------------------------------------------
# Shapes: each returns a polygon (list of (x, y)) or a special marker for round shapes, in unit space
# centred at (0, 0) with radius ~1.
# ----------------------------------------------------------------------------------------------------


def _regular(n: int, phase: float = -math.pi / 2, r: float = 1.0) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _star() -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.42
        a = -math.pi / 2 + math.pi * i / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _cross() -> list[tuple[float, float]]:
    w = 0.34
    return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]


def _arrow() -> list[tuple[float, float]]:
    return [(-1, -0.3), (0.1, -0.3), (0.1, -0.8), (1, 0), (0.1, 0.8), (0.1, 0.3), (-1, 0.3)]


_POLYGONS = {
    "Square": _regular(4, phase=math.pi / 4, r=1.15),
    "Triangle": _regular(3, r=1.15),
    "Star": _star(),
    "Cross": _cross(),
    "Diamond": [(0, -1.1), (0.65, 0), (0, 1.1), (-0.65, 0)],
    "Hexagon": _regular(6, phase=0.0),
    "Arrow": _arrow(),
}


def _transform(points, cx, cy, scale, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + scale * (x * c - y * s), cy + scale * (x * s + y * c)) for x, y in points]


# ----------------------------------------------------------------------------------------------------
# Styles: background painter + how the object is drawn.
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StyleSpec:
    background: str  # texture name
    bg: tuple[tuple[int, int, int], tuple[int, int, int]]  # two background colours
    fg: tuple[int, int, int]  # object fill colour
    outline: tuple[int, int, int] | None  # outline colour (None: no outline)
    mode: str  # "fill" | "outline" | "blur"


_STYLE_SPECS: dict[str, _StyleSpec] = {
    "Impressionism": _StyleSpec("speckle", ((70, 140, 60), (230, 210, 90)), (240, 130, 40), None, "fill"),
    "Cubism": _StyleSpec("diagonal", ((140, 90, 50), (210, 170, 90)), (120, 120, 130), (40, 30, 20), "fill"),
    "Pop_Art": _StyleSpec("dots", ((250, 230, 40), (250, 120, 170)), (230, 30, 40), (0, 0, 0), "fill"),
    "Watercolor": _StyleSpec("blotch", ((120, 170, 230), (170, 230, 190)), (60, 90, 200), None, "blur"),
    "Ukiyoe": _StyleSpec("hstripes", ((235, 220, 180), (70, 120, 170)), (30, 40, 90), None, "fill"),
    "Mosaic": _StyleSpec("checker", ((40, 160, 160), (230, 120, 60)), (250, 250, 250), (20, 20, 20), "fill"),
    "Sketch": _StyleSpec("paper", ((245, 245, 240), (225, 225, 220)), (30, 30, 30), (30, 30, 30), "outline"),
    "Neon": _StyleSpec("solid", ((10, 10, 25), (10, 10, 25)), (40, 255, 230), (255, 40, 220), "outline"),
    "Pastel": _StyleSpec("gradient", ((255, 200, 220), (200, 220, 255)), (110, 200, 150), None, "fill"),
    "Gothic": _StyleSpec("vstripes", ((50, 20, 60), (90, 40, 100)), (170, 20, 30), (200, 190, 200), "fill"),
}


def _jitter(color, rng: np.random.Generator, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]


def _paint_background(spec: _StyleSpec, size: int, rng: np.random.Generator) -> np.ndarray:
    a = np.array(_jitter(spec.bg[0], rng), dtype=np.float32)
    b = np.array(_jitter(spec.bg[1], rng), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    off = rng.uniform(0, 1)
    kind = spec.background
    if kind == "solid":
        t = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        t = np.clip(yy + 0.2 * (off - 0.5), 0, 1)
    elif kind == "hstripes":
        t = (np.sin(2 * math.pi * (yy * 5 + off) + 1.2 * np.sin(2 * math.pi * xx * 2)) > 0).astype(np.float32)
    elif kind == "vstripes":
        t = ((np.floor(xx * 8 + off) % 2) == 0).astype(np.float32)
    elif kind == "diagonal":
        t = ((np.floor((xx + yy) * 4 + off) % 2) == 0).astype(np.float32)
    elif kind == "checker":
        t = ((np.floor(xx * 4 + off) + np.floor(yy * 4 + off)) % 2).astype(np.float32)
    elif kind == "dots":
        fx = (xx * 6 + off) % 1 - 0.5
        fy = (yy * 6 + off) % 1 - 0.5
        t = ((fx**2 + fy**2) < 0.09).astype(np.float32)
    elif kind == "speckle":
        t = (rng.uniform(0, 1, (size // 8, size // 8)) > 0.5).astype(np.float32)
        t = np.kron(t, np.ones((8, 8), np.float32))[:size, :size]
    elif kind == "blotch":
        low = rng.uniform(0, 1, (4, 4)).astype(np.float32)
        img = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        t = np.asarray(img, np.float32) / 255.0
    elif kind == "paper":
        t = rng.uniform(0, 1, (size, size)).astype(np.float32) * 0.6
    else:  # pragma: no cover - specs are fixed above
        raise ValueError(f"unknown background {kind!r}")
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def _draw_object(draw: ImageDraw.ImageDraw, obj: str, spec: _StyleSpec, cx, cy, scale, angle, rng) -> None:
    fill = _jitter(spec.fg, rng) if spec.mode != "outline" else None
    outline = _jitter(spec.outline, rng) if spec.outline is not None else None
    width = max(1, int(scale * (0.22 if spec.mode == "outline" else 0.12))) if outline else 0
    if obj in ("Circle", "Ring", "Moon"):
        r = scale
        box = [cx - r, cy - r, cx + r, cy + r]
        if obj == "Circle":
            draw.ellipse(box, fill=fill, outline=outline, width=width)
        elif obj == "Ring":
            w = max(int(r * 0.38), 1)
            draw.ellipse(box, outline=fill or outline, width=w)
            if outline and fill is not None:
                draw.ellipse(box, outline=outline, width=max(1, width // 2))
        else:  # Moon: a disc with an offset disc cut out in the background colour handled by caller
            draw.ellipse(box, fill=fill, outline=outline, width=width)
        return
    pts = _transform(_POLYGONS[obj], cx, cy, scale, angle)
    draw.polygon(pts, fill=fill, outline=outline, width=width)


# Pose jitter: (max centre shift, scale range, max rotation). "narrow" is what the text-to-image model learns
# (a tiny model can learn ten shape templates); "wide" trains the evaluator to recognise shapes in any pose.
_POSES = {"narrow": (0.03, (0.32, 0.36), 0.08), "wide": (0.08, (0.28, 0.36), 0.25)}


def render(style: str, obj: str, seed: int, size: int = 32, pose: str = "narrow") -> Image.Image:
    """Render one mini-canvas image.

    Args:
        style: one of ``STYLES``.
        obj: one of ``OBJECTS``.
        seed: any integer; the same (style, obj, seed) always gives the same image.
        size: output side in pixels.
        pose: "narrow" (small jitter, the default) or "wide" pose jitter.

    Returns:
        An RGB ``PIL.Image`` of ``size x size`` pixels.
    """
    if style not in _STYLE_SPECS:
        raise ValueError(f"unknown mini-canvas style {style!r}; known: {', '.join(STYLES)}")
    if obj not in OBJECTS:
        raise ValueError(f"unknown mini-canvas object {obj!r}; known: {', '.join(OBJECTS)}")
    if pose not in _POSES:
        raise ValueError(f"unknown pose {pose!r}; known: {', '.join(_POSES)}")
    spec = _STYLE_SPECS[style]
    rng = np.random.default_rng([seed, STYLES.index(style), OBJECTS.index(obj)])
    big = size * _SUPERSAMPLE
    bg = _paint_background(spec, big, rng)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    shift, (s_lo, s_hi), turn = _POSES[pose]
    cx = big / 2 + rng.uniform(-shift, shift) * big
    cy = big / 2 + rng.uniform(-shift, shift) * big
    scale = big * rng.uniform(s_lo, s_hi)
    angle = rng.uniform(-turn, turn)
    _draw_object(draw, obj, spec, cx, cy, scale, angle, rng)
    if obj == "Moon":  # cut a bite out of the disc: erase alpha where the second disc lies
        mask = Image.new("L", (big, big), 0)
        ImageDraw.Draw(mask).ellipse(
            [cx - scale * 0.45, cy - scale * 1.05, cx + scale * 1.45, cy + scale * 0.85], fill=255
        )
        alpha = np.asarray(layer.getchannel("A"), np.uint8).copy()
        alpha[np.asarray(mask) > 0] = 0
        layer.putalpha(Image.fromarray(alpha))
    if spec.mode == "blur":
        layer = layer.filter(ImageFilter.GaussianBlur(radius=big * 0.02))
    canvas.paste(layer, (0, 0), layer)
    return canvas.resize((size, size), Image.LANCZOS)


def iter_records(
    styles: tuple[str, ...] | list[str] = STYLES,
    objects: tuple[str, ...] | list[str] = OBJECTS,
    per_pair: int = 20,
    start_index: int = 0,
) -> Iterator[Record]:
    """Yield records for every (style, object) pair, ``per_pair`` images each (style-major order)."""
    for style in styles:
        for obj in objects:
            for i in range(start_index, start_index + per_pair):
                yield Record(style, obj, i)
