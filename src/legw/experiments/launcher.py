"""Run many ``legw train`` runs as subprocesses, resumably, ``jobs`` at a time.

Each run is ``python -m legw train --config RUN/launch.json`` (its ``TrainConfig``, written by
:func:`train_argv`) in its own run directory, so a crash or a divergence ends that run only.
What a run directory says decides what happens to it:

====================================================  ====================================
run directory                                          action
====================================================  ====================================
``summary.json`` status completed / stopped / diverged  skipped (its record is read back)
checkpoints, no final summary                          resumed with ``--resume``
anything else (absent, killed before a save)           started afresh (stale files removed)
====================================================  ====================================

``stopped`` is a run cut by ``--max-steps``: every run of a study shares that override, so
such a run is as finished as the study asks. Exit status 0 is completed or stopped, 3 diverged
(``legw train``); anything else is recorded as
``failed`` with the return code and the last lines of the run's ``train.log``, and is retried
the next time the sweep is invoked.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legw.flags import flag
from legw.io import atomic_write_json
from legw.training.config import TrainConfig, config_fields
from legw.training.run_dir import FINISHED, RunDir

LAUNCH_FIELDS = ("micro_batch_size", "jobs", "threads", "nproc_per_node", "data_dir")
"""The :class:`LaunchOptions` fields that are flags of ``legw sweep`` and ``legw tune``."""


@dataclass(kw_only=True)
class LaunchOptions:
    """How a sweep or a tuning study launches its ``legw train`` runs (stored in its spec)."""

    micro_batch_size: int | None = field(default=None, metadata=flag(metavar="CAP"))
    """Cap on the micro batch: micro = min(B, CAP), the rest by gradient accumulation."""
    jobs: int = field(default=1, metadata=flag(metavar="N"))
    """Runs in parallel (default 1)."""
    threads: int | None = field(default=None, metadata=flag(metavar="T"))
    """torch threads per training process (default: cores / (jobs x processes per run))."""
    nproc_per_node: int | None = field(default=None, metadata=flag(metavar="P"))
    """Processes per run on each node: P > 1 starts each run with torchrun, one process per
    GPU (default 1; on Slurm, --gpus-per-node)."""
    data_dir: str | None = field(default=None, metadata=flag(metavar="DIR"))
    """Directory with the data set files (default: the loader's own location)."""
    commands: list[str] = field(default_factory=list)
    """Every command line that worked on this study, oldest first."""

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"--jobs: must be at least 1, got {self.jobs!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads: must be at least 1, got {self.threads!r}")
        if self.nproc_per_node is not None and self.nproc_per_node < 1:
            raise ValueError(f"--nproc-per-node: must be at least 1, got "
                             f"{self.nproc_per_node!r}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"--micro-batch-size: must be at least 1, "
                             f"got {self.micro_batch_size!r}")

    def processes(self, nodes: int = 1) -> Processes:
        """Each run's processes: ``--nproc-per-node`` on each of ``nodes`` nodes."""
        return Processes(self.nproc_per_node or 1, nodes)


RUN_OVERRIDES = config_fields(study=True)
"""The :class:`~legw.training.config.TrainConfig` fields a study applies to every run (its
``overrides``); their flags are ``legw train``'s."""


def continue_spec(cls: type, stored: Any | None, given: dict[str, Any], out: Path,
                  extendable: tuple[str, ...], study: str) -> Any:
    """The spec to run: ``cls(**given)`` for a new study, else the stored spec with ``given``
    on top. Only the ``extendable`` fields may change; any other given value (each of the
    ``overrides``, too) must equal the stored one, or results of two recipes would mix."""
    if stored is None:
        return cls(**given)
    merged = stored.to_dict()
    for key, value in given.items():
        if key in extendable:
            merged[key] = value
            continue
        pairs = ([(f"{key}.{k}", v, merged[key].get(k)) for k, v in value.items()]
                 if isinstance(value, dict) else [(key, value, merged[key])])
        for name, new, old in pairs:
            if new != old:
                raise ValueError(f"{name}: {new!r} differs from the {study} in {out} "
                                 f"({old!r}); start a new {study} with another --out")
    return cls(**merged)


