"""Device selection on a machine without CUDA: ``auto`` falls back to the CPU, and an explicit
``--device cuda`` is a one-line user error (exit 2) before anything is written."""

import pytest
import torch
from helpers import make_mnist_dir, one_line_error

from legw.training.device import autocast, select_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")


@no_cuda
def test_auto_is_the_cpu_without_cuda():
    assert select_device("auto", 0) == torch.device("cpu")
    assert select_device("cpu", 0) == torch.device("cpu")


@no_cuda
def test_cuda_without_cuda_raises_naming_the_flag():
    with pytest.raises(ValueError, match="--device: cuda requested"):
        select_device("cuda", 0)


@no_cuda
def test_cli_device_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    data = make_mnist_dir(tmp_path / "data", n_train=32, n_test=16)
    out = tmp_path / "run"
    line = one_line_error(capsys, ["train", "fashion-mnist-lstm", "--data-dir", str(data),
                                   "--device", "cuda", "--max-steps", "1", "--quiet",
                                   "--out", str(out)])
    assert line == "legw: error: --device: cuda requested but no CUDA device is available"
    assert not out.exists()  # refused before the run directory was made


def test_autocast_is_off_on_the_cpu():
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
