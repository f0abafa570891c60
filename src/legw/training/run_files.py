"""What a run writes while it trains: ``metrics.jsonl``, TensorBoard events, progress.

Only rank 0 writes. ``metrics.jsonl`` has one JSON object per line: training records
(``kind: "train"``: step, epoch, lr, loss, grad_norm, samples_per_s) and evaluation records
(``kind: "eval"``), strict JSON (a non-finite number is ``null``). Lines are buffered and
flushed to disk at every checkpoint; on resume the file is cut back to the checkpoint, so it
never holds a step twice. Nothing is created before training starts (:meth:`RunLog.start_at`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from legw.io import atomic_write_text, json_text, read_json

RUN_RECORDS = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")
"""What a run writes into its directory (``launch.json`` and ``train.log`` come from a sweep)."""


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a run afresh where another run left its records: they would be
    rewritten and mixed (``ValueError`` naming ``--out``)."""
    found = [name for name in RUN_RECORDS if (run_dir / name).exists()]
    if found:
        raise ValueError(f"--out: {run_dir} already holds a run ({', '.join(found)}); continue "
                         "it with --resume, or choose another --out")


def recorded_config(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """``(configuration, base recipe, path)`` as the run's ``config.json`` records them, or
    ``None`` when it has none (what a resume without a checkpoint is compared with)."""
    path = run_dir / "config.json"
    if not path.exists():
        return None
    recorded = read_json(path)
    if not (isinstance(recorded, dict) and isinstance(recorded.get("config"), dict)):
        raise ValueError(f"--resume: {path} is not a legw config.json; move it away")
    return recorded["config"], recorded.get("base_recipe") or {}, str(path)


def truncate_metrics(path: Path, step: int) -> None:
    """Keep training records of steps ``< step`` and evaluation records at steps ``<= step``."""
    if not path.exists():
        return
    kept = []
    # A kill can cut a line mid-character: undecodable bytes fail json.loads and are dropped.
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        limit = step if rec.get("kind") == "eval" else step - 1
        if rec.get("step", 0) <= limit:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


class RunLog:
    """Rank 0's writer; every method is a no-op on the other ranks."""

    def __init__(self, run_dir: Path, enabled: bool, quiet: bool, total_steps: int,
                 initial_step: int) -> None:
        self.enabled, self.quiet = enabled, quiet
        self.run_dir, self.total_steps, self.initial_step = run_dir, total_steps, initial_step
        self._file = self._tb = self._bar = None
        self._opened = False
        self.path = run_dir / "metrics.jsonl"  # opened at the first record, after a resume

    def _open(self) -> None:
        """Create the TensorBoard writer and the progress bar: at the start of training, not
        at construction, so a run refused during set-up leaves no files."""
        if self._opened or not self.enabled:
            return
        self._opened = True
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"),
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
