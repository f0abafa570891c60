"""--scaling adaptive end to end: the gain from the online noise, the position, resume."""

import json

import pytest
import torch
from helpers import final_params, make_mnist_dir, read_jsonl

from legw.cli import main
from legw.schedule import BaseRecipe, RecipeWarning
from legw.training.config import TrainConfig
from legw.training.trainer import train


def config(data, out, **kw):
    base = dict(task="fashion-mnist-lstm", global_batch_size=128, micro_batch_size=32,
                epochs=4.0, base_batch_size=32, base_lr=0.4, base_warmup_epochs=0.25,
                scaling="adaptive", noise_window=4, num_threads=1, quiet=True,
                data_dir=str(data), out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def test_the_run_ends_when_the_position_reaches_the_base_budget(tmp_path):
    data = make_mnist_dir(tmp_path / "data")  # 256 samples: the base (32) has 8 steps/epoch
    summary = train(config(data, tmp_path / "run"))
    recs = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert summary["status"] == "completed" and summary["total_steps"] == len(recs)
    base_total, warmup = 32, 2  # 4 epochs x 8 base steps; warmup 0.25 epochs = 2 base steps
    taus = [r["tau"] for r in recs]
    assert taus[:3] == [0.0, 1.0, 2.0]                 # LEGW warmup: one base step per step
    assert all(1.0 <= r["gain"] <= 4.0 for r in recs)   # k = 4
    assert recs[0]["gain"] == 1.0 and "b_noise" not in recs[0]
    for a, b in zip(recs[warmup:], recs[warmup + 1:]):
        assert b["tau"] == pytest.approx(a["tau"] + a["gain"])
    assert recs[-1]["tau"] < base_total <= recs[-1]["tau"] + recs[-1]["gain"]
    assert len(recs) < base_total                       # a bigger batch takes fewer steps
    base = BaseRecipe(32, 0.4, 0.25, 4.0).scale(32, 256)
    for r in recs:  # the LR is the base recipe's at tau times the gain
        assert r["lr"] == pytest.approx(base.lr_at_step(r["tau"]) * r["gain"])
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert (resolved["noise_source"], resolved["noise_window"]) == ("micro", 4)
    assert resolved["adaptive_lr_power"] == 1.0  # SGD's default


def test_resume_is_bit_identical(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "whole"))
    train(config(data, tmp_path / "cut", max_steps=5))
    train(config(data, tmp_path / "cut", resume=True))
    a, b = final_params(tmp_path / "whole"), final_params(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole = [r for r in read_jsonl(tmp_path / "whole" / "metrics.jsonl") if r["kind"] == "train"]
    cut = [r for r in read_jsonl(tmp_path / "cut" / "metrics.jsonl") if r["kind"] == "train"]
    assert [(r["tau"], r["gain"], r["lr"]) for r in whole] == \
        [(r["tau"], r["gain"], r["lr"]) for r in cut]


def test_a_resume_at_another_micro_batch_drops_the_noise_window(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    for micro, name in ((32, "same"), (16, "other")):
        train(config(data, tmp_path / name, max_steps=5))
        train(config(data, tmp_path / name, micro_batch_size=micro, max_steps=6, resume=True))
    first = {name: [r for r in read_jsonl(tmp_path / name / "metrics.jsonl")
                    if r["kind"] == "train"][5] for name in ("same", "other")}
    assert "b_noise" in first["same"]       # the window carried over: an estimate at once
    assert "b_noise" not in first["other"]  # restarted at micro batch 16: one draw so far
    assert first["other"]["gain"] == first["same"]["gain"]  # the last gain, until it refills


def test_elastic_resume_keeps_the_position(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "run", max_steps=4))
    before = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    tau = before[-1]["tau"] + before[-1]["gain"]
    train(config(data, tmp_path / "run", global_batch_size=64, resume=True))
    after = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert after[len(before)]["tau"] == pytest.approx(tau)
    assert all(r["gain"] <= 2.0 for r in after[len(before):])  # k = 2 now


def test_adaptive_without_noise_is_refused_before_training(tmp_path, capsys):
    data = make_mnist_dir(tmp_path / "data")
    assert main(["train", "fashion-mnist-lstm", "--data-dir", str(data), "--batch-size", "64",
                 "--base-batch-size", "32", "--scaling", "adaptive", "--out",
                 str(tmp_path / "r")]) == 2
    assert "--scaling adaptive: the gain needs the gradient noise" in capsys.readouterr().err


def _adaptive(**kw):
    return TrainConfig(task="fashion-mnist-lstm", global_batch_size=1024, micro_batch_size=128,
                       scaling="adaptive", **kw)


def test_the_lr_power_defaults_by_optimizer():
    for optimizer, power in (("sgd", 1.0), ("lars", 1.0), ("adam", 0.5), ("adamw", 0.5),
                             ("lamb", 0.5)):
        assert _adaptive(optimizer=optimizer).resolve().adaptive_lr_power == power
    with pytest.warns(RecipeWarning, match="full gain blew LAMB up"):
        assert _adaptive(optimizer="lamb", adaptive_lr_power=0.75).resolve(
            ).adaptive_lr_power == 0.75
    assert _adaptive().resolve().adaptive_lr_power == 1.0  # the task's optimizer: SGD


def test_the_full_gain_on_a_normalised_update_warns(recwarn):
    for ok in (_adaptive(), _adaptive(optimizer="lars"), _adaptive(optimizer="lamb"),
               _adaptive(optimizer="adam", adaptive_lr_power=0.5)):
        ok.resolve(1)
    assert not recwarn.list
    for optimizer in ("lamb", "adam", "adamw"):
        with pytest.warns(RecipeWarning, match=f"with {optimizer} and --adaptive-lr-power 1: "
                                               r".*default \(0\.5 for"):
            _adaptive(optimizer=optimizer, adaptive_lr_power=1.0).resolve(1)


def test_lamb_trains_with_the_square_root_of_the_gain_and_resumes_with_it_explicit(tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    lamb = dict(optimizer="lamb", base_lr=0.01)
    train(config(data, tmp_path / "run", max_steps=6, **lamb))
    recs = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    base = BaseRecipe(32, 0.01, 0.25, 4.0).scale(32, 256)
    assert any(r["gain"] > 1.5 for r in recs)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["adaptive_lr_power"] == 0.5
    for r in recs:
        assert r["lr"] == pytest.approx(base.lr_at_step(r["tau"]) * r["gain"] ** 0.5)
    # the default given explicitly is the same run; the full gain is another one
    train(config(data, tmp_path / "run", max_steps=7, resume=True, adaptive_lr_power=0.5,
                 **lamb))
    with pytest.raises(ValueError, match=r"--adaptive-lr-power: 1\.0 differs from 0\.5"), \
            pytest.warns(RecipeWarning):
        train(config(data, tmp_path / "run", resume=True, adaptive_lr_power=1.0, **lamb))


def test_gain_warmup_advances_by_the_gain_from_the_first_step_and_must_match_on_resume(
        tmp_path):
    data = make_mnist_dir(tmp_path / "data")
    train(config(data, tmp_path / "run", adaptive_warmup="gain", max_steps=6))
    recs = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert recs[1]["gain"] > 1 and recs[1]["tau"] < 2  # still in the 2-base-step warmup
    for a, b in zip(recs, recs[1:]):  # no LEGW warmup: tau += gain throughout
        assert b["tau"] == pytest.approx(a["tau"] + a["gain"])
    with pytest.raises(ValueError, match="--adaptive-warmup: 'legw' differs from 'gain'"):
        train(config(data, tmp_path / "run", resume=True))  # the default: another run
    # the noise window smooths the gain, so it sets the LR too: another run
    with pytest.raises(ValueError, match="--noise-window: 5 differs from 4"):
        train(config(data, tmp_path / "run", adaptive_warmup="gain", noise_window=5,
                     resume=True))
