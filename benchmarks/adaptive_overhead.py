"""Per-step cost of the adaptive rule's noise measurement: legw's ``AdaptiveScaler`` against
fairscale's ``AdaScale`` and a plain accumulation loop, in the same run.

The three loops train the same model on the same micro-batches (``B / b`` of them per step,
SGD with momentum, LR from the base recipe); only what surrounds ``optimizer.step()`` differs:

* ``plain``: ``(loss / A).backward()`` per micro-batch, then ``optimizer.step()``;
* ``legw``: the same under :class:`legw.AdaptiveScaler` (a hook per parameter adds each
  micro-gradient's squared norm; ``step()`` updates the window and the gain);
* ``adascale``: fairscale 0.4.13's ``AdaScale`` around the same SGD (its own backward hooks
  and per-step statistics; ``pip install --no-deps fairscale==0.4.13``).

The loops alternate (plain, legw, adascale, plain, ...) so that the shared machine's load falls
on all three alike; the medians of the per-step times and their ratios to ``plain`` are
printed.

    python benchmarks/adaptive_overhead.py --task fashion-mnist-lstm --batch-size 1024 \\
        --micro-batch-size 128 --steps 10 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _timing import alternate

from legw.adaptive.scaler import AdaptiveScaler
from legw.tasks import get_task


def make_loop(kind: str, task, data, batch: int, micro: int):
    """A function that runs ``steps`` optimizer steps of ``kind`` and returns seconds/step."""
    torch.manual_seed(0)
    model = task.build_model(data)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    accum = batch // micro
    if kind == "legw":
        scaler = AdaptiveScaler(model, opt, task.recipe, batch, micro, len(data.train))
    elif kind == "adascale":
        from fairscale.optim import AdaScale

        opt = AdaScale(opt, num_gradients_to_accumulate=accum)
    gen = torch.Generator().manual_seed(1)

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(data.train), (batch,), generator=gen)
            x, y = data.train.get(idx)
            opt.zero_grad()  # AdaScale's takes no set_to_none
            for i in range(accum):
                xs, ys = x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro]
                (F.cross_entropy(model(xs), ys) / accum).backward()
            if kind == "legw":
                scaler.step()
            else:
                opt.step()
        return (time.perf_counter() - t0) / steps

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="fashion-mnist-lstm",
                   choices=["fashion-mnist-lstm", "fashion-mnist-resnet"])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--micro-batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    if args.batch_size % args.micro_batch_size or args.batch_size // args.micro_batch_size < 2:
        p.error("--micro-batch-size: must divide --batch-size into 2 or more micro-batches")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    task = get_task(args.task)
    data = task.load(args.data_dir)
    kinds = ("plain", "legw", "adascale")
    loops = {k: make_loop(k, task, data, args.batch_size, args.micro_batch_size) for k in kinds}
    for run in loops.values():
        run(2)  # warm-up
    timings = alternate({k: lambda run=run: {"s": run(args.steps)} for k, run in loops.items()},
                        args.repeats)
    ratios = timings.ratios("plain", "s")
    print(f"{args.task}, batch {args.batch_size} = {args.batch_size // args.micro_batch_size} x "
          f"{args.micro_batch_size}, {args.threads} thread(s), {args.repeats} x {args.steps} steps")
    print(f"{'loop':<10} {'ms/step':>9} {'vs plain':>9}")
    for k in kinds:
        print(f"{k:<10} {1000 * timings.median(k, 's'):>9.1f} {ratios[k]:>9.3f}")


if __name__ == "__main__":
    main()
