"""Cost of the trainer's online gradient noise scale (``--noise-window``), on vs off.

Two measurements in the same run, on fashion-mnist-lstm at global batch 512:

1. end to end: ``legw.training.trainer.train`` with the measurement on and off, alternating
   (off, on, off, on, ...), medians of CPU and wall time per run (noisy on a shared machine);
2. the added work alone: per micro-step each parameter's gradient hook adds its squared norm,
   and per optimizer step one more element goes into the loss all-reduce and the window is
   updated; these are timed in isolation on the real model's gradients and compared with the
   median step time.

    python benchmarks/noise_overhead.py --steps 30 --repeats 5 --micro-batch-sizes 64 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _timing import alternate, clock

from legw.adaptive.meter import add_grad_sq
from legw.adaptive.noise import OnlineNoiseScale
from legw.tasks import get_task
from legw.training.config import TrainConfig
from legw.training.trainer import train


def run_once(steps: int, batch: int, micro: int, window: int) -> dict[str, float]:
    """Wall and CPU seconds of one training run of ``steps`` steps."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(task="fashion-mnist-lstm", global_batch_size=batch,
                             micro_batch_size=micro, max_steps=steps, quiet=True,
                             evaluate=False, out_dir=out, noise_window=window)
        return clock(train, config)


def added_work_seconds(micro: int, batch: int, repeats: int = 200) -> float:
    """Median seconds of what the measurement adds to one step, on the real model's grads:
    the parameter hooks' squared norms at each of the ``batch / micro`` micro-steps, one more
    element in the loss all-reduce, and the window update."""
    task = get_task("fashion-mnist-lstm")
    data = task.load(None)
    model = task.build_model(data)
    x, y = data.train.get(torch.arange(micro))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    accum = batch // micro
    noise = OnlineNoiseScale(micro, batch, window=50)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        acc = torch.zeros(())
        for _ in range(accum):
            for g in grads:  # what each parameter's hook does, once per micro-step
                add_grad_sq(acc, g)
        stats = torch.stack([torch.tensor(1.0), acc * accum]).tolist()
        noise.update(stats[1], 1.0)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--micro-batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"fashion-mnist-lstm, global batch {args.batch_size}, {args.steps} steps per run, "
          f"{args.repeats} alternating repeats, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    for micro in args.micro_batch_sizes:
        run_once(2, args.batch_size, micro, 50)  # warm-up: data loading, allocator
        windows = {"off": 0, "on": 50}
        runs = alternate({k: lambda m=micro, w=w: run_once(args.steps, args.batch_size, m, w)
                          for k, w in windows.items()}, args.repeats)
        wall, cpu = runs.ratios("off", "wall")["on"], runs.ratios("off", "cpu")["on"]
        step = runs.median("off", "wall") / args.steps
        added = added_work_seconds(micro, args.batch_size)
        print(f"micro batch {micro} ({args.batch_size // micro} micro-steps): step "
              f"{step * 1e3:.1f} ms; end to end on/off wall {wall:.3f}, "
              f"CPU {cpu:.3f}; added work {added * 1e6:.0f} us per step "
              f"= {100 * added / step:.2f} % of a step")


if __name__ == "__main__":
    main()
