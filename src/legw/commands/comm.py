"""``legw comm``: messages, bytes and comp/comm ratio per batch size (talk Table 3), and a ring
all-reduce prediction of epoch time and scaling efficiency on p workers."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from legw import flags
from legw.commands._machines import MachineSpec, machine
from legw.flags import POSITIVE, POSITIVE_INT, flag
from legw.io import check_writable_file

TABLE3_BATCHES = [32, 256, 1024, 4096, 8192, 32768]

SLIP_NOTE = ("note: the talk prints 3,686 messages at batch 32,768. The formula gives "
             "{exact:,.0f} (= 3.6M / 1024 = {decimal:,.0f} from the rounded batch-32 row). 3,686 "
             "= 3.6 x 1024 is what you get reading the 'M' of 3.6M as 2^20 before dividing by "
             "1024 = 32768/32: a binary/decimal prefix slip. Bytes and ratio in the talk follow "
             "the formula.")

GROUPS = {"model": "model and run (one of --preset, --task, --params)",
          "machines": "prediction on p workers (ring all-reduce, alpha-beta model)",
          "output": "output"}
"""The ``--help`` sections of ``legw comm`` (each field's ``group``) and their titles."""


def model(metavar: str | None = None, **meta: Any) -> dict[str, Any]:
    """Metadata of a model-and-run flag (``--help`` section ``model``)."""
    return flag(metavar=metavar, group="model", **meta)


def output(metavar: str | None = None, **meta: Any) -> dict[str, Any]:
    """Metadata of an output flag (``--help`` section ``output``)."""
    return flag(metavar=metavar, group="output", **meta)


@dataclass
class CommSpec(MachineSpec):
    """What ``legw comm`` computes: Table 3 for a model and run, and the prediction on p
    workers when a compute rate is given. An explicit flag beats the preset and the task."""

    preset: str | None = field(default=None, metadata=model(choices=["resnet50"]))
    """The talk's Table 3: 26M params, N=1,281,167, 90 epochs, 1e18 flops."""
    task: str | None = field(default=None, metadata=model())
    """Count the parameters of this task's model."""
    data_dir: str | None = field(default=None, metadata=model("DIR"))
    """Where the task's data lives (default: its loader's)."""
    params: int | None = field(default=None, metadata=model("N", check=POSITIVE_INT))
    """Number of parameters."""
    bytes_per_param: int | None = field(default=None,
                                        metadata=model("BYTES", check=POSITIVE_INT))
    """Bytes per parameter sent (default 4, fp32; overrides the preset)."""
    dataset_size: int | None = field(default=None, metadata=model("N", check=POSITIVE_INT))
    """Samples per epoch (default: the preset's, or the --task data's)."""
    epochs: float | None = field(default=None, metadata=model(check=POSITIVE))
    """Epochs of the run (Table 3)."""
    total_flops: float | None = field(default=None, metadata=model("F", check=POSITIVE))
    """Flops of the whole run, for the comp/comm ratio."""
    batch_sizes: list[int] | None = field(default=None, metadata=model(
        "B", check=POSITIVE_INT, aliases=["--batch-size"]))
    """Global batch sizes (default: Table 3's for --preset, the base batch x 1, 4, 16, 64 for
    --task)."""
    measure: bool = field(default=False, metadata=machine())
    """Time the --task model's training step here, at its base batch size."""
    json: bool = field(default=False, metadata=output())
    """Print JSON instead of tables."""
    out: str = field(default="runs/comm.json",
                     metadata=output("FILE", check=check_writable_file))
    """JSON record (default runs/comm.json)."""
    plot: str | None = field(default=None, metadata=output("FILE", check=check_writable_file))
    """Efficiency and epoch time vs workers, PNG (default runs/comm.png, drawn when a compute
    rate gives the worker prediction)."""

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.preset, self.task, self.params)) != 1:
            raise ValueError("give exactly one of --preset, --task, --params")
        rate = bool(self.rate_flags())
        if self.plot is None and rate:
            self.plot = "runs/comm.png"  # the default figure, when there is a prediction
        super().__post_init__()  # every field's rule, and one compute rate
        if self.params is not None:
            for name in ("dataset_size", "epochs", "batch_sizes"):
                if not getattr(self, name):
                    raise ValueError(f"missing {flags.flag_name(CommSpec, name)} (a --params "
                                     "run has no default)")
        if self.measure and self.task is None:
            raise ValueError("--measure needs --task")
        if self.plot and not rate:
            raise ValueError("--plot needs a compute rate: --samples-per-second, "
                             "--throughput-from or --measure")

    def rate_flags(self) -> list[str]:
        return super().rate_flags() + (["--measure"] if self.measure else [])


