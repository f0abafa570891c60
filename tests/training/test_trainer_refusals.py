"""What a run refuses, and what it leaves: every refusal is one line before any file is
written; a resume continues only the same run; records are strict JSON with honest statuses."""

import json
import os
import shutil
import stat

import numpy as np
import pytest
from helpers import make_mnist_dir, make_ptb_dir, one_line_error

from legw.cli import main
from legw.data.idx import write_idx


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)


def _train(mnist_dir, out, *flags):
    return ["train", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--batch-size", "16",
            "--quiet", "--threads", "1", "--out", str(out), *flags]


@pytest.fixture(scope="module")
def stopped_run(mnist_dir, tmp_path_factory):
    """A run cut by --max-steps 2 (of 40), with checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(_train(mnist_dir, out, "--max-steps", "2", "--checkpoint-every", "1")) == 0
    return out


@pytest.fixture
def run_copy(stopped_run, tmp_path):
    return shutil.copytree(stopped_run, tmp_path / "run")


def _snapshot(run_dir):
    return {p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flags, culprit", [
    (["--optimizer", "adam"], "--optimizer: 'adam' differs from 'sgd'"),
    (["--epochs", "5"], "--epochs: 5.0 differs from 10"),
    (["--base-lr", "0.1"], "--base-lr: 0.1 differs from 0.4"),
    (["--seed", "1"], "--seed: 1 differs from 0"),
    (["--scaling", "linear", "--warmup", "constant"], "--scaling: 'linear' differs from 'sqrt'"),
])
def test_resume_refuses_another_run_before_touching_a_file(mnist_dir, run_copy, capsys, flags,
                                                           culprit):
    before = _snapshot(run_copy)
    line = one_line_error(capsys, _train(mnist_dir, run_copy, "--resume", *flags))
    assert culprit in line and "step-000000002.pt" in line, line
    assert _snapshot(run_copy) == before


def test_resume_refuses_another_task_even_without_a_checkpoint(mnist_dir, run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    before = _snapshot(run_copy)
    argv = _train(mnist_dir, run_copy, "--resume")
    argv[1] = "fashion-mnist-resnet"  # same data, another model
    line = one_line_error(capsys, argv)
    assert "TASK: 'fashion-mnist-resnet' differs from 'fashion-mnist-lstm'" in line
    assert "config.json" in line and _snapshot(run_copy) == before


def test_a_fresh_start_refuses_a_directory_holding_a_run(mnist_dir, run_copy, capsys):
    before = _snapshot(run_copy)
    assert "--out: " in one_line_error(capsys, _train(mnist_dir, run_copy, "--max-steps", "3"))
    assert _snapshot(run_copy) == before


def test_stale_temporaries_are_removed_at_start_and_resume(mnist_dir, run_copy, tmp_path,
                                                           capsys):
    stale = [run_copy / "checkpoints" / ".step-000000003.pt.ab12cd34.tmp",
             run_copy / ".summary.json.x_1y2z3w.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)  # what a SIGKILL inside a checkpoint write leaves
    assert main(_train(mnist_dir, run_copy, "--resume", "--max-steps", "3")) == 0
    assert not any(p.exists() for p in stale)
    assert "removed " in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".config.json.0a1b2c3d.tmp").write_text("{")
    assert main(_train(mnist_dir, fresh, "--max-steps", "1")) == 0
    assert not list(fresh.glob(".*.tmp")) and not list(fresh.glob("checkpoints/.*.tmp"))


def test_unreadable_checkpoints_are_one_line_without_unsafe_advice(mnist_dir, run_copy, capsys):
    for p in (run_copy / "checkpoints").iterdir():
        p.write_bytes(b"garbage" if p.name.endswith("1.pt") else p.read_bytes()[:200])
    line = one_line_error(capsys, _train(mnist_dir, run_copy, "--resume"))
    assert line.startswith("legw: error: --resume: no readable checkpoint in ")
    assert "step-000000001.pt" in line and "step-000000002.pt" in line
    assert "weights_only" not in line


def test_records_are_strict_json_with_honest_statuses(mnist_dir, stopped_run, tmp_path):
    summary = json.loads((stopped_run / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["total_steps"]) == ("stopped", 2, 40)
    out = tmp_path / "diverged"
    assert main(_train(mnist_dir, out, "--base-lr", "1e36", "--base-warmup-epochs", "0")) == 3
    text = (out / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    at = summary["diverged_at"]
    assert summary["status"] == "diverged" and at["reason"].startswith("non-finite loss")
    assert at["loss"] is None  # inf / nan: null in JSON, the reason says which
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_run_files_get_the_umask_permissions(mnist_dir, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(_train(mnist_dir, tmp_path / "r", "--max-steps", "1")) == 0
    finally:
        os.umask(old)
    for name in ("config.json", "summary.json", "checkpoints/step-000000001.pt"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o644, name


def _bad_labels(d):
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(16, 200, np.uint8))


def _empty_test(d):
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros((0,), np.uint8))


@pytest.mark.parametrize("spoil, needle", [
    (_bad_labels, "t10k-labels-idx1-ubyte.gz: label 200 of sample 0 is outside 0..9"),
    (_empty_test, "the test split of"),
    (lambda d: shutil.rmtree(d), "--data-dir: "),
])
def test_bad_image_data_is_refused_before_any_file(tmp_path, capsys, spoil, needle):
    data = make_mnist_dir(tmp_path / "data", n_train=64, n_test=16)
    spoil(data)
    assert needle in one_line_error(capsys, _train(data, tmp_path / "run", "--max-steps", "2"))
    assert not (tmp_path / "run").exists()


def test_short_validation_text_is_refused_before_training(tmp_path, capsys):
    data = make_ptb_dir(tmp_path / "ptb")
    (data / "ptb.valid.txt").write_text(" w1 w2 w3 \n")
    line = one_line_error(capsys, ["train", "ptb-small", "--data-dir", str(data), "--batch-size",
                                   "4", "--max-steps", "1", "--quiet", "--threads", "1",
                                   "--out", str(tmp_path / "run")])
    assert "the valid split of" in line and "fewer than the 40" in line
    assert not (tmp_path / "run").exists()


def test_start_up_says_which_data_is_used(mnist_dir, tmp_path, capsys):
    argv = _train(mnist_dir, tmp_path / "r", "--max-steps", "1")
    argv.remove("--quiet")  # --quiet prints no start-up lines
    assert main(argv) == 0
    assert f"data: {mnist_dir}" in capsys.readouterr().err


def test_an_absurd_training_length_names_its_flag(mnist_dir, tmp_path, capsys):
    line = one_line_error(capsys, _train(mnist_dir, tmp_path / "r", "--epochs", "1e308"))
    assert "(--epochs): gives more than 2^63 optimizer steps" in line
