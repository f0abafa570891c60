"""MNIST and Fashion-MNIST as in-memory tensors.

Lookup order for the four IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``:

1. ``data_dir`` when given, and then only there (a directory without the files is an error);
2. the cache: ``$LEGW_DATA/<name>`` if ``LEGW_DATA`` is set, else ``~/.cache/legw/<name>``;
3. for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``);
4. a download from the official mirrors into the cache (when ``download=True``), each file
   checked against its published SHA-256 and written atomically.

Files found locally are validated by structure (IDX magic, dimensions, exact payload length,
matching image and label counts), not by checksum: Debian recompresses the archives, so their
bytes differ from the published ones while the decoded data is the same.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from legw.data.idx import read_idx
from legw.io import atomic_path

SYSTEM_DIRS = {"mnist": (), "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
SPLITS = {"train": "train", "test": "t10k"}
NUM_CLASSES = 10

# Published SHA-256 of the gzip archives as served by the mirrors below. MNIST: the same digests
# are listed by many projects for the ossci-datasets / cvdf mirrors of LeCun's files; Fashion-MNIST:
# the archives in zalandoresearch/fashion-mnist (data/fashion), whose MD5s match torchvision's list.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
HOW_TO_GET = {
    "mnist": "put the 4 MNIST files {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "
             "in --data-dir (or $LEGW_DATA/mnist)",
    "fashion-mnist": "run `apt-get install dataset-fashion-mnist`, or put the 4 files "
                     "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz in --data-dir",
}


def cache_dir(name: str) -> Path:
    """``$LEGW_DATA/<name>`` if ``LEGW_DATA`` is set, else ``~/.cache/legw/<name>``."""
    root = os.environ.get("LEGW_DATA")
    base = Path(root) if root else Path.home() / ".cache" / "legw"
    return base / name


def _fetch(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _download(name: str, filename: str, target: Path, fetch: Callable[[str], bytes]) -> None:
    """Try each mirror; keep the first payload whose SHA-256 matches, write it atomically."""
    expected = SHA256[name][filename]
    problems = []
    for mirror in MIRRORS[name]:
        url = mirror + filename
        try:
            payload = fetch(url)
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, DNS, cut-offs
            problems.append(f"{url}: {e}")
            continue
        digest = hashlib.sha256(payload).hexdigest()
        if digest != expected:
            problems.append(f"{url}: sha256 {digest} != expected {expected}")
            continue
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(payload)
        return
    raise FileNotFoundError(
        f"{name}: could not download {filename} ({'; '.join(problems)}); {HOW_TO_GET[name]}"
    )


def split_name(prefix: str) -> str:
    return "test" if prefix == "t10k" else "train"


def find_mnist(
    name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = True,
    *, fetch: Callable[[str], bytes] = _fetch,
) -> tuple[Path, Path]:
    """The (images, labels) files of a split: in ``data_dir`` when given (and only there: an
    explicit directory without the files is an error, never a silent fall-back to another
    copy), else the cache, the system directories, or a download into the cache."""
    prefix = SPLITS[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if data_dir is not None:
        return _in_data_dir(name, prefix, Path(data_dir), stems)
    directories = [cache_dir(name), *SYSTEM_DIRS[name]]
    for directory in directories:
        found = [_find(directory, stem) for stem in stems]
        if found[0] is not None and found[1] is not None:
            return found[0], found[1]
    if not download:
        searched = ", ".join(str(d) for d in directories)
        raise FileNotFoundError(
            f"{name}: {stems[0]}[.gz] and {stems[1]}[.gz] not found together in {searched}; "
            f"{HOW_TO_GET[name]}"
        )
    paths = []
    for stem in stems:
        target = cache_dir(name) / f"{stem}.gz"
        if not target.is_file():
            _download(name, target.name, target, fetch)
        paths.append(target)
    return paths[0], paths[1]


def _in_data_dir(name: str, prefix: str, directory: Path, stems: tuple[str, str]
                 ) -> tuple[Path, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"--data-dir: {directory} is not a directory; "
                                f"{HOW_TO_GET[name]}")
    found = [_find(directory, stem) for stem in stems]
    if found[0] is not None and found[1] is not None:
        return found[0], found[1]
    if found != [None, None]:
        missing = stems[found.index(None)]
        raise FileNotFoundError(
            f"{name}: {directory} holds only half of the {split_name(prefix)} split: "
            f"{missing}[.gz] is missing; add it or remove the other file"
        )
    raise FileNotFoundError(f"--data-dir: {directory} has no {stems[0]}[.gz] and "
                            f"{stems[1]}[.gz]; {HOW_TO_GET[name]}")


def load_mnist(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    fetch: Callable[[str], bytes] = _fetch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST or Fashion-MNIST.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: the directory holding the four IDX files (then no other is searched).
        download: fetch missing files from the official mirrors into the cache.
        fetch: ``url -> bytes`` used for downloading (replaceable in tests).

    Returns:
        ``(images, labels)``: ``uint8`` of shape ``(N, 28, 28)`` and ``int64`` of shape ``(N,)``.
    """
    if name not in SHA256:
        raise ValueError(f"name must be one of {sorted(SHA256)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    images_path, labels_path = find_mnist(name, split, data_dir, download, fetch=fetch)
    images = read_idx(images_path, expect_ndim=3)
    labels = read_idx(labels_path, expect_ndim=1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images must be 28x28, got {images.shape[1:]}")
    if len(images) != len(labels):
        raise ValueError(
            f"{name} {split}: {images_path} has {len(images)} images but "
            f"{labels_path} has {len(labels)} labels"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        i = int(np.argmax(labels >= NUM_CLASSES))
        raise ValueError(f"{labels_path}: label {labels[i]} of sample {i} is outside "
                         f"0..{NUM_CLASSES - 1}; the file is not MNIST-like labels")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


# Per-pixel mean and std of the training images scaled to [0, 1]. MNIST: the widely used values;
# Fashion-MNIST: computed over the 60,000 training images of the official files.
MEAN_STD = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def normalize(images: torch.Tensor, name: str) -> torch.Tensor:
    """``uint8`` pixels -> float32 ``(x / 255 - mean) / std`` with the dataset's statistics."""
    if name not in MEAN_STD:
        raise ValueError(f"name must be one of {sorted(MEAN_STD)}, got {name!r}")
    mean, std = MEAN_STD[name]
    return (images.to(torch.float32) / 255.0 - mean) / std
