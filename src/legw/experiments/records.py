"""Experiment records: one flat row per run, written as ``.csv`` and ``.json`` side by side.

A row is read from the run directory only (``summary.json``, ``config.json``), so a table can be
rebuilt at any time from the runs on disk. Columns (``ROW_FIELDS``):

* coordinates: ``task``, ``method`` / ``trial``, ``optimizer``, ``batch_size``, ``seed``;
* ``status``: ``completed``, ``stopped`` (cut by ``--max-steps``), ``diverged``, ``failed`` or
  ``pending``;
* final metrics: ``test_accuracy`` (fraction) and ``test_error`` (``100 * (1 - accuracy)``,
  percent) for image tasks; ``valid_perplexity`` / ``test_perplexity`` for language models;
  ``test_loss``;
* the recipe actually used: ``peak_lr``, ``warmup_epochs``, ``warmup_steps``;
* ``epochs``, ``steps``, ``total_steps``, ``wall_time_s``, ``diverged_step``, ``run_dir``.

``objective(row)`` is the single lower-is-better number experiments compare: the test error
(percent) for image tasks, the test perplexity for language models.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from legw.io import atomic_write_json, atomic_write_text, read_json
from legw.training.run_dir import EVALUATED, RunDir

ROW_FIELDS = (
    "task", "method", "trial", "optimizer", "batch_size", "seed", "status",
    "test_error", "test_accuracy", "test_loss", "valid_perplexity", "test_perplexity",
    "peak_lr", "warmup_epochs", "warmup_steps", "epochs", "steps", "total_steps",
    "wall_time_s", "diverged_step", "run_dir", "error",
)

OBJECTIVES = {"accuracy": ("test_error", "test error (%)"),
              "perplexity": ("test_perplexity", "test perplexity")}
"""Task metric -> (row column, axis label) of the lower-is-better number to compare."""


STATUSES = ("completed", "stopped", "diverged", "failed", "pending")

_TEXT_COLUMNS = ("task", "method", "trial", "optimizer", "status", "run_dir", "error")
_REQUIRED = {"sweep": {"method": str, "batch_size": int, "seed": int, "run_dir": str},
             "tune": {"trial": str, "method": str, "peak_lr": float, "warmup_epochs": float}}
"""Per kind of record file, the row columns the report needs, and their types."""
_META = {"sweep": ("kind", "task", "spec", "rows"),
         "tune": ("kind", "task", "batch_size", "metric", "objective", "spec", "legw_point",
                  "legw", "best", "rows", "selection")}


def run_row(run_dir: Path, labels: dict[str, Any], root: Path, status: str | None = None,
            error: str | None = None) -> dict[str, Any]:
    """The record of the run in ``run_dir`` with ``labels`` (method, trial, ...) merged in.

    ``run_dir`` is recorded relative to ``root`` (the experiment directory), so a directory
    of records stays readable when moved. ``status`` overrides the summary's (``failed`` /
    ``pending`` runs have no summary).
    """
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(labels)
    row["run_dir"] = os.path.relpath(run_dir, root)
    run = RunDir(run_dir)
    config = run.config()
    if config is not None:
        recipe = config.recipe
        row.update(task=config.task, optimizer=config.optimizer, batch_size=config.batch_size,
                   seed=config.seed, peak_lr=recipe.get("peak_lr"),
                   warmup_epochs=recipe.get("warmup_epochs"),
                   warmup_steps=recipe.get("warmup_steps"), total_steps=recipe.get("total_steps"))
    outcome = run.outcome()
    if outcome is not None:
        row.update(status=outcome.status, epochs=outcome.epochs, steps=outcome.steps,
                   wall_time_s=outcome.wall_time_s, total_steps=outcome.total_steps,
                   seed=outcome.seed, batch_size=outcome.batch_size, task=outcome.task,
                   diverged_step=outcome.diverged_step)
        # empty unless EVALUATED: a diverged run's last evaluation is not a final metric
        for key in ("test_accuracy", "test_loss", "valid_perplexity", "test_perplexity"):
            row[key] = outcome.final.get(key)
        if row["test_accuracy"] is not None:
            row["test_error"] = outcome.objective
    if status is not None:
        row["status"] = status
    row["error"] = error
    return row


SELECTIONS = {"accuracy": "test_error", "perplexity": "valid_perplexity"}
"""Task metric -> the row column tuning selects on: the validation split where the task has
one (PTB), so the test split stays unseen; the image presets have none, so their trials are
compared on the test split (docs/results.md says where this applies)."""


def objective(row: dict[str, Any], metric: str, column: str | None = None) -> float | None:
    """The lower-is-better final number of a completed or stopped run (``None`` otherwise):
    ``column``, or by default the task's reported metric (:data:`OBJECTIVES`)."""
    value = row.get(column or OBJECTIVES[metric][0])
    if row.get("status") not in EVALUATED or value is None or not math.isfinite(value):
        return None
    return float(value)


