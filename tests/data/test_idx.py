import gzip
import struct

import numpy as np
import pytest

from legw.data.idx import read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (3, 4, 5)])
def test_round_trip(tmp_path, suffix, shape):
    a = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"x-ubyte{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.uint8 and b.shape == shape
    np.testing.assert_array_equal(a, b)


def test_header_bytes_are_the_mnist_layout(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, np.zeros((2, 28, 28), np.uint8))
    raw = path.read_bytes()
    assert raw[:16] == bytes.fromhex("00000803") + struct.pack(">3I", 2, 28, 28)
    assert len(raw) == 16 + 2 * 28 * 28
    write_idx(tmp_path / "labels", np.arange(3, dtype=np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes.fromhex("00000801 00000003 000102")


def test_gz_file_is_really_gzip(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(4, dtype=np.uint8))
    assert gzip.decompress(path.read_bytes())[:4] == bytes.fromhex("00000801")


def test_truncated_payload(tmp_path):
    path = tmp_path / "trunc-ubyte"
    write_idx(path, np.ones((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"trunc-ubyte.*truncated payload"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "long-ubyte"
    write_idx(path, np.ones((4,), np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match=r"long-ubyte.*trailing bytes"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "hdr-ubyte"
    path.write_bytes(bytes.fromhex("00000803") + struct.pack(">I", 2))
    with pytest.raises(ValueError, match=r"hdr-ubyte.*truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match=r"hdr-ubyte.*too short"):
        read_idx(path)


@pytest.mark.parametrize("magic", ["00000903", "01000803", "00000d03", "00000800", "00000805"])
def test_wrong_magic(tmp_path, magic):
    path = tmp_path / "magic-ubyte"
    path.write_bytes(bytes.fromhex(magic) + bytes(64))
    with pytest.raises(ValueError, match=rf"magic-ubyte.*magic number 0x{magic}"):
        read_idx(path)


def test_wrong_dimensionality(tmp_path):
    path = tmp_path / "labels-ubyte"
    write_idx(path, np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match=r"labels-ubyte.*2-D, expected 1-D"):
        read_idx(path, expect_ndim=1)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match=r"bad\.gz.*not a readable gzip"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    write_idx(path, np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"cut\.gz.*not a readable gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope-ubyte")


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="dtype must be uint8"):
        write_idx(tmp_path / "f", np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="ndim must be 1..4"):
        write_idx(tmp_path / "f", np.zeros((1,) * 5, np.uint8))
    assert list(tmp_path.iterdir()) == []
