"""``--channels-last`` end to end: ``legw train`` on the small ResNet (its preset's LARS, the
gradient-noise hooks, accumulation) in the default and the channels-last memory layout.

Runs of ``--steps`` steps alternate between the layouts (default, channels-last, default, ...)
so that both see the same machine load; medians of the wall times and their ratio.

    OMP_NUM_THREADS=1 python benchmarks/channels_last.py --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _timing import alternate, clock

from legw.training.config import TrainConfig
from legw.training.trainer import train


def run(channels_last: bool, batch: int, micro: int, steps: int) -> dict[str, float]:
    """Wall and CPU seconds of one ``train`` call."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(task="fashion-mnist-resnet", global_batch_size=batch,
                             micro_batch_size=micro, max_steps=steps, quiet=True,
                             evaluate=False, out_dir=out, num_threads=1,
                             channels_last=channels_last)
        return clock(train, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--micro-batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = (args.batch_size, args.micro_batch_size, args.steps)
    timings = alternate({"default": lambda: run(False, *shape),
                         "channels-last": lambda: run(True, *shape)}, args.repeats)
    default, nhwc = (timings.median(v, "wall") for v in ("default", "channels-last"))
    print(f"torch {torch.__version__}, fashion-mnist-resnet, batch {args.batch_size} = "
          f"{args.batch_size // args.micro_batch_size} x {args.micro_batch_size}, "
          f"{args.steps} steps, median of {args.repeats}")
    print(f"default layout {default:.2f} s, channels-last {nhwc:.2f} s: "
          f"{default / nhwc:.2f}x faster")


if __name__ == "__main__":
    main()
