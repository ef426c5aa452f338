"""Outputs that can be trusted: checked before the first step, written whole or not at all.

A model folder, a checkpoint or a report is first written into a hidden sibling folder, every file is flushed to
disk (fsync), and only then is the folder renamed into place, so a crash, a full disk or a bad value leaves either
the old output or the new one, never half of one. ``check_output_dir`` runs before any training: the output may not
be the model it comes from (nor inside it), must be writable, and is never replaced unless the caller asks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

logger = logging.getLogger(__name__)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse_occupied(folder: Path, keep: Iterable[str], overwrite: bool, name: str) -> None:
    """Raise when ``folder`` holds entries other than ``keep`` and the caller did not ask to overwrite."""
    extra = sorted(p.name for p in folder.iterdir() if p.name not in set(keep))
    if extra and not overwrite:
        raise ValueError(f"{name} already holds files ({', '.join(extra[:3])}{'...' if len(extra) > 3 else ''}); "
                         "pass --overwrite (overwrite=True) to replace them, or choose another folder")


def check_output_dir(out: str | os.PathLike, sources: Iterable[str | os.PathLike | None] = (),
                     overwrite: bool = False, keep: Iterable[str] = (), what: str = "--out") -> Path:
    """Refuse an output folder that would lose something, before any work starts.

    Args:
        out: the folder a result will be written to.
        sources: folders the result is made from (the model): ``out`` may be neither one of them nor inside one.
        overwrite: allow replacing an existing, non-empty ``out``.
        keep: entries ``out`` may already hold without ``overwrite`` (e.g. its checkpoints when resuming).
        what: how the user named the folder (the CLI option), for the message.

    Returns:
        ``out`` as a resolved path.

    Raises:
        ValueError: one line naming the folder and the problem.
    """
    path = Path(out).expanduser().resolve()
    for src in sources:
        if src is None:
            continue
        folder = Path(src).expanduser().resolve()
        if _inside(path, folder):
            raise ValueError(f"{what} {out} is {'the model folder' if path == folder else 'inside the model folder'} "
                             f"{src}: writing there would change the model it is made from; choose another folder")
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} {out} exists and is not a folder")
        _refuse_occupied(path, keep, overwrite, f"{what} {out}")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{what} {out} cannot be created: {ancestor} is a file, not a folder")
    try:
        Path(tempfile.mkdtemp(dir=ancestor, prefix=".erasure-write-test-")).rmdir()
    except OSError as err:
        raise ValueError(f"{what} {out} cannot be written: {err.strerror or err} ({ancestor})") from err
    return path


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it (a reader never sees half a file); the parent
    folder is made. With ``overwrite=False`` an existing file is refused (``FileExistsError``). Returns the path."""
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


@contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False, carry: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``out`` to write into; on success, flush it and rename it to ``out``.

    On an exception the temporary folder is removed and ``out`` is left as it was. An existing ``out`` is
    replaced only with ``overwrite`` or when it holds nothing but the ``carry`` entries; those entries (e.g. the
    run's checkpoints) are moved into the new folder.

    Args:
        out: the final folder.
        overwrite: replace an existing, non-empty ``out``.
        carry: names of entries of an existing ``out`` to move into the new one.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the output gets the usual permissions
    carried: list[str] = []
    try:
        yield tmp
        if out.exists():
            carried = [n for n in carry if (out / n).exists()]
            _refuse_occupied(out, carried, overwrite, str(out))  # again: something may have appeared meanwhile
            for name in carried:
                if (tmp / name).exists():
                    raise ValueError(f"cannot carry {out / name} over: the new output has its own {name}")
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        for name in carried:
            os.replace(out / name, tmp / name)
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:  # put the earlier output back
            os.replace(old / out.name, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("wrote %s", out)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def require_safetensors(folder: str | os.PathLike) -> None:
    """Refuse a model folder whose weights are pickles only: loading runs nothing but safetensors.

    Raises:
        ValueError: naming the pickle file and how to convert it.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{folder} holds pickled weights ({pickles[0]}) and no .safetensors file; this toolkit loads "
                         "safetensors only: convert them once where you trust the file (load it, then "
                         "save_pretrained(..., safe_serialization=True))")


SIGNIFICANT_DIGITS = 6  # reports keep this many significant digits: float32 noise (0.18000000715255737) is not data


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """``value`` with every float (in nested dicts, lists and tuples) rounded to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def report_json(record: Any) -> str:
    """A report's JSON text: floats rounded (``rounded``), indented, non-JSON values as strings."""
    return json.dumps(rounded(record), indent=2, default=str)
