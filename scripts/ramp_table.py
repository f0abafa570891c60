"""Batch ramps against the fixed-batch rules (docs/results.md, study 12): one Markdown row per
run -- test error, optimizer steps, epochs of samples, and the wall time `legw plan`'s model
gives the run's own sequence of batches on P workers.

    python scripts/ramp_table.py --plan PLAN.json --workers 64 \
        --runs "noise ramp=DIR" "seesaw=DIR" ... [--base DIR ...]

A run is a ``legw train`` run directory (``--batch-ramp`` runs log their batch per step; other
runs train at their global batch throughout). The model is the plan's (``legw plan --out``
PLAN.json: the model's bytes and the network) with a constant throughput
(``--samples-per-second``, as the plan was made with): a step at global batch ``B`` on ``P``
workers takes ``(B / P) / rate + ring_allreduce(P, model bytes)``. ``--base`` runs give the
target (their mean test error) printed above the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from legw.analysis.comm import ring_allreduce_time
from legw.training.run_dir import RunDir, error_from_accuracy


def batches(run: RunDir, global_batch: int) -> list[int]:
    """The global batch of every optimizer step the run took."""
    return [r.get("batch_size", global_batch) for r in run.metrics() if r.get("kind") == "train"]


def modelled_time(steps: list[int], workers: int, model_bytes: float, rate: float,
                  latency: float, bandwidth: float) -> float:
    comm = ring_allreduce_time(workers, model_bytes, latency=latency, bandwidth=bandwidth)
    return sum(b / workers / rate + comm for b in steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="a legw plan --out JSON (model bytes, network)")
    p.add_argument("--runs", nargs="+", required=True, metavar="LABEL=DIR")
    p.add_argument("--base", nargs="*", default=[], metavar="DIR")
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--samples-per-second", type=float, default=2000.0)
    args = p.parse_args()
    plan = json.loads(Path(args.plan).read_text())
    net = plan["network"]
    model = (args.workers, plan["model_bytes"], args.samples_per_second, net["latency_s"],
             net["bandwidth_bytes_per_s"])
    if args.base:
        errors = [error_from_accuracy(RunDir(d).summary()["final"]["test_accuracy"])
                  for d in args.base]
        spread = f" ± {statistics.stdev(errors):.2f}" if len(errors) > 1 else ""
        print(f"base: {statistics.mean(errors):.2f}{spread} % test error ({len(errors)} runs)\n")
    print(f"| rule | test error | steps | epochs | modelled time, {args.workers} workers |")
    print("|---|---|---|---|---|")
    for item in args.runs:
        label, _, path = item.partition("=")
        run = RunDir(path)
        s = run.summary()
        steps = batches(run, s["global_batch_size"])
        print(f"| {label} | {error_from_accuracy(s['final']['test_accuracy']):.2f} % | "
              f"{s['steps']:,} | {s['epochs']:.1f} | {modelled_time(steps, *model):.1f} s |")


if __name__ == "__main__":
    main()
