"""Adaptive scaling vs AdaScale vs LEGW vs linear: final metric, optimizer steps, epochs, time.

Every method trains the same task preset (same data order, same initial weights, same test
evaluation) at a global batch ``B`` from the same base recipe tuned at ``B0``:

* ``adascale``: fairscale's ``AdaScale`` (Johnson et al., ICML 2020) wrapped around the task's
  optimizer, with ``num_gradients_to_accumulate = B / B0`` micro-batches of ``B0`` samples (its
  scale ``S = B / B0``); the base recipe's LR at the position ``tau`` (in base steps), ``tau``
  advanced by AdaScale's gain after each step, training ends when ``tau`` reaches the base
  recipe's steps. AdaScale multiplies the LR by its gain inside ``step()``. A loop of its own
  (AdaScale owns the gradient hooks), with legw's data, model and evaluation.
* ``adaptive``: ``legw train --scaling adaptive`` (legw.adaptive), micro-batches of ``B0``.
* ``legw`` / ``linear``: ``legw train`` with sqrt + LEGW warmup / linear + constant warmup, the
  base recipe's epochs at every batch.

fairscale is a dependency of this script only (``pip install --no-deps fairscale==0.4.13``; it
imports with torch 2.13). Results go to ``--out`` as one JSON line per finished run; a rerun
skips finished runs and resumes interrupted ones from their last epoch (legw's runs from their
checkpoints, AdaScale's from ``runs/TASK-adascale-bB-sS.pt``, which names its configuration and
is deleted once the row is written), so the script can be stopped and restarted; a resumed run
ends exactly as an uninterrupted one.

    python scripts/adascale_compare.py --task fashion-mnist-lstm --batch-sizes 1024 4096 8192 \\
        --methods adascale adaptive legw linear --out runs/adascale/results.jsonl --threads 1

``--optimizer`` (with its ``--base-lr``, tuned at ``B0``, and ``--weight-decay``) runs every
method on another optimizer than the task's, AdaScale wrapped around it. Rows of a run with
overrides record them (``overrides``), and its run names carry the optimizer and a short hash
of them, so runs of other settings in one ``--out`` neither collide nor count as done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from legw.adaptive import ADAPTIVE_WARMUPS
from legw.io import atomic_path
from legw.optim import OPTIMIZERS
from legw.training.batches import ImageBatches
from legw.training.config import TrainConfig
from legw.training.device import batch_to, match_param_layout
from legw.training.evaluate import image_metrics
from legw.training.run_dir import RunDir, error_from_accuracy
from legw.training.trainer import seed_everything, train

METHODS = ("adascale", "adaptive", "legw", "linear")


def run_adascale(task_name: str, batch: int, seed: int, data_dir: str | None,
                 overrides: dict[str, Any], state_path: Path | None = None,
                 eval_every_epoch: bool = True, channels_last: bool = False) -> dict[str, Any]:
    """AdaScale's run; with ``state_path``, a checkpoint at every epoch end resumes it exactly
    (model, optimizer, AdaScale's gain statistics, the position ``tau``, RNG, elapsed time)."""
    from fairscale.optim import AdaScale

    spec = TrainConfig(task=task_name, global_batch_size=batch, seed=seed, data_dir=data_dir,
                       **overrides).resolve()
    task, base = spec.task, spec.base
    seed_everything(seed)
    data = task.load(data_dir)
    b0 = base.base_batch_size
    base_recipe = base.scale(b0, len(data.train))  # the schedule, in base steps
    torch.manual_seed(seed)
    model = task.build_model(data)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inner, _ = spec.build_optimizer(model, base_recipe.lr_at_step(0))
    accum = batch // b0
    cpu = torch.device("cpu")
    opt = AdaScale(inner, num_gradients_to_accumulate=accum)
    batches = ImageBatches(data.train, batch, b0, 0, 1, seed)
    spe = batches.steps_per_epoch
    clip = spec.clip_grad_norm
    tau, step, gains, evals, elapsed = 0.0, 0, [], [], 0.0
    switched = None  # the epoch a resume switched the memory layout at, if one did
    identity = {"task": task_name, "batch_size": batch, "seed": seed, "overrides": overrides}
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if "identity" in state and state["identity"] != identity:  # (older states: none)
            raise SystemExit(f"{state_path}: the checkpoint of another run "
                             f"({state.get('identity')}); delete it or use another --out")
        model.load_state_dict(state["model"])
        inner.load_state_dict(state["optimizer"])  # AdaScale keeps its statistics in it
        match_param_layout(inner)  # the checkpoint may have been written in the other layout
        torch.set_rng_state(state["rng"])
        tau, step, gains, evals, elapsed = (state[k] for k in
                                            ("tau", "step", "gains", "evals", "elapsed"))
        switched = state.get("layout_switched_at")
        if state.get("channels_last", False) != channels_last:
            switched = step / spe
        print(f"  resumed at step {step} (epoch {step / spe:g})", flush=True)
    t0 = time.perf_counter() - elapsed
    while tau < base_recipe.total_steps:
        lr = base_recipe.lr_at_step(tau)
        for g in inner.param_groups:
            g["lr"] = lr
        for x, y in batches.micro_batches(step // spe, step % spe):
            x = batch_to(x, cpu, channels_last)
            (F.cross_entropy(model(x), y) / accum).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        r = float(opt.gain())
        opt.step()
        opt.zero_grad()
        tau += r
        gains.append(r)
        step += 1
        if step % spe == 0:
            if eval_every_epoch:
                evals.append({"epoch": step / spe, **image_metrics(
                    model, data.test, task.eval_batch_size, cpu, 0, 1, channels_last)})
            if state_path is not None:
                with atomic_path(state_path) as tmp:
                    torch.save({"identity": identity, "model": model.state_dict(),
                                "optimizer": inner.state_dict(),
                                "rng": torch.get_rng_state(),
                                "tau": tau, "step": step, "gains": gains, "evals": evals,
                                "elapsed": time.perf_counter() - t0,
                                "channels_last": channels_last,
                                "layout_switched_at": switched}, tmp)
    final = image_metrics(model, data.test, task.eval_batch_size, cpu, 0, 1, channels_last)
    return {"final": final, "steps": step, "epochs": step / spe,
            "wall_time_s": time.perf_counter() - t0, "mean_gain": sum(gains) / len(gains),
            "evals": evals, "layout_switched_at": switched}


def _layout(channels_last: bool, switched_at: float | None) -> dict[str, Any]:
    """What a row records of the memory layout: nothing for the default; ``channels_last``
    true, or the epoch a resumed run switched layouts at (its wall time mixes the two)."""
    if switched_at is not None:
        return {"channels_last": channels_last, "layout_switched_at_epoch": switched_at}
    return {"channels_last": True} if channels_last else {}


def _tag(overrides: dict[str, Any]) -> str:
    """What run names add for a harness run with overrides: the optimizer (when overridden)
    and a short hash of all of them; nothing for the task's own recipe."""
    if not overrides:
        return ""
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:6]
    return (f"-{overrides['optimizer']}" if "optimizer" in overrides else "") + f"-{digest}"


def legw_config(method: str, task_name: str, batch: int, seed: int, data_dir: str | None,
                overrides: dict[str, Any], **run: Any) -> TrainConfig:
    """The ``legw train`` configuration of a harness method: micro-batches of ``B0``."""
    scaling = {"adaptive": "adaptive", "legw": "sqrt", "linear": "linear"}[method]
    warmup = "constant" if method == "linear" else "legw"
    b0 = TrainConfig(task=task_name, **overrides).resolve().base.base_batch_size
    return TrainConfig(task=task_name, global_batch_size=batch, seed=seed,
                       micro_batch_size=b0 if batch > b0 else None, scaling=scaling,
                       warmup=warmup, data_dir=data_dir, **overrides, **run)


def run_legw(method: str, task_name: str, batch: int, seed: int, data_dir: str | None,
             out: Path, overrides: dict[str, Any], tag: str,
             channels_last: bool = False) -> dict[str, Any]:
    suffix = ""
    if method == "adaptive":
        suffix = f"-p{overrides['adaptive_lr_power']:g}"
        suffix += "-wgain" if overrides.get("adaptive_warmup") == "gain" else ""
    name = f"{task_name}{tag}-{method}{suffix}-b{batch}-s{seed}"
    run_dir = out.parent / "runs" / name
    summary = train(legw_config(method, task_name, batch, seed, data_dir, overrides,
                                quiet=True, out_dir=str(run_dir), channels_last=channels_last,
                                resume=RunDir(run_dir).checkpoints.is_dir()))
    return {"final": summary["final"], "steps": summary["steps"], "epochs": summary["epochs"],
            "wall_time_s": summary["wall_time_s"], "status": summary["status"],
            "run_dir": str(run_dir)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="fashion-mnist-lstm",
                   choices=["fashion-mnist-lstm", "fashion-mnist-resnet", "mnist-lstm"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels-last", action="store_true",
                   help="convnets in channels-last memory (legw's --channels-last): faster on "
                        "the CPU, the same results up to float rounding; how a run executes, "
                        "so it is recorded in the row but does not set runs apart")
    p.add_argument("--out", default="runs/adascale/results.jsonl")
    p.add_argument("--base-batch-size", type=int, help="override the task's base batch")
    p.add_argument("--epochs", type=float, help="override the base recipe's epochs")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                   help="override the task's optimizer (with its --base-lr, tuned at B0)")
    p.add_argument("--base-lr", type=float, help="override the base recipe's peak LR")
    p.add_argument("--weight-decay", type=float, help="override the task's weight decay")
    p.add_argument("--adaptive-lr-power", type=float,
                   help="adaptive's LR multiplier is gain**P (default: legw's for the "
                        "optimizer, 1 as AdaScale for SGD / LARS, 0.5 for Adam / AdamW / "
                        "LAMB); rows are kept apart by P")
    p.add_argument("--adaptive-warmup", choices=ADAPTIVE_WARMUPS, default="legw",
                   help="adaptive's warmup: the base warmup's steps (legw, default) or advanced "
                        "by the gain (AdaScale's); rows are kept apart by it")
    args = p.parse_args()
    if args.optimizer and args.base_lr is None:
        p.error("--optimizer: give its --base-lr too (tuned at the base batch); the task's "
                "LR belongs to the task's optimizer")
    overrides = {k: v for k, v in (("base_batch_size", args.base_batch_size),
                                   ("epochs", args.epochs), ("optimizer", args.optimizer),
                                   ("base_lr", args.base_lr),
                                   ("weight_decay", args.weight_decay)) if v is not None}
    adaptive = {"adaptive_lr_power": args.adaptive_lr_power,
                "adaptive_warmup": args.adaptive_warmup}
    # legw's own checks of every setting and of every run's schedule, before the first run
    try:
        probe = TrainConfig(task=args.task, scaling="adaptive", **adaptive,
                            **overrides).resolve()
        b0 = probe.base.base_batch_size
        adaptive["adaptive_lr_power"] = probe.adaptive_lr_power  # recorded per row
        dataset_size = len(probe.task.load(args.data_dir).train)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    for batch in args.batch_sizes:
        if "adascale" in args.methods and (batch <= b0 or batch % b0):
            p.error(f"--batch-sizes {batch}, adascale: needs a multiple of the base batch {b0} "
                    "above it (AdaScale accumulates B / B0 gradients of B0 samples)")
        for method in (m for m in args.methods if m != "adascale"):
            try:
                config = legw_config(method, args.task, batch, 0, None, {**overrides, **adaptive})
                config.resolve().recipe(dataset_size)
            except ValueError as e:
                p.error(f"--batch-sizes {batch}, {method}: {e}")
    # Denormals flushed to zero for every method, as legw's trainer does on the CPU (a
    # saturated LSTM steps ~17x slower without); set before the thread pool starts, so that
    # its workers flush too.
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    tag, same = _tag(overrides), json.dumps(overrides, sort_keys=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            # rows from before the flag existed ran the square root (the default then)
            done.add((r["task"], json.dumps(r.get("overrides", {}), sort_keys=True),
                      r["method"], r["batch_size"], r["seed"],
                      r.get("adaptive_lr_power", 0.5) if r["method"] == "adaptive" else None,
                      r.get("adaptive_warmup", "legw") if r["method"] == "adaptive" else None))
    for seed in args.seeds:
        for batch in args.batch_sizes:
            for method in args.methods:
                power = adaptive["adaptive_lr_power"] if method == "adaptive" else None
                warmup = args.adaptive_warmup if method == "adaptive" else None
                key = (args.task, same, method, batch, seed, power, warmup)
                if key in done:
                    continue
                print(f"{args.task} {method} B={batch} seed {seed} ...", flush=True)
                if method == "adascale":
                    state = out.parent / "runs" / f"{args.task}{tag}-adascale-b{batch}-s{seed}.pt"
                    res = run_adascale(args.task, batch, seed, args.data_dir, overrides, state,
                                       channels_last=args.channels_last)
                else:
                    extra = ({"adaptive_lr_power": power, "adaptive_warmup": warmup}
                             if method == "adaptive" else {})
                    res = run_legw(method, args.task, batch, seed, args.data_dir, out,
                                   {**overrides, **extra}, tag, args.channels_last)
                switched = res.pop("layout_switched_at", None)
                row = {"task": args.task, "method": method, "batch_size": batch, "seed": seed,
                       **({"overrides": overrides} if overrides else {}),
                       **({"adaptive_lr_power": power} if power is not None else {}),
                       **({"adaptive_warmup": warmup} if warmup == "gain" else {}),
                       **_layout(args.channels_last, switched),
                       "test_error": error_from_accuracy(res["final"]["test_accuracy"]), **res,
                       "torch": torch.__version__}
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if method == "adascale":
                    state.unlink(missing_ok=True)  # the row is the result now
                print(f"  error {row['test_error']:.2f} %, {res['steps']} steps, "
                      f"{res['epochs']:.1f} epochs, {res['wall_time_s']:.0f} s", flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    print(f"{'rule':<23} {'batch':>6} {'error %':>8} {'steps':>6} {'epochs':>7} {'wall s':>7}")
    for r in sorted(rows, key=lambda r: (r["batch_size"], r["method"])):
        name = r["method"] + (f" p{r.get('adaptive_lr_power', 0.5):g}"
                              if r["method"] == "adaptive" else "")
        name += " gain-warmup" if r.get("adaptive_warmup") == "gain" else ""
        print(f"{name:<23} {r['batch_size']:>6} {r['test_error']:>8.2f} {r['steps']:>6} "
              f"{r['epochs']:>7.1f} {r['wall_time_s']:>7.0f}")


if __name__ == "__main__":
    main()
