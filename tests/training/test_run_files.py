"""What a run directory holds while it trains: metrics.jsonl, cut back on resume."""

import json

from legw.training.run_files import RunLog, truncate_metrics


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


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
    path = tmp_path / "metrics.jsonl"
    recs = [{"kind": "train", "step": s} for s in range(5)]
    recs.insert(3, {"kind": "eval", "step": 3})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"kind": "tra')  # cut line
    truncate_metrics(path, step=3)
    assert lines(path) == [{"kind": "train", "step": 0}, {"kind": "train", "step": 1},
                           {"kind": "train", "step": 2}, {"kind": "eval", "step": 3}]
    truncate_metrics(tmp_path / "absent.jsonl", 3)  # nothing to cut
