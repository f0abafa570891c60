"""--eval-every: evaluation inside epochs, at the same epochs whatever the batch size."""

import pytest
from helpers import make_mnist_dir, read_jsonl

from legw.cli import main
from legw.training.config import TrainConfig
from legw.training.trainer import train


@pytest.mark.parametrize("batch, steps", [(32, 8), (64, 4)])
def test_evaluations_every_quarter_epoch(tmp_path, batch, steps):
    data = make_mnist_dir(tmp_path / "data")  # 256 samples
    train(TrainConfig(task="fashion-mnist-lstm", global_batch_size=batch, epochs=1.0,
                      eval_every=0.25, num_threads=1, quiet=True, data_dir=str(data),
                      out_dir=str(tmp_path / "run")))
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [0.25, 0.5, 0.75, 1.0]
    assert [r["step"] for r in evals] == [steps // 4 * i for i in range(1, 5)]


def test_a_negative_interval_is_refused(capsys):
    assert main(["train", "fashion-mnist-lstm", "--eval-every", "-1"]) == 2
    assert "--eval-every: must be a non-negative number" in capsys.readouterr().err


def test_a_run_stopping_mid_epoch_on_an_evaluation_step_evaluates_once(tmp_path):
    data = make_mnist_dir(tmp_path / "data")  # 256 samples, 8 steps an epoch at 32
    config = dict(task="fashion-mnist-lstm", global_batch_size=32, epochs=1.0, eval_every=0.25,
                  num_threads=1, quiet=True, data_dir=str(data), out_dir=str(tmp_path / "run"))
    train(TrainConfig(**config, max_steps=4))   # stops at 0.5 epochs, an evaluation step
    train(TrainConfig(**config, max_steps=6, resume=True))
    train(TrainConfig(**config, resume=True))  # to the end
    train(TrainConfig(**config, resume=True))  # a finished run: nothing more is evaluated
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
