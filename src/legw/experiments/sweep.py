"""Batch-size sweeps: batch sizes x methods x seeds, one ``legw train`` run each.

The question the paper asks (You et al. 2019, arXiv 1901.08256, Figs. 1-3): tuned once at
``B0``, how does each scaling rule hold up as ``B = k * B0`` grows, with no re-tuning?
A *method* is a set of :class:`~legw.training.config.TrainConfig` overrides on the task's base
recipe (``METHODS``). Layout of a sweep directory::

    DIR/sweep.json                     the spec; ``legw sweep --out DIR`` continues it
    DIR/results.{json,csv}             one row per run (``records``), rewritten after each run
    DIR/runs/METHOD-bB-sSEED/          a normal ``legw train`` run directory

Finished runs are skipped, interrupted ones resumed (``legw.experiments.launcher``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legw import schedule
from legw.experiments.coordinator import StudyOptions
from legw.experiments.launcher import (
    FINISHED,
    LaunchOptions,
    PlannedRun,
    continue_spec,
    open_study,
    run_all,
    run_config,
)
from legw.experiments.records import read_rows, run_row, write_rows
from legw.flags import flag
from legw.io import read_dataclass
from legw.tasks import get_task
from legw.training.config import TrainConfig, check_seed

METHODS: dict[str, dict[str, Any]] = {
    # the named methods of legw.schedule (legw, linear, sqrt-nowarmup, unscaled): same meaning
    **{name: dict(rules) for name, rules in schedule.METHODS.items()},
    # the gain measured from the gradient noise sets the LR and the steps (legw.adaptive)
    "adaptive": {"scaling": "adaptive"},
    # the batch grows during training up to B (legw.adaptive.ramp): with the noise, by Seesaw
    "ramp": {"batch_ramp": "noise"},
    "seesaw": {"batch_ramp": "seesaw"},
    # other optimizers with sqrt + LEGW; base LR from --adam-lr / --adamw-lr / --lars-lr /
    # --lamb-lr
    "adam": {"optimizer": "adam", **schedule.METHODS["legw"]},
    "adamw": {"optimizer": "adamw", **schedule.METHODS["legw"]},
    "lars": {"optimizer": "lars", **schedule.METHODS["legw"]},
    "lamb": {"optimizer": "lamb", **schedule.METHODS["legw"]},
}

# Spec fields a continued sweep may change; changing any other would mix recipes in one table.
_EXTENDABLE = ("batch_sizes", "methods", "seeds", "jobs", "threads", "nproc_per_node",
               "data_dir")


@dataclass
class SweepSpec(LaunchOptions):
    """What ``sweep.json`` holds."""

    task: str
    """Task preset."""
    batch_sizes: list[int] = field(metadata=flag(metavar="B"))
    """Global batch sizes to train at."""
    methods: list[str] = field(metadata=flag(metavar="M"))
    """Scaling methods: legw (sqrt + LEGW), linear (linear + constant-epoch warmup),
    sqrt-nowarmup, unscaled, adam / adamw / lars / lamb (sqrt + LEGW), adaptive (the gain from the
    gradient noise; needs --micro-batch-size), ramp / seesaw (the batch grows from the base to
    B: with the measured noise, or where the schedule halves the LR) (default: legw linear
    sqrt-nowarmup)."""
    seeds: list[int] = field(default_factory=lambda: [0], metadata=flag(metavar="S"))
    """Seeds per method and batch size (default: 0)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields applied to every run (the base recipe, epochs, max_steps, ...)."""
    optimizer_lrs: dict[str, float] = field(default_factory=dict)
    """Base LR (at the base batch) per optimizer of the adam / adamw / lars / lamb methods."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_sizes", "methods", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')}: give at least one value")
        self._check_runs()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"--methods: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(METHODS)}")
        self.plan()  # every run's configuration is checked before any run starts

    def _check_runs(self) -> None:
        """The checks a run's ``TrainConfig`` would make on one batch size or seed, made here
        first so the message names the sweep's flags (``--batch-sizes``, ``--seeds``)."""
        for b in self.batch_sizes:
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"--batch-sizes: must be positive integers, got {b!r}")
            cap = self.micro_batch_size
            if cap is not None and b > cap and b % cap:
                raise ValueError(f"--micro-batch-size: {cap} does not divide --batch-sizes "
                                 f"value {b}; choose a cap that divides every batch size")
        for seed in self.seeds:
            check_seed(seed, "--seeds")
        for opt, lr in self.optimizer_lrs.items():
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
                raise ValueError(f"--{opt}-lr: must be a positive number, got {lr!r}")

    def base_lr(self, method: str) -> float | None:
        """The base LR the method trains with (``None``: the recipe's)."""
        opt = METHODS[method].get("optimizer")
        if opt is None:
            return None
        if opt in self.optimizer_lrs:
            return self.optimizer_lrs[opt]
        task_opt = get_task(self.task).optimizer
        if opt == task_opt or self.overrides.get("optimizer") == opt:
            return None  # the task's own recipe is tuned for this optimizer
        raise ValueError(f"--{opt}-lr: the {method} method needs a base LR tuned at the base "
                         f"batch for {opt} (e.g. from legw tune --optimizer {opt})")

    def config(self, out: Path, method: str, batch_size: int, seed: int) -> TrainConfig:
        fields = {**self.overrides, **METHODS[method]}
        lr = self.base_lr(method)
        if lr is not None:
            fields["base_lr"] = lr
        return run_config(self.task, batch_size, seed,
                          out / "runs" / f"{method}-b{batch_size}-s{seed}", fields,
                          self.micro_batch_size, self.data_dir)

    def plan(self, out: Path = Path("sweep")) -> list[PlannedRun]:
        """Every run, method-major: (method, batch size, seed). Methods that train the very
        same recipe at a batch (``legw``, ``linear`` and ``unscaled`` at the base batch, where
        k = 1) share one run directory, so the launcher trains it once."""
        runs, seen = [], {}
        for m in self.methods:
            for b in self.batch_sizes:
                for s in self.seeds:
                    config = self.config(out, m, b, s)
                    spec = config.resolve(  # each run on --nproc-per-node processes
                        self.nproc_per_node or 1,
                        adaptive_flag=f"--methods {m} at --batch-sizes {b}",
                        noise_remedy="give --micro-batch-size (e.g. the base batch; a sweep "
                                     "keeps its micro batch, so a new one needs a new --out)")
                    first = seen.setdefault(spec.same_training(), config)
                    if first is not config:
                        config = dataclasses.replace(config, out_dir=first.out_dir)
                    runs.append(PlannedRun(f"{m} b={b} s={s}", config,
                                           {"method": m, "batch_size": b, "seed": s}))
        return runs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_spec(out: Path) -> SweepSpec | None:
    """The sweep stored in ``out``, or ``None``."""
    path = out / "sweep.json"
    return read_dataclass(SweepSpec, path) if path.exists() else None


