"""legw report renders every figure and table from a fixed record set (no training)."""

import json

import matplotlib.image
import pytest

from legw.cli import main
from legw.experiments.records import read_rows, run_row, write_rows

PNG = b"\x89PNG\r\n\x1a\n"

# (method, batch, seed) -> test error (%) or "diverged"
RESULTS = {
    ("legw", 64, 0): 10.0, ("legw", 64, 1): 11.0,
    ("legw", 256, 0): 12.0, ("legw", 256, 1): 14.0,
    ("linear", 64, 0): 10.2, ("linear", 64, 1): 10.4,
    ("linear", 256, 0): "diverged", ("linear", 256, 1): 30.0,
}


def _write_run(run_dir, method, batch, seed, result, base_lr=0.1):
    run_dir.mkdir(parents=True)
    steps_per_epoch, peak = 2048 // batch, 0.1 * (batch / 64) ** (0.5 if method == "legw" else 1)
    lines, evals = [], []
    diverged = result == "diverged"
    total = 2 * steps_per_epoch if not diverged else steps_per_epoch + 1
    for step in range(total):
        lines.append({"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                      "lr": peak * min(1.0, (step + 1) / 4), "loss": 1.0})
        if (step + 1) % steps_per_epoch == 0:
            err = result if not diverged else 50.0
            acc = 1 - (err + 10 * (1 - (step + 1) / total)) / 100
            evals.append({"kind": "eval", "step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                          "test_accuracy": acc, "test_loss": 0.5})
            lines.append(evals[-1])
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "config.json").write_text(json.dumps({
        "config": {"seed": seed},
        "resolved": {"task": "fashion-mnist-lstm", "optimizer": "sgd",
                     "global_batch_size": batch},
        "recipe": {"peak_lr": peak, "warmup_epochs": 4 / steps_per_epoch, "warmup_steps": 4,
                   "total_steps": 2 * steps_per_epoch},
        "base_recipe": {"base_batch_size": 64, "peak_lr": base_lr, "warmup_epochs": 0.125,
                        "epochs": 2.0, "decay": "poly"},
        "versions": {"torch": "2.13.0", "platform": "test"}}))
    final = {} if diverged else {"test_accuracy": 1 - result / 100, "test_loss": 0.5}
    (run_dir / "summary.json").write_text(json.dumps({
        "status": "diverged" if diverged else "completed", "task": "fashion-mnist-lstm",
        "metric": "accuracy", "global_batch_size": batch, "seed": seed, "steps": total,
        "total_steps": 2 * steps_per_epoch, "epochs": total / steps_per_epoch,
        "final": final, "diverged_at": {"step": total, "epoch": 1.0} if diverged else None,
        "wall_time_s": 12.0}))


@pytest.fixture
def records(tmp_path):
    sweep = tmp_path / "exp" / "sweep"
    rows = []
    for (method, batch, seed), result in RESULTS.items():
        run_dir = sweep / "runs" / f"{method}-b{batch}-s{seed}"
        _write_run(run_dir, method, batch, seed, result)
        rows.append(run_row(run_dir, {"method": method}, sweep))
    spec = {"methods": ["legw", "linear"], "batch_sizes": [64, 256], "seeds": [0, 1],
            "overrides": {"epochs": 2.0},
            # a sweep resumed by the same command, recorded before resumes were recorded once
            "commands": ["legw sweep fashion-mnist-lstm --out exp/sweep --batch-sizes 64 256"] * 2}
    write_rows(sweep / "results", rows, {"kind": "sweep", "task": "fashion-mnist-lstm",
                                         "spec": spec})
    tune = tmp_path / "exp" / "tune"
    trials = []
    for lr in (0.05, 0.1, 0.2):
        for w in (0.0, 0.5):
            err = "diverged" if lr == 0.2 and w == 0.0 else 20 + 40 * abs(lr - 0.1) + w
            run_dir = tune / "trials" / f"lr{lr:g}-w{w:g}-s0"
            _write_run(run_dir, "legw", 256, 0, err)
            trials.append(run_row(run_dir, {"method": "tuned", "trial": f"lr{lr:g}-w{w:g}",
                                            "peak_lr": lr, "warmup_epochs": w}, tune))
    _write_run(tune / "trials" / "legw-s0", "legw", 256, 0, 21.0)
    legw = run_row(tune / "trials" / "legw-s0", {"method": "legw", "trial": "legw",
                                                 "peak_lr": 0.1, "warmup_epochs": 0.5}, tune)
    for r in trials:  # run_row reads the recipe _write_run wrote; pin the grid values
        r["peak_lr"], r["warmup_epochs"] = map(float, r["trial"][2:].split("-w"))
    legw["peak_lr"], legw["warmup_epochs"] = 0.1, 0.5
    best = min((r for r in trials if r["status"] == "completed"), key=lambda r: r["test_error"])
    write_rows(tune / "trials", [legw, *trials], {
        "kind": "tune", "task": "fashion-mnist-lstm", "batch_size": 256, "metric": "accuracy",
        "objective": "test_error", "legw_point": {"peak_lr": 0.1, "warmup_epochs": 0.5},
        "legw": legw, "best": best,
        "spec": {"search": "grid", "commands": ["legw tune fashion-mnist-lstm --batch-size 256"]}})
    return tmp_path / "exp"


def test_report_renders_figures_tables_and_commands(records, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(records), "--out", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    pngs = ["metric_vs_batch.png", "curves.png", "lr_schedules.png", "landscape-tune.png",
            "lr_curve-tune.png"]
    md = (out / "report.md").read_text()
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == PNG
        h, w = matplotlib.image.imread(out / name).shape[:2]
        assert h > 200 and w > 300
        assert f"({name})" in md
    # pivot table: mean ± std (population std) over completed seeds, diverged counted
    assert "| legw | 10.50 ± 0.50 (2/2) | 13.00 ± 1.00 (2/2) |" in md
    assert "| linear | 10.30 ± 0.10 (2/2) | 30.00 (1/2) div 1 |" in md
    assert "| linear | 256 | 2 | 1 diverged, 1 completed |" in md
    assert md.count("legw sweep fashion-mnist-lstm --out exp/sweep") == 1
    assert "legw tune fashion-mnist-lstm --batch-size 256" in md
    assert "Best tuned: `lr0.1-w0` 20.00; LEGW untuned: 21.00." in md
    # the reading says what the numbers show, from the records
    assert "**What this shows.** At the base batch 64 the test error is 10.40 %." in md
    assert ("At batch 256 (4x), `legw` reaches 13.00 % (+2.60 against the base) in 16 steps, "
            "2 epochs.") in md
    assert "Within 0.5 points of the base at batch 256: none of the rules." in md
    assert "it is not evidence that a large batch matches the base" in md
    assert "| legw | 0.1 | 0.5 | 21.00 | completed |" in md
    assert ("Base recipe (before each method's scaling/warmup rule): batch 64, peak LR 0.1, "
            "warmup 0.125 epochs, 2 epochs, poly decay; optimizer sgd; torch 2.13.0, test.") in md


def test_rows_round_trip_and_diverged_runs_have_no_final_metric(records):
    meta, rows = read_rows(records / "sweep" / "results.json")
    div = [r for r in rows if r["status"] == "diverged"]
    assert len(div) == 1 and div[0]["test_error"] is None and div[0]["diverged_step"] == 9
    assert rows[0]["run_dir"] == "runs/legw-b64-s0" and rows[0]["test_error"] == pytest.approx(10)
    csv = (records / "sweep" / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + len(RESULTS)


def test_report_on_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json or trials.json" in capsys.readouterr().err


def test_sweeps_of_one_task_are_pooled_into_one_table(tmp_path):
    exp = tmp_path / "exp"
    for name, method in (("legw-sweep", "legw"), ("compare", "linear")):
        sweep, rows = exp / name, []
        for (m, batch, seed), result in RESULTS.items():
            if m != method:
                continue
            run_dir = sweep / "runs" / f"{m}-b{batch}-s{seed}"
            _write_run(run_dir, m, batch, seed, result, base_lr=0.1 if m == "legw" else 0.2)
            rows.append(run_row(run_dir, {"method": m}, sweep))
        spec = {"methods": [method], "batch_sizes": [64, 256], "seeds": [0, 1],
                "commands": [f"legw sweep fashion-mnist-lstm --out {name}"]}
        write_rows(sweep / "results", rows, {"kind": "sweep", "task": "fashion-mnist-lstm",
                                             "spec": spec})
    out = tmp_path / "report"
    assert main(["report", str(exp), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert md.count("## fashion-mnist-lstm: batch") == 1 and (out / "metric_vs_batch.png").exists()
    assert "| legw | 10.50 ± 0.50 (2/2) | 13.00 ± 1.00 (2/2) |" in md
    assert "| linear | 10.30 ± 0.10 (2/2) | 30.00 (1/2) div 1 |" in md
    assert "legw sweep fashion-mnist-lstm --out legw-sweep" in md
    assert "legw sweep fashion-mnist-lstm --out compare" in md
    # each sweep scaled its own base recipe: both are named, per method
    assert "- legw at 64, 256: batch 64, peak LR 0.1, warmup 0.125 epochs, 2 epochs, poly" in md
    assert "- linear at 64, 256: batch 64, peak LR 0.2, warmup 0.125 epochs, 2 epochs" in md


def test_perplexity_axes_stop_where_a_blown_up_run_would_flatten_the_rest(monkeypatch, tmp_path):
    from legw.experiments import plots

    assert plots._off_scale_limits([150.0, 400.0]) is None  # within 10x of the best
    assert plots._off_scale_limits([150.0, 200.0, 3e82])[1] == pytest.approx(200.0 * 1.15)
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    rows = [{"method": m, "batch_size": b, "status": "completed", "test_perplexity": v}
            for m, b, v in (("legw", 20, 150.0), ("legw", 640, 200.0), ("linear", 640, 3e82))]
    plots.plot_metric_vs_batch(rows, "perplexity", tmp_path / "p.png")
    assert figs[0].axes[0].get_ylim() == pytest.approx((150.0 - 0.05 * 80.0, 230.0))
    rows[2]["test_perplexity"] = 1000.0  # 6.7x the best: drawn to scale
    plots.plot_metric_vs_batch(rows, "perplexity", tmp_path / "p.png")
    assert figs[1].axes[0].get_ylim()[1] > 1000.0
    rows = [{**r, "test_error": 90.0 if r["method"] == "linear" else 5.0} for r in rows]
    plots.plot_metric_vs_batch(rows, "accuracy", tmp_path / "e.png")  # error % is bounded
    assert figs[2].axes[0].get_ylim()[1] > 90.0
    from legw.experiments.report import _fmt

    assert _fmt([3.09e82]) == "3.09e+82" and _fmt([150.0, 152.0]) == "151.00 ± 1.00"


def _edit_train_records(records, edit):
    """Apply ``edit`` to each train record of the 256 legw run, as if the run had logged it."""
    run = records / "sweep" / "runs" / "legw-b256-s0"
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        if r["kind"] == "train":
            edit(r)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


@pytest.fixture
def plotted(monkeypatch):
    """Figure file name -> ``(series, keyword arguments)`` of every ``plot_series`` call; the
    figures are still drawn."""
    from legw.experiments import plots

    calls = {}
    plot_series = plots.plot_series

    def record_and_plot(series, ylabel, path, *args, **kwargs):
        calls[path.name] = (series, kwargs)
        plot_series(series, ylabel, path, *args, **kwargs)

    monkeypatch.setattr(plots, "plot_series", record_and_plot)
    return calls


def test_online_noise_scale_is_plotted_when_runs_logged_it(records, tmp_path):
    _edit_train_records(records, lambda r: r.update(b_noise=100.0 + 10 * r["step"]))
    out = tmp_path / "report"
    assert main(["report", str(records), "--out", str(out)]) == 0
    assert (out / "noise_scale.png").read_bytes()[:8] == PNG
    assert "(noise_scale.png)" in (out / "report.md").read_text()


def test_no_noise_or_gain_figure_without_their_measurements(records, tmp_path):
    assert main(["report", str(records), "--out", str(tmp_path / "r")]) == 0
    assert not (tmp_path / "r" / "noise_scale.png").exists()
    assert not (tmp_path / "r" / "adaptive_gain.png").exists()
    assert "scaling adaptive" not in (tmp_path / "r" / "report.md").read_text()


def test_adaptive_runs_get_their_gain_plotted(records, tmp_path, plotted):
    def gain(r):
        r["gain"], r["tau"] = 1.0 + 0.1 * r["step"], 1.05 * r["step"]

    _edit_train_records(records, gain)
    out = tmp_path / "report"
    assert main(["report", str(records), "--out", str(out)]) == 0
    assert (out / "adaptive_gain.png").read_bytes()[:8] == PNG
    assert "![adaptive gain](adaptive_gain.png)" in (out / "report.md").read_text()
    gains = plotted["adaptive_gain.png"][0]
    assert list(gains) == ["legw"] and list(gains["legw"]) == [256]
    assert gains["legw"][256][:2] == [(0.0, 1.0), (0.125, 1.1)]  # (epoch, gain) per step


def test_batch_ramps_get_their_batch_plotted_unclipped(records, tmp_path, plotted):
    def batch(r):  # 64 -> 4096: past OFF_SCALE x the smallest, still drawn
        r["batch_size"] = 64 * 2 ** min(r["step"] // 2, 6)

    _edit_train_records(records, batch)
    out = tmp_path / "report"
    assert main(["report", str(records), "--out", str(out)]) == 0
    assert (out / "batch_ramp.png").read_bytes()[:8] == PNG
    assert "![batch ramps](batch_ramp.png)" in (out / "report.md").read_text()
    series, kwargs = plotted["batch_ramp.png"]
    assert kwargs["log_y"] and not kwargs["clip"]
    assert series["legw"][256][:3] == [(0.0, 64), (0.125, 64), (0.25, 128)]
    assert max(b for _, b in series["legw"][256]) == 4096
