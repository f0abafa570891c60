"""SIGKILL a training process mid-run, resume it, and get bit-identical results."""

import json
import signal
import subprocess
import time

import torch
from helpers import env, final_params, legw_cmd, make_mnist_dir, read_jsonl

from legw.training.checkpoint import list_checkpoints
from legw.training.config import TrainConfig
from legw.training.trainer import train


def _args(data, out):
    # 512 samples at batch 16: 32 steps/epoch, 128 steps; checkpoint every 3 steps
    return ["train", "fashion-mnist-lstm", "--data-dir", str(data), "--batch-size", "16",
            "--epochs", "4", "--base-lr", "0.5", "--base-warmup-epochs", "0.25",
            "--checkpoint-every", "3", "--keep-checkpoints", "3", "--threads", "1", "--quiet",
            "--out", str(out)]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    data = make_mnist_dir(tmp_path / "data", n_train=512, n_test=64)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(legw_cmd(*_args(data, killed)), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list_checkpoints(killed) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (killed / "summary.json").exists()
    steps_at_kill = int(list_checkpoints(killed)[-1].name[5:14])
    assert steps_at_kill < 128

    resumed = subprocess.run(legw_cmd(*_args(data, killed), "--resume"), env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr

    reference = tmp_path / "reference"
    config = TrainConfig(task="fashion-mnist-lstm", data_dir=str(data), global_batch_size=16,
                         epochs=4.0, base_lr=0.5, base_warmup_epochs=0.25, checkpoint_every=3,
                         keep_checkpoints=3, num_threads=1, quiet=True, out_dir=str(reference))
    expected = train(config)

    got = json.loads((killed / "summary.json").read_text())
    assert got["final"] == expected["final"]
    assert (got["steps"], got["samples_seen"]) == (expected["steps"], expected["samples_seen"])
    a, b = final_params(killed), final_params(reference)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl was cut back to the checkpoint: every step once, same losses
    def losses(run):
        return [(r["step"], r["loss"], r["lr"]) for r in read_jsonl(run / "metrics.jsonl")
                if r["kind"] == "train"]
    assert losses(killed) == losses(reference)
    assert [r["epoch"] for r in read_jsonl(killed / "metrics.jsonl") if r["kind"] == "eval"] \
        == [1.0, 2.0, 3.0, 4.0]
