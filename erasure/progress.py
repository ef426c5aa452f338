"""Progress bars (tqdm) in one place, so library code never prints."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", disable: bool = False, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar unless ``disable`` or ``ERASURE_NO_PROGRESS=1`` is set."""
    disable = disable or os.environ.get("ERASURE_NO_PROGRESS", "") == "1"
    return tqdm(iterable, desc=desc, disable=disable, leave=False, dynamic_ncols=True, **kwargs)
