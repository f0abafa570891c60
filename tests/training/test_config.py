"""TrainConfig -> RunSpec: the batch arithmetic, the task's defaults, the optimizer rule, the
noise source, the adaptive refusals, the field classification and the resume identity --
resolved once, without a trainer."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from legw.schedule import RecipeWarning
from legw.training.config import (
    TrainConfig,
    build_base_recipe,
    config_fields,
    flag_of,
    recipe_field,
)


def _spec(world_size: int = 1, **fields):
    return TrainConfig(task="mnist-lstm", **fields).resolve(world_size)


def test_the_batch_is_derived_once_from_the_flags_and_the_world_size():
    spec = _spec()
    assert (spec.global_batch_size, spec.micro_batch_size, spec.accumulation_steps) == (128, 128,
                                                                                        1)
    spec = _spec(4, global_batch_size=1024, micro_batch_size=64)
    assert (spec.global_batch_size, spec.micro_batch_size, spec.accumulation_steps) == (1024, 64,
                                                                                        4)
    assert _spec(2, global_batch_size=512).micro_batch_size == 256
    with pytest.raises(ValueError, match="--batch-size: 100 is not divisible by the world "
                                         "size 3"):
        _spec(3, global_batch_size=100)
    with pytest.raises(ValueError, match="--batch-size 96 is not --micro-batch-size 32 x world "
                                         "size 2 x a whole number"):
        _spec(2, global_batch_size=96, micro_batch_size=32)
    with pytest.raises(ValueError, match="--batch-size 128 is not --micro-batch-size 48 x world "
                                         "size 1"):
        _spec(micro_batch_size=48)


def test_the_task_fills_what_was_not_given_and_momentum_goes_only_to_sgd_and_lars():
    spec = _spec()
    assert (spec.optimizer, spec.momentum, spec.weight_decay) == ("sgd", 0.9, 0.0)
    assert spec.clip_grad_norm is None and spec.run_dir == "runs/mnist-lstm-b128-s0"
    assert spec.optimizer_kwargs() == {"momentum": 0.9}
    assert _spec(optimizer="lars", momentum=0.8).optimizer_kwargs() == {"momentum": 0.8}
    assert _spec(optimizer="adamw").optimizer_kwargs() == {}
    assert _spec(clip_grad_norm=0.0).clip_grad_norm is None  # 0 turns clipping off
    ptb = TrainConfig(task="ptb-small").resolve()
    assert ptb.clip_grad_norm == 0.25 and ptb.base.peak_lr == 20.0


def test_the_noise_source_follows_the_micro_gradients_a_step_has():
    assert _spec().noise_source is None                                   # one per step
    micro = _spec(global_batch_size=256, micro_batch_size=64)
    assert (micro.noise_source, micro.noise_window) == ("micro", 50)
    assert _spec(2, global_batch_size=256).noise_source == "rank"         # one per rank
    assert _spec(global_batch_size=256, micro_batch_size=64,
                 noise_window=0).noise_source is None                     # turned off


def test_adaptive_settings_are_resolved_and_refused_where_the_gain_cannot_be_measured():
    spec = _spec(global_batch_size=1024, micro_batch_size=128, scaling="adaptive")
    assert spec.is_adaptive and spec.scaling == "adaptive"
    assert (spec.adaptive_lr_power, spec.adaptive_warmup, spec.noise_window) == (1.0, "legw",
                                                                                125)
    assert (spec.base.scaling, spec.base.warmup) == ("sqrt", "legw")  # the gain replaces them
    assert _spec(global_batch_size=1024, micro_batch_size=128, scaling="adaptive",
                 optimizer="lamb").adaptive_lr_power == 0.5
    assert _spec().adaptive_lr_power is None and not _spec().is_adaptive
    with pytest.raises(ValueError, match="--scaling adaptive: adaptive scaling grows the "
                                         "batch; 64 is below the base 128"):
        _spec(global_batch_size=64, scaling="adaptive")
    with pytest.raises(ValueError, match="--scaling adaptive: the gain needs the gradient "
                                         "noise"):
        _spec(global_batch_size=1024, scaling="adaptive")
    with pytest.raises(ValueError, match="^--methods adaptive at 1024: .* new --out$"):
        TrainConfig(task="mnist-lstm", global_batch_size=1024, scaling="adaptive").resolve(
            1, adaptive_flag="--methods adaptive at 1024", noise_remedy="a new --out")
    with pytest.warns(RecipeWarning, match="full gain blew LAMB up"):
        _spec(global_batch_size=1024, micro_batch_size=128, scaling="adaptive",
              optimizer="lamb", adaptive_lr_power=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _spec(global_batch_size=1024, micro_batch_size=128, scaling="adaptive", optimizer="lamb")


def test_a_recipe_error_names_the_flag_without_parsing_its_text():
    with pytest.raises(ValueError, match=r"^peak_lr \(--base-lr\): must be a positive"):
        TrainConfig(task="mnist-lstm", base_lr=-1.0)
    with pytest.raises(ValueError, match=r"^warmup_epochs \(--base-warmup-epochs\): "):
        TrainConfig(task="mnist-lstm", base_warmup_epochs=-0.5)
    with pytest.raises(ValueError, match=r"^global_batch_size \(--batch-size\): exceeds"):
        _spec(global_batch_size=512).recipe(dataset_size=100)
    recipe = build_base_recipe({"base_batch_size": 8, "peak_lr": 1.0, "warmup_epochs": 0.0,
                                "epochs": 2},
                               {"base_lr": 2.0, "epochs": None})
    assert (recipe.peak_lr, recipe.epochs) == (2.0, 2)


def test_every_field_is_classified_once_in_its_metadata():
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "task"]
    assert all(f.metadata["group"] in ("batch", "recipe", "optimizer", "run") for f in fields)
    assert config_fields(group="recipe") == (
        "base_batch_size", "base_lr", "base_warmup_epochs", "epochs", "decay", "power",
        "end_lr", "milestones", "gamma", "scaling", "warmup")
    assert recipe_field("base_lr") == "peak_lr" and recipe_field("gamma") == "gamma"
    assert config_fields(trial=True) == ("base_batch_size", "base_lr", "base_warmup_epochs",
                                         "scaling", "warmup")
    assert flag_of("global_batch_size") == "--batch-size" and flag_of("task") == "TASK"
    # every field either may change on resume or is compared by the resume check
    compared = set(_spec().identity()) | set(config_fields(group="recipe"))
    free = set(config_fields(resume_free=True))
    everything = {f.name for f in dataclasses.fields(TrainConfig)}
    assert everything - compared - free == set() and not compared & free


def test_resume_compares_the_identity_and_lets_the_batch_change():
    saved = TrainConfig(task="mnist-lstm", global_batch_size=64)
    elastic = TrainConfig(task="mnist-lstm", global_batch_size=128, micro_batch_size=32,
                          max_steps=9, optimizer="sgd", momentum=0.9)  # the task's own values
    elastic.resolve().check_resume(saved.to_dict(), saved.resolve().base.to_dict(), "ckpt")
    other = TrainConfig(task="mnist-lstm", momentum=0.5).resolve()
    with pytest.raises(ValueError, match="^--momentum: 0.5 differs from 0.9, recorded in ckpt"):
        other.check_resume(saved.to_dict(), saved.resolve().base.to_dict(), "ckpt")
    lr = TrainConfig(task="mnist-lstm", base_lr=0.2).resolve()
    with pytest.raises(ValueError, match="^--base-lr: 0.2 differs from"):
        lr.check_resume(saved.to_dict(), saved.resolve().base.to_dict(), "ckpt")
    adaptive = TrainConfig(task="mnist-lstm", global_batch_size=1024, micro_batch_size=128,
                           scaling="adaptive").resolve()
    with pytest.raises(ValueError, match="^--scaling: 'adaptive' differs from None"):
        adaptive.check_resume(saved.to_dict(), saved.resolve().base.to_dict(), "ckpt")
    with pytest.raises(ValueError, match="^--resume: ckpt records a configuration this "
                                         "version cannot read"):
        elastic.resolve().check_resume({**saved.to_dict(), "seed": -1}, {}, "ckpt")


def test_an_adaptive_run_resumes_with_its_default_noise_window_given_explicitly():
    def adaptive(window):
        return TrainConfig(task="mnist-lstm", global_batch_size=1024, micro_batch_size=128,
                           scaling="adaptive", noise_window=window)

    default, explicit = adaptive(None), adaptive(125)   # the default: 1000 * 128 / 1024 steps
    assert default.resolve().noise_window == 125
    for saved, resumed in ((default, explicit), (explicit, default)):
        resumed.resolve().check_resume(saved.to_dict(), saved.resolve().base.to_dict(), "ckpt")
    with pytest.raises(ValueError, match="--noise-window: 124 differs from None"):
        adaptive(124).resolve().check_resume(default.to_dict(),
                                             default.resolve().base.to_dict(), "ckpt")


def test_the_resolved_record_holds_every_derived_value():
    d = _spec(2, global_batch_size=512, micro_batch_size=128).to_dict()
    assert d == {"task": "mnist-lstm", "metric": "accuracy", "global_batch_size": 512,
                 "micro_batch_size": 128, "world_size": 2, "accumulation_steps": 2,
                 "optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.9,
                 "clip_grad_norm": None, "noise_source": "micro",
                 "noise_small_batch_size": 128, "sharding": "ddp", "noise_window": 50,
                 "adaptive_lr_power": None,
                 "adaptive_warmup": None, "run_dir": "runs/mnist-lstm-b512-s0",
                 "batch_ramp": None, "optimizer_scaling": "none",
                 "base_hyperparameters": {"betas": None, "eps": None, "weight_decay": 0.0,
                                          "decay_is_l2": False, "ema_decay": None,
                                          "clamped": []},
                 "hyperparameters": {"betas": None, "eps": None, "weight_decay": 0.0,
                                     "decay_is_l2": False, "ema_decay": None, "clamped": []},
                 "hyperparameters_per_step": False}
