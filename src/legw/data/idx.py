"""IDX files (the MNIST / Fashion-MNIST container format), read and written with checks.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/), all integers big-endian::

    offset 0: magic = 0x00 0x00 <dtype code> <ndim>      e.g. 0x00000803 = uint8, 3-D
    offset 4: ndim x uint32 sizes                          e.g. 60000, 28, 28
    offset 4 + 4*ndim: the payload, prod(sizes) items, C order

Only dtype code 0x08 (unsigned byte) is supported: it is the only one MNIST-like data uses.
Files ending in ``.gz`` are gzip-compressed. Any mismatch -> ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from legw.io import atomic_path

UBYTE = 0x08
IMAGES_MAGIC = 0x00000803  # uint8, 3-D: (N, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1-D: (N,)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises BadGzipFile (an OSError) for a wrong header, EOFError when truncated.
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable gzip file ({e})") from e


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (raw or ``.gz``) into a ``numpy.uint8`` array.

    Checks: the two leading zero bytes, dtype code 0x08, ``ndim`` in 1..4 (and equal to
    ``expect_ndim`` when given), and that the payload is exactly ``prod(sizes)`` bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0 or code != UBYTE or not 1 <= ndim <= 4:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} "
            f"(expected 0x{IMAGES_MAGIC:08x} images or 0x{LABELS_MAGIC:08x} labels)"
        )
    if expect_ndim is not None and ndim != expect_ndim:
        raise ValueError(
            f"{path}: IDX magic 0x{magic:08x} says {ndim}-D, expected {expect_ndim}-D"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes after"
        raise ValueError(
            f"{path}: {what} payload: dimensions {shape} need {expected} bytes, found {got}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array (1-D to 4-D) as an IDX file, gzip-compressed if ``path`` ends in .gz.

    The file is written atomically (temporary file + rename).
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx: array dtype must be uint8, got {array.dtype}")
    if not 1 <= array.ndim <= 4:
        raise ValueError(f"write_idx: array ndim must be 1..4, got {array.ndim}")
    blob = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += np.ascontiguousarray(array).tobytes()
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.open(tmp, "wb") as f:
                f.write(blob)
        else:
            Path(tmp).write_bytes(blob)
