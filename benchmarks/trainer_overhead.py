"""Overhead of ``legw.training.trainer.train`` over a bare PyTorch loop doing the same work.

Both train fashion-mnist-lstm (LSTM-128, SGD momentum 0.9, the scaled poly recipe, LR written
each step by ``legw.lr_scheduler.apply_recipe``, the trainer's own writer) at global batch 512
for the same number of steps on the same data order; the trainer adds its logging,
loss/grad-norm reduction, checkpoint at the last step and run records.
Timed from the first to the last step, including data loading and model set-up in both.
Runs alternate (bare, legw, bare, legw, ...) and the medians are compared, in wall time and in
CPU time of this process (steadier than wall time on a shared machine).

    python benchmarks/trainer_overhead.py --steps 40 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from _timing import alternate, clock

from legw.lr_scheduler import apply_recipe
from legw.tasks import get_task
from legw.training.batches import ImageBatches
from legw.training.config import TrainConfig
from legw.training.trainer import seed_everything, train


def bare_loop(steps: int, batch: int, seed: int = 0) -> None:
    task = get_task("fashion-mnist-lstm")
    seed_everything(seed)
    data = task.load(None)
    recipe = task.recipe.scale(batch, len(data.train))
    torch.manual_seed(seed)
    model = task.build_model(data)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr_at_step(0), momentum=0.9)
    batches = ImageBatches(data.train, batch, batch, 0, 1, seed)
    for step in range(steps):
        apply_recipe(opt, recipe, step)  # the trainer's LR writer
        (x, y), = batches.micro_batches(step // recipe.steps_per_epoch,
                                        step % recipe.steps_per_epoch)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()


def legw_loop(steps: int, batch: int, seed: int = 0) -> None:
    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(task="fashion-mnist-lstm", global_batch_size=batch, max_steps=steps,
                          seed=seed, quiet=True, evaluate=False, out_dir=out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    def show(last: dict[str, dict[str, float]]) -> None:
        print(f"bare {last['bare']['wall']:.2f} s wall / {last['bare']['cpu']:.2f} s CPU, "
              f"legw {last['legw']['wall']:.2f} s wall / {last['legw']['cpu']:.2f} s CPU",
              flush=True)

    timings = alternate({"bare": lambda: clock(bare_loop, args.steps, args.batch_size),
                         "legw": lambda: clock(legw_loop, args.steps, args.batch_size)},
                        args.repeats, on_round=show)
    for key, kind in (("wall", "wall"), ("cpu", "CPU")):
        b, lg = timings.median("bare", key), timings.median("legw", key)
        print(f"median {kind} time over {args.repeats}: bare {b:.2f} s, legw {lg:.2f} s, "
              f"overhead {100 * (lg / b - 1):+.1f}% ({args.steps} steps at batch "
              f"{args.batch_size}, {args.threads} threads)")


if __name__ == "__main__":
    main()
