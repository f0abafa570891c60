"""legw tune: the search space, and a tiny study end to end (trials, best, LEGW, plots)."""

import math
from pathlib import Path

import pytest
from helpers import make_mnist_dir

from legw.cli import main
from legw.experiments.records import read_rows
from legw.experiments.tune import TuneSpec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))


def test_legw_point_and_default_grid_centre_on_sqrt_and_legw():
    spec = TuneSpec(task="fashion-mnist-lstm", batch_size=1024)  # base: 128, LR 0.4, w0 0.1
    lr, w = spec.legw_point()
    assert lr == pytest.approx(0.4 * math.sqrt(8)) and w == pytest.approx(0.8)
    assert spec.warmups() == [0.0, 0.2, 0.8, 3.2]
    grid = TuneSpec(task="fashion-mnist-lstm", batch_size=1024, trials=100).points()
    assert len(grid) == 7 * 4 and (pytest.approx(lr), pytest.approx(0.8)) in grid
    assert sorted({round(p[0] / lr, 9) for p in grid}) == [2.0 ** e for e in range(-3, 4)]


def test_budget_subsamples_the_grid_and_random_search_is_seeded():
    sub = TuneSpec(task="fashion-mnist-lstm", batch_size=1024, trials=5)
    assert len(sub.points()) == 5 and set(sub.points()) <= set(
        TuneSpec(task="fashion-mnist-lstm", batch_size=1024, trials=100).points())
    r1 = TuneSpec(task="fashion-mnist-lstm", batch_size=1024, trials=6, search="random")
    r2 = TuneSpec(task="fashion-mnist-lstm", batch_size=1024, trials=6, search="random")
    assert r1.points() == r2.points() and len(set(r1.points())) == 6
    lr = r1.legw_point()[0]
    assert all(lr / 8 <= p[0] <= lr * 8 and 0 <= p[1] <= 3.2 for p in r1.points())


def test_trial_trains_at_fixed_lr_and_warmup():
    spec = TuneSpec(task="fashion-mnist-lstm", batch_size=1024, overrides={"epochs": 3.0})
    run = spec.trial_config(Path("d"), 0.5, 0.25)
    recipe = run.config.resolve().base.scale(1024, 60_000)
    assert recipe.peak_lr == 0.5 and recipe.warmup_epochs == 0.25 and recipe.epochs == 3.0
    assert run.name == "lr0.5-w0.25" and run.config.out_dir == "d/trials/lr0.5-w0.25-s0"


@pytest.mark.parametrize("kw, message", [
    ({"search": "bayes"}, "--search: must be one of"),
    ({"trials": 0}, "--trials: must be at least 1"),
    ({"lr_factors": [0.0]}, "--lr-factors"),
    ({"batch_size": 100, "micro_batch_size": 30}, "--batch-size 100 is not --micro-batch-size 30"),
    ({"warmup_epochs": [30.0]}, "--warmup-epochs: none is shorter than the training"),
    # runner options, shared with SweepSpec (legw.experiments.launcher.LaunchOptions)
    ({"jobs": 0}, "--jobs: must be at least 1"),
    ({"threads": 0}, "--threads: must be at least 1"),
    ({"micro_batch_size": 0}, "--micro-batch-size: must be at least 1"),
])
def test_bad_specs_name_the_flag(kw, message):
    with pytest.raises(ValueError, match=message):
        TuneSpec(**{"task": "fashion-mnist-lstm", "batch_size": 64, **kw})


def test_tune_records_trials_best_and_legw_then_skips(mnist_dir, tmp_path, capsys):
    out = tmp_path / "tune"
    # Adam at factor 1 (the LEGW LR) trains; at factor 1e37 (LR 2e36) it must diverge.
    args = ["tune", "fashion-mnist-lstm", "--batch-size", "32", "--out", str(out),
            "--optimizer", "adam", "--lr-factors", "1", "1e37", "--warmup-epochs", "0",
            "--trials", "4", "--epochs", "1", "--max-steps", "3", "--data-dir", str(mnist_dir),
            "--threads", "1"]
    assert main(args) == 0
    meta, rows = read_rows(out / "trials.json")
    assert [r["trial"] for r in rows][0] == "legw" and len(rows) == 3
    by_status = {r["status"] for r in rows}
    assert by_status == {"stopped", "diverged"}  # --max-steps 3 of 8: stopped, evaluated
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["peak_lr"] > 1e30
    assert meta["best"]["trial"] == "lr0.2-w0" and meta["best"]["status"] == "stopped"
    assert meta["legw"]["trial"] == "legw" and meta["legw"]["test_error"] is not None
    assert meta["legw_point"]["peak_lr"] == pytest.approx(0.4 * math.sqrt(32 / 128))
    for name in ("landscape.png", "lr_curve.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert (out / "trials.csv").read_text().count("\n") == 4
    capsys.readouterr()
    assert main(["tune", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("earlier, skipped") == 3 and "starting" not in err
    assert main(["tune", "--out", str(out), "--batch-size", "64"]) == 2


def test_a_language_model_is_tuned_on_the_validation_split(tmp_path):
    from legw.experiments.tune import _Study

    study = _Study(TuneSpec(task="ptb-small", batch_size=20), tmp_path)
    row = {"method": "tuned", "status": "completed", "task": "ptb-small", "batch_size": 20,
           "seed": 0, "run_dir": "r"}
    study.rows = {"a": {**row, "trial": "a", "valid_perplexity": 120.0, "test_perplexity": 110.0},
                  "b": {**row, "trial": "b", "valid_perplexity": 118.0, "test_perplexity": 115.0}}
    result = study.write()
    assert result["selection"] == "valid_perplexity" and result["best"]["trial"] == "b"
    meta, _ = read_rows(tmp_path / "trials.json")
    assert meta["selection"] == "valid_perplexity"
