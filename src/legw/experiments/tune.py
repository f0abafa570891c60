"""The tuned baseline: search peak LR x warmup epochs at one batch size ``B``.

The paper's claim is that LEGW *without tuning* matches a baseline tuned at ``B``
(You et al. 2019, arXiv 1901.08256, "most effective tuning region" figures). Each trial trains
at ``B`` with a fixed peak LR ``eta`` and warmup ``w`` epochs, as a base recipe at ``B``
(``base_batch_size = B``, no scaling, constant warmup), the decay shape of the task's recipe
unchanged. The search space is centred on the LEGW point of the same recipe::

    eta_legw = eta0 * sqrt(B / B0),   w_legw = w0 * B / B0
    eta in eta_legw * {2^-3, ..., 2^3}   (``lr_factors``)
    w   in {0, w_legw / 4, w_legw, 4 w_legw} below the training length  (``warmup_epochs``)

Searches (``SEARCHES``): ``grid`` (the grid, a seeded random subset of ``trials`` points when it
is larger), ``random`` (log-uniform ``eta``, uniform ``w`` over the grid's ranges) and ``optuna``
(TPE, when optuna is installed). The LEGW point runs as one more trial, ``legw``. Layout::

    DIR/tune.json              the spec; ``legw tune --out DIR`` continues it
    DIR/trials.{json,csv}      one row per trial (``records``), the best and the LEGW point
    DIR/trials/NAME/           a normal ``legw train`` run directory
    DIR/landscape.png          metric over (peak LR, warmup epochs), LEGW marked
    DIR/lr_curve.png           metric vs peak LR, LEGW's untuned result as a line
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legw import schedule
from legw.experiments.launcher import (
    LaunchOptions,
    PlannedRun,
    continue_spec,
    open_study,
    run_all,
    run_config,
)
from legw.experiments.records import SELECTIONS, objective, run_row, write_rows
from legw.flags import flag
from legw.io import read_dataclass
from legw.tasks import get_task
from legw.training.config import FLOAT32_MAX, TrainConfig, config_fields
from legw.training.run_dir import RunDir

SEARCHES = ("grid", "random", "optuna")
DEFAULT_LR_FACTORS = tuple(2.0 ** e for e in range(-3, 4))


@dataclass
class TuneSpec(LaunchOptions):
    """What ``tune.json`` holds."""

    task: str
    """Task preset."""
    batch_size: int = field(metadata=flag(metavar="B"))
    """Global batch size to tune at."""
    trials: int = field(default=12, metadata=flag(metavar="N"))
    """Trial budget; the untuned LEGW point runs as one more trial (default 12)."""
    search: str = field(default="grid", metadata=flag(choices=SEARCHES))
    """grid (a seeded subset when the grid is larger than the budget), random, or optuna
    (TPE; needs optuna) (default grid)."""
    lr_factors: list[float] = field(default_factory=lambda: list(DEFAULT_LR_FACTORS),
                                    metadata=flag(metavar="F"))
    """Peak LRs to try, as multiples of the LEGW peak LR at B (default 2^-3 ... 2^3)."""
    warmup_epochs: list[float] | None = field(default=None, metadata=flag(metavar="W"))
    """Warmup lengths to try, in epochs (default: 0, w/4, w, 4w with w the LEGW warmup, below
    the training length)."""
    seed: int = 0
    """Training seed of every trial and the seed of the search (default 0)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields for every trial (epochs, optimizer, base recipe of the LEGW point)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.search not in SEARCHES:
            raise ValueError(f"--search: must be one of {', '.join(SEARCHES)}, "
                             f"got {self.search!r}")
        if self.trials < 1:
            raise ValueError(f"--trials: must be at least 1, got {self.trials!r}")
        if not self.lr_factors or not all(f > 0 and math.isfinite(f) for f in self.lr_factors):
            raise ValueError(f"--lr-factors: need positive numbers, got {self.lr_factors!r}")
        if self.search == "optuna" and importlib.util.find_spec("optuna") is None:
            raise ValueError("--search: optuna is not installed; pip install optuna, or use "
                             "--search grid or random")
        if self.warmup_epochs is not None and not all(w >= 0 for w in self.warmup_epochs):
            raise ValueError(f"--warmup-epochs: need numbers >= 0, got {self.warmup_epochs!r}")
        self.legw_config(Path("tune"))  # checks task, batch size and overrides
        if not self.warmups():
            raise ValueError(f"--warmup-epochs: none is shorter than the training "
                             f"({self.epochs():g} epochs), got {self.warmup_epochs!r}")
        self._check_lr_range()

    def _check_lr_range(self) -> None:
        """Every trial's peak LR (LEGW's times a factor) must be a valid one: positive, and
        within float32. Checked before the first trial trains."""
        lr0 = self.legw_point()[0]
        for f in (min(self.lr_factors), max(self.lr_factors)):
            lr = lr0 * f
            if not 0 < lr <= FLOAT32_MAX:
                raise ValueError(f"--lr-factors: {f:g} x the LEGW peak LR {lr0:.4g} gives "
                                 f"{lr:.4g}, outside (0, {FLOAT32_MAX:.3g}] (float32); use "
                                 "factors nearer 1")

    def legw_config(self, out: Path) -> TrainConfig:
        """The untuned sqrt + LEGW recipe at ``batch_size`` (the ``legw`` trial)."""
        return self._config(out / "trials" / f"legw-s{self.seed}",
                            {**self.overrides, "scaling": "sqrt", "warmup": "legw"})

    def legw_point(self) -> tuple[float, float]:
        """``(peak LR, warmup epochs)`` of the LEGW recipe at ``batch_size``."""
        return self._legw_base().peak_and_warmup(self.batch_size)

    def epochs(self) -> float:
        return self._legw_base().epochs

    def _legw_base(self) -> schedule.BaseRecipe:
        return self.legw_config(Path("tune")).resolve().base

    def warmups(self) -> list[float]:
        if self.warmup_epochs is not None:
            ws = self.warmup_epochs
        else:
            w = self.legw_point()[1]
            ws = [0.0, w / 4, w, 4 * w] if w > 0 else [0.0, 0.02 * self.epochs(),
                                                      0.1 * self.epochs()]
        return sorted({round(x, 6) for x in ws if x < self.epochs()})

    def trial_config(self, out: Path, peak_lr: float, warmup_epochs: float) -> PlannedRun:
        name = f"lr{peak_lr:.4g}-w{warmup_epochs:.4g}"
        trial = config_fields(trial=True)  # a trial sets these itself
        rest = {k: v for k, v in self.overrides.items() if k not in trial}
        config = self._config(out / "trials" / f"{name}-s{self.seed}", {
            **rest, "base_batch_size": self.batch_size, "base_lr": peak_lr,
            "base_warmup_epochs": warmup_epochs, "scaling": "none", "warmup": "constant"})
        return PlannedRun(name, config, {"trial": name, "method": "tuned",
                                         "peak_lr": peak_lr, "warmup_epochs": warmup_epochs})

    def _config(self, run_dir: Path, fields: dict[str, Any]) -> TrainConfig:
        return run_config(self.task, self.batch_size, self.seed, run_dir, fields,
                          self.micro_batch_size, self.data_dir)

    def legw_run(self, out: Path) -> PlannedRun:
        lr, w = self.legw_point()
        return PlannedRun("legw", self.legw_config(out), {"trial": "legw", "method": "legw",
                                                          "peak_lr": lr, "warmup_epochs": w})

    def points(self) -> list[tuple[float, float]]:
        """The (peak LR, warmup epochs) of the grid or random search, in order."""
        lr0 = self.legw_point()[0]
        rng = random.Random(self.seed)
        warmups = self.warmups()
        if self.search == "grid":
            grid = [(lr0 * f, w) for f in self.lr_factors for w in warmups]
            return grid if len(grid) <= self.trials else sorted(rng.sample(grid, self.trials))
        lo, hi = math.log2(min(self.lr_factors)), math.log2(max(self.lr_factors))
        return [(lr0 * 2 ** rng.uniform(lo, hi), rng.uniform(0, max(warmups)))
                for _ in range(self.trials)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_tune_spec(out: Path) -> TuneSpec | None:
    """The study stored in ``out``, or ``None``."""
    path = out / "tune.json"
    return read_dataclass(TuneSpec, path) if path.exists() else None


# Spec fields a continued study may change.
_EXTENDABLE = ("trials", "jobs", "threads", "nproc_per_node", "micro_batch_size", "data_dir")


def merge_tune_spec(stored: TuneSpec | None, given: dict[str, Any], out: Path) -> TuneSpec:
    """The study to run: ``given`` on top of the stored one; only the trial budget and how
    runs are launched may change."""
    given = {k: v for k, v in given.items() if v is not None and v != {}}
    if stored is None and not {"task", "batch_size"} <= set(given):
        raise ValueError(f"TASK and --batch-size: no study in {out} to continue; give both")
    return continue_spec(TuneSpec, stored, given, out, _EXTENDABLE, "study")


def run_tune(spec: TuneSpec, out: Path, command: str | None = None,
             log=print, study: Any = None, nodes: int = 1) -> dict[str, Any]:
    """Run (or continue) the study in ``out``; returns the content of ``trials.json``. With a
    ``study`` storage (``coordinator.StudyOptions``) this process is one worker of a shared
    study of the trials (grid and random searches: a fixed list); each run then spans
    ``nodes`` nodes of the worker's Slurm job."""
    legw, state = spec.legw_run(out), _Study(spec, out)
    fixed = [legw, *(spec.trial_config(out, lr, w) for lr, w in spec.points())]
    if study is not None and study.storage is not None:
        if spec.search == "optuna":
            raise ValueError("--search: optuna picks each trial from the results so far; a "
                             "--storage study takes a fixed list: use --search grid or random")
        from legw.experiments.coordinator import run_worker

        run_worker("tune", spec, out, fixed, study, command, "tune.json", lambda outcomes: [
            state.add(r, outcomes.get(r.name, {"status": "pending"})) for r in fixed], log,
            spec.processes(nodes))
    else:
        open_study(out, "tune.json", spec, command)
        log(f"tune {spec.task} at batch {spec.batch_size}: {spec.search} search, {spec.trials} "
            f"trials + the LEGW point (peak LR {legw.labels['peak_lr']:.4g}, warmup "
            f"{legw.labels['warmup_epochs']:.4g} epochs)")
        # one launch of the grid or random trials, so the progress count runs over all
        for run, outcome in run_all([legw] if spec.search == "optuna" else fixed, spec.jobs,
                                    spec.threads, log=log, procs=spec.processes()):
            state.add(run, outcome)
        if spec.search == "optuna":
            _optuna_search(spec, out, state, log)
    result = state.write()
    from legw.experiments.plots import plot_landscape, plot_lr_curve

    plot_landscape(result, out / "landscape.png")
    plot_lr_curve(result, out / "lr_curve.png")
    best = result["best"]
    log("best: " + (f"{best['trial']} ({_objective_text(result, best)})" if best else "none") +
        f"; LEGW: {_objective_text(result, result['legw'])}; {out / 'trials.csv'}")
    return result


def _objective_text(result: dict[str, Any], row: dict[str, Any]) -> str:
    value = objective(row, result["metric"], result["selection"])
    return row["status"] if value is None else f"{result['selection']} {value:.4g}"


class _Study:
    """The trials run so far, written to ``trials.{json,csv}`` after each."""

    def __init__(self, spec: TuneSpec, out: Path) -> None:
        self.spec, self.out = spec, out
        self.metric = get_task(spec.task).metric
        self.rows: dict[str, dict[str, Any]] = {}

    def value(self, row: dict[str, Any]) -> float | None:
        """What the trials are compared on: the validation metric where the task has one."""
        return objective(row, self.metric, SELECTIONS[self.metric])

    def add(self, run: PlannedRun, outcome: dict[str, Any]) -> dict[str, Any]:
        status = outcome["status"] if outcome["status"] in ("failed", "pending") else None
        row = run_row(run.run_dir, {**run.labels, "batch_size": self.spec.batch_size,
                                    "seed": self.spec.seed, "task": self.spec.task},
                      self.out, status=status, error=outcome.get("error"))
        self.rows[run.name] = row
        self.write()
        return row

    def write(self) -> dict[str, Any]:
        from legw.experiments.records import OBJECTIVES

        rows = list(self.rows.values())
        tuned = [r for r in rows if r["method"] == "tuned" and self.value(r) is not None]
        best = min(tuned, key=self.value) if tuned else None
        lr, w = self.spec.legw_point()
        meta = {"kind": "tune", "task": self.spec.task, "batch_size": self.spec.batch_size,
                "metric": self.metric, "objective": OBJECTIVES[self.metric][0],
                "selection": SELECTIONS[self.metric],
                "spec": self.spec.to_dict(), "legw_point": {"peak_lr": lr, "warmup_epochs": w},
                "legw": self.rows.get("legw"), "best": best}
        write_rows(self.out / "trials", rows, meta)
        return {**meta, "rows": rows}


def _optuna_search(spec: TuneSpec, out: Path, state: _Study, log) -> None:
    """TPE over log2(eta / eta_legw) and w; finished trials on disk are told first."""
    import optuna  # installed: TuneSpec checks
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lr0 = spec.legw_point()[0]
    lo, hi = math.log2(min(spec.lr_factors)), math.log2(max(spec.lr_factors))
    dists = {"log2_factor": optuna.distributions.FloatDistribution(lo, hi),
             "warmup_epochs": optuna.distributions.FloatDistribution(0, max(spec.warmups()))}
    earlier = []  # trials of this study already on disk: finish them, then tell them
    for path in sorted((out / "trials").glob("lr*-s*"))[:spec.trials]:
        cfg = RunDir(path).launch()
        if cfg is not None:
            earlier.append(spec.trial_config(out, cfg["base_lr"], cfg["base_warmup_epochs"]))
    # A fresh seed per resume: the same seed would replay the first random start-up points.
    sampler = optuna.samplers.TPESampler(seed=spec.seed + 1000 * len(earlier))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for run, outcome in run_all(earlier, spec.jobs, spec.threads, log=log,
                                procs=spec.processes()):
        value = state.value(state.add(run, outcome))
        lr, w = run.labels["peak_lr"], run.labels["warmup_epochs"]
        study.add_trial(optuna.trial.create_trial(
            params={"log2_factor": min(hi, max(lo, math.log2(lr / lr0))),
                    "warmup_epochs": min(dists["warmup_epochs"].high, w)},
            distributions=dists, value=value,
            state=optuna.trial.TrialState.COMPLETE if value is not None
            else optuna.trial.TrialState.FAIL))
    remaining = spec.trials - len(study.trials)
    while remaining > 0:
        asked = [study.ask(dists) for _ in range(min(spec.jobs, remaining))]
        runs = {}
        for t in asked:
            run = spec.trial_config(out, lr0 * 2 ** t.params["log2_factor"],
                                    t.params["warmup_epochs"])
            runs[run.name] = (run, t)
        for run, outcome in run_all([r for r, _ in runs.values()], spec.jobs, spec.threads,
                                    log=log):
            value = state.value(state.add(run, outcome))
            t = runs[run.name][1]
            if value is None:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, value)
        remaining -= len(asked)
