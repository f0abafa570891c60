import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from legw.experiments.plan_validation import (
    find_runs,
    format_validation,
    measured_epochs_to_match,
    run_outcome,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(root: Path, name: str, batch: int, epochs: float, accuracy: float, losses: list[float],
         status: str = "completed", task: str = "fashion-mnist-lstm") -> Path:
    """A run directory as the trainer writes it: ``losses`` spread over the last epoch."""
    d = root / "runs" / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "status": status, "task": task, "global_batch_size": batch, "epochs": epochs,
        "steps": round(10 * epochs), "final": {"test_accuracy": accuracy, "test_loss": 0.3}}))
    with open(d / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"kind": "train", "step": 0, "epoch": 0.0, "loss": 9.0}) + "\n")
        for i, loss in enumerate(losses):
            f.write(json.dumps({"kind": "train", "step": i + 1,
                                "epoch": epochs - 1 + i / len(losses), "loss": loss}) + "\n")
        f.write(json.dumps({"kind": "eval", "step": 99, "epoch": epochs,
                            "test_accuracy": accuracy}) + "\n")
    return d


def _plan(predicted: dict[int, float]) -> dict:
    return {"rows": [{"global_batch_size": b, "workers": 1, "epochs": e}
                     for b, e in predicted.items()]}


def test_outcome_reads_error_and_last_epoch_train_loss(tmp_path):
    d = _run(tmp_path, "a", 128, 10, 0.9, [0.3, 0.1])
    out = run_outcome(d)
    assert out["batch_size"] == 128 and out["epochs"] == 10
    assert out["error"] == pytest.approx(10.0)
    assert out["train_loss"] == pytest.approx(0.2)  # the 9.0 of epoch 0 is not in the last epoch


def test_measured_epochs_to_match_interpolates_in_log_epochs():
    runs = [(10, 17.0), (25, 12.9), (100, 10.0)]
    e = measured_epochs_to_match(runs, 11.0)
    assert 25 < e < 100
    assert math.log(e) == pytest.approx(math.log(25) + (12.9 - 11) / 2.9 * math.log(4))
    assert measured_epochs_to_match(runs, 9.0) is None
    assert measured_epochs_to_match(runs, 20.0) == 10


def test_outcome_refuses_an_unfinished_run(tmp_path):
    d = _run(tmp_path, "a", 128, 10, 0.9, [0.3], status="stopped")
    with pytest.raises(ValueError, match="did not complete"):
        run_outcome(d)


def test_validate_interpolates_both_metrics_and_signs_the_error(tmp_path):
    base = [run_outcome(_run(tmp_path, f"base{s}", 128, 10, acc, [0.2]))
            for s, acc in enumerate((0.89, 0.91))]  # target: error 10 %, train loss 0.2
    runs = [run_outcome(_run(tmp_path, "b10", 1024, 10, 0.86, [0.4])),
            run_outcome(_run(tmp_path, "b40a", 1024, 40, 0.90, [0.1])),
            run_outcome(_run(tmp_path, "b40b", 1024, 40, 0.92, [0.1])),  # seeds averaged
            run_outcome(_run(tmp_path, "c10", 4096, 10, 0.80, [0.5]))]
    result = validate(_plan({1024: 20.0, 4096: 8.0}), base, runs)
    assert result["target_error"] == pytest.approx(10.0)
    b1024, b4096 = result["rows"]
    assert [b["runs"] for b in b1024["budgets"]] == [1, 2]
    # error 14 % at 10 epochs, 9 % at 40: 10 % is crossed 4/5 of the way in log epochs
    measured = math.exp(math.log(10) + 0.8 * math.log(4))
    assert b1024["test_metric"]["measured"] == pytest.approx(measured)
    assert b1024["test_metric"]["error_pct"] == pytest.approx(100 * (20 / measured - 1))
    # train loss 0.4 -> 0.1: 0.2 crossed 2/3 of the way
    assert b1024["train_loss"]["measured"] == pytest.approx(10 * 4 ** (2 / 3))
    # never reached within 10 epochs: a prediction of 8 is at least 20 % under
    assert not b4096["test_metric"]["reached"]
    assert b4096["test_metric"]["error_pct"] == pytest.approx(-20.0)
    table = format_validation(result)
    assert "| 4096 |" in table and "> 10" in table and "≤ -20 %" in table


def test_a_prediction_beyond_the_longest_budget_is_not_contradicted(tmp_path):
    base = [run_outcome(_run(tmp_path, "base", 128, 10, 0.9, [0.2]))]
    runs = [run_outcome(_run(tmp_path, "b", 512, 10, 0.85, [0.3]))]
    row = validate(_plan({512: 14.0}), base, runs)["rows"][0]
    assert row["test_metric"] == {"measured": None, "error_pct": None, "reached": False}
    assert "consistent" in format_validation(validate(_plan({512: 14.0}), base, runs))


def test_validate_refuses_a_batch_the_plan_lacks_and_mixed_tasks(tmp_path):
    base = [run_outcome(_run(tmp_path, "base", 128, 10, 0.9, [0.2]))]
    runs = [run_outcome(_run(tmp_path, "b", 512, 10, 0.85, [0.3]))]
    with pytest.raises(ValueError, match="--batch-sizes 512"):
        validate(_plan({1024: 14.0}), base, runs)
    other = [run_outcome(_run(tmp_path, "c", 512, 20, 0.9, [0.1], task="fashion-mnist-resnet"))]
    with pytest.raises(ValueError, match="mix tasks"):
        validate(_plan({512: 14.0}), base, runs + other)


