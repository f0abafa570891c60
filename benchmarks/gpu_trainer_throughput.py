"""Training throughput on a CUDA GPU: legw against a bare PyTorch loop doing the same work.

Not a test. Goal: legw >= 0.97x the bare loop's samples/s. Two comparisons:

* **fashion-mnist-lstm, the trainer.** ``legw.training.trainer.train`` (device cuda, bf16
  autocast, no evaluation, checkpoint at the last step) against a bare loop with the same model,
  optimizer (SGD momentum 0.9), recipe LR written each step, batches and autocast, both timed as
  whole calls (set-up included), ``--steps`` steps at ``--batch-size``, on generated
  Fashion-MNIST-shaped data (``tests/helpers.make_mnist_dir``) unless ``--data-dir`` is given.
* **ResNet-50, the library step path.** No preset trains ResNet-50 on synthetic data (the
  ``imagenet-resnet50`` preset reads an image folder, and decoding JPEGs would measure the
  loader, not legw), so the trainer itself is *not* measured here. Compared instead: a bare
  loop (torch ``SGD(fused=True)``, bf16 autocast, channels_last, ImageNet-shaped batches
  generated on the device) against the same loop with what legw adds per step: the LR written
  from the LEGW recipe (``legw.lr_scheduler.apply_recipe``) and legw LARS with the trainer's
  parameter groups. Timed with CUDA events after warm-up.

    python benchmarks/gpu_trainer_throughput.py --steps 200 --resnet-steps 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import alternate, clock

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.97


def lstm_bare(data_dir: str, steps: int, batch: int, device: torch.device) -> None:
    """The trainer's work for fashion-mnist-lstm, written as a plain loop."""
    from legw.lr_scheduler import apply_recipe
    from legw.tasks import get_task
    from legw.training.batches import ImageBatches
    from legw.training.trainer import seed_everything

    task = get_task("fashion-mnist-lstm")
    seed_everything(0)
    data = task.load(data_dir)
    recipe = task.recipe.scale(batch, len(data.train))
    model = task.build_model(data).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr_at_step(0), momentum=0.9)
    batches = ImageBatches(data.train, batch, batch, 0, 1, 0)
    for step in range(steps):
        apply_recipe(opt, recipe, step)
        (x, y), = batches.micro_batches(step // recipe.steps_per_epoch,
                                        step % recipe.steps_per_epoch)
        x, y = x.to(device), y.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()


def lstm_legw(data_dir: str, steps: int, batch: int, device: torch.device) -> None:
    from legw.training.config import TrainConfig
    from legw.training.trainer import train

    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(task="fashion-mnist-lstm", data_dir=data_dir, global_batch_size=batch,
                          max_steps=steps, quiet=True, evaluate=False, out_dir=out,
                          device=device.type))


def resnet_steps(legw: bool, steps: int, warmup: int, batch: int, device: torch.device,
                 image_size: int = 224) -> float:
    """Samples/s of ResNet-50 steps on device-generated batches (bare torch, or legw's pieces)."""
    from legw.lr_scheduler import apply_recipe
    from legw.models.resnet import resnet50
    from legw.optim import LARS, param_groups
    from legw.tasks import get_task

    torch.manual_seed(0)
    model = resnet50().to(device, memory_format=torch.channels_last)
    recipe = get_task("imagenet-resnet50").recipe.scale(batch, 1_281_167)
    if legw:
        groups, _ = param_groups(model, 1e-4)
        opt = LARS(groups, lr=recipe.lr_at_step(0), momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4,
                              fused=True)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step(i: int) -> None:
        if legw:
            apply_recipe(opt, recipe, i)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(steps):
            step(warmup + i)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3
    else:
        t0 = time.perf_counter()
        for i in range(steps):
            step(warmup + i)
        seconds = time.perf_counter() - t0
    return steps * batch / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--steps", type=int, default=200, help="LSTM steps per run")
    ap.add_argument("--batch-size", type=int, default=512, help="LSTM global batch")
    ap.add_argument("--repeats", type=int, default=3, help="alternating LSTM runs per loop")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: "
                    "generated, 60000 samples)")
    ap.add_argument("--resnet-steps", type=int, default=50)
    ap.add_argument("--resnet-batch", type=int, default=256)
    ap.add_argument("--resnet-warmup", type=int, default=5, help="untimed ResNet-50 steps")
    ap.add_argument("--resnet-image-size", type=int, default=224,
                    help="side of the generated images (smaller: a CPU smoke run)")
    ap.add_argument("--skip", nargs="*", choices=["lstm", "resnet50"], default=[])
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_trainer_throughput: CUDA is not available on this machine; "
                         "nothing to measure (--device cpu runs a smoke test of the script)")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}; torch {torch.__version__}; goal legw >= {GOAL}x the bare loop")
    figures: dict = {"device": name, "torch": torch.__version__}
    if "lstm" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = args.data_dir
            if data_dir is None:
                sys.path.insert(0, str(REPO / "tests"))
                from helpers import make_mnist_dir

                data_dir = str(make_mnist_dir(Path(tmp) / "mnist", n_train=60_000,
                                              n_test=1_000))
            run = (data_dir, args.steps, args.batch_size, device)
            timings = alternate({"bare": lambda: clock(lstm_bare, *run),
                                 "legw": lambda: clock(lstm_legw, *run)}, args.repeats)
            b, lg = timings.median("bare", "wall"), timings.median("legw", "wall")
            n = args.steps * args.batch_size
            print(f"fashion-mnist-lstm, {args.steps} steps at batch {args.batch_size}: bare "
                  f"{n / b:.0f} samples/s, legw trainer {n / lg:.0f} samples/s, ratio "
                  f"{b / lg:.3f} (median of {args.repeats}, whole calls incl. set-up)")
            figures["lstm"] = {"steps": args.steps, "batch_size": args.batch_size,
                               "repeats": args.repeats, "bare_samples_per_s": n / b,
                               "legw_samples_per_s": n / lg, "ratio": b / lg}
    if "resnet50" not in args.skip:
        shape = (args.resnet_steps, args.resnet_warmup, args.resnet_batch, device,
                 args.resnet_image_size)
        bare = resnet_steps(False, *shape)
        legw = resnet_steps(True, *shape)
        print(f"resnet50 (library step path, not the trainer), batch {args.resnet_batch}: "
              f"bare SGD fused {bare:.0f} img/s, legw LARS + recipe LR {legw:.0f} img/s, "
              f"ratio {legw / bare:.3f}")
        figures["resnet50"] = {"steps": args.resnet_steps, "batch_size": args.resnet_batch,
                               "image_size": args.resnet_image_size,
                               "bare_images_per_s": bare, "legw_images_per_s": legw,
                               "ratio": legw / bare}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
