"""legw comm: Table 3, the p-worker prediction, its record and plot, and its flags (CommSpec):
one line naming the flag for bad input, explicit flags over the preset, the old spelling."""

import json
from pathlib import Path

import pytest
from helpers import one_line_error

from legw.cli import main
from legw.commands.comm import CommSpec


def test_comm_writes_its_record_by_default_and_says_how_to_predict_workers(cli, in_tmp):
    code, out, _ = cli("comm", "--preset", "resnet50")
    assert code == 0 and Path("runs/comm.json").exists() and not Path("runs/comm.png").exists()
    assert "--samples-per-second R" in out and "wrote runs/comm.json" in out
    code, out, _ = cli("comm", "--preset", "resnet50", "--samples-per-second", "800")
    assert code == 0 and Path("runs/comm.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote runs/comm.json and runs/comm.png" in out


def test_comm_preset_table_has_talk_numbers_and_slip_note(cli, in_tmp):
    code, out, err = cli("comm", "--preset", "resnet50")
    assert code == 0 and not err
    assert "3,603,282" in out and "375 TB" in out and "366 GB" in out
    assert "3,686" in out and "2^20" in out
    assert "ring all-reduce" not in out  # no compute rate given -> no prediction


def test_comm_json_out_and_plot(cli, tmp_path):
    out_json, png = tmp_path / "c.json", tmp_path / "c.png"
    code, out, _ = cli("comm", "--preset", "resnet50", "--batch-sizes", "1024", "32768",
                       "--workers", "1", "4", "16", "--samples-per-second", "1000", "--json",
                       "--out", str(out_json), "--plot", str(png))
    assert code == 0
    rec = json.loads(out)
    assert rec == json.loads(out_json.read_text())
    assert [r["global_batch_size"] for r in rec["table3"]] == [1024, 32768]
    assert len(rec["scaling"]) == 6 and rec["scaling"][0]["comm_s"] == 0
    assert rec["notes"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_old_batch_size_spelling_is_a_deprecated_alias(cli, capsys, tmp_path):
    argv = ["comm", "--preset", "resnet50", "--json", "--out", str(tmp_path / "c.json")]
    code, new, err = cli(*argv, "--batch-sizes", "1024", "32768")
    assert code == 0 and err == ""
    code, old, err = cli(*argv, "--batch-size", "1024", "32768")
    assert code == 0 and old == new
    assert err == "legw: --batch-size is deprecated; use --batch-sizes\n"
    code, _, err = cli("comm", "--preset", "resnet50", "--batch-size", "0")
    assert code == 2 and err.splitlines() == [
        "legw: --batch-size is deprecated; use --batch-sizes",
        "legw: error: --batch-sizes: must be a positive integer, got 0"]
    with pytest.raises(SystemExit):
        main(["comm", "--help"])
    assert "--batch-size " not in capsys.readouterr().out  # hidden; --batch-sizes is shown


def test_comm_params_and_throughput_curve(cli, tmp_path):
    curve = tmp_path / "ab.json"
    curve.write_text(json.dumps({"points": [
        {"micro_batch_size": 8, "samples_per_s": 100.0},
        {"micro_batch_size": 32, "samples_per_s": 300.0},
        {"micro_batch_size": 64, "samples_per_s": None}]}))
    code, out, _ = cli("comm", "--params", "1000", "--dataset-size", "6400", "--epochs", "1",
                       "--batch-sizes", "64", "--workers", "1", "4", "--throughput-from",
                       str(curve), "--json", "--out", str(tmp_path / "c.json"),
                       "--plot", str(tmp_path / "c.png"))
    rec = json.loads(out)
    one, four = rec["scaling"]
    assert one["compute_s"] == pytest.approx(64 / 300)   # held constant above the curve
    assert four["compute_s"] == pytest.approx(16 / 200)  # half way in log2 between 8 and 32
    assert rec["table3"][0]["comp_comm_ratio"] is None


def test_comm_task_counts_parameters(cli, in_tmp, fashion_mnist):
    code, out, _ = cli("comm", "--task", "fashion-mnist-lstm", "--json")
    rec = json.loads(out)
    assert rec["setting"]["params"] == 4 * 128 * (28 + 128 + 2) + 128 * 10 + 10
    assert rec["setting"]["dataset_size"] == 60_000


def test_comm_counts_the_data_it_was_given(cli, in_tmp, mnist_dir):
    code, out, _ = cli("comm", "--task", "fashion-mnist-lstm", "--data-dir", str(mnist_dir),
                       "--json")
    assert code == 0 and json.loads(out)["setting"]["dataset_size"] == 64


def test_an_explicit_flag_beats_the_preset(cli, capsys, in_tmp):
    code, out, _ = cli("comm", "--preset", "resnet50", "--bytes-per-param", "2", "--json")
    setting = json.loads(out)["setting"]
    assert setting["bytes_per_param"] == 2 and setting["model_bytes"] == 52_000_000
    assert "--dataset-size: must be a positive integer, got 0" in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--dataset-size", "0"])


def test_a_bad_throughput_record_names_its_file(capsys, in_tmp, tmp_path):
    bad = tmp_path / "curve.json"
    bad.write_text("{'points': []}")
    assert "curve.json: not valid JSON" in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--throughput-from", str(bad)])
    bad.write_text('{"points": [{"micro_batch_size": "8", "samples_per_s": 100}]}')
    assert "curve.json: micro batch sizes and throughputs must be positive numbers" in \
        one_line_error(capsys, ["comm", "--preset", "resnet50", "--throughput-from", str(bad)])
    assert "--throughput-from: " in one_line_error(
        capsys, ["comm", "--preset", "resnet50", "--throughput-from", str(tmp_path / "no")])


@pytest.mark.parametrize("argv, needle", [
    ([], "give exactly one of --preset, --task, --params"),
    (["--params", "10", "--dataset-size", "5"], "missing --epochs"),
    (["--params", "10", "--dataset-size", "5", "--epochs", "1"], "missing --batch-sizes"),
    (["--preset", "resnet50", "--batch-sizes", "0"], "--batch-sizes: must be a positive integer"),
    (["--preset", "resnet50", "--workers", "4", "0"], "--workers: must be a positive integer, "
                                                      "got 0"),
    (["--preset", "resnet50", "--samples-per-second", "-1"],
     "--samples-per-second: must be a positive number, got -1"),
    (["--preset", "resnet50", "--bandwidth-gbps", "0"], "--bandwidth-gbps: must be a positive"),
    (["--preset", "resnet50", "--latency-us", "-1"], "--latency-us: must be a non-negative"),
    (["--preset", "resnet50", "--epochs", "nan"], "--epochs: must be a finite number"),
    (["--preset", "resnet50", "--plot", "x.png"], "--plot needs a compute rate"),
    (["--preset", "resnet50", "--measure"], "--measure needs --task"),
    (["--preset", "resnet50", "--samples-per-second", "1", "--measure"],
     "--samples-per-second, --measure: give one compute rate"),
    (["--preset", "resnet"], "invalid choice"),
    (["--task", "nope"], "unknown task"),
])
def test_bad_input_is_one_line_exit_2(capsys, in_tmp, argv, needle):
    assert needle in one_line_error(capsys, ["comm", *argv])


def test_the_spec_checks_what_python_gives_it_as_the_flags_do():
    with pytest.raises(ValueError, match="^--workers: must be a positive integer, got 0$"):
        CommSpec(preset="resnet50", workers=[1, 0])
    spec = CommSpec(preset="resnet50", samples_per_second=100.0)
    assert spec.plot == "runs/comm.png"
    assert spec.network() == pytest.approx((25e-6, 10e9 / 8))