def open_study(out: Path, spec_file: str, spec: Any, command: str | None,
               shared: bool = False) -> None:
    """Start or continue a study in ``out``: remove temporaries a killed write left there
    (not when ``shared``: other workers may be writing there), record the invoking ``command``
    (once: a resume by the same command adds nothing) and write the spec (``sweep.json`` /
    ``tune.json``)."""
    from legw.io import remove_temporaries

    out.mkdir(parents=True, exist_ok=True)
    if not shared:
        remove_temporaries(out)
    if command and command not in spec.commands:
        spec.commands.append(command)
    atomic_write_json(out / spec_file, spec.to_dict())


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a sweep or a tuning study."""

    name: str
    """Short label for progress lines, e.g. ``legw b=1024 s=0``."""
    config: TrainConfig
    """The run's configuration; ``config.out_dir`` is its run directory."""
    labels: dict[str, Any]
    """Experiment coordinates copied into the run's record (method, trial id, ...)."""

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out_dir)


def run_config(task: str, batch_size: int, seed: int, run_dir: Path, fields: dict[str, Any],
               micro_cap: int | None = None, data_dir: str | None = None) -> TrainConfig:
    """The ``TrainConfig`` of one sweep or tuning run: micro batch ``min(B, micro_cap)``, the
    rest by gradient accumulation."""
    micro = micro_cap if micro_cap is not None and batch_size > micro_cap else None
    return TrainConfig(task=task, global_batch_size=batch_size, seed=seed,
                       micro_batch_size=micro, out_dir=str(run_dir), data_dir=data_dir,
                       **fields)


@dataclass(frozen=True)
class Processes:
    """The processes of one run: ``per_node`` on each of ``nodes`` nodes. One process is a plain
    ``legw train``; more are started by torchrun (``torch.distributed.run``), on one node with
    ``--standalone``, across a Slurm job's nodes by ``srun`` starting one torchrun per node
    that meet at a c10d rendezvous on this host."""

    per_node: int = 1
    nodes: int = 1

    @property
    def world_size(self) -> int:
        return self.per_node * self.nodes

    def launcher(self, run_id: str) -> list[str]:
        """The command line before ``-m legw train ...`` (its ``python``, for one process)."""
        if self.world_size == 1:
            return [sys.executable]
        torchrun = [sys.executable, "-m", "torch.distributed.run",
                    "--nproc-per-node", str(self.per_node)]
        if self.nodes == 1:
            return [*torchrun, "--standalone"]
        return ["srun", f"--nodes={self.nodes}", f"--ntasks={self.nodes}",
                "--ntasks-per-node=1", "--kill-on-bad-exit=1", *torchrun,
                "--nnodes", str(self.nodes), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"{socket.gethostname()}:{free_port()}",
                "--rdzv-id", run_id]


ONE_PROCESS = Processes()