def merge_spec(stored: SweepSpec | None, given: dict[str, Any], out: Path) -> SweepSpec:
    """The spec to run: ``given`` on top of the stored one. A continued sweep may add batch
    sizes, methods and seeds, or change jobs and threads; changing the task or the recipe is
    an error (it would mix recipes in one table)."""
    given = {k: v for k, v in given.items() if v is not None and v != {}}
    if stored is None and "task" not in given:
        raise ValueError(f"TASK: no sweep in {out} to continue; give a task")
    return continue_spec(SweepSpec, stored, given, out, _EXTENDABLE, "sweep")


def sweep_rows(spec: SweepSpec, out: Path, outcomes: dict[str, dict[str, Any]]
               ) -> list[dict[str, Any]]:
    rows = []
    for run in spec.plan(out):
        o = outcomes.get(run.name)
        status = None if o and o["status"] != "failed" else ("failed" if o else "pending")
        row = run_row(run.run_dir, {**run.labels, "task": spec.task}, out, status=status,
                      error=o.get("error") if o else None)
        rows.append(row)
    return rows


def run_sweep(spec: SweepSpec, out: Path, command: str | None = None,
              log=print, study: StudyOptions | None = None, nodes: int = 1
              ) -> list[dict[str, Any]]:
    """Run (or continue) the sweep in ``out``; returns the final rows of ``results.json``.

    ``command`` (the command line, for the records) is appended to ``spec.commands``. With a
    ``study`` storage this process is one worker of a study shared by many
    (:mod:`legw.experiments.coordinator`); else the runs go through the local pool. ``nodes``
    (a study worker's): each run spans that many nodes of the worker's Slurm job.
    """
    meta = {"kind": "sweep", "task": spec.task, "spec": spec.to_dict()}
    if study is not None and study.storage is not None:
        return _work_on_study(spec, out, command, study, meta, log, nodes)
    open_study(out, "sweep.json", spec, command)
    plan = spec.plan(out)
    outcomes: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    write_rows(out / "results", sweep_rows(spec, out, outcomes), meta)
    log(f"sweep {spec.task}: {len(plan)} runs ({len(spec.methods)} methods x "
        f"{len(spec.batch_sizes)} batch sizes x {len(spec.seeds)} seeds) in {out}")
    for run, outcome in run_all(plan, spec.jobs, spec.threads, log=log,
                                procs=spec.processes()):
        outcomes[run.name] = outcome
        write_rows(out / "results", sweep_rows(spec, out, outcomes), meta)
    return _done(out, t0, log)


def _done(out: Path, t0: float, log, what: str = "sweep") -> list[dict[str, Any]]:
    rows = read_rows(out / "results.json")[1]
    counts = {s: sum(r["status"] == s for r in rows) for s in (*FINISHED, "failed", "pending")}
    log(f"{what} done in {time.perf_counter() - t0:.0f} s: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "pending")
        + f"; {out / 'results.csv'}")
    return rows


def _work_on_study(spec: SweepSpec, out: Path, command: str | None, options: StudyOptions,
                   meta: dict[str, Any], log, nodes: int) -> list[dict[str, Any]]:
    """One worker of the sweep's study (:func:`legw.experiments.coordinator.run_worker`);
    ``results.*`` are rebuilt from the run directories after each run."""
    from legw.experiments.coordinator import default_study_name, run_worker

    t0 = time.perf_counter()
    run_worker("sweep", spec, out, spec.plan(out), options, command, "sweep.json",
               lambda outcomes: write_rows(out / "results", sweep_rows(spec, out, outcomes),
                                           meta), log, spec.processes(nodes))
    return _done(out, t0, log, f"study {options.study_name or default_study_name('sweep', out)}")