def add_arguments(p: argparse.ArgumentParser) -> None:
    flags.add_groups(p, CommSpec, GROUPS)


def run(args: argparse.Namespace) -> int:
    """Build the spec from the flags given (every check before any data is loaded or timed),
    then :func:`comm`."""
    return comm(flags.from_args(CommSpec, args))


def comm(spec: CommSpec) -> int:
    from legw.analysis.comm import (
        RESNET50_TABLE3,
        RESNET50_TALK_VALUES,
        constant_rate,
        default_batches,
        format_report,
        measure_rate,
        plot_scaling,
        predict_scaling,
        table3_row,
    )

    setting: dict[str, Any] = {"bytes_per_param": 4}
    workload = None
    if spec.preset:
        setting.update(RESNET50_TABLE3)
    elif spec.task:
        from legw.analysis.workload import load_workload

        workload = load_workload(spec.task, data_dir=spec.data_dir)
        setting.update(params=workload.num_params(), dataset_size=workload.dataset_size,
                       epochs=workload.recipe.epochs)
    else:
        setting["params"] = spec.params
    for name in ("bytes_per_param", "dataset_size", "epochs", "total_flops"):
        if getattr(spec, name) is not None:  # an explicit flag beats the preset and the task
            setting[name] = getattr(spec, name)
    batches = spec.batch_sizes or (TABLE3_BATCHES if spec.preset else default_batches(workload))

    rows = [table3_row(b, **setting) for b in batches]
    model_bytes = setting["params"] * setting["bytes_per_param"]
    record: dict[str, Any] = {"setting": {**setting, "model_bytes": model_bytes},
                              "table3": [r.__dict__ for r in rows], "notes": []}
    if spec.preset and 32768 in batches:
        exact = next(r.messages for r in rows if r.global_batch_size == 32768)
        record["notes"].append(SLIP_NOTE.format(exact=exact, decimal=3.6e6 / 1024))
        record["talk"] = {str(k): v for k, v in RESNET50_TALK_VALUES.items()}

    compute_time, rate_source = spec.given_compute_time() or (None, None)
    if spec.measure:
        sps = measure_rate(workload)
        compute_time = constant_rate(sps)
        rate_source = (f"{sps:.1f} samples/s measured here ({spec.task}, batch "
                       f"{workload.recipe.base_batch_size})")
    if compute_time is not None:
        latency, bandwidth = spec.network()
        scaling, skipped = predict_scaling(batches, spec.workers, model_bytes=model_bytes,
                                           dataset_size=setting["dataset_size"],
                                           compute_time=compute_time, latency=latency,
                                           bandwidth=bandwidth)
        record["network"] = {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth,
                             "compute": rate_source}
        record["scaling"] = [r.to_dict() for r in scaling]
        record["skipped"] = skipped

    from legw.io import atomic_write_json

    atomic_write_json(spec.out, record)
    plot = spec.plot
    if plot:
        plot_scaling(record, plot)
    if spec.json:
        print(json.dumps(record, indent=2))
        return 0
    print(format_report(record))
    if "scaling" not in record:
        print("no prediction on p workers: it needs one worker's throughput -- "
              "--samples-per-second R, --throughput-from AUTOBATCH.json (legw autobatch), or "
              "--measure with --task")
    print(f"wrote {spec.out}" + (f" and {plot}" if plot else ""))
    return 0
