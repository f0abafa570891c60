"""Checkpoints that survive SIGKILL and resume bit-exactly.

A checkpoint is one file ``RUN/checkpoints/step-NNNNNNNNN.pt`` written atomically (temporary
file, fsync, rename; :func:`legw.io.atomic_path`), so a kill at any moment leaves either the
previous set of checkpoints or the new one. It holds only tensors and plain Python values so it
loads with ``torch.load(..., weights_only=True)``:

* ``model``, ``optimizer``: state dicts;
* ``position``: ``step`` (optimizer steps done), ``epoch``, ``step_in_epoch``,
  ``samples_seen``, ``global_batch_size``, ``steps_per_epoch``;
* ``ranks``: per rank, the RNG states (torch, CUDA, numpy, python) and the carried LSTM state;
* ``recipe``, ``config``: the base recipe and the run configuration, as dicts;
* ``extra``: run bookkeeping (last evaluation, wall time so far).

Under ``--sharding fsdp`` a checkpoint is a directory ``RUN/checkpoints/step-NNNNNNNNN/``:
the model and optimizer state as every rank's shards, written by
``torch.distributed.checkpoint`` (which reshards them on load, so a run resumes at another
world size), and ``legw.pt`` beside them with everything else above. Every rank writes into
``.step-NNNNNNNNN.sharded_.tmp/``; rank 0 renames it once all have finished, so a directory
named ``step-*`` is always whole.

Only the newest ``keep`` checkpoints are kept. :func:`load_latest` falls back to an older
checkpoint when the newest cannot be read.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from legw.io import atomic_path

_NAME = re.compile(r"^step-(\d{9})(\.pt)?$")
SHARDED_META = "legw.pt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save(run_dir: str | Path, state: dict[str, Any], step: int, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` and delete all but the newest ``keep``."""
    path = checkpoint_dir(run_dir) / f"step-{step:09d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    _keep_newest(run_dir, keep)
    return path


def save_sharded(run_dir: str | Path, model: torch.nn.Module, optimizer: Any,
                 state: dict[str, Any], step: int, keep: int, is_main: bool) -> Path:
    """Every rank: write the sharded ``model`` and ``optimizer`` of ``step`` with
    ``torch.distributed.checkpoint``, and (rank 0) ``state`` -- the rest of a checkpoint --
    beside them; then keep the newest ``keep`` checkpoints."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = checkpoint_dir(run_dir) / f"step-{step:09d}"
    tmp = final.parent / f".{final.name}.sharded_.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing it
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
    if is_main:
        torch.save(state, tmp / SHARDED_META)
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)  # a checkpoint of the same step, rewritten
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        _keep_newest(run_dir, keep)
    dist.barrier()
    return final


def load_sharded_into(path: Path, model: torch.nn.Module, optimizer: Any) -> None:
    """Load a sharded checkpoint's model and optimizer state into this run's (sharded)
    ``model`` and ``optimizer``, resharded to its world size."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"])


def _keep_newest(run_dir: str | Path, keep: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str | Path) -> dict[str, Any]:
    """One checkpoint, tensors on the CPU (``weights_only=True``: no code is unpickled). Of a
    sharded checkpoint (a directory) everything but the model and optimizer, which
    :func:`load_sharded_into` reads."""
    path = Path(path)
    sharded = path.is_dir()
    if sharded and not (path / ".metadata").is_file():
        raise ValueError(f"{path}: not a sharded checkpoint (no .metadata)")
    state = torch.load(path / SHARDED_META if sharded else path, map_location="cpu",
                       weights_only=True)
    if not isinstance(state, dict) or "position" not in state or (
            "model" not in state and not sharded):
        raise ValueError(f"{path}: not a legw checkpoint")
    return state


def load_latest(run_dir: str | Path, warn: Callable[[str], None] = print
                ) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint of a run, or ``None`` when the run has none.

    An unreadable checkpoint is skipped for the previous one (reported through ``warn`` when
    an older one loads); when none can be read this raises one ``ValueError`` naming each file
    and its error.
    """
    paths = list_checkpoints(run_dir)
    errors = []
    for path in reversed(paths):
        try:
            state = load(path)
        except Exception as e:  # noqa: BLE001 -- any read failure means "try the previous one"
            errors.append(f"{path.name}: {_why_unreadable(e)}")
            continue
        for skipped, error in zip(reversed(paths), errors):
            warn(f"checkpoint {skipped} is unreadable ({error.split(': ', 1)[1]}); using the "
                 "previous one")
        return state, path
    if errors:
        raise ValueError(f"--resume: no readable checkpoint in {checkpoint_dir(run_dir)} "
                         f"({'; '.join(errors)}); restore a checkpoint, or train into a new "
                         "--out")
    return None


def _why_unreadable(error: Exception) -> str:
    """A short reason on one line. torch's own messages run to many lines and advise loading
    with ``weights_only=False``, which would run code from the file: legw never does."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # not only tensors and plain values
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0]
        text = f"not a legw checkpoint: {detail.split('. ')[0].rstrip('.')}"
    else:
        text = text.strip().split("\n")[0].split(". ")[0].rstrip(".")
    if "weights_only" in text:
        text = "not a legw checkpoint"
    return f"{type(error).__name__}: {text[:160]}"


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
