"""``legw schedule``: table, JSON and plot output; one-line errors; no torch import."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from legw.cli import main

TABLE6 = ["--base-batch-size", "1024", "--base-lr", "5.656854", "--base-warmup-epochs", "0.3125",
          "--epochs", "90", "--decay", "poly", "--power", "2", "--dataset-size", "1281167",
          "--batch-sizes", "1024", "2048", "4096", "8192", "16384", "32768"]


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "legw", "schedule", *argv],
                          capture_output=True, text=True, timeout=120)


def test_table6_json(capsys):
    assert main(["schedule", *TABLE6, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in rows] == [1024, 2048, 4096, 8192, 16384, 32768]
    for i, r in enumerate(rows):
        assert math.log2(r["peak_lr"]) == pytest.approx(2.5 + 0.5 * i, abs=1e-6)
        assert r["warmup_epochs"] == pytest.approx(0.3125 * 2**i)
        assert r["warmup_steps"] in (390, 391)
        assert r["steps_per_epoch"] == 1281167 // r["batch_size"]
        assert r["total_steps"] == 90 * r["steps_per_epoch"]
    assert [r["warmup_steps"] for r in rows] == [391, 391, 390, 390, 390, 390]


def test_table_output(capsys):
    assert main(["schedule", *TABLE6]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("base: batch 1024, peak LR 5.65685, warmup 0.3125 epochs")
    assert lines[1].split() == ["batch", "k", "peak", "LR", "log2", "LR", "warmup", "ep",
                                "warmup", "steps", "steps/epoch", "total", "steps"]
    assert lines[2].split() == ["1024", "1", "5.65685", "2.500", "0.3125", "391", "1251",
                                "112590"]
    assert lines[7].split() == ["32768", "32", "32", "5.000", "10", "390", "39", "3510"]
    assert len(lines) == 8


def test_defaults_to_the_base_batch_size(capsys):
    assert main(["schedule", "--base-batch-size", "128", "--base-lr", "0.1", "--epochs", "5",
                 "--dataset-size", "60000", "--keep-last", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["batch_size"] == 128 and row["steps_per_epoch"] == 469   # ceil(60000 / 128)
    assert row["warmup_steps"] == 0 and row["peak_lr"] == 0.1 and row["decay"] == "poly"


def test_multistep_and_scaling_flags(capsys):
    assert main(["schedule", "--base-batch-size", "100", "--base-lr", "0.1", "--epochs", "10",
                 "--decay", "multistep", "--milestones", "3", "6", "--gamma", "0.5",
                 "--scaling", "0.25", "--warmup", "constant", "--base-warmup-epochs", "0.5",
                 "--dataset-size", "10000", "--batch-sizes", "1600", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["peak_lr"] == pytest.approx(0.2) and row["warmup_epochs"] == 0.5
    assert row["scaling"] == "0.25" and row["warmup"] == "constant"


def test_plot_writes_a_png(tmp_path, capsys):
    import matplotlib.image

    path = tmp_path / "sub" / "lr.png"
    assert main(["schedule", *TABLE6, "--plot", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert img.std() > 0.05                                     # not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == ["lr.png"]  # no temporary left behind


@pytest.mark.parametrize("argv,needle", [
    (["--base-batch-size", "128", "--base-lr", "abc", "--epochs", "5", "--dataset-size", "9"],
     "argument --base-lr: invalid number value: 'abc'"),
    (TABLE6[:8] + ["--decay", "step"], "invalid choice: 'step'"),
    (TABLE6 + ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--base-batch-size", "128", "--epochs", "5", "--dataset-size", "60000"],
     "missing --base-lr"),
    (["--base-batch-size", "128", "--base-lr", "0.1", "--epochs", "5"], "missing --dataset-size"),
    (["--base-batch-size", "128", "--base-lr", "-1", "--epochs", "5", "--dataset-size", "60000"],
     "peak_lr (--base-lr): must be a positive number, got -1.0"),
    (["--base-batch-size", "128", "--base-lr", "0.1", "--epochs", "5", "--dataset-size", "60000",
      "--scaling", "cubic"], "scaling (--scaling): unknown rule 'cubic'"),
    (["--base-batch-size", "128", "--base-lr", "0.1", "--epochs", "90", "--dataset-size",
      "60000", "--decay", "multistep", "--milestones", "60", "30"],
     "milestones (--milestones): must be strictly increasing, got (60.0, 30.0)"),
    (TABLE6[:-6] + ["0"], "global_batch_size (--batch-sizes): must be a positive integer, got 0"),
    (TABLE6[:14] + ["--dataset-size", "-5"], "dataset_size (--dataset-size): must be a positive"),
    (TABLE6[:4] + ["--base-warmup-epochs", "5", "--epochs", "90", "--dataset-size", "1281167",
                   "--batch-sizes", "32768"],
     "warmup_epochs (--base-warmup-epochs): at global_batch_size 32768 the warmup"),
    (TABLE6 + ["--task", "nonesuch"], None),   # whatever the message, one line
    (TABLE6 + ["--optimizer-scaling", "cubic"], "argument --optimizer-scaling: invalid choice"),
    (TABLE6 + ["--betas", "0.9", "1", "--optimizer-scaling", "srr"],
     "--betas: must be a number in [0, 1), got 1"),
    (TABLE6 + ["--betas", "0.9"], "argument --betas: expected 2 arguments"),
    (TABLE6 + ["--eps=-1e-8", "--optimizer-scaling", "srr"],
     "--eps: must be a non-negative number, got -1e-08"),
    (TABLE6 + ["--weight-decay", "-0.1", "--optimizer-scaling", "srr"],
     "--weight-decay: must be a non-negative number, got -0.1"),
    (TABLE6 + ["--ema-decay", "1", "--optimizer-scaling", "srr"],
     "--ema-decay: must be a number in [0, 1), got 1"),
])
def test_bad_input_is_one_line_exit_2(argv, needle):
    p = run_cli(*argv)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.endswith("\n"), p.stderr
    if needle is not None:
        assert needle in p.stderr, p.stderr


def test_unwritable_plot_path_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = run_cli(*TABLE6, "--plot", str(blocker / "lr.png"))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("legw: error: --plot: cannot write") and p.stderr.count("\n") == 1


def test_schedule_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "import legw, legw.schedule\n"
        "assert 'torch' not in sys.modules, 'import legw'\n"
        "from legw.cli import main\n"
        f"rc = main(['schedule', *{TABLE6!r}, '--json', '--plot', {str(tmp_path / 'p.png')!r}])\n"
        "assert rc == 0\n"
        "assert 'torch' not in sys.modules, 'legw schedule'\n"
        "print('torch-free')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("torch-free")


def test_task_recipe_with_flag_overrides(capsys):
    # ptb-small at 640 streams: the recipe's steps per epoch equal the loader's,
    # (929589 // 640 - 1) // 20 = 72; a flag overrides the task's base warmup.
    assert main(["schedule", "--task", "ptb-small", "--base-warmup-epochs", "0.01",
                 "--batch-sizes", "20", "640", "--json"]) == 0
    small, large = json.loads(capsys.readouterr().out)
    assert (small["steps_per_epoch"], large["steps_per_epoch"]) == (2323, 72)
    assert large["peak_lr"] == pytest.approx(20 * math.sqrt(32))
    assert large["warmup_epochs"] == pytest.approx(0.32) and large["total_steps"] == 13 * 72


def test_the_old_batch_spelling_still_works_and_says_so(capsys):
    assert main(["schedule", "--task", "mnist-lstm", "--batch-size", "256", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "legw: --batch-size is deprecated; use --batch-sizes\n"
    assert json.loads(captured.out)[0]["batch_size"] == 256


ADAM = ["--base-batch-size", "128", "--base-lr", "0.001", "--epochs", "10", "--dataset-size",
        "60000", "--batch-sizes", "128", "256", "8192"]
SRR = ["--optimizer-scaling", "srr", "--weight-decay", "0.01", "--ema-decay", "0.9999"]


def test_optimizer_scaling_none_is_the_default_and_prints_the_recipe_only(cli):
    code, table, _ = cli("schedule", *ADAM)
    assert code == 0 and "beta1" not in table
    assert cli("schedule", *ADAM, "--optimizer-scaling", "none")[1] == table
    code, out, err = cli("schedule", *ADAM, "--ema-decay", "0.9")  # would print nothing
    assert code == 2 and err == ("legw: error: --ema-decay: prints nothing without "
                                 "--optimizer-scaling srr; add it, or drop --ema-decay\n")
    code, out, _ = cli("schedule", *ADAM, "--json")
    assert all("hyperparameters" not in row for row in json.loads(out))


def test_srr_table_scales_the_hyperparameters_and_marks_the_clamp(cli):
    code, out, err = cli("schedule", *ADAM, *SRR)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].endswith("; optimizer scaling srr from betas 0.9 0.999, eps 1e-08, weight "
                             "decay 0.01, EMA decay 0.9999")
    assert lines[1].split()[-7:] == ["beta1", "beta2", "eps", "weight", "decay", "EMA", "decay"]
    assert len({len(line) for line in lines[1:5]}) == 1           # the columns line up
    # k = 1: the base values; k = 2: 1 - beta doubled, eps / sqrt 2, decay x sqrt 2, rho ** 2
    assert lines[2].split()[-5:] == ["0.9", "0.999", "1e-08", "0.01", "0.9999"]
    assert lines[3].split()[-5:] == ["0.8", "0.998", "7.07107e-09", "0.0141421", "0.99980001"]
    # k = 64: 64 x 0.1 > 0.5, beta1 clamped at 0.5 (marked); beta2 = 1 - 64 x 0.001
    assert lines[4].split()[:2] == ["8192", "64"]
    assert lines[4].split()[-5:] == ["0.5*", "0.936", "1.25e-09", "0.08",
                                     f"{0.9999 ** 64:.8g}"]
    assert lines[5] == ("* clamped: k (1 - beta) > 0.5 is past the square-root rule's limit; "
                        "held at 1 - beta = 0.5")
    assert len(lines) == 6


def test_srr_table_without_an_ema_or_a_clamp(cli):
    code, out, _ = cli("schedule", *ADAM[:-3], "128", "256", "--optimizer-scaling", "srr")
    lines = out.splitlines()
    assert lines[1].split()[-5:] == ["beta1", "beta2", "eps", "weight", "decay"]
    assert lines[3].split()[-4:] == ["0.8", "0.998", "7.07107e-09", "0"]
    assert len(lines) == 4 and "*" not in out


def test_srr_json_has_the_hyperparameters_of_each_batch(cli):
    code, out, _ = cli("schedule", *ADAM, *SRR, "--json")
    rows = json.loads(out)
    assert code == 0 and [r["batch_size"] for r in rows] == [128, 256, 8192]
    assert rows[0]["hyperparameters"] == {"betas": [0.9, 0.999], "eps": 1e-8,
                                          "weight_decay": 0.01, "decay_is_l2": False,
                                          "ema_decay": 0.9999, "clamped": []}
    h = rows[2]["hyperparameters"]
    assert set(h) == {"betas", "eps", "weight_decay", "decay_is_l2", "ema_decay", "clamped"}
    assert h["betas"] == pytest.approx([0.5, 0.936]) and h["clamped"] == ["betas[0]"]
    assert h["eps"] == pytest.approx(1.25e-9) and h["weight_decay"] == pytest.approx(0.08)
    assert h["ema_decay"] == pytest.approx(0.9999 ** 64)
    assert rows[2]["peak_lr"] == pytest.approx(0.008)               # the recipe is unchanged


def test_srr_columns_follow_the_optimizer_and_the_tasks_decay(cli):
    # fashion-mnist-resnet trains with LARS, weight decay 5e-4: no betas or epsilon columns,
    # its decay x k / sqrt(k) = sqrt(8) at 1024
    code, out, _ = cli("schedule", "--task", "fashion-mnist-resnet", "--batch-sizes", "128",
                       "1024", "--optimizer-scaling", "srr")
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("; optimizer scaling srr from weight decay 0.0005")
    assert lines[1].split()[-4:] == ["total", "steps", "weight", "decay"]
    assert float(lines[3].split()[-1]) == pytest.approx(5e-4 * math.sqrt(8), rel=1e-5)
    # --optimizer picks another family on the task's recipe; LAMB's epsilon is 1e-6
    code, out, _ = cli("schedule", "--task", "fashion-mnist-resnet", "--optimizer", "lamb",
                       "--batch-sizes", "1024", "--optimizer-scaling", "srr", "--json")
    h = json.loads(out)[0]["hyperparameters"]
    assert h["betas"] == pytest.approx([0.5, 0.992]) and h["eps"] == pytest.approx(1e-6 / 8**0.5)
    # Adam's decay is an L2 term: kept as it is (AdamW's, the default without a task, scales)
    code, out, _ = cli("schedule", *ADAM, *SRR, "--optimizer", "adam", "--json")
    assert [r["hyperparameters"]["weight_decay"] for r in json.loads(out)] == [0.01] * 3


@pytest.mark.parametrize("flag", [["--betas", "0.9", "0.99"], ["--eps", "1e-8"]])
def test_moment_flags_for_an_optimizer_without_moments_are_refused(cli, flag):
    code, out, err = cli("schedule", "--task", "fashion-mnist-lstm", *flag,
                         "--optimizer-scaling", "srr")
    assert code == 2 and out == ""
    assert err.startswith(f"legw: error: {flag[0]}: sgd has no {flag[0][2:]}")


def test_the_optimizer_choices_are_legws_optimizers():
    from legw.commands.schedule import OPTIMIZER_NAMES
    from legw.optim import OPTIMIZERS

    assert sorted(OPTIMIZER_NAMES) == sorted(OPTIMIZERS)
