"""Experiment records: one flat row per run, written as ``.csv`` and ``.json`` side by side.

A row is read from the run directory only (``summary.json``, ``config.json``), so a table can be
rebuilt at any time from the runs on disk. Columns (``ROW_FIELDS``):

* coordinates: ``task``, ``method`` / ``trial``, ``optimizer``, ``batch_size``, ``seed``;
* ``status``: ``completed``, ``diverged``, ``failed`` or ``pending``;
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
import json
import math
import os
from pathlib import Path
from typing import Any

from legw.io import atomic_write_json, atomic_write_text

ROW_FIELDS = (
    "task", "method", "trial", "optimizer", "batch_size", "seed", "status",
    "test_error", "test_accuracy", "test_loss", "valid_perplexity", "test_perplexity",
    "peak_lr", "warmup_epochs", "warmup_steps", "epochs", "steps", "total_steps",
    "wall_time_s", "diverged_step", "run_dir", "error",
)

OBJECTIVES = {"accuracy": ("test_error", "test error (%)"),
              "perplexity": ("test_perplexity", "test perplexity")}
"""Task metric -> (row column, axis label) of the lower-is-better number to compare."""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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
    config = _read_json(run_dir / "config.json")
    if config is not None:
        resolved, recipe = config["resolved"], config["recipe"]
        row.update(task=resolved["task"], optimizer=resolved["optimizer"],
                   batch_size=resolved["global_batch_size"], seed=config["config"]["seed"],
                   peak_lr=recipe["peak_lr"], warmup_epochs=recipe["warmup_epochs"],
                   warmup_steps=recipe["warmup_steps"], total_steps=recipe["total_steps"])
    summary = _read_json(run_dir / "summary.json")
    if summary is not None:
        final = summary.get("final") or {}
        row.update(status=summary["status"], epochs=summary["epochs"], steps=summary["steps"],
                   wall_time_s=summary["wall_time_s"], total_steps=summary["total_steps"],
                   seed=summary["seed"], batch_size=summary["global_batch_size"],
                   task=summary["task"])
        # A diverged run's last evaluation predates the divergence: not a final metric.
        for key in ("test_accuracy", "test_loss", "valid_perplexity", "test_perplexity"):
            row[key] = final.get(key) if summary["status"] == "completed" else None
        if row["test_accuracy"] is not None:
            row["test_error"] = 100.0 * (1.0 - row["test_accuracy"])
        if summary.get("diverged_at"):
            row["diverged_step"] = summary["diverged_at"]["step"]
    if status is not None:
        row["status"] = status
    row["error"] = error
    return row


def objective(row: dict[str, Any], metric: str) -> float | None:
    """The lower-is-better final number of a completed run (``None`` otherwise)."""
    value = row.get(OBJECTIVES[metric][0])
    if row.get("status") != "completed" or value is None or not math.isfinite(value):
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
    """``(meta, rows)`` of a ``.json`` written by :func:`write_rows`."""
    data = _read_json(path)
    if data is None:
        raise FileNotFoundError(f"no readable records at {path}")
    rows = data.pop("rows", None)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: not a legw record file (no 'rows' list)")
    return data, rows
