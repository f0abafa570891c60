import gzip
import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import legw.data.mnist as mnist
from legw.data.idx import write_idx
from legw.data.mnist import load_mnist, normalize

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_split(directory: Path, prefix: str, n: int, seed: int, n_labels: int | None = None,
                suffix: str = ".gz") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n if n_labels is None else n_labels,), dtype=np.uint8)
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty cache, no system directory, and a fetch that fails if called."""
    monkeypatch.setenv("LEGW_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": ()})
    return tmp_path


def no_network(url: str) -> bytes:
    raise OSError(f"network disabled in tests ({url})")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_from_data_dir(isolated, suffix):
    d = isolated / "d"
    images, labels = write_split(d, "t10k", 6, seed=0, suffix=suffix)
    x, y = load_mnist("mnist", "test", data_dir=d, fetch=no_network)
    assert x.dtype == torch.uint8 and x.shape == (6, 28, 28)
    assert y.dtype == torch.int64 and y.shape == (6,)
    np.testing.assert_array_equal(x.numpy(), images)
    np.testing.assert_array_equal(y.numpy(), labels)


def test_length_mismatch(isolated):
    d = isolated / "d"
    write_split(d, "train", 5, seed=0, n_labels=4)
    with pytest.raises(ValueError, match=r"5 images but .*labels-idx1-ubyte.gz has 4 labels"):
        load_mnist("fashion-mnist", "train", data_dir=d, fetch=no_network)


def test_corrupt_file_names_the_file(isolated):
    d = isolated / "d"
    write_split(d, "train", 5, seed=0)
    path = d / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-7]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: truncated payload"):
        load_mnist("mnist", "train", data_dir=d, fetch=no_network)


def test_images_and_labels_swapped(isolated):
    d = isolated / "d"
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 10, (5,), dtype=np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 256, (5, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*1-D, expected 3-D"):
        load_mnist("mnist", "train", data_dir=d, fetch=no_network)


def test_lookup_order(isolated, monkeypatch):
    data_dir, cache, system = isolated / "d", isolated / "cache" / "fashion-mnist", isolated / "sys"
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": (system,)})
    sizes = {}
    for directory, n in ((system, 3), (cache, 4), (data_dir, 5)):
        write_split(directory, "train", n, seed=n)
        sizes[directory] = n
    load = lambda **kw: load_mnist("fashion-mnist", "train", fetch=no_network, **kw)  # noqa: E731
    assert len(load(data_dir=data_dir)[0]) == 5  # data_dir first
    assert len(load()[0]) == 4  # then the cache
    for f in cache.iterdir():
        f.unlink()
    assert len(load()[0]) == 3  # then the system directory
    # An explicit directory without the files is refused, never replaced by another copy.
    with pytest.raises(FileNotFoundError, match=r"--data-dir: .*empty is not a directory"):
        load(data_dir=isolated / "empty")
    (isolated / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--data-dir: .*empty has no train-images"):
        load(data_dir=isolated / "empty")


def test_a_directory_needs_both_files(isolated):
    d = isolated / "d"
    write_split(d, "train", 5, seed=0)
    (d / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"holds only half of the train split: "
                       r"train-labels-idx1-ubyte\[\.gz\] is missing"):
        load_mnist("mnist", "train", data_dir=d, download=False)


def test_nowhere_found_says_how_to_get_the_data(isolated, monkeypatch):
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": ()})
    with pytest.raises(FileNotFoundError, match=r"not found together in .*put the 4 MNIST"):
        load_mnist("mnist", "train", download=False)


def fake_mirror(files: dict[str, bytes], log: list[str], fail_first_mirror: bool = False):
    def fetch(url: str) -> bytes:
        log.append(url)
        if fail_first_mirror and "ossci" in url:
            raise OSError("connection refused")
        return files[url.rsplit("/", 1)[1]]
    return fetch


def gz_idx(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    code = {1: "00000801", 3: "00000803"}[array.ndim]
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(bytes.fromhex(code) + struct.pack(f">{array.ndim}I", *array.shape)
                + array.tobytes())
    return buf.getvalue()


@pytest.fixture
def served(monkeypatch):
    """Two fake archives for MNIST's test split, with their SHA-256 installed as the expected."""
    rng = np.random.default_rng(3)
    files = {"t10k-images-idx3-ubyte.gz": gz_idx(rng.integers(0, 256, (4, 28, 28), np.uint8)),
             "t10k-labels-idx1-ubyte.gz": gz_idx(rng.integers(0, 10, (4,), np.uint8))}
    sums = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
    monkeypatch.setitem(mnist.SHA256, "mnist", sums)
    return files


def test_download_into_cache(isolated, served):
    log = []
    x, y = load_mnist("mnist", "test", fetch=fake_mirror(served, log, fail_first_mirror=True))
    assert x.shape == (4, 28, 28) and y.shape == (4,)
    hosts = [u.split("/")[2] for u in log]
    assert hosts == ["ossci-datasets.s3.amazonaws.com", "yann.lecun.com"] * 2
    cache = isolated / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)  # no temp files left
    log.clear()
    x2, _ = load_mnist("mnist", "test", fetch=fake_mirror(served, log))
    assert log == [] and torch.equal(x, x2)  # second call reads the cache


def test_download_sha256_mismatch(isolated, served):
    served["t10k-labels-idx1-ubyte.gz"] = b"tampered" + served["t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1.*sha256 .* != expected"):
        load_mnist("mnist", "test", fetch=fake_mirror(served, []))
    # the good file was kept, the bad one was never written
    assert [p.name for p in (isolated / "cache" / "mnist").iterdir()] == [
        "t10k-images-idx3-ubyte.gz"]


def test_download_failure_says_how_to_get_the_data(isolated):
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_mnist("fashion-mnist", "train", fetch=no_network)


def test_bad_arguments(isolated):
    with pytest.raises(ValueError, match=r"name must be one of .*'kmnist'"):
        load_mnist("kmnist", "train")
    with pytest.raises(ValueError, match=r"split must be one of .*'val'"):
        load_mnist("mnist", "val")


def test_published_checksums_are_well_formed():
    for table in mnist.SHA256.values():
        assert len(table) == 4
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in table.values())


def test_normalize():
    x = normalize(torch.tensor([[0, 255]], dtype=torch.uint8), "mnist")
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]]))


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("LEGW_DATA", str(tmp_path))
    x, y = load_mnist("fashion-mnist", "train", download=False)
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))
    mean, std = mnist.MEAN_STD["fashion-mnist"]
    assert abs(x.float().div(255).mean().item() - mean) < 1e-3
    assert abs(x.float().div(255).std().item() - std) < 1e-3
    x, y = load_mnist("fashion-mnist", "test", download=False)
    assert x.shape == (10000, 28, 28) and torch.equal(torch.bincount(y), torch.full((10,), 1000))
