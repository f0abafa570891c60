"""legw sweep --storage: worker processes on one journal file, a killed worker, refused studies.

Real parts: ``legw sweep`` processes, Optuna's journal file, ``legw train`` runs of
fashion-mnist-lstm on tiny generated data.
"""

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from helpers import env, make_mnist_dir

from legw.cli import main
from legw.experiments.records import read_rows

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))  # 256 train, 64 test: 8 steps at 32


def _args(mnist_dir, out, *extra):
    # legw at 32 and 64, seeds 0 1 2: six runs, none sharing a directory
    return ["sweep", "fashion-mnist-lstm", "--out", str(out), "--methods", "legw",
            "--batch-sizes", "32", "64", "--seeds", "0", "1", "2", "--epochs", "1",
            "--max-steps", "3", "--base-warmup-epochs", "0", "--data-dir", str(mnist_dir),
            "--threads", "1", "--storage", str(out / "study.journal"), "--heartbeat", "1",
            *extra]


def _start(argv, log_path):
    return subprocess.Popen([sys.executable, "-m", "legw", *argv], env=env(1),
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))  # noqa: SIM115


def _trials(out, name):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return [t for t in optuna.load_study(study_name=name, storage=storage).get_trials()
            if "legw_run" in t.user_attrs]


def _results(out):
    return {r["run_dir"]: (r["status"], r["steps"], r["test_error"], r["test_loss"])
            for r in read_rows(out / "results.json")[1]}


def _launches(run_dir):
    """How many times a worker started ``legw train`` in ``run_dir`` (its ``$ argv`` lines)."""
    return sum(line.startswith("$ ") for line in (run_dir / "train.log").read_text().splitlines())


def _train_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text()
            .splitlines() if json.loads(line)["kind"] == "train"]


@pytest.mark.slow
def test_three_workers_run_every_point_once_as_one_worker_does(mnist_dir, tmp_path):
    out = tmp_path / "shared"
    workers = [_start(_args(mnist_dir, out), tmp_path / f"w{i}.log") for i in range(3)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0, 0]
    trials = _trials(out, "legw-sweep-shared")
    complete = Counter(t.user_attrs["legw_run"] for t in trials
                       if t.state == optuna.trial.TrialState.COMPLETE)
    assert complete == dict.fromkeys([f"legw-b{b}-s{s}" for b in (32, 64) for s in range(3)], 1)
    assert len(trials) == 6  # nothing retried, nothing failed
    for name in complete:
        run_dir = out / "runs" / name
        assert _launches(run_dir) == 1 and _train_steps(run_dir) == [0, 1, 2]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert sum(log.count(": starting in") for log in logs) == 6

    alone = tmp_path / "alone"  # one worker, same sweep: the same table
    assert main(_args(mnist_dir, alone)) == 0
    assert _results(out) == _results(alone)
    assert all(status == "stopped" for status, *_ in _results(out).values())
    # a worker that comes late finds nothing to do and trains nothing
    assert main(_args(mnist_dir, out)) == 0
    assert all(_launches(out / "runs" / name) == 1 for name in complete)


