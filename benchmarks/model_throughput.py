"""Training throughput (forward + backward + SGD step) of the Fashion-MNIST models on this machine.

Times each of ``--steps`` steps on real Fashion-MNIST batches (after ``--warmup`` untimed steps)
and reports samples/s from the median wall time per step and from the CPU time per step
(``time.process_time``, summed over this process's threads). On a machine shared with other jobs
the wall figure drops while the CPU figure stays close to what the code costs; with
``--threads 1`` the CPU figure is the single-core throughput. The implied seconds per
60,000-image epoch are printed too.
This is a throughput probe, not a training run: no shuffling, no evaluation.
``--memory-format contiguous channels_last`` trains one copy of the model per layout (the
trainer's ``--channels-last``), alternating their steps so both see the same machine load, and
prints the ratio.

    python benchmarks/model_throughput.py --model small_resnet lstm --batch-size 128 512
    OMP_NUM_THREADS=1 python benchmarks/model_throughput.py --model small_resnet --threads 1 \
        --batch-size 128 1024 --memory-format contiguous channels_last --steps 30
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
from _timing import alternate, clock
from torch import nn

from legw.data.mnist import load_mnist, normalize
from legw.models import LSTMClassifier, small_resnet

MODELS = {
    "lstm": lambda: LSTMClassifier(28, 128, 1, 10),
    "small_resnet": lambda: small_resnet(10, 1),
    # the CIFAR ResNet-20 layout, for comparison with the default small_resnet
    "resnet20_layout": lambda: small_resnet(10, 1, (16, 32, 64), 3, stem_stride=1),
}


def measure(model_name: str, batch_size: int, steps: int, warmup: int,
            memory_formats: tuple[str, ...] = ("contiguous",)) -> list[tuple[float, float]]:
    """(wall, cpu) samples/s per memory format, from the median wall and CPU time of
    ``steps`` training steps; the formats' steps alternate."""
    torch.manual_seed(0)
    images, labels = load_mnist("fashion-mnist", "train")
    x_all = normalize(images, "fashion-mnist")
    if model_name != "lstm":
        x_all = x_all.unsqueeze(1)  # (N, 1, 28, 28) for the convnet
    loss_fn = nn.CrossEntropyLoss()
    n_batches = len(labels) // batch_size

    def stepper(fmt: str) -> Callable[[], dict[str, float]]:
        """One copy of the model in layout ``fmt``: each call trains it on the next batch."""
        torch.manual_seed(0)
        model, x = MODELS[model_name](), x_all
        if fmt == "channels_last" and model_name != "lstm":
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        batches = itertools.count()

        def step() -> None:
            j = (next(batches) % n_batches) * batch_size
            loss = loss_fn(model(x[j : j + batch_size]), labels[j : j + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return lambda: clock(step)

    timings = alternate({fmt: stepper(fmt) for fmt in memory_formats}, steps, warmup=warmup)
    return [(batch_size / timings.median(fmt, "wall"), batch_size / timings.median(fmt, "cpu"))
            for fmt in memory_formats]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["lstm", "small_resnet"],
                        choices=list(MODELS))
    parser.add_argument("--batch-size", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--memory-format", nargs="+", default=["contiguous"],
                        choices=["contiguous", "channels_last"])
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.model:
        params = sum(p.numel() for p in MODELS[name]().parameters())
        for batch_size in args.batch_size:
            results = measure(name, batch_size, args.steps, args.warmup,
                              tuple(args.memory_format))
            for fmt, (wall, cpu) in zip(args.memory_format, results):
                print(f"{name:15s} params {params:8,d}  batch {batch_size:5d}  {fmt:13s} "
                      f"samples/s: wall {wall:6.0f} ({60000 / wall:6.1f} s/epoch)  "
                      f"cpu {cpu:6.0f} ({60000 / cpu:6.1f} cpu-s/epoch)", flush=True)
            if len(results) == 2:
                print(f"{'':15s} {args.memory_format[1]} / {args.memory_format[0]}: "
                      f"{results[1][1] / results[0][1]:.2f}x CPU samples/s", flush=True)


if __name__ == "__main__":
    main()
