"""Methods that train the same recipe at a batch (k = 1) share one run, trained once."""

import json
from pathlib import Path

import pytest
from helpers import make_mnist_dir

from legw.cli import main
from legw.experiments.records import read_rows
from legw.experiments.sweep import SweepSpec


def test_rules_that_agree_at_the_base_batch_share_a_run_directory():
    spec = SweepSpec(task="fashion-mnist-lstm", batch_sizes=[128, 1024],
                     methods=["legw", "linear", "unscaled", "sqrt-nowarmup"])
    dirs = {r.name: r.config.out_dir for r in spec.plan(Path("d"))}
    assert dirs["linear b=128 s=0"] == dirs["unscaled b=128 s=0"] == dirs["legw b=128 s=0"] \
        == "d/runs/legw-b128-s0"
    assert dirs["sqrt-nowarmup b=128 s=0"] == "d/runs/sqrt-nowarmup-b128-s0"  # no warmup
    assert len({dirs[f"{m} b=1024 s=0"] for m in ("legw", "linear", "unscaled")}) == 3


def test_the_adaptive_rule_shares_only_the_base_batch_run():
    spec = SweepSpec(task="fashion-mnist-lstm", batch_sizes=[128, 1024], methods=["legw",
                                                                                 "adaptive"],
                     micro_batch_size=64)
    dirs = {r.name: r.config.out_dir for r in spec.plan(Path("d"))}
    assert dirs["adaptive b=128 s=0"] == dirs["legw b=128 s=0"]  # gain 1: LEGW's training
    assert dirs["adaptive b=1024 s=0"] == "d/runs/adaptive-b1024-s0"  # sqrt's LR, not its run
    assert dirs["legw b=1024 s=0"] == "d/runs/legw-b1024-s0"


def test_the_shared_run_trains_once_and_fills_every_row(tmp_path, capsys):
    data = make_mnist_dir(tmp_path / "data")
    out = tmp_path / "sweep"
    assert main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "128",
                 "--methods", "legw", "linear", "--epochs", "1", "--max-steps", "1",
                 "--data-dir", str(data), "--threads", "1"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["legw-b128-s0"]
    _, rows = read_rows(out / "results.json")
    assert [(r["method"], r["status"], r["run_dir"]) for r in rows] == [
        ("legw", "stopped", "runs/legw-b128-s0"), ("linear", "stopped", "runs/legw-b128-s0")]
    assert "[1/1] legw b=128 s=0: starting" in capsys.readouterr().err


def test_a_sweep_trains_the_adaptive_rule_beside_legw(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    out = tmp_path / "sweep"
    assert main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "256",
                 "--micro-batch-size", "64", "--methods", "legw", "adaptive", "--epochs", "2",
                 "--max-steps", "2", "--data-dir", str(data), "--threads", "1"]) == 0
    _, rows = read_rows(out / "results.json")
    assert [(r["method"], r["run_dir"]) for r in rows] == [
        ("legw", "runs/legw-b256-s0"), ("adaptive", "runs/adaptive-b256-s0")]
    config = json.loads((out / "runs" / "adaptive-b256-s0" / "config.json").read_text())
    assert config["config"]["scaling"] == "adaptive"
    train = [json.loads(x) for x in (out / "runs" / "adaptive-b256-s0" / "metrics.jsonl")
             .read_text().splitlines() if '"train"' in x]
    assert all("gain" in r and "tau" in r for r in train)


def test_a_sweep_refuses_the_adaptive_rule_without_micro_batches_before_any_run(tmp_path,
                                                                              capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "128",
                 "1024", "--methods", "legw", "adaptive", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("legw: error: --methods adaptive at --batch-sizes 1024: the gain needs the "
                   "gradient noise, measured when a step has 2+ micro-gradients: give "
                   "--micro-batch-size (e.g. the base batch; a sweep keeps its micro batch, so a "
                   "new one needs a new --out)")
    assert not out.exists()


def test_a_sweep_refuses_the_adaptive_rule_below_the_base_batch():
    with pytest.raises(ValueError, match="--methods adaptive at --batch-sizes 64: adaptive "
                                         "scaling grows the batch; 64 is below the base 128"):
        SweepSpec(task="fashion-mnist-lstm", batch_sizes=[64, 128], methods=["legw", "adaptive"],
                  micro_batch_size=32)
