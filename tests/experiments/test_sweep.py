"""legw sweep end to end on tiny generated data: records, divergence, resume, errors."""

import json
import socket
import sys

import pytest
from helpers import make_mnist_dir

from legw.cli import build_parser, main
from legw.commands.train import config_from_args
from legw.experiments.launcher import open_study, train_argv
from legw.experiments.records import read_rows
from legw.experiments.sweep import METHODS, SweepSpec
from legw.training.config import TrainConfig
from legw.training.trainer import train


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))  # 256 train, 64 test


def _sweep_args(mnist_dir, out, *extra):
    return ["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "32",
            "--epochs", "1", "--max-steps", "3", "--base-warmup-epochs", "0",
            "--data-dir", str(mnist_dir), "--threads", "1", *extra]


def test_sweep_resumes_interrupted_run_records_divergence_then_skips(mnist_dir, tmp_path,
                                                                     capsys):
    out = tmp_path / "sweep"
    # An interrupted run: a checkpoint at step 1 and no final summary.
    partial = TrainConfig(task="fashion-mnist-lstm", global_batch_size=32, epochs=1.0,
                          base_warmup_epochs=0.0, max_steps=1, scaling="sqrt", warmup="legw",
                          data_dir=str(mnist_dir), out_dir=str(out / "runs" / "legw-b32-s0"),
                          quiet=True, num_threads=1)
    train(partial)
    (out / "runs" / "legw-b32-s0" / "summary.json").unlink()

    code = main(_sweep_args(mnist_dir, out, "--methods", "legw", "adam", "--adam-lr", "1e36",
                            "--jobs", "2"))
    assert code == 0
    err = capsys.readouterr().err
    assert "legw b=32 s=0: resuming" in err and "at step 1" in err
    meta, rows = read_rows(out / "results.json")
    assert meta["kind"] == "sweep" and meta["spec"]["methods"] == ["legw", "adam"]
    legw, adam = rows
    # --max-steps 3 of 8: stopped, finished as far as the sweep asks, its metrics recorded
    assert (legw["method"], legw["status"], legw["steps"]) == ("legw", "stopped", 3)
    assert 0 <= legw["test_error"] <= 100 and legw["test_accuracy"] is not None
    assert legw["run_dir"] == "runs/legw-b32-s0" and legw["optimizer"] == "sgd"
    assert (adam["status"], adam["optimizer"], adam["test_error"]) == ("diverged", "adam", None)
    assert adam["diverged_step"] is not None and adam["diverged_step"] < 3
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("task,method,")
    assert "legw sweep" not in json.dumps(meta)  # in-process call: no command line to record

    # Continue with no flags: both runs finished, nothing runs again.
    assert main(["sweep", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "legw b=32 s=0: stopped earlier, skipped" in err
    assert "adam b=32 s=0: diverged earlier, skipped" in err
    assert "starting" not in err and "resuming" not in err
    assert read_rows(out / "results.json")[1] == rows

    # Changing the recipe of an existing sweep is refused.
    assert main(["sweep", "--out", str(out), "--epochs", "5"]) == 2
    assert "differs from the sweep" in capsys.readouterr().err


def test_a_resume_by_the_same_command_records_it_once(tmp_path):
    spec = SweepSpec(task="fashion-mnist-lstm", batch_sizes=[32], methods=["legw"])
    first, wider = "legw sweep x --batch-sizes 32", "legw sweep x --batch-sizes 32 64"
    for command in (first, first, wider, first):
        open_study(tmp_path, "sweep.json", spec, command)
    assert json.loads((tmp_path / "sweep.json").read_text())["commands"] == [first, wider]


def test_crashing_run_is_recorded_as_failed(tmp_path, capsys):
    bad = make_mnist_dir(tmp_path / "bad", n_train=32, n_test=8)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip file")
    out = tmp_path / "sweep"
    code = main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "32",
                 "--methods", "legw", "--max-steps", "1", "--threads", "1",
                 "--data-dir", str(bad)])
    assert code == 1
    row = read_rows(out / "results.json")[1][0]
    assert row["status"] == "failed" and row["error"].startswith("exit status ")
    assert "legw b=32 s=0: failed" in capsys.readouterr().err
    assert (out / "runs" / "legw-b32-s0" / "train.log").exists()


@pytest.mark.parametrize("flags, message", [
    (["--methods", "magic"], "--methods: unknown magic"),
    (["--methods", "lamb"], "--lamb-lr: the lamb method needs a base LR"),
    (["--batch-sizes", "32", "--micro-batch-size", "12"], "--micro-batch-size: 12 does not"),
    (["--jobs", "0"], "--jobs: must be at least 1"),
    (["--threads", "0"], "--threads: must be at least 1"),
    (["--nproc-per-node", "0"], "--nproc-per-node: must be at least 1"),
    (["--nproc-per-node", "3"], "--batch-size: 64 is not divisible by the world size 3"),
])
def test_bad_sweeps_exit_2_before_any_run(tmp_path, capsys, flags, message):
    args = ["sweep", "fashion-mnist-lstm", "--out", str(tmp_path / "s")]
    if "--batch-sizes" not in flags:
        args += ["--batch-sizes", "64"]
    assert main(args + flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "runs").exists()


