"""legw plan: a measured plan and one read back from its run, and its flags (PlanSpec): one
line naming the flag or the run for bad input."""

import json

import pytest
from helpers import make_mnist_dir, one_line_error

from legw.cli import main
from legw.commands.plan import PlanSpec
from legw.schedule import BaseRecipe


def test_cli_measures_and_writes_the_plan(tmp_path, capsys):
    data = make_mnist_dir(tmp_path / "data", n_train=1024)
    out, png = tmp_path / "p.json", tmp_path / "p.png"  # the plot goes beside --out
    code = main(["plan", "fashion-mnist-lstm", "--data-dir", str(data), "--steps", "16",
                 "--micro-batch-size", "16", "--samples-per-second", "500", "--threads", "1",
                 "--batch-sizes", "128", "1024", "--workers", "1", "4",
                 "--run-dir", str(tmp_path / "run"), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "critical batch" in text and "recommended" in text
    plan = json.loads(out.read_text())
    assert plan["profile"]["small_batch_size"] == 16 and plan["task"] == "fashion-mnist-lstm"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the measurement run is a normal run directory: --from-run reads it back
    assert main(["plan", "--from-run", str(tmp_path / "run"), "--samples-per-second", "500",
                 "--batch-sizes", "128", "--workers", "1", "--out", str(out),
                 "--plot", str(png)]) == 0


def test_cli_refuses_a_plot_over_its_own_record(tmp_path, capsys):
    out = tmp_path / "plan.png"
    assert main(["plan", "fashion-mnist-lstm", "--out", str(out)]) == 2
    assert "--plot:" in capsys.readouterr().err and not out.exists()


def test_cli_refuses_a_run_without_noise_and_bad_budgets(tmp_path, capsys):
    assert main(["plan"]) == 2
    assert "TASK: give a task preset" in capsys.readouterr().err
    assert main(["plan", "fashion-mnist-lstm", "--steps", "5", "--seconds", "3"]) == 2
    assert "give one budget" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "config": {},
        "resolved": {"task": "fashion-mnist-lstm", "global_batch_size": 128,
                     "dataset_size": 60000, "noise_small_batch_size": None},
        "base_recipe": BaseRecipe(128, 0.4, 0.1, 10).to_dict()}))
    assert main(["plan", "--from-run", str(run), "--samples-per-second", "1"]) == 2
    assert "measured no gradient noise" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps: must be a positive integer, got 0"),
    (["--seconds", "-1"], "--seconds: must be a positive number, got -1"),
    (["--micro-batch-size", "0"], "--micro-batch-size: must be a positive integer, got 0"),
    (["--batch-sizes", "128", "0"], "--batch-sizes: must be a positive integer, got 0"),
    (["--cost-limit", "0"], "--cost-limit: must be a positive number, got 0"),
    (["--workers", "0"], "--workers: must be a positive integer, got 0"),
    (["--samples-per-second", "1", "--throughput-from", "x.json"],
     "--samples-per-second, --throughput-from: give one compute rate"),
    (["--from-run", "r", "--steps", "5"], "--steps/--seconds: not with --from-run"),
    (["--micro-batch-size", "128"], "--micro-batch-size: 128 must divide the base batch 128"),
])
def test_bad_input_is_one_line_exit_2(capsys, in_tmp, argv, needle):
    (in_tmp / "x.json").write_text('{"points": [{"micro_batch_size": 8, "samples_per_s": 9}]}')
    assert needle in one_line_error(capsys, ["plan", "fashion-mnist-lstm", *argv])


def test_the_spec_puts_the_plot_beside_the_record():
    spec = PlanSpec(task="fashion-mnist-lstm", out="runs/p.json")
    assert spec.plot == "runs/p.png"
    assert str(spec.measurement_dir()) == "runs/plan-fashion-mnist-lstm"
    with pytest.raises(ValueError, match="^--steps and --seconds: give one budget$"):
        PlanSpec(task="fashion-mnist-lstm", steps=5, seconds=3.0)
