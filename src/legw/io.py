"""Files that are never left half-written: write to a temporary file, fsync, rename.

Plus the checks and readers every command shares: an output path is checked before any work
(:func:`check_writable_dir`, :func:`check_writable_file`), a file that cannot be read raises
``ValueError`` naming it (:func:`read_json`, :func:`read_text`), and JSON is written strictly
(non-finite numbers become ``null``, so ``jq`` and browsers read every record).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ``.NAME.XXXXXXXX.tmp``: what atomic_path writes (8 random characters; tempfile's alphabet
# in earlier versions, hex digits now).
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On error the temporary file is removed and ``path`` is untouched. The file gets the
    permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _create_temporary(path: Path) -> str:
    """An empty new file ``.NAME.XXXXXXXX.tmp`` beside ``path``, created with mode 0o666 so
    that the kernel applies the umask (``tempfile.mkstemp`` would force 0o600)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:
            continue


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` leaves behind when its process is
    killed mid-write (e.g. a checkpoint-sized ``.step-000000010.pt.XXXXXXXX.tmp``).

    Call it only where no other process writes into ``directory`` at the same time (a run
    directory at the start of its run). Returns the files removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [p for p in directory.iterdir() if _TEMPORARY.match(p.name)]
    for p in removed:
        if p.is_dir():  # a sharded checkpoint's directory, written by every rank
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


def check_writable_dir(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, a directory ``path`` that cannot be created or written into:
    ``ValueError`` naming ``flag`` and what is in the way. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}: cannot write {path}: it is a file, not a directory; choose "
                         "another path")
    _check_creatable(path, path, flag)


def check_writable_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, a file ``path`` that cannot be written (see
    :func:`check_writable_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag}: cannot write {path}: it is a directory; give a file name")
    _check_creatable(path.parent, path, flag)


def _check_creatable(directory: Path, target: Path, flag: str) -> None:
    """The nearest existing ancestor of ``directory`` must be a writable directory."""
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{flag}: cannot write {target}: {existing} is a file; choose another "
                         "path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: cannot write {target}: {existing} is not writable; choose "
                         "another path or change its permissions")


def check_input_file(path: str | os.PathLike, flag: str) -> None:
    """``FileNotFoundError`` naming ``flag`` unless ``path`` is an existing file."""
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "not found"
        raise FileNotFoundError(f"{flag}: {path} {what}; give an existing file")


def strict_json(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by ``None`` (JSON ``null``):
    ``json.dumps`` would write ``NaN`` / ``Infinity``, which strict JSON readers reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON (see :func:`strict_json`)."""
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json_text(obj, indent=2) + "\n")


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text in ``path``; a file that is not UTF-8 raises ``ValueError`` naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {e.start}: "
                         f"{e.object[e.start:e.start + 1]!r})") from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a file that is not UTF-8 JSON raises ``ValueError`` naming it."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, "
                         f"column {e.colno})") from None


def read_dataclass(cls: type, path: str | os.PathLike, **fixed: Any) -> Any:
    """``cls(**JSON of path, **fixed)`` for a dataclass ``cls``; a file of the wrong shape or
    with an unknown field raises ``ValueError`` naming the file."""
    import dataclasses

    data = read_json(path)
    known = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with the fields of {cls.__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r} (a {cls.__name__} has "
                         f"{', '.join(sorted(known))})")
    try:
        return cls(**{**data, **fixed})
    except TypeError as e:  # a required field is missing
        raise ValueError(f"{path}: not a {cls.__name__} ({e})") from None


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json_text(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
