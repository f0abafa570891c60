"""Sweeps that span machines: an Optuna study in shared storage hands out the runs.

Workers on any machines run the same ``legw sweep ... --out OUT --storage URL`` (``OUT``
shared) and take runs until none is left; each run's state lives in its run directory, as in a
local sweep. The Optuna facts this rests on (Optuna 5; NOTES.md section 11):

* ``create_study`` succeeds for exactly one worker: it records the study's identity (user attrs
  ``legw_version``, ``kind``, ``task``, ``spec``), enqueues one trial per run directory (user
  attr ``legw_run``) and sets ``legw_enqueued``; the others load the study, wait for that and
  refuse another identity. Not the grid sampler: it hands out duplicates under concurrency.
* ``ask()`` pops a WAITING trial by a compare-and-set WAITING -> RUNNING that one worker wins;
  a trial it made instead (the queue emptied meanwhile) is told FAIL with ``legw_empty``.
* A finished trial cannot be set again. The journal has no heartbeat, so legw keeps a lease
  (:mod:`legw.experiments.worker`): a worker sets ``legw_heartbeat`` on its trial every
  ``--heartbeat`` s; a RUNNING trial silent for ``LEASE_BEATS`` beats is set FAIL by the first
  worker to see it, which enqueues the run again (``legw_retry_of``); the retry resumes from
  the run's checkpoint.

A finished run directory is never trained again (told COMPLETE at once), one with a checkpoint
resumes, anything else starts afresh. The value told is :meth:`RunDir.outcome`'s objective
(``inf`` for a diverged run; the status in ``legw_status``). Workers exit when nothing is
WAITING and nothing RUNNING is alive. Machines' clocks must agree to well within the lease.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legw.flags import POSITIVE, check_fields, flag
from legw.io import check_writable_file

LAUNCH_ONLY = ("commands", "jobs", "threads", "nproc_per_node", "data_dir")
"""Spec fields workers may differ in (each machine its own cores and data path)."""


@dataclass(kw_only=True)
class StudyOptions:
    """Where the workers of one sweep meet (not stored in the spec: each worker gives it)."""

    storage: str | None = field(default=None, metadata=flag(metavar="URL"))
    """Shared study storage: a journal file on a shared directory (PATH or journal:PATH, no
    server) or a postgresql:// / mysql:// URL. Every worker started with the same URL and
    --out takes runs until none is left (default: no study, the local pool of --jobs)."""
    study_name: str | None = field(default=None, metadata=flag(metavar="NAME"))
    """Name of the study in --storage (default: legw-sweep-DIRNAME or legw-tune-DIRNAME, from
    --out)."""
    heartbeat: float = field(default=30.0, metadata=flag(metavar="S", check=POSITIVE))
    """Seconds between a worker's heartbeats; a run silent for 4 of them is taken over and
    resumed from its checkpoint by another worker (default 30)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.storage is not None:
            storage_target(self.storage)
        elif self.study_name is not None:
            raise ValueError("--study-name: needs --storage (the study it names lives there)")


def storage_target(url: str) -> tuple[str, str]:
    """``("journal", path)`` or ``("rdb", url)`` for ``--storage URL``; SQLite is refused:
    one SQLite file must not be shared between processes (Optuna's own warning)."""
    if url.startswith("sqlite:"):
        raise ValueError("--storage: SQLite must not be shared between processes; give a "
                         "journal file on a shared directory (e.g. OUT/study.journal) or a "
                         "postgresql:// URL")
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if scheme not in ("postgresql", "mysql"):
            raise ValueError(f"--storage: unknown storage {_masked(url)!r}; give a journal "
                             "file path (or journal:PATH) or a postgresql:// / mysql:// URL")
        return "rdb", url
    path = url.removeprefix("journal:")
    if not path:
        raise ValueError("--storage: journal: needs a file path, e.g. journal:OUT/study.journal")
    return "journal", path


def _masked(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str) -> Any:
    """The Optuna storage of ``--storage URL``; an unwritable path or an unreachable server is
    one ``ValueError`` naming ``--storage``, raised before anything is written."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind, target = storage_target(url)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = Path(target)
        check_writable_file(path, "--storage")
        if path.exists() and not os.access(path, os.W_OK):
            raise ValueError(f"--storage: cannot write {path}: permission denied")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise ValueError(f"--storage: cannot write {path}: {e.strerror or e}") from None
    try:
        return optuna.storages.RDBStorage(target)
    except Exception as e:  # a driver missing, a server down, a refused login
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--storage: cannot open {_masked(target)}: {reason}") from None


def identity(kind: str, spec: Any) -> dict[str, Any]:
    """What makes two workers' studies the same: legw's version, the kind, the task and the
    spec less :data:`LAUNCH_ONLY`."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("legw")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    d = {k: v for k, v in spec.to_dict().items() if k not in LAUNCH_ONLY}
    # as the storage gives it back (JSON: tuples become lists), so equal specs compare equal
    d = json.loads(json.dumps(d))
    return {"legw_version": version, "kind": kind, "task": spec.task, "spec": d}


