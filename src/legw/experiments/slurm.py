"""A study's workers as Slurm jobs, submitted with submitit (``pip install "legw[cluster]"``).

``legw sweep ... --storage URL --launcher slurm --workers N`` checks the sweep, submits N jobs
and returns; each job is one worker of the study (:mod:`legw.experiments.coordinator`): it
joins the study and takes runs until none is left, writing into the shared ``--out``. A job
that dies (time limit, node lost, ``scancel``) leaves its run to another worker, which resumes
it from its checkpoint. submitit is imported only here, only when used; its local executor
(``cluster="local"``) runs the same path without ``sbatch`` (the tests).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from legw.experiments.coordinator import StudyOptions
from legw.flags import NON_NEGATIVE_INT, POSITIVE_INT, check_fields, flag

LAUNCHERS = ("local", "slurm")


@dataclass(kw_only=True)
class ClusterOptions:
    """Where a sweep's workers run (not stored in the spec)."""

    launcher: str = field(default="local", metadata=flag(choices=LAUNCHERS))
    """local: this process runs the runs (default); slurm: submit --workers Slurm jobs, each a
    worker of the --storage study, and return."""
    workers: int = field(default=1, metadata=flag(metavar="N", check=POSITIVE_INT))
    """Slurm jobs to submit, each taking runs until none is left (default 1)."""
    slurm_partition: str | None = field(default=None, metadata=flag(metavar="P"))
    """Slurm partition of the worker jobs (default: the cluster's)."""
    nodes: int = field(default=1, metadata=flag(metavar="N", check=POSITIVE_INT))
    """Nodes per Slurm job (default 1): a job is one worker, each of its runs spread over its
    N nodes (srun starts torchrun on each, --nproc-per-node processes there)."""
    gpus_per_node: int | None = field(default=None,
                                      metadata=flag(metavar="G", check=NON_NEGATIVE_INT))
    """GPUs per node of a worker job (default: none requested)."""
    time: int = field(default=60, metadata=flag(metavar="MIN", check=POSITIVE_INT))
    """Time limit of a worker job in minutes (default 60); a run it leaves unfinished is
    resumed by another worker."""
    account: str | None = field(default=None, metadata=flag(metavar="A"))
    """Slurm account to charge (default: the user's)."""
    sbatch: list[str] = field(default_factory=list, metadata=flag(metavar="KEY=VALUE"))
    """Further sbatch options, e.g. --sbatch qos=high mem=32G (as #SBATCH --KEY=VALUE)."""

    def __post_init__(self) -> None:
        check_fields(self)
        for item in self.sbatch:
            key, eq, _ = item.partition("=")
            if not eq or not key or key.startswith("-"):
                raise ValueError(f"--sbatch: expected KEY=VALUE (no leading dashes), got "
                                 f"{item!r}")

    def parameters(self, name: str) -> dict[str, Any]:
        """submitit's executor parameters (``slurm_*`` ones are ignored off Slurm)."""
        # the batch script itself is the worker (no srun step around it): each run is its
        # own srun step over the job's nodes, so one job holds one worker however many nodes
        params: dict[str, Any] = {"name": name, "nodes": self.nodes, "tasks_per_node": 1,
                                  "timeout_min": self.time, "slurm_use_srun": False}
        if self.gpus_per_node is not None:
            params["gpus_per_node"] = self.gpus_per_node
        if self.slurm_partition is not None:
            params["slurm_partition"] = self.slurm_partition
        if self.account is not None:
            params["slurm_account"] = self.account
        if self.sbatch:
            params["slurm_additional_parameters"] = dict(i.split("=", 1) for i in self.sbatch)
        return params


def worker_job(kind: str, spec: dict[str, Any], out: str, study: dict[str, Any],
               nodes: int = 1, gpus_per_node: int | None = None) -> int:
    """What a worker job runs: one worker of the ``kind`` (``sweep`` or ``tune``) study's
    runs, each run over the job's ``nodes``
    with ``--nproc-per-node`` processes on each (default: ``gpus_per_node``, else 1); returns
    the number of failed runs.
    SIGTERM (``scancel``, the time limit) and SIGUSR2 (submitit's warning before the limit)
    hand the job's run back to the study at once, its checkpoints kept for the retry."""
    import signal

    from legw.experiments.launcher import stop_on_sigterm

    stop_on_sigterm()
    signal.signal(signal.SIGUSR2, signal.getsignal(signal.SIGTERM))

    if spec.get("nproc_per_node") is None and gpus_per_node:
        spec = {**spec, "nproc_per_node": gpus_per_node}
    options = StudyOptions(**study)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if kind == "tune":
        from legw.experiments.tune import TuneSpec, run_tune

        rows = run_tune(TuneSpec(**spec), Path(out), study=options, log=log, nodes=nodes)["rows"]
    else:
        from legw.experiments.sweep import SweepSpec, run_sweep

        rows = run_sweep(SweepSpec(**spec), Path(out), study=options, log=log, nodes=nodes)
    return sum(r["status"] == "failed" for r in rows)


def submit_workers(kind: str, spec: Any, out: Path, study: StudyOptions,
                   cluster: ClusterOptions, executor_kind: str = "slurm") -> list[Any]:
    """Submit ``cluster.workers`` workers of the ``kind`` (``sweep`` or ``tune``) study as
    jobs (``executor_kind``: submitit's ``slurm``, or ``local`` for its local executor) and
    return submitit's jobs. Their logs go to ``OUT/slurm/``.
    A refused submission is one ``ValueError`` naming ``--sbatch`` (its folder removed)."""
    if study.storage is None:
        raise ValueError("--launcher: slurm workers meet in a study; give --storage (a journal "
                         "file on a shared directory, e.g. OUT/study.journal)")
    try:
        import submitit
    except ImportError:
        raise ValueError('--launcher: slurm needs submitit: pip install "legw[cluster]"'
                         ) from None
    out = out.resolve()
    storage = study.storage
    if "://" not in storage:  # a journal path: absolute, for jobs started elsewhere
        prefix = "journal:" if storage.startswith("journal:") else ""
        storage = prefix + str(Path(storage.removeprefix("journal:")).resolve())
    options = {**asdict(study), "storage": storage}
    folder = out / "slurm"
    created = out if not out.exists() else None if folder.exists() else folder
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=executor_kind)
    executor.update_parameters(**cluster.parameters(f"legw-{out.name}"))
    errors = io.StringIO()  # submitit echoes sbatch's stderr: kept for the one line below
    try:
        with contextlib.redirect_stderr(errors):
            return [executor.submit(worker_job, kind, spec.to_dict(), str(out), options,
                                    cluster.nodes, cluster.gpus_per_node)
                    for _ in range(cluster.workers)]
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError,
            submitit.core.utils.FailedSubmissionError) as e:
        if created is not None:  # nothing written: what submitit created goes
            shutil.rmtree(created, ignore_errors=True)
        lines = [ln.strip() for ln in f"{errors.getvalue()}\n{e}".splitlines() if ln.strip()]
        raise ValueError("--sbatch: sbatch refused the worker jobs: "
                         + (lines[-1] if lines else type(e).__name__)) from None
