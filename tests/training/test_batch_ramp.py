"""legw train --batch-ramp: the data order under a changing batch, resume, DDP, refusals.

Real parts: the trainer on tiny generated Fashion-MNIST-shaped data, torchrun (gloo)."""

import json
import math

import pytest
import torch
from helpers import final_params, make_mnist_dir, make_ptb_dir, read_jsonl, run, torchrun_cmd

from legw import RecipeWarning
from legw.data.ptb import load_ptb
from legw.training.batches import RampBatches, permutation, stream_steps_per_epoch
from legw.training.config import TrainConfig
from legw.training.trainer import train


class _Indices:
    """An image set whose "images" are their own indices."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def get(self, idx):
        return idx.clone(), idx.clone()


def test_every_sample_once_per_epoch_however_the_batch_grows_on_any_number_of_ranks():
    n, seed = 100, 3
    for world in (1, 2, 4):
        ranks = [RampBatches(_Indices(n), 4, r, world, seed) for r in range(world)]
        stream, first = [], 0
        for batch in (16, 16, 32, 48, 64, 64, 64, 128):  # crosses epochs mid-step
            step = [x for rank in ranks for x, _ in rank.micro_batches(first, batch)]
            assert [len(x) for x in step] == [4] * (batch // 4)
            stream += torch.cat(step).tolist()
            first += batch
        # the stream is epoch 0's order, then epoch 1's, ...: each sample once an epoch
        expected = torch.cat([permutation(n, seed, e) for e in range(first // n + 1)]).tolist()
        assert stream == expected[:first]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mnist_dir(tmp_path_factory.mktemp("mnist"))  # 256 train samples


def _config(data, out, **kw):
    fields = dict(task="fashion-mnist-lstm", global_batch_size=128, base_batch_size=16,
                  batch_ramp="seesaw", epochs=3.0, base_warmup_epochs=0.1, num_threads=1,
                  quiet=True, data_dir=str(data), out_dir=str(out))
    return TrainConfig(**{**fields, **kw})


def _steps(run_dir):
    return [(r["step"], r["batch_size"], r["lr"], r["loss"])
            for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def test_a_seesaw_run_logs_its_batches_uses_its_budget_and_resumes_bit_identically(data, tmp_path):
    whole = train(_config(data, tmp_path / "whole"))
    steps = _steps(tmp_path / "whole")
    assert whole["status"] == "completed" and whole["samples_seen"] == 3 * 256
    assert [b for _, b, _, _ in steps][:17] == [16] * 16 + [32]  # doubled at the 1st halving
    assert sorted({b for _, b, _, _ in steps[:-1]}) == [16, 32, 64, 128]  # the last: trimmed
    assert whole["total_steps"] == whole["steps"] == len(steps)

    cut = train(_config(data, tmp_path / "cut", max_steps=18, checkpoint_every=1))
    assert cut["status"] == "stopped"
    resumed = train(_config(data, tmp_path / "cut", resume=True))
    assert resumed["status"] == "completed" and _steps(tmp_path / "cut") == steps
    a, b = final_params(tmp_path / "cut"), final_params(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_noise_ramp_measures_at_every_batch_and_grows(data, tmp_path):
    summary = train(_config(data, tmp_path / "noise", batch_ramp="noise", micro_batch_size=8,
                            noise_window=3, epochs=4.0))
    rows = [r for r in read_jsonl(tmp_path / "noise" / "metrics.jsonl") if r["kind"] == "train"]
    assert summary["samples_seen"] == 4 * 256
    assert all("noise_grad_sq" in r for r in rows)  # measured at every batch of the ramp
    batches = [r["batch_size"] for r in rows]
    assert batches[:-1] == sorted(batches[:-1]) and batches[0] == 16  # the last: trimmed
    assert len(set(batches)) >= 3  # it grew
    assert all(b % 8 == 0 for b in batches)
    resolved = json.loads((tmp_path / "noise" / "config.json").read_text())["resolved"]
    assert resolved["batch_ramp"] == "noise" and resolved["noise_source"] == "micro"


def test_two_ranks_follow_the_same_ramp_as_one_process(data, tmp_path):
    common = ["--data-dir", str(data), "--batch-size", "128", "--base-batch-size", "16",
              "--batch-ramp", "16@0,64@1,128@2", "--epochs", "3", "--base-warmup-epochs",
              "0.1", "--micro-batch-size", "8", "--threads", "1", "--quiet"]
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", *common,
                            "--out", str(tmp_path / "ddp")))
    assert done.returncode == 0, done.stderr[:3000]
    train(_config(data, tmp_path / "one", batch_ramp="16@0,64@1,128@2", micro_batch_size=8))
    ddp, one = _steps(tmp_path / "ddp"), _steps(tmp_path / "one")
    assert [s[:3] for s in ddp] == [s[:3] for s in one]  # the same batches and LRs
    assert [s[3] for s in ddp] == pytest.approx([s[3] for s in one], rel=1e-4)
    a, b = final_params(tmp_path / "ddp"), final_params(tmp_path / "one")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    (dict(scaling="adaptive"), "--batch-ramp: grows the batch itself"),
    (dict(task="ptb-small", global_batch_size=640, epochs=None, base_batch_size=None,
          batch_ramp="20@0,40@1.5"), "--batch-ramp: token streams .* whole epochs"),
    (dict(batch_ramp="24@0,128@1", micro_batch_size=16), "the first batch 24 must be"),
    (dict(batch_ramp="noise", micro_batch_size=16), "--batch-ramp noise: follows the gradient"),
    (dict(batch_ramp="1@0,2@x"), "--batch-ramp: expected noise, seesaw"),
    (dict(ramp_factor=0.0), "--ramp-factor: must be"),
])
def test_ramps_that_cannot_train_are_refused_naming_the_flag(data, tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        _config(data, tmp_path / "r", **fields).resolve(1)
    assert not (tmp_path / "r").exists()


def test_a_ramp_cut_on_one_process_resumes_on_two_ranks_where_it_stood(data, tmp_path):
    whole = train(_config(data, tmp_path / "whole"))
    train(_config(data, tmp_path / "cut", max_steps=18, checkpoint_every=1))
    done = run(torchrun_cmd(2, "train", "fashion-mnist-lstm", "--data-dir", str(data),
                            "--batch-size", "128", "--base-batch-size", "16", "--batch-ramp",
                            "seesaw", "--epochs", "3", "--base-warmup-epochs", "0.1",
                            "--threads", "1", "--quiet", "--resume", "--out",
                            str(tmp_path / "cut")))
    assert done.returncode == 0, done.stderr[:3000]
    assert "resumed from" in done.stdout + done.stderr
    # the ramp continues at its batch and LR: the same steps as the uninterrupted run
    cut, ref = _steps(tmp_path / "cut"), _steps(tmp_path / "whole")
    assert [s[:3] for s in cut] == [s[:3] for s in ref]
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["samples_seen"] == whole["samples_seen"] and summary["status"] == "completed"


def test_a_tau_budget_ends_when_the_gains_make_up_the_base_steps(data, tmp_path):
    summary = train(_config(data, tmp_path / "tau", batch_ramp="noise", micro_batch_size=8,
                            noise_window=3, epochs=4.0, ramp_budget="tau"))
    rows = [r for r in read_jsonl(tmp_path / "tau" / "metrics.jsonl") if r["kind"] == "train"]
    base_steps = 4 * (256 // 16)
    assert rows[-1]["tau"] >= base_steps > rows[-2]["tau"] and summary["status"] == "completed"
    taus = [0.0] + [r["tau"] for r in rows]
    # each step: its gain in [1, B / B0] base steps (sums of floats: to rounding)
    assert all(1 - 1e-9 <= b - a <= r["batch_size"] / 16 + 1e-9
               for a, b, r in zip(taus, taus[1:], rows))
    with pytest.raises(ValueError, match="--ramp-budget tau: counts each step's gain"):
        _config(data, tmp_path / "x", ramp_budget="tau").resolve(1)  # seesaw: no noise


def test_the_ramp_lr_rule_knows_the_optimizer_unless_scaling_is_given(data, tmp_path):
    def power(**kw):
        return _config(data, tmp_path / "p", batch_ramp="noise", micro_batch_size=8,
                       **kw).resolve(1).ramp_lr_power

    assert power() == 1.0  # SGD: linear, as the ramp keeps B at or below B_noise
    assert power(optimizer="lamb") == power(optimizer="adam") == 0.5
    assert power(scaling="sqrt") == 0.5
    with pytest.warns(RecipeWarning, match="scaling='linear' with warmup='legw'"):
        assert power(optimizer="adam", scaling="linear") == 1.0


def test_token_streams_ramp_at_epoch_boundaries_read_every_window_and_resume_exactly(tmp_path):
    ptb = make_ptb_dir(tmp_path / "ptb")
    n_tokens = len(load_ptb(ptb).train)
    common = dict(task="ptb-small", global_batch_size=8, base_batch_size=2, epochs=3.0,
                  milestones=[2.0],
                  base_lr=1.0, batch_ramp="2@0,4@1,8@2", micro_batch_size=2, data_dir=str(ptb))
    whole = train(_config(ptb, tmp_path / "whole", **common))
    steps = _steps(tmp_path / "whole")
    per_epoch = [stream_steps_per_epoch(n_tokens, b, 20) for b in (2, 4, 8)]
    # each epoch cut into its batch's streams and read to the end: every window once
    assert [b for _, b, _, _ in steps] == [b for b, n in zip((2, 4, 8), per_epoch,
                                                              strict=True) for _ in range(n)]
    assert whole["status"] == "completed" and whole["epochs"] == 3.0
    evals = [r["epoch"] for r in read_jsonl(tmp_path / "whole" / "metrics.jsonl")
             if r["kind"] == "eval"]
    assert evals == [1.0, 2.0, 3.0]
    # cut mid-epoch 1 (hidden states of 2 micro-batches in the checkpoint), resumed: the same run
    cut = per_epoch[0] + per_epoch[1] // 2
    train(_config(ptb, tmp_path / "cut", **common, max_steps=cut, checkpoint_every=cut))
    train(_config(ptb, tmp_path / "cut", **common, resume=True))
    assert _steps(tmp_path / "cut") == steps
    a, b = final_params(tmp_path / "cut"), final_params(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_noise_ramp_on_token_streams_grows_between_epochs_only(tmp_path):
    ptb = make_ptb_dir(tmp_path / "ptb")
    train(_config(ptb, tmp_path / "noise", task="ptb-small", global_batch_size=16,
                  base_batch_size=2, epochs=3.0, milestones=[2.0], base_lr=1.0,
                  batch_ramp="noise",
                  micro_batch_size=1, noise_window=3, data_dir=str(ptb)))
    rows = [r for r in read_jsonl(tmp_path / "noise" / "metrics.jsonl") if r["kind"] == "train"]
    assert all("noise_grad_sq" in r for r in rows)
    by_epoch = {}
    for r in rows:
        by_epoch.setdefault(int(r["epoch"] + 1e-9), set()).add(r["batch_size"])
    assert all(len(batches) == 1 for batches in by_epoch.values())  # one batch an epoch
    firsts = [min(by_epoch[e]) for e in sorted(by_epoch)]
    assert firsts[0] == 2 and firsts == sorted(firsts) and firsts[-1] > 2  # grew, never shrank


def test_eval_every_follows_the_epochs_of_data_as_the_batch_grows(data, tmp_path):
    # images: 256 samples at 16, 64, 128 (16, 4, 2 steps an epoch); half epochs fall on steps
    train(_config(data, tmp_path / "img", batch_ramp="16@0,64@1,128@2", eval_every=0.5,
                  micro_batch_size=16))
    evals = [r["epoch"] for r in read_jsonl(tmp_path / "img" / "metrics.jsonl")
             if r["kind"] == "eval"]
    assert evals == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    # token streams: the first step past each half epoch, at that epoch's number of steps
    ptb_dir = make_ptb_dir(tmp_path / "ptb-data")
    n_tokens = len(load_ptb(ptb_dir).train)
    train(_config(ptb_dir, tmp_path / "ptb", task="ptb-small", global_batch_size=8,
                  base_batch_size=2, epochs=3.0, milestones=[2.0], base_lr=1.0,
                  batch_ramp="2@0,4@1,8@2", micro_batch_size=2, eval_every=0.5))
    evals = [r["epoch"] for r in read_jsonl(tmp_path / "ptb" / "metrics.jsonl")
             if r["kind"] == "eval"]
    halves = [e + math.ceil(n / 2) / n for e, n in
              enumerate(stream_steps_per_epoch(n_tokens, b, 20) for b in (2, 4, 8))]
    assert evals == pytest.approx([x for h, e in zip(halves, (1.0, 2.0, 3.0)) for x in (h, e)])
