"""Forget / retain data as rows, from whatever a user holds: lists, every ``datasets`` type, saved folders.

The loop draws batches by index, so every source becomes a sized, indexable sequence of rows here, once, before
the first step: a ``Dataset`` as it is, a ``DatasetDict`` by its one split (or a clear error naming its splits),
an ``IterableDataset`` read into memory, a ``save_to_disk`` folder through ``datasets.load_from_disk``.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any, Sequence

MAX_STREAMED_ROWS = 1_000_000  # an IterableDataset longer than this is refused (forget/retain sets are small)


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_dict.json", "state.json"))


def load_saved_dataset(path: str | os.PathLike, what: str = "data") -> Any:
    """``datasets.load_from_disk`` with a one-line error naming the folder."""
    from datasets import load_from_disk

    try:
        return load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise ValueError(f"{what}: cannot read the saved dataset {path}: {' '.join(str(err).split())[:200]}") from err


def as_rows(data: Any, what: str = "forget", split: str | None = None) -> Sequence[Any] | None:
    """A sized, indexable sequence of rows from ``data``.

    Args:
        data: None, a list / tuple of rows, a ``datasets.Dataset``, ``DatasetDict`` (one split, or ``split``),
            ``IterableDataset`` / ``IterableDatasetDict`` (read into memory), or a ``save_to_disk`` folder path.
        what: the argument's name, for errors ("forget", "retain").
        split: the split to take from a dataset dict (a dict with one split needs none).

    Returns:
        The rows (a ``Dataset`` stays a ``Dataset``; other sources become lists), or None for None.
    """
    import datasets

    if data is None or isinstance(data, (list, tuple, datasets.Dataset)):
        if split is not None and data is not None:
            raise ValueError(f"{what}: split={split!r} is for a dataset dict, but {what} is a "
                             f"{type(data).__name__}")
        return data
    if isinstance(data, (str, os.PathLike)) and is_saved_dataset(data):
        return as_rows(load_saved_dataset(data, what), what, split)
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        names = list(data)
        if split is None and len(names) != 1:
            raise ValueError(f"{what} is a dataset dict with splits {names}: name one, e.g. {what}=data[{names[0]!r}]")
        if split is not None and split not in data:
            raise ValueError(f"{what}: no split {split!r} in the dataset dict (splits: {names})")
        return as_rows(data[split or names[0]], what)
    if isinstance(data, datasets.IterableDataset):
        rows = list(itertools.islice(data, MAX_STREAMED_ROWS + 1))
        if len(rows) > MAX_STREAMED_ROWS:
            raise ValueError(f"{what}: the IterableDataset yields more than {MAX_STREAMED_ROWS} rows; take the rows "
                             f"to unlearn first (e.g. {what}=stream.take(n))")
        return rows
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return data
    raise ValueError(f"{what}: expected rows (a list, a datasets Dataset / DatasetDict / IterableDataset or a "
                     f"save_to_disk folder), got {type(data).__name__}")


def replace_concept(prompts: Sequence[str], concept: str, replacement: str, who: str = "this") -> list[str]:
    """Each prompt with every whole-word occurrence of ``concept`` (case-insensitive) replaced by ``replacement``;
    ``ValueError`` naming ``who`` needs it when a prompt lacks it.

    Methods and attacks that work on the concept's words inside prompts (UCE, CA, Ring-A-Bell, CCE) share it.
    """
    if not concept.strip():
        raise ValueError(f"{who} needs a non-empty concept")
    pattern = re.compile(rf"(?<!\w){re.escape(concept)}(?!\w)", flags=re.IGNORECASE)  # whole words only
    missing = [p for p in prompts if not pattern.search(p)]
    if missing:
        raise ValueError(f"{who} works on the concept's words inside each prompt, but {missing[0]!r} does not "
                         f"contain {concept!r}")
    return [pattern.sub(lambda _: replacement, p) for p in prompts]
