"""legw autobatch: the record and plot of a timed curve, the plan for a global batch, and its
flags (AutobatchSpec): one line naming the flag for bad input, the old spelling."""

import json

import pytest
from helpers import one_line_error

from legw import flags
from legw.cli import build_parser
from legw.commands.autobatch import AutobatchSpec


def test_autobatch_writes_record_and_plot(cli, mnist_dir, tmp_path):
    out_json, png = tmp_path / "a.json", tmp_path / "a.png"
    code, out, err = cli("autobatch", "fashion-mnist-lstm", "--data-dir", str(mnist_dir),
                         "--min-micro-batch-size", "2", "--max-micro-batch-size", "8",
                         "--repeats", "2", "--threads", "1", "--batch-size", "64",
                         "--world-size", "2", "--out", str(out_json), "--plot", str(png))
    assert code == 0 and err == ""
    rec = json.loads(out_json.read_text())
    assert [p["micro_batch_size"] for p in rec["points"]] == [2, 4, 8]
    assert all(len(p["step_seconds"]) == 2 for p in rec["points"])
    plan = rec["plan"]
    assert plan["micro_batch_size"] * plan["accumulation_steps"] * 2 == 64
    assert plan["micro_batch_size"] <= rec["selection"]["chosen_micro_batch_size"]
    assert "accumulation steps" in out and png.read_bytes()[:4] == b"\x89PNG"


def test_global_batch_size_is_a_deprecated_alias_of_batch_size(capsys):
    args = build_parser().parse_args(["autobatch", "t", "--global-batch-size", "64"])
    assert capsys.readouterr().err == \
        "legw: --global-batch-size is deprecated; use --batch-size\n"
    spec = flags.from_args(AutobatchSpec, args)
    assert (spec.task, spec.batch_size, spec.world_size) == ("t", 64, 1)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["autobatch", "--help"])
    assert e.value.code == 0 and "--global-batch-size" not in capsys.readouterr().out


def test_every_size_out_of_memory_is_one_line_naming_the_flag(capsys, mnist_dir, tmp_path):
    line = one_line_error(capsys, [
        "autobatch", "fashion-mnist-lstm", "--data-dir", str(mnist_dir), "--repeats", "1",
        "--min-micro-batch-size", str(2**34), "--max-micro-batch-size", str(2**35),
        "--out", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png")])
    assert "--min-micro-batch-size: every size from" in line and "ran out of memory" in line


@pytest.mark.parametrize("argv, needle", [
    (["--max-micro-batch-size", "100"], "--max-micro-batch-size: must be a power of two, "
                                        "got 100"),
    (["--min-micro-batch-size", "8", "--max-micro-batch-size", "4"], "is below"),
    (["--batch-size", "10", "--world-size", "3"], "--batch-size: 10 is not divisible by "
                                                  "--world-size 3"),
    (["--tolerance", "2"], "--tolerance: must be a number in [0, 1), got 2"),
    (["--repeats", "0"], "--repeats: must be a positive integer, got 0"),
    (["--statistic", "mean"], "invalid choice"),
    (["--seed", "-1"], "--seed: must be an integer in [0, 2^32)"),
])
def test_bad_input_is_one_line_exit_2(capsys, in_tmp, argv, needle):
    assert needle in one_line_error(capsys, ["autobatch", "fashion-mnist-lstm", *argv])


def test_the_old_spelling_names_the_new_flag_in_its_error(cli, in_tmp):
    code, _, err = cli("autobatch", "fashion-mnist-lstm", "--global-batch-size", "10",
                       "--world-size", "3")
    assert code == 2 and err.splitlines() == [
        "legw: --global-batch-size is deprecated; use --batch-size",
        "legw: error: --batch-size: 10 is not divisible by --world-size 3"]
