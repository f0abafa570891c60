"""``legw comm``: messages, bytes and comp/comm ratio per batch size (talk Table 3), and a ring
all-reduce prediction of epoch time and scaling efficiency on p workers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from legw.commands._machines import (
    add_machine_arguments,
    check_machine_arguments,
    given_compute_time,
    network,
)
from legw.flags import integer, number, option

TABLE3_BATCHES = [32, 256, 1024, 4096, 8192, 32768]

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
    src.add_argument("--params", type=integer, metavar="N", help="number of parameters")
    src.add_argument("--bytes-per-param", type=integer, metavar="BYTES",
                     help="bytes per parameter sent (default 4, fp32; overrides the preset)")
    src.add_argument("--dataset-size", type=integer, metavar="N",
                     help="samples per epoch (default: the preset's, or the --task data's)")
    src.add_argument("--epochs", type=number, help="epochs of the run (Table 3)")
    src.add_argument("--total-flops", type=number, metavar="F",
                     help="flops of the whole run, for the comp/comm ratio")
    p.add_argument("--batch-size", type=integer, nargs="+", metavar="B", help="global batch sizes")
    add_machine_arguments(p.add_argument_group("prediction on p workers (ring all-reduce, "
                                                "alpha-beta model)"),
                          measure_help="time the --task model's training step here, at its "
                                       "base batch size")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", metavar="FILE", default="runs/comm.json",
                   help="JSON record (default runs/comm.json)")
    p.add_argument("--plot", metavar="FILE",
                   help="efficiency and epoch time vs workers, PNG (default runs/comm.png, "
                        "drawn when a compute rate gives the worker prediction)")


_COUNTS = ("params", "bytes_per_param", "dataset_size")
_POSITIVE = ("epochs", "total_flops", "samples_per_second", "bandwidth_gbps")


def _check_args(args: argparse.Namespace) -> None:
    """Every flag checked up front, by name (the computation below would only name fields)."""
    from legw.io import check_writable_file

    if sum(x is not None for x in (args.preset, args.task, args.params)) != 1:
        raise ValueError("give exactly one of --preset, --task, --params")
    values = [(n, getattr(args, n)) for n in _COUNTS]
    values += [("batch_size", b) for b in args.batch_size or []]
    for name, v in values:
        if v is not None and v < 1:
            raise ValueError(f"{option(name)}: must be a positive integer, got {v}")
    for name in _POSITIVE:
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise ValueError(f"{option(name)}: must be positive, got {v:g}")
    if args.params is not None:
        for name in ("dataset_size", "epochs", "batch_size"):
            if not getattr(args, name):
                raise ValueError(f"missing {option(name)} (a --params run has no default)")
    if args.measure and args.task is None:
        raise ValueError("--measure needs --task")
    rate = args.samples_per_second or args.throughput_from or args.measure
    if args.plot and not rate:
        raise ValueError("--plot needs a compute rate: --samples-per-second, "
                         "--throughput-from or --measure")
    if args.plot is None and rate:
        args.plot = "runs/comm.png"  # the default figure, when there is a prediction to draw
    for name in ("out", "plot"):
        if getattr(args, name):
            check_writable_file(getattr(args, name), option(name))
    check_machine_arguments(args)


def run(args: argparse.Namespace) -> int:
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

    _check_args(args)  # before any data is loaded or timed
    setting: dict[str, Any] = {"bytes_per_param": 4}
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
    for flag in ("bytes_per_param", "dataset_size", "epochs", "total_flops"):
        if getattr(args, flag) is not None:  # an explicit flag beats the preset and the task
            setting[flag] = getattr(args, flag)
    batches = args.batch_size or (TABLE3_BATCHES if args.preset else default_batches(workload))

    rows = [table3_row(b, **setting) for b in batches]
    model_bytes = setting["params"] * setting["bytes_per_param"]
    record: dict[str, Any] = {"setting": {**setting, "model_bytes": model_bytes},
                              "table3": [r.__dict__ for r in rows], "notes": []}
    if args.preset and 32768 in batches:
        exact = next(r.messages for r in rows if r.global_batch_size == 32768)
        record["notes"].append(SLIP_NOTE.format(exact=exact, decimal=3.6e6 / 1024))
        record["talk"] = {str(k): v for k, v in RESNET50_TALK_VALUES.items()}

    compute_time, rate_source = given_compute_time(args) or (None, None)
    if args.measure:
        sps = measure_rate(workload)
        compute_time = constant_rate(sps)
        rate_source = (f"{sps:.1f} samples/s measured here ({args.task}, batch "
                       f"{workload.recipe.base_batch_size})")
    if compute_time is not None:
        latency, bandwidth = network(args)
        scaling, skipped = predict_scaling(batches, args.workers, model_bytes=model_bytes,
                                           dataset_size=setting["dataset_size"],
                                           compute_time=compute_time, latency=latency,
                                           bandwidth=bandwidth)
        record["network"] = {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth,
                             "compute": rate_source}
        record["scaling"] = [r.to_dict() for r in scaling]
        record["skipped"] = skipped

    from legw.io import atomic_write_json

    atomic_write_json(args.out, record)
    plot = args.plot
    if plot:
        plot_scaling(record, plot)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(format_report(record))
    if "scaling" not in record:
        print("no prediction on p workers: it needs one worker's throughput -- "
              "--samples-per-second R, --throughput-from AUTOBATCH.json (legw autobatch), or "
              "--measure with --task")
    print(f"wrote {args.out}" + (f" and {plot}" if plot else ""))
    return 0
