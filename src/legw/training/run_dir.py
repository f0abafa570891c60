"""A run directory: the one module that names its files, writes them and reads them back.

==================  =======================================================================
``config.json``     what the run is (:func:`describe_run`): the configuration as given, the
                    resolved run, the base and scaled recipes, the versions; written at start
``metrics.jsonl``   one JSON object per line (:class:`RunLog`): ``kind: "train"`` (step, epoch,
                    lr, loss, ...) and ``kind: "eval"`` records; cut back on resume
``summary.json``    how the run ended: status, steps, epochs, final metrics, wall time
``checkpoints/``    ``step-NNNNNNNNN.pt`` (a directory of that name under ``--sharding fsdp``)
``tensorboard/``    TensorBoard events, when tensorboard is installed
``launch.json``     the ``TrainConfig`` a sweep or tuning study launched the run with
``train.log``       the run's output under a sweep or tuning study
==================  =======================================================================

JSON files are written atomically, so they are whole or absent. ``metrics.jsonl`` is appended
and a kill can cut its last line; every reader skips a line that does not parse. Only rank 0
writes. Nothing is created before training starts.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import platform
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from legw.io import atomic_write_json, atomic_write_text, json_text, read_json
from legw.schedule import BaseRecipe, Recipe

FINISHED = ("completed", "stopped", "diverged")
"""Statuses of a run that ended (``stopped``: cut by ``--max-steps``)."""
EVALUATED = ("completed", "stopped")
"""Statuses whose last evaluation is the run's final metric. A ``stopped`` run was cut by
``--max-steps``, an override every run of a sweep or study shares: its metrics compare with the
others'. A diverged run's last evaluation predates the divergence: not a final metric."""

_CHECKPOINT = re.compile(r"^step-\d{9}(\.pt)?$")  # as legw.training.checkpoint names them


def error_from_accuracy(accuracy: float) -> float:
    """The test error in percent from a test accuracy (a fraction): ``100 * (1 - accuracy)``."""
    return 100.0 * (1.0 - accuracy)


@dataclass(frozen=True)
class ConfigRecord:
    """``config.json``, read back."""

    path: Path
    config: dict[str, Any]
    """The :class:`~legw.training.config.TrainConfig` as given."""
    resolved: dict[str, Any]
    """The resolved run (``RunSpec.to_dict()``) plus the device, data set size, stop step."""
    base_recipe: dict[str, Any]
    recipe: dict[str, Any]
    """The scaled recipe's summary: ``peak_lr``, ``warmup_epochs``, ``warmup_steps``, ..."""
    versions: dict[str, Any]

    @property
    def task(self) -> str:
        return self.resolved["task"]

    @property
    def optimizer(self) -> str:
        return self.resolved["optimizer"]

    @property
    def batch_size(self) -> int:
        return self.resolved["global_batch_size"]

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def dataset_size(self) -> int:
        return int(self.resolved["dataset_size"])

    @property
    def noise_batch_size(self) -> int | None:
        """The micro batch the run measured gradient noise at (``None``: it measured none)."""
        return self.resolved.get("noise_small_batch_size")

    def base(self) -> BaseRecipe:
        return BaseRecipe.from_dict(self.base_recipe)


@dataclass(frozen=True)
class Outcome:
    """How a run ended (``summary.json``), and its mean training loss over the last epoch."""

    status: str
    task: str
    batch_size: int
    epochs: float
    steps: int
    seed: int | None
    total_steps: int | None
    wall_time_s: float | None
    final: dict[str, float]
    """The final evaluation; empty unless the status is one of :data:`EVALUATED`."""
    objective: float | None
    """Lower is better: the test error (%) of an accuracy task, else the test perplexity."""
    diverged_step: int | None
    train_loss: float | None
    """Mean per-step training loss over the last epoch (``None``: no such records)."""


