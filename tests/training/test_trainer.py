"""In-process trainer tests on tiny generated data (one process)."""

import json

import pytest
import torch
from helpers import final_params, make_mnist_dir, make_ptb_dir, read_jsonl

from legw.cli import main
from legw.training.config import TrainConfig
from legw.training.trainer import train


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))  # 256 train, 64 test


@pytest.fixture(scope="module")
def ptb_dir(tmp_path_factory):
    return make_ptb_dir(tmp_path_factory.mktemp("ptb"))


def _config(mnist_dir, out, **kw):
    base = dict(task="fashion-mnist-lstm", global_batch_size=32, epochs=3.0, base_lr=0.5,
                base_warmup_epochs=0.5, data_dir=str(mnist_dir), out_dir=str(out), quiet=True,
                num_threads=1, max_steps=6)
    return TrainConfig(**{**base, **kw})


def _train_lrs(run_dir):
    return [(r["step"], r["lr"]) for r in read_jsonl(run_dir / "metrics.jsonl")
            if r["kind"] == "train"]


def test_accumulating_four_micro_batches_equals_one_batch(mnist_dir, tmp_path):
    train(_config(mnist_dir, tmp_path / "one"))
    train(_config(mnist_dir, tmp_path / "accum", micro_batch_size=8))
    a, b = final_params(tmp_path / "one"), final_params(tmp_path / "accum")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    cfg = json.loads((tmp_path / "accum" / "config.json").read_text())
    assert cfg["resolved"]["accumulation_steps"] == 4


def test_lr_logged_once_per_optimizer_step_follows_recipe(mnist_dir, tmp_path):
    config = _config(mnist_dir, tmp_path / "r", micro_batch_size=8, max_steps=None)
    summary = train(config)
    recipe = config.resolve().base.scale(32, 256)
    lrs = _train_lrs(tmp_path / "r")
    assert [s for s, _ in lrs] == list(range(recipe.total_steps)) == list(range(24))
    assert [lr for _, lr in lrs] == [recipe.lr_at_step(s) for s in range(24)]
    assert summary["status"] == "completed" and summary["epochs"] == 3.0
    evals = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1.0, 2.0, 3.0]
    assert summary["final"]["test_accuracy"] == evals[-1]["test_accuracy"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["steps"] == 24


def test_elastic_resume_lands_at_same_epoch_position(mnist_dir, tmp_path):
    out = tmp_path / "run"
    train(_config(mnist_dir, out, max_steps=4))  # 8 steps/epoch at 32: stops at epoch 0.5
    config = _config(mnist_dir, out, global_batch_size=64, resume=True, max_steps=4)
    summary = train(config)
    recipe = config.resolve().base.scale(64, 256)  # 4 steps/epoch at 64
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]
    assert [(r["step"], r["epoch"]) for r in records[4:]] == [(2, 0.5), (3, 0.75)]
    assert records[4]["lr"] == recipe.lr_at_step(2)
    assert summary["samples_seen"] == 4 * 32 + 2 * 64


def test_resume_without_checkpoint_starts_fresh(mnist_dir, tmp_path, capsys):
    summary = train(_config(mnist_dir, tmp_path / "new", resume=True, max_steps=2))
    assert summary["steps"] == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_divergence_stops_with_status_3(mnist_dir, tmp_path, capsys):
    code = main(["train", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--batch-size",
                 "32", "--base-lr", "1e36", "--base-warmup-epochs", "0", "--quiet",
                 "--threads", "1", "--out", str(tmp_path / "d")])
    assert code == 3
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["diverged_at"]["step"] < 24
    assert summary["diverged_at"]["epoch"] == summary["diverged_at"]["step"] / 8
    err = capsys.readouterr().err  # --quiet: the outcome alone, on one line
    assert err.count("\n") == 1 and err.startswith("diverged at step"), err


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "32", "--micro-batch-size", "12"], "--batch-size 32 is not "
                                                          "--micro-batch-size 12 x world"),
    (["--momentum", "1.5"], "--momentum: must be a number in [0, 1)"),
    (["--optimizer", "adagrad"], "--optimizer: unknown 'adagrad'"),
    (["--epochs", "2"], "milestones (--milestones): must lie strictly inside"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--base-lr", "5e58"], "--base-lr: the peak LR at batch 128 is 5e+58, beyond float32"),
])
def test_config_errors_exit_2_with_one_line(ptb_dir, tmp_path, capsys, flags, message):
    task = "ptb-small" if "--epochs" in flags else "fashion-mnist-lstm"
    code = main(["train", task, "--data-dir", str(ptb_dir), "--out", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_cli_smoke_image_task(mnist_dir, tmp_path):
    out = tmp_path / "img"
    assert main(["train", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--batch-size",
                 "32", "--epochs", "6", "--optimizer", "adam", "--base-lr", "0.01", "--threads",
                 "1", "--quiet",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 48
    assert summary["final"]["test_accuracy"] > 0.4  # 10 balanced classes: chance is ~0.1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"]["peak_lr"] == pytest.approx(0.01 * 0.5)
    assert cfg["versions"]["torch"] == torch.__version__


def test_cli_smoke_ptb(ptb_dir, tmp_path):
    out = tmp_path / "lm"
    assert main(["train", "ptb-small", "--data-dir", str(ptb_dir), "--batch-size", "4",
                 "--micro-batch-size", "2", "--epochs", "3", "--milestones", "2", "--base-lr",
                 "20", "--threads", "1", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = read_jsonl(out / "metrics.jsonl")
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1.0, 2.0, 3.0]
    assert set(summary["final"]) == {"valid_perplexity", "test_perplexity"}
    # 30 words, 3 successors each: a model that learns the chain beats the uniform 31.
    assert summary["final"]["test_perplexity"] < 20


def test_trainer_is_freed_before_the_process_group_is_left(mnist_dir, tmp_path, monkeypatch):
    # The trainer sits in a reference cycle; under torchrun, a DDP reducer that outlived
    # destroy_process_group was freed at interpreter exit, where gloo aborted the process.
    import gc

    from legw.training import trainer as trainer_module

    alive_at_cleanup = []

    def cleanup():
        alive_at_cleanup.append(any(type(o) is trainer_module._Trainer
                                    for o in gc.get_objects()))

    monkeypatch.setattr(trainer_module.dist, "cleanup", cleanup)
    gc.disable()  # no collection by chance between fit() and cleanup
    try:
        train(_config(mnist_dir, tmp_path / "run", micro_batch_size=8))
    finally:
        gc.enable()
    assert alive_at_cleanup == [False]
