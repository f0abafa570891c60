"""Named methods, steps per epoch given directly (streamed data), and the RecipeWarnings of
``legw.schedule``: a warmup over half of training, linear scaling with LEGW warmup."""

from __future__ import annotations

import warnings

import pytest

from legw import BaseRecipe, RecipeWarning
from legw.experiments.sweep import METHODS as SWEEP_METHODS
from legw.schedule import METHODS, WARMUP_SHARE_WARNING, Recipe

BASE = dict(base_batch_size=100, peak_lr=0.1, warmup_epochs=0.25, epochs=10)
N = 10_000  # 100 steps per epoch at batch 100


@pytest.fixture
def strict():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        yield


# ---------------------------------------------------------------- named methods


def test_linear_method_is_the_linear_scaling_baseline(strict):
    r = BaseRecipe.for_method("linear", **BASE).scale(800, N)      # k = 8
    assert (r.base.scaling, r.base.warmup, r.base.method) == ("linear", "constant", "linear")
    assert r.peak_lr == pytest.approx(0.8)                          # eta0 * k
    assert r.warmup_epochs == 0.25 and r.warmup_steps == 3          # same epochs, not x k
    legw = BaseRecipe.for_method("legw", **BASE).scale(800, N)
    assert legw.peak_lr == pytest.approx(0.1 * 8**0.5) and legw.warmup_epochs == 2.0
    assert legw.base == BaseRecipe(**BASE)                          # the defaults are LEGW


@pytest.mark.parametrize("name", list(METHODS))
def test_methods_mean_what_the_sweep_methods_mean(name):
    b = BaseRecipe.for_method(name, **BASE)
    assert {"scaling": b.scaling, "warmup": b.warmup} == {
        k: v for k, v in SWEEP_METHODS[name].items() if k != "optimizer"}
    assert b.method == name


def test_method_of_other_rules_is_none(strict):
    assert BaseRecipe(**BASE, scaling=0.25).method is None


def test_scaling_linear_with_legw_warmup_warns():
    with pytest.warns(RecipeWarning, match=r"scaling='linear' with warmup='legw'.*"
                                           r"for_method\('linear'"):
        b = BaseRecipe(**BASE, scaling="linear")                    # backwards compatible
    assert b.warmup == "legw" and b.method is None


@pytest.mark.parametrize("fields,field", [
    ({"scaling": "sqrt"}, "scaling"), ({"warmup": "none"}, "warmup")])
def test_method_and_rules_together_name_the_field(fields, field):
    with pytest.raises(ValueError, match=rf"^{field}: is set by method 'linear'.*got "):
        BaseRecipe.for_method("linear", **BASE, **fields)


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match=r"^method: must be one of legw, linear, "
                                         r"sqrt-nowarmup, unscaled, got 'goyal'"):
        BaseRecipe.for_method("goyal", **BASE)


# ---------------------------------------------------------------- steps per epoch


def test_steps_per_epoch_directly_equals_the_sample_count_form(strict):
    # streamed data: 1000 steps per epoch at batch 512 sequences (however many tokens)
    b = BaseRecipe(base_batch_size=64, peak_lr=1e-3, warmup_epochs=0.01, epochs=2)
    direct = b.scale(512, steps_per_epoch=1000)
    by_samples = b.scale(512, 512 * 1000)
    assert direct.steps_per_epoch == 1000 and direct.dataset_size is None
    assert (direct.warmup_steps, direct.total_steps) == (by_samples.warmup_steps, 2000)
    assert direct.lrs() == by_samples.lrs()
    assert Recipe.from_dict(direct.to_dict()) == direct
    assert set(direct.to_dict()) == {"base", "global_batch_size", "steps_per_epoch"}


def test_elastic_resume_between_steps_per_epoch_recipes():
    b = BaseRecipe(base_batch_size=64, peak_lr=1e-3, warmup_epochs=0.01, epochs=2)
    r512, r1024 = b.scale(512, steps_per_epoch=1000), b.scale(1024, steps_per_epoch=500)
    assert r1024.step_at_epoch(r512.epoch_at_step(700)) == 350


@pytest.mark.parametrize("n,spe,shown", [
    (None, None, "None"), (1000, 10, "10"), (None, 0, "0"), (None, 2.5, "2.5"),
    (None, True, "True")])
def test_bad_steps_per_epoch_names_the_field(n, spe, shown):
    with pytest.raises(ValueError, match=rf"^steps_per_epoch: .*got {shown}$"):
        BaseRecipe(**BASE).scale(100, n, steps_per_epoch=spe)


def test_from_dict_names_the_accepted_key_sets():
    with pytest.raises(ValueError, match=r"^recipe: .*either dataset_size, drop_last or "
                                         r"steps_per_epoch"):
        Recipe.from_dict({"base": BaseRecipe(**BASE).to_dict(), "global_batch_size": 100,
                          "dataset_size": N, "steps_per_epoch": 100})


# ---------------------------------------------------------------- warmup share


def test_warmup_over_half_of_training_warns():
    b = BaseRecipe(**{**BASE, "warmup_epochs": 0.2})                # x32: 6.4 of 10 epochs
    with pytest.warns(RecipeWarning, match=r"at global_batch_size 3200 the warmup is 198 of "
                                           r"310 steps \(64% of training, 6.4 of 10 epochs\)"):
        b.scale(3200, 100_000)


def test_warmup_at_most_half_is_silent(strict):
    b = BaseRecipe(**{**BASE, "warmup_epochs": 0.15625})            # x32: 5 of 10 epochs
    r = b.scale(3200, 320_000)
    assert r.warmup_steps == WARMUP_SHARE_WARNING * r.total_steps == 500
    table6 = BaseRecipe(base_batch_size=1024, peak_lr=2**2.5, warmup_epochs=0.3125, epochs=90)
    table6.scale(32768, 1281167)                                    # 10 of 90 epochs
