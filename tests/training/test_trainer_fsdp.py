"""``legw train --sharding fsdp`` (FSDP2 on gloo, CPU): the same run as DDP on the same samples,
the same online noise and adaptive gain, sharded checkpoints that resume bit-identically and
reshard to another world size, a rank killed under ``torchrun --max-restarts``, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import env, make_mnist_dir, one_line_error, read_jsonl, run, torchrun_cmd


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("fsdp") / "data")  # 256 samples


def _train(nproc: int, data, out, *flags: str, timeout: float = 120):
    done = run(torchrun_cmd(nproc, "train", "fashion-mnist-lstm", "--data-dir", str(data),
                            "--out", str(out), "--threads", "1", "--quiet", *flags),
               timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _train_records(out) -> list[dict]:
    """The training records without their timing (``samples_per_s``)."""
    return [{k: v for k, v in r.items() if k != "samples_per_s"}
            for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]


ADAPTIVE = ("--batch-size", "64", "--base-batch-size", "16", "--scaling", "adaptive",
            "--noise-window", "4", "--epochs", "2")


def test_fsdp_trains_as_ddp_and_measures_the_same_noise_and_gain(data, tmp_path):
    _train(2, data, tmp_path / "ddp", *ADAPTIVE)
    _train(2, data, tmp_path / "fsdp", *ADAPTIVE, "--sharding", "fsdp")
    ddp, fsdp = _train_records(tmp_path / "ddp"), _train_records(tmp_path / "fsdp")
    assert len(ddp) == len(fsdp) > 3
    for a, b in zip(ddp, fsdp):
        # the same per-rank draws (32 samples) before the all-reduce / reduce-scatter; only
        # the summation order differs
        for key in ("loss", "grad_norm", "lr", "gain", "tau"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
        if "b_noise" in a:
            assert b["b_noise"] == pytest.approx(a["b_noise"], rel=1e-3, abs=1e-3)
    resolved = json.loads((tmp_path / "fsdp" / "config.json").read_text())["resolved"]
    assert (resolved["sharding"], resolved["noise_source"],
            resolved["noise_small_batch_size"]) == ("fsdp", "rank", 32)
    summaries = [json.loads((tmp_path / s / "summary.json").read_text()) for s in ("ddp", "fsdp")]
    assert summaries[1]["final"]["test_loss"] == pytest.approx(
        summaries[0]["final"]["test_loss"], rel=1e-5)


RUN = ("--batch-size", "48", "--micro-batch-size", "12", "--epochs", "2",
       "--checkpoint-every", "2", "--sharding", "fsdp")


def test_sharded_checkpoints_resume_bit_identically_and_at_another_world_size(data, tmp_path):
    _train(2, data, tmp_path / "whole", *RUN)
    whole = _train_records(tmp_path / "whole")
    _train(2, data, tmp_path / "cut", *RUN, "--max-steps", "4")
    checkpoints = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert checkpoints == ["step-000000002", "step-000000004"]  # directories, whole
    assert (tmp_path / "cut" / "checkpoints" / "step-000000004" / ".metadata").is_file()
    elastic = tmp_path / "elastic"
    subprocess.run(["cp", "-r", str(tmp_path / "cut"), str(elastic)], check=True)
    _train(2, data, tmp_path / "cut", *RUN, "--resume")
    assert _train_records(tmp_path / "cut") == whole  # every record, to the last bit
    # 3 ranks of micro batch 16: the shards are re-cut by torch.distributed.checkpoint
    done = _train(3, data, elastic, *RUN[:2], "--micro-batch-size", "16", *RUN[4:], "--resume")
    resumed = _train_records(elastic)
    assert [r["step"] for r in resumed] == [r["step"] for r in whole]
    assert resumed[:4] == whole[:4]
    for a, b in zip(whole[4:], resumed[4:]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["lr"] == a["lr"]
    assert "resumed from" in done.stderr or not done.stderr  # --quiet


@pytest.mark.slow
def test_a_rank_killed_under_max_restarts_resumes_from_its_checkpoint(data, tmp_path):
    flags = (*RUN[:6], "--epochs", "6", "--checkpoint-every", "1", "--sharding", "fsdp")
    _train(2, data, tmp_path / "whole", *flags)
    out = tmp_path / "killed"
    cmd = torchrun_cmd(2, "train", "fashion-mnist-lstm", "--data-dir", str(data), "--out",
                       str(out), "--threads", "1", "--quiet", *flags, "--resume")
    cmd.insert(cmd.index("--standalone"), "--max-restarts=1")
    job = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        if (out / "checkpoints" / "step-000000005").is_dir():
            killed = _kill_rank(1, str(out))
        time.sleep(0.005)
    _, stderr = job.communicate(timeout=120)
    assert killed, "the run ended before a rank could be killed"
    assert job.returncode == 0, stderr[-3000:]
    assert _train_records(out) == _train_records(tmp_path / "whole")


def _kill_rank(rank: int, out: str) -> bool:
    """SIGKILL the worker of ``rank`` of the run writing to ``out``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if out.encode() in cmdline and b"legw" in cmdline and f"RANK={rank}".encode() in environ:
            os.kill(int(pid), signal.SIGKILL)
            return True
    return False


def test_fsdp_refuses_one_process_and_a_resume_under_another_sharding(data, tmp_path, capsys):
    line = one_line_error(capsys, ["train", "fashion-mnist-lstm", "--data-dir", str(data),
                                   "--out", str(tmp_path / "one"), "--sharding", "fsdp"])
    assert "--sharding fsdp: shards over 2 or more processes" in line
    _train(2, data, tmp_path / "run", *RUN, "--max-steps", "2")
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", "--data-dir", str(data), "--out",
                            str(tmp_path / "run"), "--threads", "1", "--quiet", *RUN[:6],
                            "--resume"))
    # each rank exits 2 with the one line; torchrun reports its workers' failure as 1
    assert done.returncode == 1 and "legw: error: --sharding: 'ddp' differs from 'fsdp'" \
        in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ptb-small", "fashion-mnist-resnet"])
def test_every_preset_trains_sharded_as_under_ddp(task, data, tmp_path):
    """The language model (carried LSTM state, evaluation on every rank: an FSDP forward is a
    collective) and the ResNet (BatchNorm buffers) as the LSTM classifier above."""
    from helpers import make_ptb_dir

    data_dir = make_ptb_dir(tmp_path / "ptb") if task == "ptb-small" else data
    flags = ("--batch-size", "4" if task == "ptb-small" else "32", "--max-steps", "6")
    finals = []
    for sharding in ("ddp", "fsdp"):
        done = run(torchrun_cmd(2, "train", task, "--data-dir", str(data_dir), "--out",
                                str(tmp_path / sharding), "--threads", "1", "--quiet", *flags,
                                "--sharding", sharding))
        assert done.returncode == 0, done.stderr[-3000:]
        finals.append(json.loads((tmp_path / sharding / "summary.json").read_text())["final"])
    assert finals[0].keys() == finals[1].keys()
    for key, value in finals[0].items():
        assert finals[1][key] == pytest.approx(value, rel=1e-4), key