@dataclass(frozen=True)
class RunDir:
    """The files of the run directory ``path``."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str is accepted too

    config_file = property(lambda self: self.path / "config.json")
    summary_file = property(lambda self: self.path / "summary.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    launch_file = property(lambda self: self.path / "launch.json")
    log_file = property(lambda self: self.path / "train.log")
    tensorboard = property(lambda self: self.path / "tensorboard")

    # --- config.json ------------------------------------------------------------------------

    def config(self) -> ConfigRecord | None:
        """``config.json``, or ``None`` when the run has none; one that is not a legw
        ``config.json`` raises ``ValueError`` naming it."""
        path = self.config_file
        if not path.exists():
            return None
        data = read_json(path)
        if not (isinstance(data, dict) and isinstance(data.get("config"), dict)
                and isinstance(data.get("resolved"), dict)):
            raise ValueError(f"{path}: not a legw config.json (no \"config\" and \"resolved\" "
                             "objects)")
        return ConfigRecord(path, data["config"], data["resolved"],
                            *(data.get(k) or {} for k in ("base_recipe", "recipe", "versions")))

    def recorded_config(self) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        """``(configuration, base recipe, path)`` as ``config.json`` records them, or ``None``
        (what a resume without a checkpoint is compared with)."""
        try:
            record = self.config()
        except ValueError as e:
            raise ValueError(f"--resume: {e}; move it away") from None
        return None if record is None else (record.config, record.base_recipe, str(record.path))

    def write_config(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.config_file, record)

    # --- summary.json, launch.json ----------------------------------------------------------

    def summary(self) -> dict[str, Any] | None:
        """``summary.json``, or ``None`` when it is absent or unreadable (a table is rebuilt
        from whatever the runs left)."""
        try:
            data = read_json(self.summary_file)
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_file, summary)

    def status(self) -> str | None:
        """The summary's status (:data:`FINISHED`), ``None`` without a summary."""
        return (self.summary() or {}).get("status")

    def launch(self) -> dict[str, Any] | None:
        """``launch.json`` (a ``TrainConfig`` as a dict), or ``None`` when absent."""
        return read_json(self.launch_file) if self.launch_file.exists() else None

    def write_launch(self, config: dict[str, Any]) -> Path:
        atomic_write_json(self.launch_file, config)
        return self.launch_file

    # --- the whole directory ----------------------------------------------------------------

    def check_new(self) -> None:
        """Refuse to start a run afresh where another run left its records: they would be
        rewritten and mixed (``ValueError`` naming ``--out``)."""
        found = [p.name for p in (self.config_file, self.metrics_file, self.summary_file,
                                  self.checkpoints) if p.exists()]
        if found:
            raise ValueError(f"--out: {self.path} already holds a run ({', '.join(found)}); "
                             "continue it with --resume, or choose another --out")

    def state(self) -> str:
        """``finished`` (status in :data:`FINISHED`), ``resumable`` (has a checkpoint) or
        ``fresh``."""
        if self.status() in FINISHED:
            return "finished"
        if self.checkpoints.is_dir() and any(_CHECKPOINT.match(p.name)
                                             for p in self.checkpoints.iterdir()):
            return "resumable"
        return "fresh"

    def outcome(self) -> Outcome | None:
        """How the run ended, ``None`` without a readable summary."""
        s = self.summary()
        if s is None:
            return None
        final = dict(s.get("final") or {}) if s.get("status") in EVALUATED else {}
        accuracy = final.get("test_accuracy")
        objective = (final.get("test_perplexity") if accuracy is None
                     else error_from_accuracy(accuracy))
        return Outcome(status=s.get("status"), task=s.get("task"),
                       batch_size=s.get("global_batch_size"), epochs=s.get("epochs"),
                       steps=s.get("steps"), seed=s.get("seed"),
                       total_steps=s.get("total_steps"), wall_time_s=s.get("wall_time_s"),
                       final=final, objective=objective,
                       diverged_step=(s.get("diverged_at") or {}).get("step"),
                       train_loss=self._last_epoch_loss(s.get("epochs")))

    # --- metrics.jsonl ----------------------------------------------------------------------

    def _metric_lines(self) -> list[str]:
        # A kill can cut a line mid-character: undecodable bytes fail to parse and are dropped.
        if self.metrics_file.exists():
            return self.metrics_file.read_text(encoding="utf-8", errors="replace").splitlines()
        archived = self.metrics_file.with_name("metrics.jsonl.gz")  # a committed record
        if archived.exists():
            with gzip.open(archived, "rt", encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        return []

    def metrics(self) -> list[dict[str, Any]]:
        """The ``metrics.jsonl`` records (an absent file or a cut line is skipped)."""
        return [rec for line in self._metric_lines() if (rec := _parse(line)) is not None]

    def truncate_metrics(self, step: int) -> None:
        """Keep training records of steps ``< step`` and evaluation records at ``<= step``."""
        if not self.metrics_file.exists():
            return
        kept = []
        for line in self._metric_lines():
            rec = _parse(line)
            if rec is not None and rec.get("step", 0) <= (
                    step if rec.get("kind") == "eval" else step - 1):
                kept.append(line + "\n")
        atomic_write_text(self.metrics_file, "".join(kept))

    def _last_epoch_loss(self, epochs: float | None) -> float | None:
        """Mean training loss of the records at epoch ``>= epochs - 1``, read from the end."""
        if epochs is None:
            return None
        losses = []
        for line in reversed(self._metric_lines()):
            rec = _parse(line)
            if rec is None or rec.get("kind") != "train":
                continue
            if rec.get("epoch", 0) < epochs - 1:
                break  # records are in step order
            if rec.get("loss") is not None:
                losses.append(rec["loss"])
        return statistics.fmean(losses) if losses else None


def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None  # a line cut by a kill
    return rec if isinstance(rec, dict) else None


class RunLog:
    """Rank 0's writer; every method is a no-op on the other ranks."""

    def __init__(self, run_dir: Path, enabled: bool, quiet: bool, total_steps: int,
                 initial_step: int) -> None:
        self.enabled, self.quiet = enabled, quiet
        self.run_dir, self.total_steps, self.initial_step = run_dir, total_steps, initial_step
        self._file = self._tb = self._bar = None
        self._opened = False
        self.path = RunDir(run_dir).metrics_file  # opened at the first record, after a resume

    def _open(self) -> None:
        """Create the TensorBoard writer and the progress bar: at the start of training, not
        at construction, so a run refused during set-up leaves no files."""
        if self._opened or not self.enabled:
            return
        self._opened = True
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(RunDir(self.run_dir).tensorboard),
                                     purge_step=self.initial_step)
        except ImportError:
            pass
        if not self.quiet and sys.stderr.isatty():  # in a log file a bar is a wall of redraws
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_steps, initial=self.initial_step, unit="step",
                             dynamic_ncols=True, file=sys.stderr)

    def start_at(self, step: int) -> None:
        """Open the writers and move the progress bar to ``step`` (after a resume)."""
        self._open()
        if self._bar is not None:
            self._bar.n = step
            self._bar.refresh()

    def info(self, message: str) -> None:
        """A progress line (start-up, resume, divergence details): not under ``--quiet``."""
        if not self.quiet:
            self.result(message)

    def result(self, message: str) -> None:
        """A line ``--quiet`` keeps: an evaluation, the run's outcome."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def record(self, rec: dict[str, Any]) -> None:
        """One line of ``metrics.jsonl`` (and the scalars to TensorBoard)."""
        if not self.enabled:
            return
        self._open()
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")  # noqa: SIM115 -- closed in close()
        self._file.write(json_text(rec) + "\n")
        if self._tb is not None:
            prefix = rec.get("kind", "train")
            for key, value in rec.items():
                if isinstance(value, (int, float)) and key not in ("step", "kind"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, rec["step"])
        if self._bar is not None and rec.get("kind") == "train":
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.4g}", refresh=False)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        for obj in (self._file, self._tb, self._bar):
            if obj is not None:
                obj.close()
        self._file = self._tb = self._bar = None


def versions() -> dict[str, str]:
    import importlib.metadata

    import numpy
    import torch

    try:
        legw = importlib.metadata.version("legw")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        legw = "unknown"
    return {"legw": legw, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def describe_run(spec: Any, recipe: Recipe, param_report: Any, **runtime: Any
                 ) -> dict[str, Any]:
    """What ``config.json`` holds: the configuration as given, the resolved run
    (:meth:`RunSpec.to_dict` plus what only the running job knows, ``runtime``: the device,
    the data set size, the step it stops at), the base and scaled recipes and the versions."""
    return {"config": spec.config.to_dict(), "resolved": {**spec.to_dict(), **runtime},
            "base_recipe": spec.base.to_dict(), "recipe": recipe.summary(),
            "param_groups": _plain(param_report), "versions": versions()}


def _plain(obj: Any) -> Any:
    """JSON-safe copy of a report (unknown objects become strings)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    return str(obj)