def free_port() -> int:
    """A TCP port free on this host now (for a run's rendezvous)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def train_argv(config: TrainConfig, threads: int | None, resume: bool,
               procs: Processes = ONE_PROCESS) -> list[str]:
    """Write ``RUN/launch.json`` (the run's ``TrainConfig``) and return the command line that
    runs it: ``python -m legw train --config RUN/launch.json``, started by ``procs``."""
    # not --quiet: train.log keeps the start-up and resume lines (no progress bar is drawn
    # into a file anyway)
    path = RunDir(config.out_dir).write_launch({**config.to_dict(), "num_threads": threads})
    return [*procs.launcher(Path(config.out_dir).name), "-m", "legw", "train", "--config",
            str(path), *(["--resume"] if resume else [])]


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so ``run_all`` stops its children before exiting."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def default_threads(processes: int) -> int:
    """torch threads per process: the cores shared evenly by ``processes`` training processes
    (parallel runs x processes per run)."""
    return max(1, (os.cpu_count() or 1) // processes)


def run_all(runs: list[PlannedRun], jobs: int = 1, threads: int | None = None,
            log=print, procs: Processes = ONE_PROCESS
            ) -> Iterator[tuple[PlannedRun, dict[str, Any]]]:
    """Run what is not finished, ``jobs`` at a time; yield ``(run, outcome)`` as each ends.

    ``outcome`` has ``status`` (:data:`FINISHED` or ``failed``), ``skipped`` (true for
    runs finished before this call), ``returncode`` and, for failures, ``error``.
    """
    if jobs < 1:
        raise ValueError(f"--jobs: must be at least 1, got {jobs!r}")
    threads = threads or default_threads(jobs * procs.per_node)
    todo: list[tuple[PlannedRun, bool]] = []
    sharing: dict[Path, list[PlannedRun]] = {}  # runs of one directory train once
    for r in runs:
        if r.run_dir in sharing:
            sharing[r.run_dir].append(r)
            continue
        sharing[r.run_dir] = [r]
        state = RunDir(r.run_dir).state()
        if state == "finished":
            status = RunDir(r.run_dir).status()
            log(f"{r.name}: {status} earlier, skipped")
            yield r, {"status": status, "skipped": True, "returncode": None}
            continue
        if state == "fresh" and r.run_dir.exists():
            shutil.rmtree(r.run_dir)  # nothing to resume: drop partial logs of a killed run
        todo.append((r, state == "resumable"))
    for shared in sharing.values():  # the later runs of a finished directory
        if RunDir(shared[0].run_dir).state() == "finished":
            status = RunDir(shared[0].run_dir).status()
            for r in shared[1:]:
                yield r, {"status": status, "skipped": True, "returncode": None}
    active: list[Child] = []
    total, started = len(todo), 0
    try:
        while todo or active:
            while todo and len(active) < jobs:
                r, resume = todo.pop(0)
                started += 1
                log(f"[{started}/{total}] {r.name}: {'resuming' if resume else 'starting'} "
                    f"in {r.run_dir}")
                active.append(Child(r, train_argv(r.config, threads, resume, procs), threads,
                                    log))
            time.sleep(0.2)
            for child in [c for c in active if c.proc.poll() is not None]:
                active.remove(child)
                outcome = child.outcome()
                names = [r.name for r in sharing[child.run.run_dir]]
                log(f"{' = '.join(names)}: {outcome['status']}"
                    + (f" ({outcome['error']})" if outcome.get("error") else ""))
                for r in sharing[child.run.run_dir]:
                    yield r, outcome
    finally:
        for child in active:  # interrupted: stop the children; their checkpoints remain
            child.proc.terminate()
            child.proc.wait()


def die_with_parent() -> None:
    """SIGKILL this process when the process that started it dies (Linux,
    ``prctl(PR_SET_PDEATHSIG)``), so a killed sweep or study worker leaves no orphan training
    on in a run directory that another worker will resume. Called in a run's child before
    ``exec``, and by ``legw train`` itself when ``LEGW_DIE_WITH_PARENT=1`` (torchrun starts its
    processes in sessions of their own, so they must ask for it themselves)."""
    if _PRCTL is not None:
        _PRCTL(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() == 1:  # the parent died before the call
            os._exit(137)


def _load_prctl() -> Any:
    # loaded in the parent: between fork and exec the child only calls it
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                  "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class Child:
    """One ``legw train`` subprocess; its output goes to ``RUN/train.log`` and, prefixed,
    to the sweep's log. It dies with its parent (:func:`die_with_parent`)."""

    def __init__(self, run: PlannedRun, argv: list[str], threads: int, log) -> None:
        self.run, self.argv = run, argv
        run.run_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()  # the run is a job of its own
               if k not in _TORCHRUN_VARS and not k.startswith("TORCHELASTIC_")}
        env.update(OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
                   LEGW_DIE_WITH_PARENT="1")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env,
                                     preexec_fn=die_with_parent if _PRCTL else None)
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._pump, args=(log,), daemon=True)
        self._reader.start()

    def _pump(self, log) -> None:
        with open(RunDir(self.run.run_dir).log_file, "a") as f:
            f.write("$ " + " ".join(self.argv) + "\n")
            for line in self.proc.stdout:
                f.write(line)
                f.flush()
                self.tail = (self.tail + [line.rstrip()])[-5:]
                log(f"  {self.run.name} | {line.rstrip()}")

    def outcome(self) -> dict[str, Any]:
        self._reader.join(timeout=10)
        code = self.proc.returncode
        status = RunDir(self.run.run_dir).status()
        if code in (0, 3) and status in FINISHED:
            return {"status": status, "skipped": False, "returncode": code}
        return {"status": "failed", "skipped": False, "returncode": code,
                "error": f"exit status {code}: " + (self.tail[-1] if self.tail else "no output")}
