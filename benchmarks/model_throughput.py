"""Training throughput (forward + backward + SGD step) of the Fashion-MNIST models on this machine.

Measures samples/s on real Fashion-MNIST batches (the first ``--steps`` batches of the training
set, after ``--warmup`` untimed steps) and converts it to seconds per 60,000-image epoch. This is
a throughput probe, not a training run: no shuffling, no evaluation.

    python benchmarks/model_throughput.py --model small_resnet lstm --batch-size 128 512
"""

from __future__ import annotations

import argparse
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


def measure(model_name: str, batch_size: int, steps: int, warmup: int) -> float:
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
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["lstm", "small_resnet"],
                        choices=list(MODELS))
    parser.add_argument("--batch-size", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.model:
        params = sum(p.numel() for p in MODELS[name]().parameters())
        for batch_size in args.batch_size:
            rate = measure(name, batch_size, args.steps, args.warmup)
            print(f"{name:13s} params {params:8,d}  batch {batch_size:5d}  "
                  f"{rate:8.0f} samples/s  {60000 / rate:6.1f} s/epoch")


if __name__ == "__main__":
    main()