@pytest.mark.slow
def test_a_killed_workers_run_is_resumed_by_another_from_its_checkpoint(mnist_dir, tmp_path):
    def args(out):  # three runs of 24 steps, a checkpoint every 2 steps
        return _args(mnist_dir, out, "--seeds", "0", "1", "2", "--batch-sizes", "32",
                     "--epochs", "3", "--max-steps", "24", "--checkpoint-every", "2")

    out = tmp_path / "shared"
    victim = _start(args(out), tmp_path / "victim.log")
    first = out / "runs" / "legw-b32-s0"  # the first trial enqueued, the victim's first claim
    deadline = time.monotonic() + 300
    while not list((first / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert (first / "summary.json").exists() is False  # killed mid-run
    others = [_start(args(out), tmp_path / f"w{i}.log") for i in range(2)]
    assert [w.wait(timeout=600) for w in others] == [0, 0]

    trials = _trials(out, "legw-sweep-shared")
    states = Counter((t.user_attrs["legw_run"], t.state.name) for t in trials)
    assert states == {("legw-b32-s0", "FAIL"): 1, ("legw-b32-s0", "COMPLETE"): 1,
                      ("legw-b32-s1", "COMPLETE"): 1, ("legw-b32-s2", "COMPLETE"): 1}
    retry = next(t for t in trials if "legw_retry_of" in t.user_attrs)
    assert retry.user_attrs["legw_resumed"] is True and retry.state.name == "COMPLETE"
    assert "resumed from" in (first / "train.log").read_text()
    assert _launches(first) == 2 and _train_steps(first) == list(range(24))
    for seed in (1, 2):
        assert _launches(out / "runs" / f"legw-b32-s{seed}") == 1
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "failed as stale and enqueued again" in logs

    alone = tmp_path / "alone"  # uninterrupted: the resumed run ends where it would have
    assert main(args(alone)) == 0
    assert _results(out) == _results(alone)
    print("figures: trials run", sum(t.state.name == "COMPLETE" for t in trials),
          "resumed", sum(bool(t.user_attrs.get("legw_resumed")) for t in trials),
          "duplicated", sum(_launches(out / "runs" / f"legw-b32-s{s}") > 1 for s in (1, 2)))


def _refused(capsys, argv, out):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not out.exists(), "nothing written"
    return err


def test_bad_storage_is_one_line_and_writes_nothing(mnist_dir, tmp_path, capsys):
    out = tmp_path / "sweep"

    def argv(storage, *extra):
        return [*_args(mnist_dir, out)[:-4], "--storage", storage, *extra]

    assert _refused(capsys, argv("sqlite:///x.db"), out) == [
        "legw: error: --storage: SQLite must not be shared between processes; give a journal "
        "file on a shared directory (e.g. OUT/study.journal) or a postgresql:// URL"]
    (tmp_path / "a-file").write_text("")
    [line] = _refused(capsys, argv(str(tmp_path / "a-file" / "study.journal")), out)
    assert line.startswith("legw: error: --storage: cannot write")
    [line] = _refused(capsys, argv("postgresql://u:secret@127.0.0.1:1/none"), out)
    assert line.startswith("legw: error: --storage: cannot open postgresql://u:***@")
    [line] = _refused(capsys, argv(str(out / "study.journal"), "--jobs", "2"), out)
    assert line.startswith("legw: error: --jobs: a worker of a --storage study runs one run at")
    [line] = _refused(capsys, argv("redis://host/0"), out)
    assert line.startswith("legw: error: --storage: unknown storage")
    no_storage = [a for a in _args(mnist_dir, out) if a != str(out / "study.journal")]
    no_storage.remove("--storage")
    [line] = _refused(capsys, [*no_storage, "--study-name", "x"], out)
    assert line == "legw: error: --study-name: needs --storage (the study it names lives there)"


def test_a_study_of_another_sweep_task_or_version_is_refused(mnist_dir, tmp_path, capsys):
    from legw.experiments.coordinator import StudyOptions, identity, join_study
    from legw.experiments.sweep import SweepSpec

    journal = tmp_path / "study.journal"
    spec = SweepSpec(task="fashion-mnist-lstm", methods=["legw"], batch_sizes=[32])
    study = join_study(StudyOptions(storage=str(journal)), "s", identity("sweep", spec),
                       ["legw-b32-s0"], print)
    out = tmp_path / "other"

    def argv(*extra):
        return ["sweep", "--out", str(out), "--storage", str(journal), "--study-name", "s",
                "--methods", "legw", "--data-dir", str(mnist_dir), *extra]

    [line] = _refused(capsys, argv("fashion-mnist-lstm", "--batch-sizes", "64"), out)
    assert line == ("legw: error: --study-name: study s in " + str(journal) + " holds another "
                    "sweep (batch_sizes [32] there, [64] here); give another --study-name, or "
                    "the study's own flags")
    [line] = _refused(capsys, argv("mnist-lstm", "--batch-sizes", "32"), out)
    assert "task 'fashion-mnist-lstm' there, 'mnist-lstm' here" in line
    # a spec holding tuples (milestones) equals itself as the storage gives it back (lists)
    steps = SweepSpec(task="fashion-mnist-lstm", methods=["legw"], batch_sizes=[32],
                      overrides={"decay": "multistep", "milestones": (0.5,)})
    for _ in range(2):
        join_study(StudyOptions(storage=str(journal)), "m", identity("sweep", steps),
                   ["legw-b32-s0"], print)
    study.set_user_attr("legw_version", "0.0.1")
    [line] = _refused(capsys, argv("fashion-mnist-lstm", "--batch-sizes", "32"), out)
    assert "legw_version '0.0.1' there" in line


def _small_spec(mnist_dir):
    from legw.experiments.sweep import SweepSpec

    return SweepSpec(task="fashion-mnist-lstm", methods=["legw"], batch_sizes=[32], seeds=[0, 1],
                     overrides={"epochs": 1.0, "max_steps": 3, "base_warmup_epochs": 0.0},
                     threads=1, data_dir=str(mnist_dir))


def _check_two_runs_once(out):
    trials = _trials(out, "legw-sweep-" + out.name)
    assert Counter((t.user_attrs["legw_run"], t.state.name) for t in trials) == {
        ("legw-b32-s0", "COMPLETE"): 1, ("legw-b32-s1", "COMPLETE"): 1}
    assert [r[0] for r in _results(out).values()] == ["stopped", "stopped"]


@pytest.mark.slow
def test_submitit_local_executor_runs_two_workers_of_the_study(mnist_dir, tmp_path):
    pytest.importorskip("submitit")
    from legw.experiments.coordinator import StudyOptions
    from legw.experiments.slurm import ClusterOptions, submit_workers

    out = tmp_path / "sub"
    jobs = submit_workers("sweep", _small_spec(mnist_dir), out,
                          StudyOptions(storage=str(out / "study.journal"), heartbeat=1),
                          ClusterOptions(workers=2), executor_kind="local")
    assert [j.result() for j in jobs] == [0, 0]  # no failed run in either worker
    _check_two_runs_once(out)


def test_slurm_options_are_checked_and_a_refused_submission_is_one_line(tmp_path, capsys):
    from legw.experiments.slurm import ClusterOptions

    with pytest.raises(ValueError, match=r"^--sbatch: expected KEY=VALUE \(no leading dashes\), "
                                         r"got '--qos=high'$"):
        ClusterOptions(sbatch=["--qos=high"])
    with pytest.raises(ValueError, match="^--workers: must be a positive integer, got 0$"):
        ClusterOptions(workers=0)
    params = ClusterOptions(slurm_partition="gpu", gpus_per_node=8, nodes=2, time=30,
                            account="a", sbatch=["qos=high"]).parameters("legw-x")
    assert params == {"name": "legw-x", "nodes": 2, "tasks_per_node": 1, "timeout_min": 30,
                      "gpus_per_node": 8, "slurm_partition": "gpu", "slurm_account": "a",
                      "slurm_additional_parameters": {"qos": "high"},
                      "slurm_use_srun": False}  # the batch script is the worker
    out = tmp_path / "sweep"
    assert main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "32",
                 "--workers", "4"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "legw: error: --workers: only with --launcher slurm (on this machine, start more "
        "workers by running the same command again)"]
    assert main(["sweep", "fashion-mnist-lstm", "--out", str(out), "--batch-sizes", "32",
                 "--launcher", "slurm"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "legw: error: --launcher: slurm workers meet in a study; give --storage (a journal file "
        "on a shared directory, e.g. OUT/study.journal)"]
    assert not out.exists()


def _slurm_up():
    import shutil

    if shutil.which("sbatch") is None:
        return False
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return sinfo.returncode == 0 and ("idle" in sinfo.stdout or "mix" in sinfo.stdout)


@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no Slurm here (scripts/slurm_local.sh starts one)")
def test_two_workers_through_sbatch_on_a_real_slurm(mnist_dir, tmp_path):
    out = tmp_path / "slurm-sweep"
    argv = [*_args(mnist_dir, out)[:-6], "--seeds", "0", "1", "--batch-sizes", "32",
            "--storage", str(out / "study.journal"), "--heartbeat", "2"]
    bad = subprocess.run([sys.executable, "-m", "legw", *argv, "--launcher", "slurm",
                          "--slurm-partition", "no-such-partition"], env=env(1),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and not out.exists()
    assert bad.stderr.strip().splitlines() == [
        "legw: error: --sbatch: sbatch refused the worker jobs: sbatch: error: Batch job "
        "submission failed: Invalid partition name specified"]

    sub = subprocess.run([sys.executable, "-m", "legw", *argv, "--launcher", "slurm",
                          "--workers", "2", "--time", "10"], env=env(1), capture_output=True,
                         text=True)
    assert sub.returncode == 0, sub.stderr
    ids = sub.stderr.split("Slurm jobs ")[1].split(";")[0].split()
    assert len(ids) == 2
    _wait_for_jobs(ids)
    _check_two_runs_once(out)
    logs = sorted((out / "slurm").glob("*/*_log.err"))
    assert len(logs) == 2


def _wait_for_jobs(ids, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True,
                               text=True).stdout
        if not queue.strip():
            return
        time.sleep(1)
    raise AssertionError(f"Slurm jobs {ids} still queued after {timeout} s")


@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no Slurm here (scripts/slurm_local.sh starts one)")
def test_a_slurm_worker_trains_its_runs_with_torchrun(mnist_dir, tmp_path):
    # the job's batch script is the worker; its run is torchrun with two processes (the
    # --nproc-per-node a GPU node would give as --gpus-per-node), on this one-node Slurm
    out = tmp_path / "slurm-torchrun"
    argv = [*_args(mnist_dir, out)[:-6], "--seeds", "0", "--batch-sizes", "32",
            "--storage", str(out / "study.journal"), "--heartbeat", "2",
            "--nproc-per-node", "2", "--launcher", "slurm", "--time", "10"]
    sub = subprocess.run([sys.executable, "-m", "legw", *argv], env=env(1),
                         capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    _wait_for_jobs(sub.stderr.split("Slurm jobs ")[1].split(";")[0].split())
    (row,) = read_rows(out / "results.json")[1]
    assert row["status"] == "stopped" and row["steps"] == 3
    run = out / "runs" / "legw-b32-s0"
    assert json.loads((run / "config.json").read_text())["resolved"]["world_size"] == 2
    assert "torch.distributed.run --nproc-per-node 2 --standalone" in (
        run / "train.log").read_text()


@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no Slurm here (scripts/slurm_local.sh starts one)")
def test_a_tuning_study_on_slurm_runs_each_trial_once(mnist_dir, tmp_path):
    out = tmp_path / "slurm-tune"
    argv = ["tune", "fashion-mnist-lstm", "--batch-size", "32", "--lr-factors", "1", "2",
            "--warmup-epochs", "0", "--epochs", "1", "--max-steps", "3",
            "--base-warmup-epochs", "0", "--data-dir", str(mnist_dir), "--threads", "1",
            "--out", str(out), "--storage", str(out / "study.journal"), "--heartbeat", "2",
            "--launcher", "slurm", "--workers", "2", "--time", "10"]
    sub = subprocess.run([sys.executable, "-m", "legw", *argv], env=env(1),
                         capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    assert "results in " + str(out / "trials.csv") in sub.stderr
    _wait_for_jobs(sub.stderr.split("Slurm jobs ")[1].split(";")[0].split())
    trials = _trials(out, "legw-tune-slurm-tune")
    assert Counter((t.user_attrs["legw_run"], t.state.name) for t in trials) == {
        (name, "COMPLETE"): 1 for name in ("legw-s0", "lr0.2-w0-s0", "lr0.4-w0-s0")}
    rows = json.loads((out / "trials.json").read_text())["rows"]
    assert sorted(r["status"] for r in rows) == ["stopped"] * 3


@pytest.mark.slow
def test_two_tune_workers_run_each_trial_once_as_a_local_tune_does(mnist_dir, tmp_path):
    def argv(out, *storage):
        return ["tune", "fashion-mnist-lstm", "--batch-size", "32", "--lr-factors", "1", "2",
                "--warmup-epochs", "0", "--epochs", "1", "--max-steps", "3",
                "--base-warmup-epochs", "0", "--data-dir", str(mnist_dir), "--threads", "1",
                "--out", str(out), *storage]

    out = tmp_path / "shared"
    workers = [_start(argv(out, "--storage", str(out / "study.journal"), "--heartbeat", "1"),
                      tmp_path / f"w{i}.log") for i in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0]
    trials = _trials(out, "legw-tune-shared")
    assert Counter((t.user_attrs["legw_run"], t.state.name) for t in trials) == {
        (name, "COMPLETE"): 1 for name in ("legw-s0", "lr0.2-w0-s0", "lr0.4-w0-s0")}
    local = tmp_path / "local"  # the local pool, no study: the same table
    assert main(argv(local)) == 0

    def table(path):
        meta, rows = read_rows(path / "trials.json")
        return meta["best"]["trial"], [(r["trial"], r["status"], r["test_error"]) for r in rows]

    assert table(out) == table(local)


def test_a_tune_study_refuses_the_optuna_search(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "fashion-mnist-lstm", "--batch-size", "32", "--search", "optuna",
                 "--out", str(out), "--storage", str(tmp_path / "study.journal")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "legw: error: --search: optuna picks each trial from the results so far; a --storage "
        "study takes a fixed list: use --search grid or random"]
    assert not out.exists() and not (tmp_path / "study.journal").exists()
    assert main(["tune", "fashion-mnist-lstm", "--batch-size", "32", "--search", "optuna",
                 "--out", str(out), "--storage", str(tmp_path / "study.journal"),
                 "--launcher", "slurm"]) == 2  # refused before a job is submitted
    assert capsys.readouterr().err.startswith("legw: error: --search: optuna picks")
    assert not out.exists() and not (tmp_path / "study.journal").exists()
    assert main(["tune", "fashion-mnist-lstm", "--batch-size", "32", "--out", str(out),
                 "--workers", "2"]) == 2
    assert capsys.readouterr().err.startswith("legw: error: --workers: only with --launcher")


@pytest.mark.slow
def test_a_worker_ended_by_sigterm_hands_its_run_back_at_once(mnist_dir, tmp_path):
    out = tmp_path / "shared"
    argv = [*_args(mnist_dir, out, "--seeds", "0", "--batch-sizes", "32", "--epochs", "3",
                   "--max-steps", "24", "--checkpoint-every", "2"), "--heartbeat", "600"]
    worker = _start(argv, tmp_path / "term.log")
    run_dir = out / "runs" / "legw-b32-s0"
    deadline = time.monotonic() + 300
    while not list((run_dir / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 130
    assert "legw-b32-s0: interrupted; enqueued again" in (tmp_path / "term.log").read_text()
    # a lease of 4 x 600 s has not run out: the next worker resumes the run at once
    assert main(argv) == 0
    trials = _trials(out, "legw-sweep-shared")
    assert [(t.state.name, t.user_attrs.get("legw_resumed")) for t in trials] == [
        ("FAIL", False), ("COMPLETE", True)]
    assert _launches(run_dir) == 2 and _train_steps(run_dir) == list(range(24))


@pytest.mark.slow
def test_a_killed_worker_leaves_no_torchrun_process_training(mnist_dir, tmp_path):
    # torchrun starts its ranks in sessions of their own: they ask to die with it themselves
    # (LEGW_DIE_WITH_PARENT), as torchrun dies with the worker
    out = tmp_path / "shared"
    argv = [*_args(mnist_dir, out, "--seeds", "0", "--batch-sizes", "32", "--epochs", "3000",
                   "--checkpoint-every", "50", "--nproc-per-node", "2")]
    worker = _start(argv, tmp_path / "w.log")
    run = out / "runs" / "legw-b32-s0"

    def training():
        return subprocess.run(["pgrep", "-f", f"legw train --config {run}"],
                              capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 120
    while len(training()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(training()) == 3  # torchrun and its two ranks
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 10
    while training() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert training() == []
