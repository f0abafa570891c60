"""Wall time to the base's test error at a small and a large batch on one device: the talk's
"speedup on the same hardware", for fashion-mnist-lstm.

Four ``legw train`` runs, one process each, the same seed, evaluated at each epoch end (on
CUDA the trainer computes in bf16 autocast; the data set stays in host memory and each
micro-batch is copied to the device, as ``legw train`` has no flag to keep it on the device):

1. ``base``: batch ``--base-batch-size`` (128), the preset's recipe (10 epochs); its final test
   error is the target;
2. ``ramp``: the batch grown from the base batch up to ``--batch-size`` by the measured noise
   (``--batch-ramp noise``, micro-batches of half the base batch);
3. ``adaptive``: batch ``--batch-size`` (8192), ``--scaling adaptive`` at micro batch
   ``--micro-batch-size`` (the gain needs two or more micro-gradients per step);
4. ``legw``: the same batch, sqrt scaling + LEGW warmup, for ``legw plan``'s epochs at that batch
   (rounded up), planned from ``--plan-from-run``, a recorded base run with online ``B_noise``.

Time to target = training seconds (each step's time from the train records: data, forward,
backward, optimizer step; not evaluation or checkpoints) until the first evaluation at or below
the target error, and at or below target + 0.5 points (what study 11 calls holding the base).
Speedup = the base's time / the run's. Also per run: steps, epochs, final and best test error,
and the run's wall time (``summary.json``: evaluation and checkpoints included). The figures go
to ``--json`` after every run, so a run cut off keeps the finished ones.

    python benchmarks/time_to_accuracy.py --device cuda --data-dir DIR --runs-dir runs/tta \\
        --json runs/tta/figures.json
    python benchmarks/time_to_accuracy.py --device cpu --data-dir DIR --subset 2048 512 \\
        --batch-size 1024 --micro-batch-size 256 --max-steps 6 ...     # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from legw import cli
from legw.data.idx import read_idx, write_idx
from legw.training.run_dir import RunDir

TASK = "fashion-mnist-lstm"
HOLD = 0.005  # "holds the base": within 0.5 points of its test error
BASE_NOISE_RUN = "records/long/lstm-base-noise/runs/legw-b128-s0"


def legw(*args: str, threads: int | None) -> None:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-m", "legw", *args], check=True, env=env)


def subset(data_dir: Path, out: Path, n_train: int, n_test: int) -> Path:
    """The first ``n_train`` / ``n_test`` samples of the IDX files in ``data_dir``."""
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte"
            src = next(p for p in (data_dir / name, data_dir / f"{name}.gz") if p.exists())
            write_idx(out / name, read_idx(src)[:n])
    return out


def plan_epochs(run: str, batch: int, work: Path) -> float:
    """``legw plan``'s epochs at ``batch`` from the recorded base run ``run`` (in this process:
    no training, so nothing to keep apart from the timed runs)."""
    out = work / "plan.json"
    status = cli.main(["plan", "--from-run", run, "--batch-sizes", str(batch), "--workers", "1",
                       "--samples-per-second", "1000", "--out", str(out),
                       "--plot", str(work / "plan.png")])
    if status:
        raise SystemExit(f"legw plan failed (exit status {status})")
    (row,) = [r for r in json.loads(out.read_text())["rows"] if r["global_batch_size"] == batch]
    return row["epochs"]


def read_run(run_dir: Path) -> dict:
    """Steps, errors and the training seconds to each evaluation of one run."""
    run = RunDir(run_dir)
    summary, records = run.summary(), run.metrics()
    if summary is None:
        raise SystemExit(f"{run.summary_file}: absent or unreadable")
    batch = summary["global_batch_size"]
    step_s = {r["step"]: batch / r["samples_per_s"] for r in records if r["kind"] == "train"}
    evals = [(sum(s for t, s in step_s.items() if t < r["step"]), 1 - r["test_accuracy"])
             for r in records if r["kind"] == "eval"]
    return {"status": summary["status"], "steps": summary["steps"],
            "epochs": summary["epochs"], "final_test_error": evals[-1][1],
            "best_test_error": min(e for _, e in evals), "train_s": sum(step_s.values()),
            "wall_s": summary["wall_time_s"], "evals": evals}


def time_to(evals: list[tuple[float, float]], target: float) -> float | None:
    return next((s for s, error in evals if error <= target + 1e-12), None)


def _cell(seconds: float | None, speedup: float | None) -> str:
    if seconds is None:
        return "not reached"
    return f"{seconds:.1f} ({speedup:.2f}x)" if speedup is not None else f"{seconds:.1f}"


def table(figures: dict) -> str:
    """The runs as a markdown table."""
    lines = ["| run | batch | steps | epochs | final / best test error % | train s | run wall s "
             f"| s to {100 * figures['target_test_error']:.2f} % (speedup) | s to +0.5 point "
             "(speedup) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in figures["runs"]:
        lines.append(f"| {r['run']} | {r['batch_size']} | {r['steps']} | {r['epochs']:.1f} | "
                     f"{100 * r['final_test_error']:.2f} / {100 * r['best_test_error']:.2f} | "
                     f"{r['train_s']:.1f} | {r['wall_s']:.1f} | "
                     f"{_cell(r['s_to_target'], r['speedup'])} | "
                     f"{_cell(r['s_to_hold'], r['speedup_hold'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX files")
    ap.add_argument("--runs-dir", default="runs/time-to-accuracy")
    ap.add_argument("--json", default=None, help="write the figures here after every run")
    ap.add_argument("--base-batch-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--micro-batch-size", type=int, default=512, help="of the adaptive run")
    ap.add_argument("--plan-from-run", default=BASE_NOISE_RUN)
    ap.add_argument("--subset", type=int, nargs=2, default=None, metavar=("N_TRAIN", "N_TEST"),
                    help="train and test on the first samples only (a smoke run)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop every run there (smoke)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    data = Path(args.data_dir)
    if args.subset:
        data = subset(data, runs / "data", *args.subset)
    epochs = plan_epochs(args.plan_from_run, args.batch_size, runs)
    common = ["--device", args.device, "--data-dir", str(data), "--quiet", "--seed", "0"]
    if args.max_steps:
        common += ["--max-steps", str(args.max_steps)]
    big = ["--batch-size", str(args.batch_size)]
    plan = {"base": ["--batch-size", str(args.base_batch_size)],
            "ramp": big + ["--micro-batch-size", str(args.base_batch_size // 2),
                           "--batch-ramp", "noise"],
            "adaptive": big + ["--micro-batch-size", str(args.micro_batch_size),
                               "--scaling", "adaptive"],
            "legw": big + ["--epochs", str(math.ceil(epochs))]}
    figures = {"task": TASK, "device": args.device, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "plan_epochs": epochs,
               "plan_from_run": args.plan_from_run, "data": str(data),
               "commands": {}, "runs": []}
    base_times: tuple[float | None, float | None] = (None, None)
    for name, flags in plan.items():
        argv = ["train", TASK, *flags, *common, "--out", str(runs / name)]
        figures["commands"][name] = "legw " + " ".join(argv)
        legw(*argv, threads=args.threads)
        r = read_run(runs / name)
        if name == "base":
            figures["target_test_error"] = r["final_test_error"]
        target = figures["target_test_error"]
        r.update(run=name, batch_size=int(flags[1]), s_to_target=time_to(r["evals"], target),
                 s_to_hold=time_to(r["evals"], target + HOLD))
        if name == "base":
            base_times = (r["s_to_target"], r["s_to_hold"])
        for key, base, t in (("speedup", base_times[0], r["s_to_target"]),
                             ("speedup_hold", base_times[1], r["s_to_hold"])):
            r[key] = base / t if base is not None and t else None
        figures["runs"].append(r)
        print(table(figures), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
