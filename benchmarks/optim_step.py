"""Time one optimizer ``step()`` over ResNet-50-shaped parameters (CPU, float32).

Not a test. Every optimizer gets its own copy of the 161 ResNet-50 parameter tensors (25.6M
values) with fixed random gradients; the configurations are timed in interleaved rounds (the
machine is shared and noisy) and the median step time per configuration is reported, next to
the memory-traffic floor (bytes a step must read and write / measured copy bandwidth). Wall
time and process CPU time are both reported: on a loaded machine CPU time is the steadier one.

    python benchmarks/optim_step.py --rounds 7 --steps 5

timm's ``Lars``/``Lamb`` are loaded from timm's module files without importing the timm package
(``pip install timm --no-deps``); they are skipped when timm is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
from collections.abc import Callable

import torch
from _optim_shared import FLOOR_PASSES, load_timm, resnet50_shapes
from _timing import alternate, clock

from legw.optim import LAMB, LARS


def make_params(shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05)
        p.grad = torch.randn(s, generator=gen) * 1e-3
        params.append(p)
    return params


def configs(timm: types.ModuleType | None) -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    wd = 1e-4
    out: dict[str, Callable[[list], torch.optim.Optimizer]] = {
        "legw LARS": lambda p: LARS(p, lr=0.1, momentum=0.9, weight_decay=wd),
        "legw LAMB": lambda p: LAMB(p, lr=1e-3, weight_decay=wd),
        "legw LARS whole-tensor": lambda p: LARS(p, lr=0.1, momentum=0.9, weight_decay=wd,
                                                 chunk_size=None),
        "legw LAMB whole-tensor": lambda p: LAMB(p, lr=1e-3, weight_decay=wd, chunk_size=None),
        "legw LARS foreach": lambda p: LARS(p, lr=0.1, momentum=0.9, weight_decay=wd,
                                            fused=False),
        "legw LAMB foreach": lambda p: LAMB(p, lr=1e-3, weight_decay=wd, fused=False),
        "torch SGD foreach": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9,
                                                       weight_decay=wd, foreach=True),
        "torch Adam foreach": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True),
        "torch AdamW foreach": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=wd,
                                                           foreach=True),
        "torch SGD fused": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=wd,
                                                     fused=True),
        "torch AdamW fused": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=wd,
                                                         fused=True),
    }
    if timm is not None:
        for foreach, tag in ((False, "loop"), (True, "foreach")):
            out[f"timm Lars {tag}"] = lambda p, f=foreach: timm.lars.Lars(
                p, lr=0.1, momentum=0.9, weight_decay=wd, foreach=f)
            out[f"timm Lamb {tag}"] = lambda p, f=foreach: timm.lamb.Lamb(
                p, lr=1e-3, weight_decay=wd, max_grad_norm=None, foreach=f)
    return out


def copy_bandwidth(numel: int, reps: int = 7) -> float:
    """Bytes per second of ``dst.copy_(src)`` (read + write) over ``numel`` float32 values."""
    src, dst = torch.randn(numel), torch.empty(numel)
    dst.copy_(src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * 4 * numel / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per config per round")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--only", nargs="*", default=None, help="config names to run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = resnet50_shapes()
    numel = sum(torch.Size(s).numel() for s in shapes)
    print(f"ResNet-50 shapes: {len(shapes)} tensors, {numel:,} values; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    timm = load_timm()
    if timm is None:
        print("timm not installed: its optimizers are skipped")
    cfgs = configs(timm)
    if args.only:
        cfgs = {k: v for k, v in cfgs.items() if k in args.only}
    opts = {name: make(make_params(shapes)) for name, make in cfgs.items()}
    # the warm-up round allocates the optimizers' state outside the timing
    timings = alternate({name: lambda opt=opt: clock(opt.step) for name, opt in opts.items()},
                        args.rounds, calls=args.steps, warmup=1)
    med = {name: 1e3 * timings.median(name, "wall") for name in opts}
    cpu_med = {name: 1e3 * timings.median(name, "cpu") for name in opts}
    bw = copy_bandwidth(numel)
    print(f"\ncopy bandwidth: {bw / 1e9:.1f} GB/s (read + write)")
    print("\n| optimizer | wall median ms/step | wall min | CPU median ms/step |")
    print("|---|---|---|---|")
    for name in opts:
        print(f"| {name} | {med[name]:.1f} | {1e3 * min(timings.values(name, 'wall')):.1f} | "
              f"{cpu_med[name]:.1f} |")
    print("\n| memory-traffic floor | passes | ms |\n|---|---|---|")
    for what, passes in FLOOR_PASSES.items():
        print(f"| {what} | {passes} | {1e3 * passes * 4 * numel / bw:.1f} |")
    ratios = [
        ("legw LARS", "timm Lars loop"), ("legw LARS", "timm Lars foreach"),
        ("legw LAMB", "timm Lamb loop"), ("legw LAMB", "timm Lamb foreach"),
        ("legw LAMB", "torch Adam foreach"), ("legw LARS", "torch SGD foreach"),
        ("legw LARS", "torch SGD fused"), ("legw LAMB", "torch AdamW fused"),
        ("legw LARS", "legw LARS whole-tensor"), ("legw LAMB", "legw LAMB whole-tensor"),
        ("legw LARS", "legw LARS foreach"), ("legw LAMB", "legw LAMB foreach"),
    ]
    print("\n| ratio | wall | CPU |\n|---|---|---|")
    for a, b in ratios:
        if a in med and b in med:
            print(f"| {a} / {b} | {med[a] / med[b]:.2f} | {cpu_med[a] / cpu_med[b]:.2f} |")


if __name__ == "__main__":
    main()
