"""Fixtures of the command tests: the CLI run in-process, a working directory of its own, and
a tiny Fashion-MNIST-shaped data set."""

from pathlib import Path

import pytest
from helpers import make_mnist_dir

from legw.cli import main
from legw.data.mnist import SYSTEM_DIRS, cache_dir


@pytest.fixture
def fashion_mnist():
    """Skip unless the real Fashion-MNIST is installed (the task's default loader finds it)."""
    if not any((d / "train-images-idx3-ubyte.gz").exists()
               or (d / "train-images-idx3-ubyte").exists()
               for d in [cache_dir("fashion-mnist"), *map(Path, SYSTEM_DIRS["fashion-mnist"])]):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit status, stdout, stderr)`` of ``legw ARGV``, in this process."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in ``tmp_path``: the commands' default outputs go to its runs/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)
