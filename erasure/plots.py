"""Plots people would rather look at than read, drawn with matplotlib (Agg, no display needed).

Each function writes one PNG and returns its path: the forget / utility trade-off of several runs, the loss curves
of one run's history, and the attack-by-example heat map of an audit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def tradeoff_plot(points: Sequence[tuple[str, float, float]], path: str | os.PathLike, x_label: str, y_label: str,
                  log_y: bool = False, title: str | None = None) -> Path:
    """A labelled scatter plot of (label, x, y) runs, e.g. model utility vs forget quality.

    Args:
        points: (label, x, y); a y that cannot be drawn (non-finite, or <= 0 on a log axis) is left out and named in
            the caption.
        path: the PNG to write.
        x_label, y_label: axis titles.
        log_y: log y axis (forget quality spans many decades).
        title: optional title.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawable = [(n, x, y) for n, x, y in points
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]
    left_out = [n for n, *_ in points if n not in {d[0] for d in drawable}]
    for name, x, y in drawable:
        ax.scatter([x], [y], s=36)
    if log_y:
        ax.set_yscale("log")
    ax.margins(0.15)
    for name, x, y, dx, dy, ha in label_offsets(ax, drawable):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=9)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if left_out:
        fig.text(0.01, 0.01, f"not drawn (no finite value): {', '.join(left_out)}", fontsize=7)
    return _save(fig, path)


def label_offsets(ax: Any, points: Sequence[tuple[str, float, float]], fontsize: float = 9.0
                  ) -> list[tuple[str, float, float, float, float, str]]:
    """(label, x, y, dx, dy, ha): where each point's label goes, in points from the point, so labels of points
    close together do not print over each other: above right, else above left, below right, below left of its
    point (the first spot that no placed label and no other marker covers; above right when none is free). Widths
    are estimated from the label's length."""
    ax.get_xlim(), ax.get_ylim()  # settle the autoscaled limits the transform reads
    per_point = 72.0 / ax.figure.dpi
    spots = [(5.0, 4.0, "left"), (-5.0, 4.0, "right"), (5.0, -4.0 - fontsize, "left"),
             (-5.0, -4.0 - fontsize, "right")]
    where = [tuple(v * per_point for v in ax.transData.transform((x, y))) for _, x, y in points]
    placed = [(px - 3, py - 3, px + 3, py + 3) for px, py in where]  # (x0, y0, x1, y1) in points: markers, labels
    out = []
    for (name, x, y), (px, py) in sorted(zip(points, where), key=lambda p: -p[0][2]):
        width = 0.6 * fontsize * len(name)
        boxes = []
        for dx, dy, ha in spots:
            x0 = px + dx if ha == "left" else px + dx - width
            boxes.append((x0, py + dy, x0 + width, py + dy + fontsize))
        free = [k for k, b in enumerate(boxes)
                if not any(b[0] < q[2] and q[0] < b[2] and b[1] < q[3] and q[1] < b[3] for q in placed)]
        k = free[0] if free else 0
        placed.append(boxes[k])
        out.append((name, x, y, *spots[k]))
    return out


def loss_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Every logged term of one run's history (``erasure.json``'s ``history``) against the step.

    Args:
        history: one dict per step with ``step`` and the loss terms (``loss``, ``forget/...``).
        path: the PNG to write.
        title: optional title.

    Returns:
        ``path``.
    """
    if not history:
        raise ValueError("loss_curves: the history is empty")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [h.get("step", i + 1) for i, h in enumerate(history)]
    keys = [k for k in history[0] if k != "step"]
    for key in keys:
        ax.plot(steps, [h.get(key, float("nan")) for h in history], label=key, lw=1.4 if key == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def attack_heatmap(success: Mapping[str, Sequence[bool | None]], path: str | os.PathLike,
                   example_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Which attack broke which example: rows are attacks, columns examples; dark = recovered, light = held,
    grey = not judged.

    Args:
        success: attack name -> one verdict per example (True recovered, False held, None not judged).
        path: the PNG to write.
        example_labels: column labels (shortened to 18 characters).
        title: optional title.

    Returns:
        ``path``.
    """
    import numpy as np

    names = list(success)
    if not names:
        raise ValueError("attack_heatmap: no attack to draw")
    width = max(len(v) for v in success.values())
    grid = np.full((len(names), width), np.nan)
    for i, name in enumerate(names):
        for j, s in enumerate(success[name]):
            if s is not None:
                grid[i, j] = float(bool(s))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(2.5 + 0.35 * width, 16), 1.2 + 0.45 * len(names)))
    cmap = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1.25, aspect="auto")
    ax.set_yticks(range(len(names)), names)
    labels = [str(x)[:18] for x in (example_labels or range(width))]
    ax.set_xticks(range(width), labels, rotation=60, ha="right", fontsize=7)
    for i, name in enumerate(names):
        rate = np.nanmean(grid[i]) if np.isfinite(grid[i]).any() else float("nan")
        ax.text(width - 0.5 + 0.2, i, f" ASR {rate:.2f}", va="center", fontsize=8)
    ax.set_title(title or "attack success per example (dark: the concept / answer came back)", fontsize=9)
    return _save(fig, path)


def value_matrix(values: Mapping[str, Mapping[str, float | None]], path: str | os.PathLike,
                 title: str | None = None, vmax: float = 1.0) -> Path:
    """A rows x columns heat map with each cell's value written in it (e.g. post-attack ASR: methods x attacks).

    Args:
        values: row label -> column label -> value (None: not measured, grey).
        path: the PNG to write.
        title: optional title.
        vmax: the value drawn darkest.

    Returns:
        ``path``.
    """
    import numpy as np

    rows = list(values)
    if not rows:
        raise ValueError("value_matrix: nothing to draw")
    cols = list(dict.fromkeys(c for r in rows for c in values[r]))
    grid = np.array([[np.nan if values[r].get(c) is None else float(values[r][c]) for c in cols] for r in rows])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(cols), 1.2 + 0.5 * len(rows)))
    cmap = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=vmax * 1.25, aspect="auto")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
