"""legw noise-scale: a measured record and plot, the data it was given, and its flags
(NoiseScaleSpec): --batch-size is the training (global) batch, --draw-batch-size the draw's;
one line naming the flag for bad input; the old --train-batch-size spelling."""

import json

import pytest
import torch
from helpers import one_line_error

from legw.cli import main


@pytest.fixture
def tiny_task(monkeypatch):
    """A tiny linear-regression task stands in for the real data set."""
    from legw.analysis import workload as _workload
    from legw.schedule import BaseRecipe

    def tiny(name, load_data=False, data_dir=None):
        torch.manual_seed(0)
        x = torch.randn(512, 5)
        y = x @ torch.ones(5) + torch.randn(512)
        model = torch.nn.Linear(5, 1)

        def sample(i):
            return x[i], y[i]

        return _workload.Workload(
            "tiny", model, lambda out, t: ((out.squeeze(-1) - t) ** 2).mean(),
            lambda n: (torch.randn(n, 5), torch.randn(n)), 512,
            BaseRecipe(base_batch_size=32, peak_lr=0.05, warmup_epochs=0.1, epochs=1.0),
            lambda n, g: sample(torch.randint(0, 512, (n,), generator=g)))

    monkeypatch.setattr(_workload, "load_workload", tiny)


def test_noise_scale_cli_on_a_fake_task(cli, tiny_task, tmp_path):
    out_json, png = tmp_path / "n.json", tmp_path / "n.png"
    code, out, _ = cli("noise-scale", "tiny", "--draw-batch-size", "32", "--micro-batch-size",
                       "4", "--draws", "10", "--points", "3", "--steps", "10",
                       "--out", str(out_json), "--plot", str(png))
    assert code == 0
    rec = json.loads(out_json.read_text())
    assert [p["step"] for p in rec["points"]] == [0, 5, 10]
    assert all(p["draws"] == 10 and "ci_low" in p for p in rec["points"])
    assert rec["points"][0]["train_loss"] is None and rec["points"][-1]["train_loss"] > 0
    assert (rec["global_batch_size"], rec["draw_batch_size"], rec["micro_batch_size"]) == \
        (32, 32, 4)  # the training batch defaults to the task's base batch
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_noise_scale_counts_the_data_it_was_given(cli, mnist_dir, tmp_path):
    argv = ["noise-scale", "fashion-mnist-lstm", "--data-dir", str(mnist_dir),
            "--draw-batch-size", "4", "--micro-batch-size", "2", "--draws", "2", "--points",
            "1", "--threads", "1", "--out", str(tmp_path / "n.json"),
            "--plot", str(tmp_path / "n.png")]
    code, out, err = cli(*argv, "--batch-size", "16")
    assert code == 0 and err == ""
    assert f"data {mnist_dir}, 64 samples per epoch" in out
    assert "training at batch 16 for 4 steps" in out  # 64 // 16, not 60,000 // 16
    assert "from 2 draws of 2 x 2 samples" in out
    code, old, err = cli(*argv, "--train-batch-size", "16")  # the old spelling
    assert code == 0 and "training at batch 16 for 4 steps" in old
    assert err == "legw: --train-batch-size is deprecated; use --batch-size\n"


def test_help_says_batch_size_changed_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["noise-scale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size B Global batch of the training run" in text
    assert "--batch-size used to be the draw's big batch, now --draw-batch-size" in text
    assert "--train-batch-size" in text and "--train-batch-size B" not in text  # hidden alias


@pytest.mark.parametrize("argv, needle", [
    (["--draw-batch-size", "20", "--micro-batch-size", "8"],
     "--draw-batch-size (20) must be a multiple of --micro-batch-size (8) and larger"),
    (["--draw-batch-size", "1"], "--draw-batch-size: must be an integer >= 2, got 1"),
    (["--draws", "1"], "--draws: must be an integer >= 2, got 1"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    (["--steps", "-1"], "--steps: must be a non-negative integer, got -1"),
    (["--seed", str(2**40)], "--seed: must be an integer in [0, 2^32)"),
])
def test_bad_input_is_one_line_exit_2(capsys, in_tmp, argv, needle):
    assert needle in one_line_error(capsys, ["noise-scale", "fashion-mnist-lstm", *argv])


def test_a_training_batch_above_the_data_is_one_line(capsys, mnist_dir, tmp_path):
    assert "--batch-size: 128 exceeds the 64 training samples" in one_line_error(capsys, [
        "noise-scale", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--batch-size",
        "128", "--out", str(tmp_path / "n.json"), "--plot", str(tmp_path / "n.png")])
