"""Records and study specs are checked before anything runs or is written: the wrong shape, an
unknown field or a bad value is one line naming the file or the study's own flag; a run
stopped by --max-steps is finished and evaluated."""

import json

import pytest
from helpers import make_mnist_dir, one_line_error

from legw.experiments.records import objective, run_row
from legw.training.run_dir import RunDir

ROW = {"method": "legw", "batch_size": 32, "seed": 0, "status": "completed", "run_dir": "r"}


def _records(tmp_path, content):
    d = tmp_path / "sweep"
    d.mkdir()
    text = content if isinstance(content, str) else json.dumps(content)
    (d / "results.json").write_text(text)
    return d


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "results.json: not a legw record file"),
    ('{"kind": "sweep", "rows": [', "results.json: not valid JSON"),
    ({"kind": "sweep", "task": "fashion-mnist-lstm", "rows": [], "colour": 1},
     "results.json: unknown field 'colour'"),
    ({"kind": "sweep", "task": "fashion-mnist-lstm", "rows": [{**ROW, "wat": 1}]},
     "results.json: row 0: unknown field 'wat'"),
    ({"kind": "sweep", "task": "fashion-mnist-lstm", "rows": [{**ROW, "batch_size": "x"}]},
     "results.json: row 0: batch_size 'x' is not a number"),
    ({"kind": "sweep", "task": "fashion-mnist-lstm", "rows": [{**ROW, "status": "done"}]},
     "results.json: row 0: status 'done' is not one of"),
    ({"kind": "sweep", "task": "nope", "rows": []}, "results.json: unknown task 'nope'"),
])
def test_report_refuses_bad_records_naming_the_file(tmp_path, capsys, content, needle):
    d = _records(tmp_path, content)
    assert needle in one_line_error(capsys, ["report", str(d)])
    assert sorted(p.name for p in d.iterdir()) == ["results.json"]  # nothing written


def test_report_on_a_missing_directory_creates_nothing(tmp_path, capsys):
    assert "DIR: no directory" in one_line_error(capsys, ["report", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()
    assert "--tune: no trials.json" in one_line_error(capsys, [
        "report", str(_records(tmp_path, {"kind": "sweep", "task": "mnist-lstm", "rows": []})),
        "--tune", str(tmp_path / "none")])


def test_a_stopped_run_is_finished_and_evaluated(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-000000003.pt").write_bytes(b"")
    (run / "summary.json").write_text(json.dumps({
        "status": "stopped", "task": "mnist-lstm", "global_batch_size": 32, "seed": 0,
        "steps": 3, "total_steps": 80, "epochs": 0.375, "wall_time_s": 1.0,
        "final": {"test_accuracy": 0.75, "test_loss": 0.5}, "diverged_at": None}))
    assert RunDir(run).state() == "finished"  # the launcher skips it, not resumes it forever
    row = run_row(run, {"method": "legw"}, tmp_path)
    assert row["status"] == "stopped" and objective(row, "accuracy") == pytest.approx(25.0)


def _light(tmp_path):
    """Flags that keep a run short, should a check be missing."""
    return ["--data-dir", str(make_mnist_dir(tmp_path / "data", n_train=128, n_test=16)),
            "--max-steps", "1", "--epochs", "1", "--threads", "1"]


def _sweep(tmp_path, *flags):
    return ["sweep", "fashion-mnist-lstm", "--out", str(tmp_path / "s"), "--batch-sizes", "64",
            *_light(tmp_path), *flags]


@pytest.mark.parametrize("flags, needle", [
    (["--batch-sizes", "0"], "--batch-sizes: must be positive integers, got 0"),
    (["--seeds", "-1"], "--seeds: must be an integer in [0, 2^32), got -1"),
    (["--batch-sizes", "96", "--micro-batch-size", "64"],
     "--micro-batch-size: 64 does not divide --batch-sizes value 96"),
    (["--methods", "adam", "--adam-lr", "0"], "--adam-lr: must be a positive number, got 0.0"),
])
def test_sweep_errors_name_the_sweeps_flags(tmp_path, capsys, flags, needle):
    assert needle in one_line_error(capsys, _sweep(tmp_path, *flags))
    assert not (tmp_path / "s").exists()  # nothing ran


def test_a_sweep_json_with_an_unknown_field_names_the_file(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    (d / "sweep.json").write_text(json.dumps({"task": "mnist-lstm", "batch_sizes": [32],
                                              "methods": ["legw"], "colour": 1}))
    assert "sweep.json: unknown field 'colour'" in one_line_error(capsys, [
        "sweep", "--out", str(d)])


def _tune(tmp_path, *flags):
    return ["tune", "fashion-mnist-lstm", "--batch-size", "32", "--out", str(tmp_path / "t"),
            *_light(tmp_path), *flags]


def test_tune_checks_its_search_before_the_first_trial(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed
    assert "--search: optuna is not installed" in one_line_error(
        capsys, _tune(tmp_path, "--search", "optuna"))
    assert "--lr-factors: 1e+300 x the LEGW peak LR" in one_line_error(
        capsys, _tune(tmp_path, "--lr-factors", "1", "1e300"))
    assert not (tmp_path / "t").exists()