def write_rows(stem: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``STEM.json`` (``meta`` plus ``rows``) and ``STEM.csv``, each written atomically."""
    atomic_write_json(stem.with_suffix(".json"), {**meta, "rows": rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())


def read_rows(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(meta, rows)`` of a ``.json`` written by :func:`write_rows`; a file of another shape,
    with an unknown field or a value of the wrong type raises ``ValueError`` naming it."""
    data = read_json(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _META or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a legw record file (expected an object with \"kind\": "
                         "\"sweep\" or \"tune\" and a \"rows\" list)")
    _no_unknown(data, _META[kind], path, "")
    if not isinstance(data.get("spec", {}), dict):
        raise ValueError(f"{path}: spec is not an object")
    from legw.tasks import TASKS

    if data.get("task") not in TASKS:
        raise ValueError(f"{path}: unknown task {data.get('task')!r}")
    if kind == "tune":
        _check_tune_meta(data, path)
    rows = data.pop("rows")
    for i, row in enumerate(rows):
        _check_row(row, path, f"row {i}", _REQUIRED[kind])
    return data, [{**dict.fromkeys(ROW_FIELDS), **row} for row in rows]


def _no_unknown(obj: dict[str, Any], known: tuple[str, ...], path: Path, where: str) -> None:
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise ValueError(f"{path}: {where}unknown field {unknown[0]!r}")


def _check_row(row: Any, path: Path, where: str, required: dict[str, type]) -> None:
    """A row holds only :data:`ROW_FIELDS` of the right types, and the ``required`` ones."""
    if not isinstance(row, dict):
        raise ValueError(f"{path}: {where} is not an object")
    _no_unknown(row, ROW_FIELDS, path, f"{where}: ")
    if row.get("status") not in STATUSES:
        raise ValueError(f"{path}: {where}: status {row.get('status')!r} is not one of "
                         f"{', '.join(STATUSES)}")
    for key, value in row.items():
        kind = str if key in _TEXT_COLUMNS else float
        if value is None and key not in required:
            continue
        if not _is(value, required.get(key, kind)):
            raise ValueError(f"{path}: {where}: {key} {value!r} is not a "
                             f"{'text' if kind is str else 'number'}")


def _check_tune_meta(data: dict[str, Any], path: Path) -> None:
    if data.get("metric") not in OBJECTIVES or not _is(data.get("batch_size"), int):
        raise ValueError(f"{path}: a tune record needs a metric ({', '.join(OBJECTIVES)}) and "
                         "an integer batch_size")
    point = data.get("legw_point")
    if not (isinstance(point, dict) and _is(point.get("peak_lr"), float)
            and _is(point.get("warmup_epochs"), float)):
        raise ValueError(f"{path}: legw_point needs numbers peak_lr and warmup_epochs")
    for key in ("legw", "best"):
        if data.get(key) is not None:
            _check_row(data[key], path, key, _REQUIRED["tune"])


def _is(value: Any, kind: type) -> bool:
    """``isinstance`` where an int is a float too and a bool is neither."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)