def test_continuing_a_missing_sweep_asks_for_a_task(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "none")]) == 2
    assert "TASK: no sweep" in capsys.readouterr().err


def test_methods_set_the_rules_and_micro_batch_cap():
    fixed = [m for m in METHODS if m not in ("ramp", "seesaw")]
    spec = SweepSpec(task="fashion-mnist-lstm", batch_sizes=[128, 4096],
                     methods=fixed, optimizer_lrs={"adam": 1e-3, "adamw": 2e-3,
                                                   "lars": 1.0, "lamb": 0.01},
                     micro_batch_size=1024, overrides={"epochs": 3.0})
    from pathlib import Path

    runs = {r.name: r.config for r in spec.plan(Path("d"))}
    assert len(runs) == 2 * len(fixed)
    linear = runs["linear b=4096 s=0"].resolve().base
    assert (linear.scaling, linear.warmup, linear.epochs) == ("linear", "constant", 3.0)
    assert runs["unscaled b=128 s=0"].resolve().base.scaling == "none"
    assert runs["sqrt-nowarmup b=128 s=0"].resolve().base.warmup == "none"
    adam = runs["adam b=4096 s=0"]
    assert (adam.optimizer, adam.base_lr, adam.resolve().base.warmup) == ("adam", 1e-3, "legw")
    assert (runs["adamw b=128 s=0"].optimizer, runs["adamw b=128 s=0"].base_lr) == ("adamw", 2e-3)
    assert runs["legw b=4096 s=0"].micro_batch_size == 1024
    assert runs["legw b=128 s=0"].micro_batch_size is None  # min(B, cap) = B
    assert runs["lamb b=128 s=0"].out_dir == "d/runs/lamb-b128-s0"
    # the ramps grow from the base batch in micro-batches below it
    ramps = SweepSpec(task="fashion-mnist-lstm", batch_sizes=[4096], methods=["ramp", "seesaw"],
                      micro_batch_size=64)
    configs = {r.name: r.config for r in ramps.plan(Path("d"))}
    assert configs["ramp b=4096 s=0"].batch_ramp == "noise"
    assert configs["seesaw b=4096 s=0"].batch_ramp == "seesaw"
    with pytest.raises(ValueError, match="--batch-ramp: the first batch 128 must be a multiple"):
        SweepSpec(task="fashion-mnist-lstm", batch_sizes=[4096], methods=["seesaw"],
                  micro_batch_size=1024)


def test_train_argv_round_trips_through_the_train_parser(tmp_path):
    config = TrainConfig(task="ptb-small", global_batch_size=40, micro_batch_size=20,
                         epochs=6.0, milestones=(2.0, 4.5), base_lr=0.7, scaling="linear",
                         warmup="constant", seed=3, clip_grad_norm=0.0, max_steps=9,
                         out_dir=str(tmp_path / "run"), data_dir="data", checkpoint_every=5,
                         evaluate=False)
    argv = train_argv(config, threads=2, resume=True)
    assert argv[1:4] == ["-m", "legw", "train"]
    back = config_from_args(build_parser().parse_args(argv[3:]))
    expected = {**config.to_dict(), "resume": True, "num_threads": 2}
    assert back.to_dict() == expected


def test_nproc_per_node_trains_each_run_with_torchrun_as_one_process_does(mnist_dir, tmp_path):
    # each run is `torchrun --standalone --nproc-per-node 2 -m legw train`: the same global
    # batch over two gloo ranks, so the same model as the one-process sweep's up to rounding
    out, alone = tmp_path / "two", tmp_path / "one"
    assert main(_sweep_args(mnist_dir, out, "--methods", "legw", "--nproc-per-node", "2")) == 0
    assert main(_sweep_args(mnist_dir, alone, "--methods", "legw")) == 0
    run = out / "runs" / "legw-b32-s0"
    assert json.loads((run / "config.json").read_text())["resolved"]["world_size"] == 2
    assert "torch.distributed.run --nproc-per-node 2 --standalone" in (
        run / "train.log").read_text()
    (row,), (ref,) = read_rows(out / "results.json")[1], read_rows(alone / "results.json")[1]
    assert (row["status"], row["steps"]) == (ref["status"], ref["steps"]) == ("stopped", 3)
    # DDP averages the two ranks' gradients in another order than one process sums them:
    # float32 rounding, grown over three steps of an LSTM, stays far below 1e-4 here
    assert row["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-4)
    assert json.loads((out / "sweep.json").read_text())["nproc_per_node"] == 2


def test_processes_of_a_run_across_nodes_are_one_torchrun_per_node_through_srun():
    from legw.experiments.launcher import Processes

    assert Processes().launcher("r") == [sys.executable]
    argv = Processes(per_node=4, nodes=2).launcher("legw-b64-s0")
    assert argv[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                        "--kill-on-bad-exit=1"]
    torchrun = argv[5:]
    assert torchrun[:5] == [sys.executable, "-m", "torch.distributed.run",
                            "--nproc-per-node", "4"]
    opts = dict(zip(torchrun[5::2], torchrun[6::2], strict=True))
    assert opts["--nnodes"] == "2" and opts["--rdzv-backend"] == "c10d"
    assert opts["--rdzv-id"] == "legw-b64-s0"
    host, port = opts["--rdzv-endpoint"].rsplit(":", 1)
    assert host == socket.gethostname() and 0 < int(port) < 65536