def _difference(stored: dict[str, Any], mine: dict[str, Any]) -> str | None:
    for key in ("kind", "legw_version", "task"):
        if stored.get(key) != mine[key]:
            return f"{key} {stored.get(key)!r} there, {mine[key]!r} here"
    for key in sorted(set(stored["spec"]) | set(mine["spec"])):
        if stored["spec"].get(key) != mine["spec"].get(key):
            return f"{key} {stored['spec'].get(key)!r} there, {mine['spec'].get(key)!r} here"
    return None


def join_study(options: StudyOptions, name: str, ident: dict[str, Any],
               runs: list[str], log: Callable[[str], None]) -> Any:
    """Create the study (and enqueue ``runs``) or load it; a study of another identity is
    refused (``ValueError`` naming ``--study-name``) before this worker writes anything."""
    import optuna

    storage = open_storage(options.storage)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=0))
    else:
        for key, value in ident.items():
            study.set_user_attr(key, value)
        for run in runs:
            study.enqueue_trial({"run": run}, user_attrs={"legw_run": run})
        study.set_user_attr("legw_enqueued", len(runs))
        log(f"study {name}: created in {_masked(options.storage)}, {len(runs)} runs enqueued")
        return study
    deadline = time.monotonic() + max(60.0, 10 * options.heartbeat)
    while True:
        attrs = study.user_attrs
        if "kind" in attrs:
            diff = _difference(attrs, ident)
            if diff:
                raise ValueError(f"--study-name: study {name} in {_masked(options.storage)} "
                                 f"holds another {attrs.get('kind')} ({diff}); give another "
                                 "--study-name, or the study's own flags")
        if "legw_enqueued" in attrs:
            log(f"study {name}: joined ({attrs['legw_enqueued']} runs)")
            return study
        if time.monotonic() > deadline:
            raise ValueError(f"--study-name: study {name} in {_masked(options.storage)} was "
                             "never set up by legw (no legw_enqueued); give another --study-name")
        time.sleep(0.5)


def default_study_name(kind: str, out: Path) -> str:
    """The study name when ``--study-name`` is not given: ``legw-KIND-DIRNAME`` from ``--out``,
    whose name every machine mounting the shared directory sees alike."""
    return f"legw-{kind}-{out.resolve().name}"


def run_worker(kind: str, spec: Any, out: Path, plan: list[Any], options: StudyOptions,
               command: str | None, spec_file: str,
               write_results: Callable[[dict[str, dict[str, Any]]], None],
               log: Callable[[str], None], procs: Any) -> None:
    """This process as one worker of the study of ``plan`` (a sweep's or a tuning study's
    runs): join it (refused, with nothing written, when it holds another study), record the
    spec in ``out``, take runs until none is left. ``write_results`` gets run name -> outcome
    (:func:`trial_outcomes`) after each run and at the end."""
    from legw.experiments.launcher import open_study
    from legw.experiments.worker import Worker

    by_dir: dict[str, Any] = {}  # runs sharing a directory are one trial
    for run in plan:
        by_dir.setdefault(run.run_dir.name, run)
    name = options.study_name or default_study_name(kind, out)
    study = join_study(options, name, identity(kind, spec), list(by_dir), log)
    open_study(out, spec_file, spec, command, shared=True)

    def write() -> None:
        done = trial_outcomes(study)
        write_results({r.name: done[r.run_dir.name] for r in plan if r.run_dir.name in done})

    write()
    counts = Worker(study, by_dir, spec.threads, options.heartbeat, log, write, procs).work()
    write()
    log(f"worker of {name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def trial_outcomes(study: Any) -> dict[str, dict[str, Any]]:
    """Run directory name -> ``{"status", "error"}`` of its newest trial, in trial order: a
    COMPLETE trial gives the run's status, a FAIL one ``failed``; a WAITING or RUNNING trial (a
    stale trial's retry, too) leaves the run pending."""
    from optuna.trial import TrialState

    outcomes: dict[str, dict[str, Any]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        name = t.user_attrs.get("legw_run")
        if name is None:
            continue
        if t.state == TrialState.COMPLETE:
            outcomes[name] = {"status": t.user_attrs.get("legw_status", "completed")}
        elif t.state == TrialState.FAIL:
            outcomes[name] = {"status": "failed", "error": t.user_attrs.get("legw_error")}
        else:
            outcomes.pop(name, None)
    return outcomes
