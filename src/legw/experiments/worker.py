"""One worker of a shared study: claim a run, train or resume it, keep the lease, free the
runs of dead workers (the protocol: :mod:`legw.experiments.coordinator`)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from legw.experiments.launcher import (
    ONE_PROCESS,
    Child,
    PlannedRun,
    Processes,
    default_threads,
    train_argv,
)
from legw.training.run_dir import RunDir

LEASE_BEATS = 4
"""A RUNNING trial with no heartbeat for this many ``--heartbeat`` periods is stale."""


class Worker:
    """Take runs from ``study`` until none is WAITING and none RUNNING is alive."""

    def __init__(self, study: Any, runs: dict[str, PlannedRun], threads: int | None,
                 heartbeat: float, log: Callable[[str], None],
                 on_change: Callable[[], None], procs: Processes = ONE_PROCESS) -> None:
        self.study, self.runs, self.heartbeat, self.log = study, runs, heartbeat, log
        self.procs = procs  # each run's processes (torchrun over a Slurm job's nodes)
        self.threads = threads or default_threads(procs.per_node)
        self.on_change = on_change
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.trial: Any = None  # the trial this worker holds
        self.child: Child | None = None
        self.lost = threading.Event()  # our trial was taken over as stale
        self.done = threading.Event()
        self.counts = {"run": 0, "resumed": 0, "skipped": 0, "retried": 0}

    def work(self) -> dict[str, int]:
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        try:
            while True:
                trial = self._claim()
                if trial is not None:
                    self._run(trial)
                    self.on_change()
                    continue
                alive, waiting = self._reap_stale()
                if not alive and not waiting:
                    return self.counts
                if not waiting:
                    time.sleep(min(self.heartbeat, 2.0))
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (a Slurm job's end): hand the run back
            trial, self.trial = self.trial, None
            if self.child is not None and self.child.proc.poll() is None:
                self.child.proc.terminate()  # its checkpoints remain for the retry
                self.child.proc.wait()
            if trial is not None and self._release(trial):
                self.log(f"{trial.user_attrs.get('legw_run')}: interrupted; enqueued again")
            raise
        finally:
            self.done.set()

    def _states(self, *states: Any) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=states)

    def _claim(self) -> Any:
        from optuna.trial import TrialState

        if not self._states(TrialState.WAITING):
            return None
        trial = self.study.ask()
        if trial.user_attrs.get("legw_run") is None:  # lost the race for the last one
            trial.set_user_attr("legw_empty", True)
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        self.lost.clear()
        self.trial = trial
        trial.set_user_attr("legw_worker", self.me)
        trial.set_user_attr("legw_heartbeat", time.time())
        return trial

    def _beat(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        while not self.done.wait(self.heartbeat):
            trial = self.trial
            if trial is None:
                continue
            try:
                trial.set_user_attr("legw_heartbeat", time.time())
            except UpdateFinishedTrialError:  # another worker failed it as stale
                if self.trial is trial:
                    self.lost.set()
                    child = self.child
                    if child is not None:
                        child.proc.terminate()  # never two processes in one run directory
            except Exception as e:  # storage briefly unreachable: the next beat may work
                self.log(f"heartbeat of trial {trial.number} failed: {e}")

    def _run(self, trial: Any) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        name = trial.user_attrs["legw_run"]
        if name in self.runs:  # the param, for Optuna's own views (one distribution for all)
            trial.suggest_categorical("run", list(self.runs))
        run = self.runs.get(name)
        outcome: dict[str, Any]
        if run is None:
            outcome = {"status": "failed", "error": f"{name} is not a run of this sweep"}
        else:
            outcome = self._train(trial, run)
        try:
            if self.lost.is_set():
                raise UpdateFinishedTrialError
            if outcome["status"] == "failed":
                trial.set_user_attr("legw_error", outcome.get("error"))
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                objective = RunDir(run.run_dir).outcome().objective
                trial.set_user_attr("legw_status", outcome["status"])
                self.study.tell(trial, math.inf if objective is None else objective)
        except UpdateFinishedTrialError:
            self.log(f"{name}: trial {trial.number} was taken over as stale; left to its retry")
        finally:
            self.trial = self.child = None

    def _train(self, trial: Any, run: PlannedRun) -> dict[str, Any]:
        rd = RunDir(run.run_dir)
        state = rd.state()
        label = f"{rd.path.name} (trial {trial.number})"
        if state == "finished":
            self.counts["skipped"] += 1
            self.log(f"{label}: {rd.status()} earlier, not trained again")
            return {"status": rd.status()}
        if state == "fresh" and rd.path.exists():
            shutil.rmtree(rd.path)  # nothing to resume: drop partial logs of a killed run
        resume = state == "resumable"
        trial.set_user_attr("legw_resumed", resume)
        self.counts["run"] += 1
        self.counts["resumed"] += resume
        self.log(f"{label}: {'resuming' if resume else 'starting'} in {rd.path}")
        self.child = Child(run, train_argv(run.config, self.threads, resume, self.procs),
                           self.threads, self.log)
        self.child.proc.wait()
        outcome = self.child.outcome()
        self.log(f"{label}: {outcome['status']}"
                 + (f" ({outcome['error']})" if outcome.get("error") else ""))
        return outcome

    def _reap_stale(self) -> tuple[int, int]:
        """Release the RUNNING trials whose lease ran out; returns the numbers of RUNNING
        trials still alive and of WAITING ones."""
        from optuna.trial import TrialState

        alive, lease, now = 0, LEASE_BEATS * self.heartbeat, time.time()
        for t in self._states(TrialState.RUNNING):
            last = t.user_attrs.get("legw_heartbeat") or t.datetime_start.timestamp()
            if now - last <= lease:
                alive += 1
            elif self._release(t):
                self.log(f"{t.user_attrs.get('legw_run')}: trial {t.number} of "
                         f"{t.user_attrs.get('legw_worker')} silent for {now - last:.0f} s; "
                         "failed as stale and enqueued again")
        return alive, len(self._states(TrialState.WAITING))

    def _release(self, t: Any) -> bool:
        """Set RUNNING trial ``t`` FAIL and enqueue its run again (``legw_retry_of``); false
        when another worker finished it first (a finished trial cannot be set again)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:  # Optuna's Storage API, reached through the study: a trial is set by its id
            self.study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        name = t.user_attrs.get("legw_run")
        if name is not None:
            self.study.enqueue_trial({"run": name}, user_attrs={
                "legw_run": name, "legw_retry_of": t.number,
                "legw_released_from": t.user_attrs.get("legw_worker")})
            self.counts["retried"] += 1
        return True
