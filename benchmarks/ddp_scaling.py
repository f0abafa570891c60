"""Throughput of 2 DDP processes x 1 thread against 1 process x 2 threads.

Both runs train fashion-mnist-lstm at the same global batch for the same steps (no evaluation);
throughput = samples / (wall time of the training loop, from ``summary.json``). The ratio
``2 procs / 1 proc`` is the DDP efficiency on a 2-core machine (target >= 0.85). One process
with one thread is measured too: on a loaded machine two OpenMP threads can be slower than one,
which makes the 1 x 2 baseline meaningless; 2 x 1 against 1 x 1 is then the speed-up per core.

    python benchmarks/ddp_scaling.py --steps 30 --batch-size 512 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from _timing import alternate

from legw.training.run_dir import RunDir


def one_run(nproc: int, threads: int, steps: int, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        args = ["train", "fashion-mnist-lstm", "--batch-size", str(batch), "--max-steps",
                str(steps), "--no-eval", "--quiet", "--threads", str(threads), "--out", out]
        launcher = [sys.executable, "-m", "legw"] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), "-m", "legw"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(launcher + args, check=True, env=env, stderr=subprocess.DEVNULL)
        summary = RunDir(out).summary()
    return {"samples_per_s": summary["samples_seen"] / summary["wall_time_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    layouts = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}  # processes x threads

    def show(last: dict[str, dict[str, float]]) -> None:
        one, single, double = (last[k]["samples_per_s"] for k in layouts)
        print(f"1 proc x 1 thread {one:.0f}, 1 proc x 2 threads {single:.0f}, "
              f"2 procs x 1 thread {double:.0f} samples/s", flush=True)

    timings = alternate({k: lambda n=n, t=t: one_run(n, t, args.steps, args.batch_size)
                         for k, (n, t) in layouts.items()}, args.repeats, on_round=show)
    o, s, d = (timings.median(k, "samples_per_s") for k in layouts)
    print(f"median: 1x1 {o:.0f}, 1x2 {s:.0f}, 2x1 {d:.0f} samples/s; 2x1 / 1x2 = {d / s:.2f}, "
          f"2x1 / 1x1 = {d / o:.2f} ({args.steps} steps at batch {args.batch_size})")


if __name__ == "__main__":
    main()
