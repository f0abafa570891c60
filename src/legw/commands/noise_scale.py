"""``legw noise-scale``: train a task with its recipe and measure the gradient noise scale
``B_simple`` (McCandlish et al. 2018) every few steps."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", metavar="TASK")
    p.add_argument("--batch-size", type=int, default=256, metavar="B",
                   help="big batch B of each draw (a multiple of the micro batch; default 256)")
    p.add_argument("--micro-batch-size", type=int, default=16, metavar="b",
                   help="small batch b: gradients of B/b micro batches per draw (default 16)")
    p.add_argument("--draws", type=int, default=20, help="draws per measurement (default 20)")
    p.add_argument("--points", type=int, default=5, metavar="K",
                   help="measurements, evenly spaced from step 0 to --steps (default 5)")
    p.add_argument("--steps", type=int, metavar="S",
                   help="training steps (default: one epoch at the training batch size)")
    p.add_argument("--train-batch-size", type=int, metavar="B",
                   help="batch of the training run (default: the task's base batch size)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="where the task's data lives (default: its loader's)")
    p.add_argument("--out", default="runs/noise-scale.json", metavar="FILE")
    p.add_argument("--plot", default="runs/noise-scale.png", metavar="FILE")


def _positive_int(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"--{name} must be >= {minimum}, got {value}")


def run(args: argparse.Namespace) -> int:
    for name, minimum in (("batch_size", 2), ("micro_batch_size", 1), ("draws", 2),
                          ("points", 1), ("steps", 0), ("train_batch_size", 1), ("threads", 1)):
        _positive_int(name.replace("_", "-"), getattr(args, name), minimum)
    if args.batch_size <= args.micro_batch_size or args.batch_size % args.micro_batch_size:
        raise ValueError(f"--batch-size ({args.batch_size}) must be a multiple of "
                         f"--micro-batch-size ({args.micro_batch_size}) and larger")
    import torch

    from legw.analysis.noise_scale import estimate_noise_scale, model_grad_fn, plot_noise_scale
    from legw.analysis.workload import load_workload
    from legw.io import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    w = load_workload(args.task, load_data=True, data_dir=args.data_dir)
    train_bs = args.train_batch_size or w.recipe.base_batch_size
    recipe = w.recipe.scale(train_bs, w.dataset_size)
    steps = recipe.steps_per_epoch if args.steps is None else args.steps
    at = sorted({round(i * steps / (args.points - 1)) for i in range(args.points)}
                if args.points > 1 else {0})
    optimizer = w.build_optimizer(recipe.lr_at_step(0))
    grad_fn = model_grad_fn(w.model, w.loss_fn)
    b, big = args.micro_batch_size, args.batch_size
    record: dict[str, Any] = {
        "task": args.task, "method": "B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018, "
        "App. A); stderr: delta method; ci: bootstrap 16-84th percentile over draws",
        "micro_batch_size": b, "batch_size": big, "draws": args.draws,
        "train_batch_size": train_bs, "steps": steps, "seed": args.seed,
        "recipe": recipe.summary(), "optimizer": {"name": w.optimizer, **(w.hyper or {})},
        "clip_grad_norm": w.clip_grad_norm, "points": []}
    w.model.train()
    losses: list[float] = []
    print(f"{args.task}: training at batch {train_bs} for {steps} steps; B_simple at steps "
          f"{at} from {args.draws} draws of {big // b} x {b} samples")
    for step in range(steps + 1):
        if step in at:
            t0 = time.perf_counter()
            est = estimate_noise_scale(
                grad_fn, lambda n: [w.sample_batch(b, gen) for _ in range(n)],
                micro_batch_size=b, batch_size=big, draws=args.draws, seed=args.seed + step)
            point = {"step": step, "epoch": step / recipe.steps_per_epoch,
                     "lr": recipe.lr_at_step(step),
                     "train_loss": sum(losses[-50:]) / len(losses[-50:]) if losses else None,
                     "seconds": time.perf_counter() - t0, **est.to_dict()}
            record["points"].append(point)
            atomic_write_json(args.out, record)  # partial results survive an interruption
            print(f"step {step:>6}  B_simple {est.b_simple:10.1f} +- {est.stderr:8.1f}  "
                  f"(68% ci {est.ci_low:.1f}..{est.ci_high:.1f})  |G|^2 {est.grad_sq:.3g}  "
                  f"tr(Sigma) {est.trace_sigma:.3g}" + ("" if est.valid else "  INVALID"))
        if step == steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at_step(step)
        x, y = w.sample_batch(train_bs, gen)
        optimizer.zero_grad(set_to_none=True)
        loss = w.loss_fn(w.model(x), y)
        loss.backward()
        if w.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(w.model.parameters(), w.clip_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise ValueError(f"training diverged at step {step} (loss {losses[-1]})")
    plot_noise_scale(record, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0
