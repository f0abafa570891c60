"""Communication cost of data-parallel training: the talk's Table 3 and an alpha-beta model.

Pure arithmetic (no torch). Two models, both per training run of ``epochs`` passes over
``dataset_size`` samples at global batch ``B``:

**Message counting** (You et al., "Large-Batch Training for LSTM and Beyond", Table 3; the
same argument as You et al. 2018, "ImageNet Training in Minutes"): every step all-reduces the
gradient once, so

* ``messages = steps = epochs * N / B``
* ``bytes_moved = messages * model_bytes`` with ``model_bytes = params * bytes_per_param``
* ``comp_comm_ratio = total_flops / bytes_moved``

The ratio grows linearly with ``B``: larger batches do the same arithmetic with fewer messages.

**Time per epoch on p workers** (Hockney's alpha-beta model of a ring all-reduce; Thakur,
Rabenseifner & Gropp 2005, "Optimization of Collective Communication Operations in MPICH"):
a ring all-reduce of ``M`` bytes over ``p`` ranks is a reduce-scatter plus an all-gather,
``2 (p - 1)`` rounds, each moving ``M / p`` bytes per rank::

    t_comm(p, M) = 2 (p - 1) * alpha + 2 (p - 1) / p * M / beta       (0 when p == 1)

With local batch ``b = B / p`` and a per-worker compute time ``t_comp(b)`` per step (forward +
backward + optimizer step), and no overlap of compute and communication (so this is an upper
bound on the step time of a real DDP job, which overlaps buckets with backward)::

    t_step = t_comp(B / p) + t_comm(p, M)
    epoch_time = (N / B) * t_step
    efficiency = t_comp_1 / (p * t_step)     with t_comp_1 = t_comp(B) the one-worker step time
    speedup = p * efficiency

Steps are counted as the real-valued ``N / B`` (the talk's convention), not rounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from legw.figures import pyplot, save_figure
from legw.flags import NON_NEGATIVE, POSITIVE, POSITIVE_INT
from legw.io import read_json

TEN_GBE_BANDWIDTH = 10e9 / 8
"""Default link bandwidth ``beta`` in bytes/s: 10 Gigabit Ethernet (1.25 GB/s)."""

DEFAULT_LATENCY = 25e-6
"""Default per-message latency ``alpha`` in seconds: 25 us, typical of TCP over Ethernet."""

RESNET50_TABLE3 = {
    "params": 26_000_000, "bytes_per_param": 4, "dataset_size": 1_281_167, "epochs": 90.0,
    "total_flops": 1e18,
}
"""The talk's Table 3 setting (ResNet-50 on ImageNet, 90 epochs, 10^18 flops, 104 MB model)."""

RESNET50_TALK_VALUES = {
    32: {"messages": 3.6e6, "bytes_moved": 374e12, "comp_comm_ratio": 2674},
    32768: {"messages": 3686, "bytes_moved": 366e9, "comp_comm_ratio": 2.7e6},
}
"""The numbers the talk prints for two rows of Table 3, for comparison."""


@dataclass(frozen=True)
class CommRow:
    """One row of the message-counting table (talk Table 3)."""

    global_batch_size: int
    messages: float
    bytes_moved: float
    comp_comm_ratio: float | None


def table3_row(global_batch_size: int, *, params: int, dataset_size: int, epochs: float,
               bytes_per_param: int = 4, total_flops: float | None = None) -> CommRow:
    """``messages = epochs * N / B``, ``bytes = messages * params * bytes_per_param``,
    ``ratio = total_flops / bytes`` (``None`` when the flops are unknown)."""
    POSITIVE_INT(global_batch_size, "global_batch_size")
    POSITIVE_INT(params, "params")
    POSITIVE_INT(dataset_size, "dataset_size")
    POSITIVE_INT(bytes_per_param, "bytes_per_param")
    POSITIVE(epochs, "epochs")
    if total_flops is not None:
        POSITIVE(total_flops, "total_flops")
    messages = epochs * dataset_size / global_batch_size
    bytes_moved = messages * params * bytes_per_param
    ratio = None if total_flops is None else total_flops / bytes_moved
    return CommRow(global_batch_size, messages, bytes_moved, ratio)


def binary_prefix_slip(messages_at_small: float, batch_ratio: int) -> float:
    """The talk's 3,686 for batch 32K: ``3.6M`` read as ``3.6 * 2**20``, divided by ``1024``.

    Table 3 scales the batch-32 row (3.6M messages) by ``32768 / 32 = 1024 = 2**10``. Dividing
    the decimal ``3.6e6`` by 1024 gives 3,516; treating the "M" as ``2**20`` gives
    ``3.6 * 2**20 / 2**10 = 3.6 * 1024 = 3,686``, the printed value.
    """
    mantissa = messages_at_small / 1e6
    return mantissa * 2**20 / batch_ratio


