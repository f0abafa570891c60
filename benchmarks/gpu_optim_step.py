"""Time one optimizer ``step()`` on a CUDA GPU: ResNet-50- and BERT-large-shaped parameters.

Not a test. For each parameter set (ResNet-50: the 161 tensors / 25.6M values of
``benchmarks/optim_step.py``; BERT-large: 24 layers, hidden 1024, intermediate 4096, vocab 30522,
512 positions, ~335M values) and each dtype (fp32, bf16 parameters), every optimizer gets the
same parameters and fixed random gradients, one at a time (build, warm up, time, free), and is
timed with CUDA events over ``--steps`` steps after ``--warmup`` steps. Compared: legw LARS and
LAMB (fused kernels and the multi-tensor path), torch ``SGD(fused=True)`` / ``AdamW(fused=True)``
and timm's ``Lars`` / ``Lamb`` (when installed; ``_optim_shared.load_timm``). Printed:
ms/step, the ratio to the fused torch step of the same family (goal: LARS / LAMB <= 1.5x), and
the memory-bandwidth floor: the bytes a step must read and write divided by the measured
device-to-device copy bandwidth.

    python benchmarks/gpu_optim_step.py                     # CUDA, both shapes, fp32 + bf16
    python benchmarks/gpu_optim_step.py --device cpu --models bert-tiny --warmup 1 --steps 1
                                                            # CPU smoke run of the script itself
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _optim_shared import FLOOR_PASSES, bert_large_shapes, load_timm, resnet50_shapes

from legw.optim import LAMB, LARS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GOAL = 1.5  # legw LARS / LAMB step <= 1.5x the fused torch step of the same family
MODELS = {"resnet50": resnet50_shapes, "bert-large": bert_large_shapes,
          # BERT-tiny's layout (2 layers, hidden 128): a smoke size for --device cpu
          "bert-tiny": lambda: bert_large_shapes(layers=2, hidden=128, intermediate=512)}

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def configs(timm) -> dict[str, tuple[str, Factory]]:
    """name -> (family, factory); the family's fused torch step is the ratio's denominator."""
    wd = 1e-4
    out: dict[str, tuple[str, Factory]] = {
        "torch SGD fused": ("sgd", lambda p: torch.optim.SGD(
            p, lr=0.1, momentum=0.9, weight_decay=wd, fused=True)),
        "legw LARS fused": ("sgd", lambda p: LARS(p, lr=0.1, momentum=0.9, weight_decay=wd,
                                                  fused=True)),
        "legw LARS foreach": ("sgd", lambda p: LARS(p, lr=0.1, momentum=0.9, weight_decay=wd,
                                                    fused=False)),
        "torch AdamW fused": ("adam", lambda p: torch.optim.AdamW(
            p, lr=1e-3, weight_decay=wd, fused=True)),
        "legw LAMB fused": ("adam", lambda p: LAMB(p, lr=1e-3, weight_decay=wd, fused=True)),
        "legw LAMB foreach": ("adam", lambda p: LAMB(p, lr=1e-3, weight_decay=wd, fused=False)),
    }
    if timm is not None:
        out["timm Lars foreach"] = ("sgd", lambda p: timm.lars.Lars(
            p, lr=0.1, momentum=0.9, weight_decay=wd, foreach=True))
        out["timm Lamb foreach"] = ("adam", lambda p: timm.lamb.Lamb(
            p, lr=1e-3, weight_decay=wd, max_grad_norm=None, foreach=True))
    return out


BASELINE = {"sgd": "torch SGD fused", "adam": "torch AdamW fused"}


def make_params(shapes: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device,
                seed: int = 0) -> list[torch.Tensor]:
    """Parameters ~N(0, 0.05^2) with fixed gradients ~N(0, 1e-3^2), made on ``device``."""
    gen = torch.Generator(device).manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(0.05 * torch.randn(s, generator=gen, device=device, dtype=dtype))
        p.grad = 1e-3 * torch.randn(s, generator=gen, device=device, dtype=dtype)
        params.append(p)
    return params


def time_ms(fn: Callable[[], object], steps: int, device: torch.device) -> float:
    """Median ms of ``fn()``: CUDA events on the GPU (no host sync inside the timed region
    beyond the events), wall clock on the CPU."""
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def copy_bandwidth(numel: int, dtype: torch.dtype, device: torch.device) -> float:
    """Bytes per second of a device-to-device ``dst.copy_(src)`` (read + write)."""
    src = torch.randn(numel, device=device).to(dtype)
    dst = torch.empty_like(src)
    dst.copy_(src)
    ms = time_ms(lambda: dst.copy_(src), 10, device)
    return 2 * src.element_size() * numel / (ms / 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--models", nargs="+", choices=list(MODELS),
                    default=["resnet50", "bert-large"])
    ap.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    ap.add_argument("--only", nargs="*", default=None, help="optimizer names to run")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_optim_step: CUDA is not available on this machine; nothing to "
                         "measure (--device cpu runs a smoke test of the script)")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    timm = load_timm()
    print(f"{name}; torch {torch.__version__}; timm optimizers "
          f"{'loaded' if timm else 'not installed: skipped'}")
    cfgs = configs(timm)
    if args.only:
        cfgs = {k: v for k, v in cfgs.items() if k in args.only or k in BASELINE.values()}
    rows: list[dict] = []
    floors: list[dict] = []
    for model in args.models:
        shapes = MODELS[model]()
        numel = sum(torch.Size(s).numel() for s in shapes)
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            params = make_params(shapes, dtype, device)
            med: dict[str, float] = {}
            for opt_name, (_, make) in cfgs.items():
                try:
                    opt = make(params)
                except ValueError as e:  # legw refuses CPU bf16 fused kernels (torch's are wrong)
                    if device.type == "cuda":
                        raise
                    print(f"{opt_name}, {dname} on the CPU: skipped ({e})")
                    continue
                for _ in range(args.warmup):  # state allocation and kernel warm-up
                    opt.step()
                med[opt_name] = time_ms(opt.step, args.steps, device)
                del opt
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            bw = copy_bandwidth(numel, dtype, device)
            size = torch.empty((), dtype=dtype).element_size()
            print(f"\n### {model}: {len(shapes)} tensors, {numel:,} values, {dname} parameters; "
                  f"copy bandwidth {bw / 1e9:.0f} GB/s (read + write)\n")
            print(f"| optimizer | ms/step | / fused torch step (goal <= {GOAL}x for legw) |")
            print("|---|---|---|")
            floor = {what: 1e3 * n * size * numel / bw for what, n in FLOOR_PASSES.items()}
            for opt_name, (family, _) in cfgs.items():
                if opt_name not in med:
                    continue
                ratio = med[opt_name] / med[BASELINE[family]]
                mark = ""
                if opt_name.startswith("legw"):
                    mark = " (meets goal)" if ratio <= GOAL else " (misses goal)"
                print(f"| {opt_name} | {med[opt_name]:.3f} | {ratio:.2f}{mark} |")
                rows.append({"shapes": model, "dtype": dname, "optimizer": opt_name,
                             "ms_per_step": med[opt_name], "vs_fused_torch": ratio})
            print("\n| memory-bandwidth floor | passes | ms |\n|---|---|---|")
            for what, passes in FLOOR_PASSES.items():
                print(f"| {what} | {passes} | {floor[what]:.3f} |")
            floors.append({"shapes": model, "dtype": dname, "copy_gb_per_s": bw / 1e9,
                           "floor_ms": floor})
            del params
            gc.collect()
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__,
                                               "steps": rows, "floors": floors}, indent=1))


if __name__ == "__main__":
    main()
