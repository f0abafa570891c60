"""What denormal floats cost a CPU step, and what the trainer's flush-to-zero gets back.

A diverging or saturated LSTM (study 8's LARS at peak LR 64: its gate biases grew to |9| on
average, 156 at most) drives its sigmoid and tanh gates to 0 and 1, and their gradients into
the denormal range (below 1.2e-38), which x86 CPUs compute on a microcode slow path. The
trainer flushes denormals to zero on the CPU (``legw.training.device.flush_denormals``).

One forward + backward of fashion-mnist-lstm's model on a micro-batch of real Fashion-MNIST
images, for a healthy model (as initialised) and a saturated one (the same model with its
biases drawn from N(0, 20), as in the diverged run), with flushing off and on, alternating;
medians, and their ratios (the machine is shared, so ratios are what to read).

    OMP_NUM_THREADS=1 python benchmarks/denormals.py --repeats 7
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _timing import alternate

from legw.tasks import get_task


def build(data, saturated: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_task("fashion-mnist-lstm").build_model(data)
    if saturated:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "bias" in name:
                    p.normal_(0.0, 20.0)
    return model


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, flush: bool
                 ) -> dict[str, float]:
    """Wall seconds of one forward + backward, denormals flushed or not."""
    model.zero_grad(set_to_none=True)  # every timed step does the same work
    torch.set_flush_denormal(flush)
    try:
        start = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        return {"wall": time.perf_counter() - start}
    finally:
        torch.set_flush_denormal(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micro-batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    data = get_task("fashion-mnist-lstm").load(None)
    x, y = data.train.get(torch.arange(args.micro_batch_size))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"micro batch {args.micro_batch_size}, median of {args.repeats}")
    print(f"{'model':<10} {'flush off s':>11} {'flush on s':>10} {'off / on':>8}")
    for label, saturated in (("healthy", False), ("saturated", True)):
        model = build(data, saturated)
        step_seconds(model, x, y, flush=False)  # warm-up
        timings = alternate({"off": lambda m=model: step_seconds(m, x, y, False),
                             "on": lambda m=model: step_seconds(m, x, y, True)}, args.repeats)
        off, on = (timings.median(f, "wall") for f in ("off", "on"))
        print(f"{label:<10} {off:>11.3f} {on:>10.3f} {off / on:>8.2f}")


if __name__ == "__main__":
    main()