def test_script_finds_runs_in_sweeps_and_fails_cleanly(tmp_path):
    _run(tmp_path / "base", "legw-b128-s0", 128, 10, 0.9, [0.2])
    _run(tmp_path / "sweep", "legw-b512-s0", 512, 10, 0.88, [0.3])
    _run(tmp_path / "sweep", "legw-b512-s1", 512, 20, 0.91, [0.1])
    assert len(find_runs([tmp_path / "sweep"])) == 2
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan({512: 15.0})))
    script = [sys.executable, str(ROOT / "scripts" / "validate_plan.py"), "--plan", str(plan),
              "--base", str(tmp_path / "base")]
    ok = subprocess.run(script + ["--runs", str(tmp_path / "sweep"), "--json",
                                  str(tmp_path / "v.json")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "| 512 |" in ok.stdout
    assert json.loads((tmp_path / "v.json").read_text())["rows"][0]["batch_size"] == 512
    bad = subprocess.run(script + ["--runs", str(tmp_path / "missing")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing" in bad.stderr


def test_gap_script_averages_seeds_and_pairs_budgets(tmp_path):
    for name, batch, epochs, acc in (("s10a", 128, 10, 0.90), ("s10b", 128, 10, 0.88),
                                     ("l10", 8192, 10, 0.80), ("l25", 8192, 25, 0.85)):
        _run(tmp_path, name, batch, epochs, acc, [0.2])
    script = [sys.executable, str(ROOT / "scripts" / "gap_vs_epochs.py"), "--runs",
              str(tmp_path), "--small", "128", "--large", "8192"]
    done = subprocess.run(script + ["--out", str(tmp_path / "gap.png")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    # 25 epochs was run at 8192 only: one row, error 11 % (2 seeds) vs 20 %
    assert done.stdout.splitlines()[2:] == ["| 10 | 11.00 (2 seeds) | 20.00 | 9.00 |"]
    assert (tmp_path / "gap.png").stat().st_size > 0
    none = subprocess.run(script[:-1] + ["512"], capture_output=True, text=True)
    assert none.returncode == 2 and "no epoch budget" in none.stderr


def test_adaptive_figure_names_rules_averages_seeds_and_checks_input(tmp_path):
    _run(tmp_path / "base", "b0", 128, 10, 0.90, [0.2])
    _run(tmp_path / "base", "b1", 128, 10, 0.88, [0.2])
    row = {"task": "fashion-mnist-lstm", "seed": 0}
    rows = [{**row, "method": "adaptive", "batch_size": 1024, "test_error": 10.5, "steps": 988,
             "epochs": 17.0},  # written before --adaptive-lr-power existed: P = 0.5
            {**row, "method": "adaptive", "adaptive_lr_power": 1.0, "batch_size": 8192,
             "test_error": 10.6, "steps": 389, "epochs": 55.6},
            {**row, "method": "adaptive", "adaptive_lr_power": 1.0, "adaptive_warmup": "gain",
             "batch_size": 8192, "test_error": 10.8, "steps": 350, "epochs": 50.0},
            {**row, "method": "adaptive", "adaptive_lr_power": 0.75, "batch_size": 8192,
             "test_error": 10.7, "steps": 390, "epochs": 55.7},
            {**row, "method": "adascale", "batch_size": 8192, "test_error": 10.5, "steps": 1428,
             "epochs": 61.1},
            {**row, "method": "adascale", "batch_size": 8192, "seed": 1, "test_error": 10.7,
             "steps": 1430, "epochs": 61.3}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = [sys.executable, str(ROOT / "scripts" / "adaptive_figure.py"), "--results",
              str(results), "--base-runs", str(tmp_path / "base")]
    _run(tmp_path / "plan", "legw-b8192-s0", 8192, 100, 0.895, [0.1])
    plan = ["--plan-runs", str(tmp_path / "plan")]
    done = subprocess.run(script + plan + ["--out", str(tmp_path / "a.png")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "base: 11.00 ± 1.41 % (2 runs)"
    assert lines[2:] == ["| rule | 1024 | 8192 |", "|---|---|---|",
                         "| adaptive p1 |  | 10.60 %, 389 steps, 55.6 ep |",
                         "| adaptive p1 gain-warmup |  | 10.80 %, 350 steps, 50.0 ep |",
                         "| adaptive p0.5 | 10.50 %, 988 steps, 17.0 ep |  |",
                         "| adascale |  | 10.60 %, 1,429 steps, 61.2 ep (2 seeds) |",
                         "| legw at plan's budget |  | 10.50 %, 1,000 steps, 100.0 ep |",
                         "| adaptive p0.75 |  | 10.70 %, 390 steps, 55.7 ep |"]
    _run(tmp_path / "other", "legw-b8192-s0", 8192, 100, 0.9, [0.1], task="fashion-mnist-resnet")
    other = subprocess.run(script + ["--plan-runs", str(tmp_path / "other")],
                           capture_output=True, text=True)
    assert other.returncode == 2 and "a run of fashion-mnist-resnet" in other.stderr
    assert (tmp_path / "a.png").stat().st_size > 0
    lamb = {**rows[1], "overrides": {"optimizer": "lamb", "base_lr": 0.01}}
    results.write_text(json.dumps(rows[1]) + "\n" + json.dumps(lamb) + "\n")
    mixed = subprocess.run(script, capture_output=True, text=True)
    assert mixed.returncode == 2 and "several tasks or settings" in mixed.stderr
    assert mixed.stderr.count("\n") == 1
