"""Training throughput (forward + backward + SGD step) of the Fashion-MNIST models on this machine.

Times each of ``--steps`` steps on real Fashion-MNIST batches (after ``--warmup`` untimed steps)
and reports samples/s from the median wall time per step and from the CPU time per step
(``time.process_time``, summed over this process's threads). On a machine shared with other jobs
the wall figure drops while the CPU figure stays close to what the code costs; with
``--threads 1`` the CPU figure is the single-core throughput. The implied seconds per
60,000-image epoch are printed too.
This is a throughput probe, not a training run: no shuffling, no evaluation.

    python benchmarks/model_throughput.py --model small_resnet lstm --batch-size 128 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from legw.data.mnist import load_mnist, normalize
from legw.models import LSTMClassifier, small_resnet

MODELS = {
    "lstm": lambda: LSTMClassifier(28, 128, 1, 10),
    "small_resnet": lambda: small_resnet(10, 1),
    # the CIFAR ResNet-20 layout, for comparison with the default small_resnet
    "resnet20_layout": lambda: small_resnet(10, 1, (16, 32, 64), 3, stem_stride=1),
}


def measure(model_name: str, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """(wall, cpu) samples/s from the median wall and CPU time of ``steps`` training steps."""
    torch.manual_seed(0)
    images, labels = load_mnist("fashion-mnist", "train")
    x_all = normalize(images, "fashion-mnist")
    if model_name != "lstm":
        x_all = x_all.unsqueeze(1)  # (N, 1, 28, 28) for the convnet
    model = MODELS[model_name]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n_batches = len(labels) // batch_size

    def step(i: int) -> None:
        j = (i % n_batches) * batch_size
        loss = loss_fn(model(x_all[j : j + batch_size]), labels[j : j + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    wall, cpu = [], []
    for i in range(warmup, warmup + steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step(i)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return batch_size / statistics.median(wall), batch_size / statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["lstm", "small_resnet"],
                        choices=list(MODELS))
    parser.add_argument("--batch-size", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.model:
        params = sum(p.numel() for p in MODELS[name]().parameters())
        for batch_size in args.batch_size:
            wall, cpu = measure(name, batch_size, args.steps, args.warmup)
            print(f"{name:15s} params {params:8,d}  batch {batch_size:5d}  samples/s: "
                  f"wall {wall:6.0f} ({60000 / wall:6.1f} s/epoch)  "
                  f"cpu {cpu:6.0f} ({60000 / cpu:6.1f} cpu-s/epoch)", flush=True)


if __name__ == "__main__":
    main()
