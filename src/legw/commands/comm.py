"""``legw comm``: messages, bytes and comp/comm ratio per batch size (talk Table 3), and a ring
all-reduce prediction of epoch time and scaling efficiency on p workers."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

TABLE3_BATCHES = [32, 256, 1024, 4096, 8192, 32768]
DEFAULT_WORKERS = [1, 2, 4, 8, 16, 32, 64]

SLIP_NOTE = ("note: the talk prints 3,686 messages at batch 32,768. The formula gives "
             "{exact:,.0f} (= 3.6M / 1024 = {decimal:,.0f} from the rounded batch-32 row). 3,686 "
             "= 3.6 x 1024 is what you get reading the 'M' of 3.6M as 2^20 before dividing by "
             "1024 = 32768/32: a binary/decimal prefix slip. Bytes and ratio in the talk follow "
             "the formula.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("model and run (one of --preset, --task, --params)")
    src.add_argument("--preset", choices=["resnet50"],
                     help="the talk's Table 3: 26M params, N=1,281,167, 90 epochs, 1e18 flops")
    src.add_argument("--task", help="count the parameters of this task's model")
    src.add_argument("--data-dir", help="where the task's data lives (default: its loader's)")
    src.add_argument("--params", type=int, metavar="N", help="number of parameters")
    src.add_argument("--bytes-per-param", type=int, default=4, metavar="BYTES")
    src.add_argument("--dataset-size", type=int, metavar="N", help="samples per epoch")
    src.add_argument("--epochs", type=float, help="epochs of the run (Table 3)")
    src.add_argument("--total-flops", type=float, metavar="F",
                     help="flops of the whole run, for the comp/comm ratio")
    p.add_argument("--batch-size", type=int, nargs="+", metavar="B", help="global batch sizes")
    net = p.add_argument_group("prediction on p workers (ring all-reduce, alpha-beta model)")
    net.add_argument("--workers", type=int, nargs="+", metavar="P", default=DEFAULT_WORKERS)
    net.add_argument("--latency-us", type=float, default=25.0, metavar="ALPHA",
                     help="per-message latency in microseconds (default 25, TCP/Ethernet)")
    net.add_argument("--bandwidth-gbps", type=float, default=10.0, metavar="BETA",
                     help="link bandwidth in Gbit/s (default 10, 10 GbE)")
    rate = net.add_mutually_exclusive_group()
    rate.add_argument("--samples-per-second", type=float, metavar="R",
                      help="one worker's training throughput (constant in the local batch)")
    rate.add_argument("--throughput-from", metavar="JSON",
                      help="a `legw autobatch` record: throughput as a function of local batch")
    rate.add_argument("--measure", action="store_true",
                      help="time the --task model's training step here, at its base batch size")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", metavar="FILE", help="write the JSON record here")
    p.add_argument("--plot", metavar="FILE", help="efficiency and epoch time vs workers, PNG")


def run(args: argparse.Namespace) -> int:
    from legw.analysis.comm import (
        RESNET50_TABLE3,
        RESNET50_TALK_VALUES,
        constant_rate,
        predict_scaling,
        table3_row,
    )

    if sum(x is not None for x in (args.preset, args.task, args.params)) != 1:
        raise ValueError("give exactly one of --preset, --task, --params")
    setting: dict[str, Any] = {"bytes_per_param": args.bytes_per_param}
    workload = None
    if args.preset:
        setting.update(RESNET50_TABLE3)
    elif args.task:
        from legw.analysis.workload import load_workload

        workload = load_workload(args.task, data_dir=args.data_dir)
        setting.update(params=workload.num_params(), dataset_size=workload.dataset_size,
                       epochs=workload.recipe.epochs)
    else:
        setting["params"] = args.params
    for flag in ("dataset_size", "epochs", "total_flops"):
        if getattr(args, flag) is not None:
            setting[flag] = getattr(args, flag)
    for flag in ("dataset_size", "epochs"):
        if setting.get(flag) is None:
            raise ValueError(f"missing --{flag.replace('_', '-')}")
    if args.measure and workload is None:
        raise ValueError("--measure needs --task")
    batches = args.batch_size or (TABLE3_BATCHES if args.preset else _default_batches(workload))
    if batches is None:
        raise ValueError("missing --batch-size")
    for name in ("latency_us", "bandwidth_gbps"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v >= 0) or (name == "bandwidth_gbps" and v == 0):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")

    rows = [table3_row(b, **setting) for b in batches]
    model_bytes = setting["params"] * setting["bytes_per_param"]
    record: dict[str, Any] = {"setting": {**setting, "model_bytes": model_bytes},
                              "table3": [r.__dict__ for r in rows], "notes": []}
    if args.preset and 32768 in batches:
        exact = next(r.messages for r in rows if r.global_batch_size == 32768)
        record["notes"].append(SLIP_NOTE.format(exact=exact, decimal=3.6e6 / 1024))
        record["talk"] = {str(k): v for k, v in RESNET50_TALK_VALUES.items()}

    compute_time, rate_source = None, None
    if args.samples_per_second is not None:
        compute_time = constant_rate(args.samples_per_second)
        rate_source = f"{args.samples_per_second:g} samples/s (given)"
    elif args.throughput_from:
        compute_time, rate_source = _curve_compute_time(args.throughput_from)
    elif args.measure:
        sps = _measure_rate(workload)
        compute_time = constant_rate(sps)
        rate_source = (f"{sps:.1f} samples/s measured here ({args.task}, batch "
                       f"{workload.recipe.base_batch_size})")
    if compute_time is not None:
        latency, bandwidth = args.latency_us * 1e-6, args.bandwidth_gbps * 1e9 / 8
        scaling, skipped = predict_scaling(batches, args.workers, model_bytes=model_bytes,
                                           dataset_size=setting["dataset_size"],
                                           compute_time=compute_time, latency=latency,
                                           bandwidth=bandwidth)
        record["network"] = {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth,
                             "compute": rate_source}
        record["scaling"] = [r.to_dict() for r in scaling]
        record["skipped"] = skipped

    if args.out:
        from legw.io import atomic_write_json

        atomic_write_json(args.out, record)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(format_report(record))
    if args.plot:
        if "scaling" not in record:
            raise ValueError("--plot needs a compute rate: --samples-per-second, "
                             "--throughput-from or --measure")
        plot_scaling(record, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def _default_batches(workload: Any) -> list[int] | None:
    if workload is None:
        return None
    b0 = workload.recipe.base_batch_size
    return [b0 * k for k in (1, 4, 16, 64)]


def _measure_rate(workload: Any) -> float:
    from legw.analysis.autobatch import measure_curve, time_training_step

    b = workload.recipe.base_batch_size
    timer = time_training_step(workload.model, workload.loss_fn, workload.random_batch)
    (point,) = measure_curve(timer, [b], repeats=5)
    return point.samples_per_s


def _curve_compute_time(path: str):
    """Step time from an autobatch record: throughput interpolated in log2(local batch), held
    constant beyond the measured range."""
    with open(path) as f:
        record = json.load(f)
    try:
        pts = sorted((p["micro_batch_size"], p["samples_per_s"]) for p in record["points"]
                     if p.get("samples_per_s"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a legw autobatch record ({e})") from e
    if not pts:
        raise ValueError(f"{path}: no measured throughput")

    def rate(b: float) -> float:
        if b <= pts[0][0]:
            return pts[0][1]
        for (b0, r0), (b1, r1) in zip(pts, pts[1:]):
            if b <= b1:
                t = (math.log2(b) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
                return r0 + t * (r1 - r0)
        return pts[-1][1]

    return (lambda b: b / rate(b)), f"throughput curve from {path}"


def _si(x: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _table(cols: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    return ["  ".join(c.rjust(w) for c, w in zip(cols, widths))] + [
        "  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]


def format_report(record: dict[str, Any]) -> str:
    s = record["setting"]
    lines = [f"model {s['params']:,} params x {s['bytes_per_param']} B = "
             f"{_si(s['model_bytes'], 'B')}; {s['dataset_size']:,} samples x {s['epochs']:g} "
             f"epochs" + (f"; {s['total_flops']:.3g} flops" if s.get("total_flops") else "")]
    lines += _table(["batch", "messages", "bytes moved", "comp/comm (flops/B)"], [
        [f"{r['global_batch_size']:,}", f"{r['messages']:,.0f}", _si(r["bytes_moved"], "B"),
         "-" if r["comp_comm_ratio"] is None else f"{r['comp_comm_ratio']:,.0f}"]
        for r in record["table3"]])
    lines += record["notes"]
    if "scaling" in record:
        net = record["network"]
        lines += ["", f"ring all-reduce: alpha {net['latency_s'] * 1e6:g} us, beta "
                      f"{_si(net['bandwidth_bytes_per_s'], 'B/s')}; compute {net['compute']}; "
                      "no compute/comm overlap"]
        lines += _table(["batch", "workers", "local", "compute s/step", "comm s/step",
                         "epoch s", "speedup", "efficiency"], [
            [f"{r['global_batch_size']}", f"{r['workers']}", f"{r['micro_batch_size']:g}",
             f"{r['compute_s']:.4g}", f"{r['comm_s']:.4g}", f"{r['epoch_s']:.4g}",
             f"{r['speedup']:.2f}", f"{r['efficiency']:.3f}"] for r in record["scaling"]])
        if record["skipped"]:
            lines.append(f"skipped {len(record['skipped'])} (batch, workers) pairs where the "
                         "workers do not divide the batch")
    return "\n".join(lines)


def plot_scaling(record: dict[str, Any], path: str) -> None:
    """Efficiency and epoch time vs workers, one line per global batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from legw.io import atomic_path

    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    batches = sorted({r["global_batch_size"] for r in record["scaling"]})
    for b in batches:
        rs = [r for r in record["scaling"] if r["global_batch_size"] == b]
        ws = [r["workers"] for r in rs]
        ax_e.plot(ws, [r["efficiency"] for r in rs], marker="o", label=f"B={b}")
        ax_t.plot(ws, [r["epoch_s"] for r in rs], marker="o", label=f"B={b}")
    top = max(1.0, *(r["efficiency"] for r in record["scaling"]))  # >1: superlinear
    ax_e.axhline(1.0, color="gray", lw=0.8)
    ax_e.set(xscale="log", xlabel="workers p", ylabel="scaling efficiency", ylim=(0, 1.05 * top),
             title="efficiency = T(1) / (p T(p))")
    ax_t.set(xscale="log", yscale="log", xlabel="workers p", ylabel="seconds per epoch",
             title="predicted epoch time")
    ticks = sorted({r["workers"] for r in record["scaling"]})
    for ax in (ax_e, ax_t):
        ax.set_xticks(ticks, [str(w) for w in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3, which="both")
    ax_t.legend(fontsize=8, loc="lower left")
    net, s = record["network"], record["setting"]
    fig.suptitle(f"ring all-reduce of {s['model_bytes'] / 1e6:.3g} MB, alpha "
                 f"{net['latency_s'] * 1e6:g} us, beta {net['bandwidth_bytes_per_s'] * 8 / 1e9:g}"
                 f" Gbit/s; {net['compute']}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