def ring_allreduce_time(workers: int, message_bytes: float, *, latency: float = DEFAULT_LATENCY,
                        bandwidth: float = TEN_GBE_BANDWIDTH) -> float:
    """Seconds for a ring all-reduce: ``2 (p-1) alpha + 2 (p-1)/p * M / beta``; 0 for ``p = 1``."""
    POSITIVE_INT(workers, "workers")
    NON_NEGATIVE(message_bytes, "message_bytes")
    NON_NEGATIVE(latency, "latency")
    POSITIVE(bandwidth, "bandwidth")
    p = workers
    return 2 * (p - 1) * latency + 2 * (p - 1) / p * message_bytes / bandwidth


@dataclass(frozen=True)
class ScalingRow:
    """Predicted cost of one epoch at global batch ``B`` on ``workers`` data-parallel ranks."""

    global_batch_size: int
    workers: int
    micro_batch_size: float
    steps_per_epoch: float
    compute_s: float
    comm_s: float
    step_s: float
    epoch_s: float
    speedup: float
    efficiency: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def constant_rate(samples_per_second: float) -> Callable[[float], float]:
    """A compute-time model ``t_comp(b) = b / rate`` for a worker with a fixed throughput."""
    POSITIVE(samples_per_second, "samples_per_second")
    return lambda local_batch: local_batch / samples_per_second


def predict_scaling(global_batch_sizes: Sequence[int], workers: Sequence[int], *,
                    model_bytes: float, dataset_size: int,
                    compute_time: Callable[[float], float],
                    latency: float = DEFAULT_LATENCY,
                    bandwidth: float = TEN_GBE_BANDWIDTH
                    ) -> tuple[list[ScalingRow], list[dict[str, Any]]]:
    """Epoch time and scaling efficiency for every ``(B, p)`` pair (see the module docstring).

    ``compute_time(b)`` is the seconds one worker spends on a step at local batch ``b``.
    Pairs where ``p`` does not divide ``B`` are returned in the second list (with the reason),
    not predicted: a data-parallel run needs an integer local batch.
    """
    POSITIVE_INT(dataset_size, "dataset_size")
    POSITIVE(model_bytes, "model_bytes")
    rows, skipped = [], []
    for b in global_batch_sizes:
        POSITIVE_INT(b, "global_batch_size")
        t1 = compute_time(b)
        POSITIVE(t1, f"compute_time({b})")
        for p in workers:
            POSITIVE_INT(p, "workers")
            if b % p:
                skipped.append({"global_batch_size": b, "workers": p,
                                "reason": f"{p} workers do not divide batch {b}"})
                continue
            compute = compute_time(b / p)
            POSITIVE(compute, f"compute_time({b / p:g})")
            comm = ring_allreduce_time(p, model_bytes, latency=latency, bandwidth=bandwidth)
            step = compute + comm
            steps = dataset_size / b
            efficiency = t1 / (p * step)
            rows.append(ScalingRow(b, p, b / p, steps, compute, comm, step, steps * step,
                                   p * efficiency, efficiency))
    return rows, skipped


def default_batches(workload: Any) -> list[int] | None:
    if workload is None:
        return None
    b0 = workload.recipe.base_batch_size
    return [b0 * k for k in (1, 4, 16, 64)]


def measure_rate(workload: Any) -> float:
    from legw.analysis.autobatch import measure_curve, time_training_step

    b = workload.recipe.base_batch_size
    timer = time_training_step(workload.model, workload.loss_fn, workload.random_batch)
    (point,) = measure_curve(timer, [b], repeats=5)
    return point.samples_per_s


def curve_step_time(path: str) -> tuple[Callable[[float], float], str]:
    """Step time from an autobatch record file (see :func:`step_time_from_points`)."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a legw autobatch record (a JSON object with points)")
    try:
        points = [(p["micro_batch_size"], p["samples_per_s"]) for p in record["points"]
                  if p.get("samples_per_s")]
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a legw autobatch record ({e})") from e
    if not all(POSITIVE.ok(b) and POSITIVE.ok(r) for b, r in points):
        raise ValueError(f"{path}: micro batch sizes and throughputs must be positive numbers")
    if not points:
        raise ValueError(f"{path}: no measured throughput")
    return step_time_from_points(points), f"throughput curve from {path}"


def step_time_from_points(points: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """``t(b) = b / rate(b)`` from measured ``(local batch, samples/s)`` points: the rate
    interpolated in log2(local batch), held constant beyond the measured range."""
    pts = sorted(points)

    def rate(b: float) -> float:
        if b <= pts[0][0]:
            return pts[0][1]
        for (b0, r0), (b1, r1) in zip(pts, pts[1:]):
            if b <= b1:
                t = (math.log2(b) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
                return r0 + t * (r1 - r0)
        return pts[-1][1]

    return lambda b: b / rate(b)


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
    from matplotlib.ticker import NullLocator

    plt = pyplot()

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
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3, which="both")
    ax_t.legend(fontsize=8, loc="lower left")
    net, s = record["network"], record["setting"]
    fig.suptitle(f"ring all-reduce of {s['model_bytes'] / 1e6:.3g} MB, alpha "
                 f"{net['latency_s'] * 1e6:g} us, beta {net['bandwidth_bytes_per_s'] * 8 / 1e9:g}"
                 f" Gbit/s; {net['compute']}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
