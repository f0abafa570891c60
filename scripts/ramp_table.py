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
target (their mean test error) printed above the table. ``--figure PNG`` draws each ramp's
batch per step against the epoch, and every run's test error against its optimizer steps.
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
    p.add_argument("--figure", metavar="PNG")
    args = p.parse_args()
    plan = json.loads(Path(args.plan).read_text())
    net = plan["network"]
    model = (args.workers, plan["model_bytes"], args.samples_per_second, net["latency_s"],
             net["bandwidth_bytes_per_s"])
    errors = []
    if args.base:
        errors = [error_from_accuracy(RunDir(d).summary()["final"]["test_accuracy"])
                  for d in args.base]
        spread = f" ± {statistics.stdev(errors):.2f}" if len(errors) > 1 else ""
        print(f"base: {statistics.mean(errors):.2f}{spread} % test error ({len(errors)} runs)\n")
    print(f"| rule | test error | steps | epochs | modelled time, {args.workers} workers |")
    print("|---|---|---|---|---|")
    drawn = []
    for item in args.runs:
        label, _, path = item.partition("=")
        run = RunDir(path)
        s = run.summary()
        steps = batches(run, s["global_batch_size"])
        error = error_from_accuracy(s["final"]["test_accuracy"])
        print(f"| {label} | {error:.2f} % | {s['steps']:,} | {s['epochs']:.1f} | "
              f"{modelled_time(steps, *model):.1f} s |")
        epochs = [r["epoch"] for r in run.metrics() if r.get("kind") == "train"]
        drawn.append((label, error, s["steps"], epochs, steps))
    if args.figure:
        figure(drawn, errors if args.base else [], args.figure)


def figure(drawn, base_errors, path: str) -> None:
    from legw.figures import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = plt.get_cmap("tab20").colors
    for i, (label, error, steps, epochs, sizes) in enumerate(drawn):
        color, marker = colors[(2 * i) % 20 + (i // 10) % 2], "osD^vPX*<>h"[i % 11]
        if len(set(sizes)) > 1:  # a ramp
            left.step(epochs, sizes, where="post", color=color, label=label)
        right.scatter([steps], [error], color=color, marker=marker, s=45, label=label,
                      zorder=3)
    if base_errors:
        mean = statistics.mean(base_errors)
        right.axhspan(mean - 0.5, mean + 0.5, color="0.85", label="base ± 0.5 points")
    left.set(yscale="log", xlabel="epoch (samples / N)", ylabel="global batch",
             title="each ramp's batch per step")
    right.set(xscale="log", xlabel="optimizer steps", ylabel="test error (%)",
              title="test error against steps")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
