"""``scripts/gpu_check.sh --dry-run``: every step of the GPU check on the CPU, sizes shrunk, so a
device run can only find a GPU problem. Its output under ``$OUT`` is what a device run brings
back: at most 8 files, each step's status and figures in ``figures.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, make_mnist_dir

STEPS = ("pytest", "optim_step", "trainer_throughput", "time_to_accuracy")


@pytest.mark.slow  # about a minute on the 2-core machine: four steps, three training processes
def test_dry_run_writes_every_figure(tmp_path):
    data = make_mnist_dir(tmp_path / "fashion-mnist", n_train=2048, n_test=512)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_PYTHON": sys.executable,
           "GPU_CHECK_DATA": str(data)}
    env.pop("LEGW_CUDA_TESTS_ON_CPU", None)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    names = {p.name for p in out.iterdir()}
    assert names == {"summary.md", "figures.json", "1-pytest.log", "2-optim_step.log",
                     "3-trainer_throughput.log", "4-time_to_accuracy.log", "lstm-runs.tar.gz"}
    assert len(names) <= 8 and all(p.is_file() for p in out.iterdir())  # the device tool's limit

    doc = json.loads((out / "figures.json").read_text())
    assert doc["meta"]["mode"].startswith("dry run") and doc["meta"]["data"] == str(data)
    assert list(doc["steps"]) == list(STEPS)
    assert all(doc["steps"][s]["status"] == "ok" for s in STEPS), doc["steps"]
    fig = {s: doc["steps"][s]["figures"] for s in STEPS}
    assert " passed" in fig["pytest"]["summary"] and "failed" not in fig["pytest"]["summary"]
    rows = fig["optim_step"]["steps"]
    assert {(r["dtype"], r["optimizer"]) for r in rows} >= {
        ("fp32", "legw LARS fused"), ("fp32", "legw LAMB fused"), ("bf16", "legw LAMB fused"),
        ("fp32", "torch SGD fused"), ("bf16", "torch AdamW fused")}
    assert all(r["ms_per_step"] > 0 and r["vs_fused_torch"] > 0 for r in rows)
    assert fig["trainer_throughput"]["lstm"]["ratio"] > 0
    assert fig["trainer_throughput"]["resnet50"]["ratio"] > 0
    tta = fig["time_to_accuracy"]
    assert [r["run"] for r in tta["runs"]] == ["base", "adaptive", "legw"]
    assert tta["plan_epochs"] > 1 and 0 < tta["target_test_error"] < 1
    for r in tta["runs"]:
        assert {"steps", "final_test_error", "train_s", "wall_s", "s_to_target", "speedup",
                "s_to_hold", "speedup_hold"} <= set(r)
    assert tta["runs"][0]["speedup"] == 1.0
    assert "--scaling adaptive" in tta["commands"]["adaptive"]
    summary = (out / "summary.md").read_text()
    assert "## 4. fashion-mnist-lstm" in summary and "| legw | 1024 |" in summary
