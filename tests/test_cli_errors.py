"""The CLI's one error boundary: a user or disk error is one line on stderr and exit 2, for
every command, before any work; a bug keeps its traceback; a closed pipe is not an error."""

import errno
import os
import subprocess
from pathlib import Path

import pytest
from helpers import env, legw_cmd, make_mnist_dir, one_line_error

from legw import io
from legw.cli import main


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)


def _commands(mnist_dir, out) -> dict[str, list[str]]:
    """Every command that writes, each to ``out`` (and light, should a check be missing)."""
    light = ["--data-dir", str(mnist_dir), "--threads", "1"]
    run = [*light, "--max-steps", "1"]
    return {
        "train": ["train", "fashion-mnist-lstm", "--batch-size", "32", "--quiet", "--out",
                  str(out), *run],
        "sweep": ["sweep", "fashion-mnist-lstm", "--batch-sizes", "32", "--out", str(out), *run],
        "tune": ["tune", "fashion-mnist-lstm", "--batch-size", "32", "--out", str(out), *run],
        "report": ["report", str(mnist_dir.parent), "--out", str(out)],
        "comm": ["comm", "--preset", "resnet50", "--out", str(out / "c.json")],
        "schedule": ["schedule", "--task", "fashion-mnist-lstm", "--plot", str(out / "lr.png")],
        "autobatch": ["autobatch", "fashion-mnist-lstm", "--max-micro-batch-size", "2",
                      "--repeats", "1", "--out", str(out / "a.json"), *light],
        "noise-scale": ["noise-scale", "fashion-mnist-lstm", "--steps", "0", "--points", "1",
                        "--draws", "2", "--batch-size", "4", "--micro-batch-size", "2",
                        "--out", str(out / "n.json"), *light]}


DIRECTORIES = ("train", "sweep", "tune", "report")


def test_out_that_is_a_file_or_below_one_is_one_line(mnist_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (mnist_dir.parent / "results.json").write_text('{"kind": "sweep", "task": '
                                                   '"fashion-mnist-lstm", "rows": []}')
    for argv in _commands(mnist_dir, blocker).values():
        line = one_line_error(capsys, argv)
        assert f"cannot write {blocker}" in line and "is a file" in line, line
        assert line.split(": ")[2].startswith("--"), line  # names the flag
    for name in DIRECTORIES:
        argv = _commands(mnist_dir, blocker / "sub")[name]
        assert "cannot write" in one_line_error(capsys, argv)
    assert blocker.read_text() == "x"


def test_out_in_a_read_only_directory_is_one_line(mnist_dir, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    access = os.access  # root may write anyway: let the check see the mode bits as a user would
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != locked)
    try:
        for name in (*DIRECTORIES, "comm"):
            argv = _commands(mnist_dir, locked / "x")[name]
            assert "is not writable" in one_line_error(capsys, argv)
    finally:
        locked.chmod(0o755)
    assert os.listdir(locked) == []


def test_a_full_disk_mid_run_is_one_line_naming_the_file(mnist_dir, tmp_path, capsys,
                                                         monkeypatch):
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "_create_temporary", full)
    line = one_line_error(capsys, _commands(mnist_dir, tmp_path / "run")["train"])
    assert "config.json: No space left on device; free disk space" in line


def test_out_of_memory_is_one_line_and_a_bug_keeps_its_traceback(capsys, monkeypatch):
    from legw.commands import schedule

    def oom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 3448068464705536 bytes.")

    monkeypatch.setattr(schedule, "run", oom)
    assert "out of memory; use a smaller --micro-batch-size" in one_line_error(
        capsys, ["schedule"])
    monkeypatch.setattr(schedule, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["schedule"])
    monkeypatch.setattr(schedule, "run", oom)
    monkeypatch.setenv("LEGW_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["schedule"])


@pytest.mark.parametrize("argv, needle", [
    (["train", "--seed", "99999999999999999999"], "--seed: 99999999999999999999 does not fit "
                                                  "in 64 bits"),
    (["train", "--seed", "4294967296"], "--seed: must be an integer in [0, 2^32)"),
    (["train", "--threads", "1" + "0" * 30], "argument --threads"),
    (["train", "--epochs", "inf"], "--epochs: must be a finite number"),
    (["schedule", "--task", "mnist-lstm", "--epochs", "1e308"],
     "epochs (--epochs): gives more than 2^63 optimizer steps"),
    (["schedule", "--task", "mnist-lstm", "--dataset-size", "0"],
     "dataset_size (--dataset-size): must be a positive integer, got 0"),
    (["comm", "--preset", "resnet50", "--epochs", "nan"], "--epochs: must be a finite number"),
    (["noise-scale", "--seed", str(2**40)], "--seed: must be an integer"),
])
def test_absurd_numbers_name_their_flag(mnist_dir, capsys, tmp_path, argv, needle):
    if argv[0] in ("train", "noise-scale"):  # light runs, should a check be missing
        argv = [*_commands(mnist_dir, tmp_path / "o")[argv[0]], *argv[1:]]
    assert needle in one_line_error(capsys, argv)


def test_closing_the_pipe_early_is_not_a_traceback():
    sizes = [str(b) for b in range(128, 528)]  # > 64 KiB of JSON: more than a pipe holds
    proc = subprocess.Popen(legw_cmd("schedule", "--task", "fashion-mnist-lstm", "--json",
                                     "--batch-sizes", *sizes),
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # `legw ... | head -c 10`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_path_flags_are_named(mnist_dir, tmp_path, capsys):
    missing = str(tmp_path / "missing.json")
    assert "--config: " in one_line_error(capsys, ["train", "--config", missing])
    assert "--throughput-from: " in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--throughput-from", missing])
    assert "--out: must be a directory, got ''" in one_line_error(
        capsys, ["train", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--out", ""])
