"""A run directory and its one owner, RunDir: what it names, writes and reads back."""

import json

import pytest

from legw.training.run_dir import RunDir, RunLog, error_from_accuracy


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write_metrics(run, recs, cut=""):
    run.path.mkdir(parents=True, exist_ok=True)
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in recs) + cut)


def _summary(status="completed", epochs=2.0, **final):
    return {"status": status, "task": "fashion-mnist-lstm", "global_batch_size": 64, "seed": 1,
            "steps": 8, "total_steps": 8, "epochs": epochs, "wall_time_s": 3.0,
            "final": final, "diverged_at": {"step": 5} if status == "diverged" else None}


def test_records_reach_the_file_on_flush_and_only_on_rank_0(tmp_path):
    log = RunLog(tmp_path, enabled=True, quiet=True, total_steps=3, initial_step=0)
    log.record({"kind": "train", "step": 0, "loss": 1.0, "lr": 0.1})
    log.record({"kind": "eval", "step": 1, "test_accuracy": 0.5})
    log.close()
    assert [r["kind"] for r in lines(tmp_path / "metrics.jsonl")] == ["train", "eval"]
    other = tmp_path / "other"
    silent = RunLog(other, enabled=False, quiet=True, total_steps=3, initial_step=0)
    silent.record({"kind": "train", "step": 0, "loss": 1.0, "lr": 0.1})
    silent.close()
    assert not (other / "metrics.jsonl").exists()


def test_truncate_keeps_steps_before_the_checkpoint_and_its_evaluation(tmp_path):
    run = RunDir(tmp_path)
    recs = [{"kind": "train", "step": s} for s in range(5)]
    recs.insert(3, {"kind": "eval", "step": 3})
    _write_metrics(run, recs, cut='{"kind": "tra')
    run.truncate_metrics(step=3)
    assert lines(run.metrics_file) == [{"kind": "train", "step": 0}, {"kind": "train", "step": 1},
                                       {"kind": "train", "step": 2}, {"kind": "eval", "step": 3}]
    RunDir(tmp_path / "absent").truncate_metrics(3)  # nothing to cut, nothing created
    assert not (tmp_path / "absent").exists()


def test_metrics_skip_a_line_cut_by_a_kill_and_an_absent_file_is_empty(tmp_path):
    run = RunDir(tmp_path)
    _write_metrics(run, [{"kind": "train", "step": 0}], cut='{"kind": "train", "st\xe9')
    assert run.metrics() == [{"kind": "train", "step": 0}]
    assert RunDir(tmp_path / "none").metrics() == []


def test_state_finished_resumable_or_fresh(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.state() == "fresh"
    run.checkpoints.mkdir(parents=True)
    (run.checkpoints / ".step-000000002.pt.ab12cd34.tmp").write_bytes(b"")  # a killed write
    assert run.state() == "fresh"
    (run.checkpoints / "step-000000002").mkdir()  # a sharded checkpoint is a directory
    assert run.state() == "resumable"
    run.summary_file.write_text("{")  # unreadable: not finished
    assert run.state() == "resumable" and run.summary() is None
    for status in ("completed", "stopped", "diverged"):
        run.write_summary(_summary(status))
        assert run.state() == "finished" and run.status() == status


def test_outcome_error_from_accuracy_objective_and_last_epoch_loss(tmp_path):
    run = RunDir(tmp_path)
    assert run.outcome() is None
    _write_metrics(run, [{"kind": "train", "step": 0, "epoch": 0.0, "loss": 9.0},
                         {"kind": "train", "step": 1, "epoch": 1.0, "loss": 0.3},
                         {"kind": "eval", "step": 2, "epoch": 1.5, "test_accuracy": 0.8},
                         {"kind": "train", "step": 2, "epoch": 1.5, "loss": 0.1}],
                   cut='{"kind": "train", "step": 3, "epoch": 1.7')
    run.write_summary(_summary(test_accuracy=0.9, test_loss=0.3))
    out = run.outcome()
    assert out.objective == pytest.approx(10.0) == error_from_accuracy(0.9)
    assert out.train_loss == pytest.approx(0.2)  # epoch 0's 9.0 is not in the last epoch
    assert (out.status, out.batch_size, out.seed, out.steps) == ("completed", 64, 1, 8)
    run.write_summary(_summary(test_perplexity=120.0))
    assert run.outcome().objective == 120.0  # a language model: the perplexity
    run.write_summary(_summary("diverged", test_accuracy=0.9))
    out = run.outcome()  # a diverged run's last evaluation predates the divergence
    assert out.final == {} and out.objective is None and out.diverged_step == 5


def test_config_record_and_a_corrupt_config_is_one_clear_error(tmp_path):
    run = RunDir(tmp_path)
    assert run.config() is None and run.recorded_config() is None
    run.write_config({"config": {"seed": 3}, "resolved": {"task": "mnist-lstm",
                                                          "global_batch_size": 32,
                                                          "dataset_size": 60000},
                      "base_recipe": {"base_batch_size": 32}})
    record = run.config()
    assert (record.task, record.batch_size, record.seed, record.dataset_size) == \
        ("mnist-lstm", 32, 3, 60000)
    assert record.noise_batch_size is None and record.recipe == {}
    assert run.recorded_config() == ({"seed": 3}, {"base_batch_size": 32}, str(run.config_file))
    for text in ('{"config": {', '["config"]', '{"resolved": {}}'):
        run.config_file.write_text(text)
        with pytest.raises(ValueError, match="config.json: not") as e:
            run.config()
        assert "\n" not in str(e.value)
        with pytest.raises(ValueError, match="^--resume: .*config.json: not.*move it away"):
            run.recorded_config()


def test_a_new_run_refuses_a_directory_holding_one(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    run.check_new()  # other files are not a run
    run.write_summary(_summary())
    with pytest.raises(ValueError, match=r"^--out: .* already holds a run \(summary.json\)"):
        run.check_new()


def test_launch_round_trips(tmp_path):
    run = RunDir(tmp_path)
    assert run.launch() is None
    assert run.write_launch({"task": "mnist-lstm"}) == tmp_path / "launch.json"
    assert run.launch() == {"task": "mnist-lstm"}


def test_a_committed_record_is_read_from_its_gzipped_metrics(tmp_path):
    import gzip

    from legw.training.run_dir import RunDir

    lines = [json.dumps({"kind": "train", "step": s, "loss": 1.0 / (s + 1)}) for s in range(3)]
    with gzip.open(tmp_path / "metrics.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    assert [r["step"] for r in RunDir(tmp_path).metrics()] == [0, 1, 2]
    (tmp_path / "metrics.jsonl").write_text(lines[0] + "\n")  # a live run's file wins
    assert [r["step"] for r in RunDir(tmp_path).metrics()] == [0]
