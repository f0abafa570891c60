"""Tests for the recipe engine: explicit values at the schedule's corners, edge cases, LEGW."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legw.schedule import BaseRecipe, Recipe, RecipeWarning, scaling_power

EXACT = {"rel": 1e-12, "abs": 1e-15}

# Base: batch 100, N = 10_000 samples -> 100 steps/epoch at B0, 25 at B = 400 (k = 4).
N = 10_000


def base(**kw) -> BaseRecipe:
    fields = dict(base_batch_size=100, peak_lr=0.1, warmup_epochs=0.5, epochs=10.0,
                  decay="poly", power=2.0)
    fields.update(kw)
    return BaseRecipe(**fields)


def lr(recipe: Recipe, step: float) -> float:
    return recipe.lr_at_step(step)


# ---------------------------------------------------------------- scaling rules


@pytest.mark.parametrize("scaling,peak", [
    ("sqrt", 0.2), ("linear", 0.4), ("none", 0.1),
    (0.25, 0.1 * 2 ** 0.5), ("0.25", 0.1 * 2 ** 0.5), (0.5, 0.2), (-0.5, 0.05),
])
def test_scaling_rules_at_k4(scaling, peak):
    if scaling == "linear":                  # with LEGW's warmup: not Goyal et al.'s baseline
        with pytest.warns(RecipeWarning, match="not the linear-scaling baseline"):
            b = base(scaling=scaling)
    else:
        b = base(scaling=scaling)
    r = b.scale(400, N)                      # LEGW: 0.5 * 4 = 2 epochs = 50 of 250 steps
    assert (r.peak_lr, r.warmup_steps, r.total_steps) == (pytest.approx(peak, **EXACT), 50, 250)
    assert lr(r, 0) == pytest.approx(peak / 50, **EXACT)
    assert lr(r, 48) == pytest.approx(peak * 49 / 50, **EXACT)
    assert lr(r, 49) == pytest.approx(peak, **EXACT)           # last warmup step reaches peak
    assert lr(r, 50) == pytest.approx(peak, **EXACT)           # first poly step: i = 0
    assert lr(r, 249) == pytest.approx(peak * (1 / 200) ** 2, **EXACT)  # last step
    assert lr(r, 250) == 0.0 and lr(r, 10**6) == 0.0           # at / beyond the end: end_lr


def test_scaling_power_names_and_numbers():
    assert [scaling_power(s) for s in ("sqrt", "linear", "none", "0.25", 0.25, 1)] == \
        [0.5, 1.0, 0.0, 0.25, 0.25, 1.0]


# ---------------------------------------------------------------- warmup rules


@pytest.mark.parametrize("warmup,w0,warmup_epochs,warmup_steps", [
    ("legw", 0.5, 2.0, 50),
    ("constant", 0.5, 0.5, 13),        # 0.5 * 25 = 12.5 rounds half up
    ("none", 0.5, 0.0, 0),
    ("legw", 0.3125, 1.25, 31),        # 1.25 * 25 = 31.25
    ("constant", 0.3125, 0.3125, 8),   # 7.8125
])
def test_warmup_rules_at_k4(warmup, w0, warmup_epochs, warmup_steps):
    r = base(warmup=warmup, warmup_epochs=w0, decay="constant").scale(400, N)
    assert r.warmup_epochs == warmup_epochs and r.warmup_steps == warmup_steps
    w = warmup_steps
    if w == 0:
        assert lr(r, 0) == pytest.approx(0.2, **EXACT)
    else:
        assert lr(r, 0) == pytest.approx(0.2 / w, **EXACT)
        assert lr(r, w - 1) == pytest.approx(0.2, **EXACT)
    assert lr(r, w) == pytest.approx(0.2, **EXACT)
    assert lr(r, 249) == pytest.approx(0.2, **EXACT) and lr(r, 300) == pytest.approx(0.2)


def test_fractional_positions_in_last_warmup_step_do_not_overshoot():
    r = base().scale(100, N)                                  # W = 50
    assert lr(r, 48.5) == pytest.approx(0.1 * 49.5 / 50, **EXACT)
    assert lr(r, 49.5) == pytest.approx(0.1, **EXACT)
    assert r.lr_at_epoch(0.25) == pytest.approx(0.1 * 26 / 50, **EXACT)   # step 25


# ---------------------------------------------------------------- decays (at B0: W=50, T=1000)


def test_multistep():
    r = base(decay="multistep", milestones=(3, 6), gamma=0.1).scale(100, N)
    assert r.milestone_steps == (300, 600)
    expected = {0: 0.1 / 50, 49: 0.1, 50: 0.1, 299: 0.1, 300: 0.01, 599: 0.01, 600: 0.001,
                999: 0.001, 1000: 0.001, 5000: 0.001}
    for step, value in expected.items():
        assert lr(r, step) == pytest.approx(value, **EXACT), step


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_poly_with_power_and_end_lr(power):
    r = base(decay="poly", power=power, end_lr=0.001).scale(100, N)   # I = 950
    span = 0.1 - 0.001
    assert lr(r, 0) == pytest.approx(0.1 / 50, **EXACT)
    assert lr(r, 49) == pytest.approx(0.1, **EXACT)
    assert lr(r, 50) == pytest.approx(0.1, **EXACT)
    assert lr(r, 50 + 475) == pytest.approx(0.001 + span * 0.5 ** power, **EXACT)
    assert lr(r, 999) == pytest.approx(0.001 + span * (1 / 950) ** power, **EXACT)
    assert lr(r, 1000) == pytest.approx(0.001, **EXACT)
    assert lr(r, 1e9) == pytest.approx(0.001, **EXACT)


def test_poly_is_counted_from_end_of_warmup():
    r = base(decay="poly", power=1.0).scale(100, N)
    # Halfway through the decay phase, not halfway through training.
    assert lr(r, 525) == pytest.approx(0.05, **EXACT)
    assert lr(r, 500) != pytest.approx(0.05)


def test_cosine():
    r = base(decay="cosine", end_lr=0.002).scale(100, N)
    assert lr(r, 0) == pytest.approx(0.1 / 50, **EXACT)
    assert lr(r, 49) == pytest.approx(0.1, **EXACT)
    assert lr(r, 50) == pytest.approx(0.1, **EXACT)
    assert lr(r, 525) == pytest.approx(0.051, **EXACT)
    assert lr(r, 999) == pytest.approx(
        0.002 + 0.098 * 0.5 * (1 + math.cos(math.pi * 949 / 950)), **EXACT)
    assert lr(r, 1000) == pytest.approx(0.002, **EXACT)
    assert lr(r, 2000) == pytest.approx(0.002, **EXACT)


def test_exponential_gamma_per_epoch():
    r = base(decay="exponential", gamma=0.5).scale(100, N)
    assert lr(r, 0) == pytest.approx(0.1 / 50, **EXACT)
    assert lr(r, 49) == pytest.approx(0.1, **EXACT)
    assert lr(r, 50) == pytest.approx(0.1, **EXACT)
    assert lr(r, 150) == pytest.approx(0.05, **EXACT)       # one epoch after warmup
    assert lr(r, 250) == pytest.approx(0.025, **EXACT)
    assert lr(r, 999) == pytest.approx(0.1 * 0.5 ** 9.49, **EXACT)
    assert lr(r, 1000) == pytest.approx(0.1 * 0.5 ** 9.5, **EXACT)
    assert lr(r, 10**5) == pytest.approx(0.1 * 0.5 ** 9.5, **EXACT)


def test_constant():
    r = base(decay="constant").scale(100, N)
    for step, value in {0: 0.002, 49: 0.1, 50: 0.1, 999: 0.1, 1000: 0.1, 10**6: 0.1}.items():
        assert lr(r, step) == pytest.approx(value, **EXACT)


def test_lrs_lists_every_step():
    r = base().scale(400, N)
    lrs = r.lrs()
    assert len(lrs) == 250 and lrs[0] == lr(r, 0) and lrs[-1] == lr(r, 249)


# ---------------------------------------------------------------- steps per epoch


@pytest.mark.parametrize("n,b,drop_last,spe,total", [
    (1000, 300, True, 3, 8),     # 2.5 epochs * 3 = 7.5 -> 8 (half up)
    (1000, 300, False, 4, 10),
    (900, 300, True, 3, 8),
    (900, 300, False, 3, 8),
    (1000, 1000, True, 1, 3),    # 2.5 -> 3
    (999, 1000, False, 1, 3),    # batch > data set: one partial batch per epoch
])
def test_steps_per_epoch(n, b, drop_last, spe, total):
    r = base(base_batch_size=300, epochs=2.5, warmup_epochs=0.1).scale(b, n, drop_last=drop_last)
    assert (r.steps_per_epoch, r.total_steps) == (spe, total)


# ---------------------------------------------------------------- edge cases


def test_warmup_rounding_to_zero_steps_becomes_one():
    r = base(warmup_epochs=0.001).scale(100, N)    # 0.1 steps
    assert r.warmup_steps == 1
    assert lr(r, 0) == pytest.approx(0.1, **EXACT)


def test_warmup_longer_than_training_at_scaled_batch():
    b = base(warmup_epochs=0.5, epochs=10)
    with pytest.warns(RecipeWarning, match="warmup is 48 of 60 steps"):
        assert b.scale(1600, N).warmup_steps == 48  # k = 16: 8 of 10 epochs; 6 steps/epoch
    with pytest.raises(ValueError, match=r"^warmup_epochs: .*global_batch_size 3200.*got 16\.0"):
        b.scale(3200, N)                            # k = 32: 16 warmup epochs > 10


def test_milestone_inside_scaled_warmup():
    b = base(decay="multistep", milestones=(3, 6))
    assert b.scale(400, N).milestone_steps == (75, 150)          # warmup 2 epochs: fine
    with pytest.raises(ValueError, match=r"^milestones: milestone 3\.0 .*global_batch_size 800"):
        b.scale(800, N)                                           # warmup 4 epochs


def test_batch_larger_than_dataset():
    with pytest.raises(ValueError, match=r"^global_batch_size: .*dataset_size 999.*got 1000"):
        base(base_batch_size=1000).scale(1000, 999)
    assert base(base_batch_size=1000).scale(1000, 999, drop_last=False).steps_per_epoch == 1


def test_too_short_training_gives_no_steps():
    with pytest.raises(ValueError, match=r"^epochs: .*0 optimizer steps.*got 0\.4"):
        base(epochs=0.4, warmup_epochs=0).scale(100, 100)


def test_end_lr_above_scaled_peak():
    b = base(end_lr=0.08)
    assert b.scale(100, N).peak_lr == 0.1
    with pytest.raises(ValueError, match=r"^end_lr: .*0\.05 at global_batch_size 25.*got 0\.08"):
        b.scale(25, N)                            # k = 1/4: sqrt peak 0.05 < end_lr


@pytest.mark.parametrize("field,value", [
    ("base_batch_size", 0), ("base_batch_size", -8), ("base_batch_size", 1.5),
    ("base_batch_size", True),
    ("peak_lr", 0), ("peak_lr", -0.1), ("peak_lr", float("nan")), ("peak_lr", float("inf")),
    ("peak_lr", "0.1"),
    ("warmup_epochs", -0.5), ("warmup_epochs", float("nan")), ("warmup_epochs", 10.0),
    ("warmup_epochs", 12.0),
    ("epochs", 0), ("epochs", -1.0), ("epochs", float("inf")),
    ("decay", "step"), ("decay", None),
    ("power", 0), ("power", -2.0), ("power", float("nan")),
    ("end_lr", -0.01), ("end_lr", 0.2),
    ("gamma", 0), ("gamma", 1.5), ("gamma", -0.1), ("gamma", float("nan")),
    ("scaling", "cubic"), ("scaling", float("nan")), ("scaling", True), ("scaling", None),
    ("warmup", "linear"), ("warmup", "LEGW"),
])
def test_invalid_field(field, value):
    with pytest.raises(ValueError) as e:
        base(**{field: value})
    msg = str(e.value)
    assert msg.startswith(f"{field}: ") and repr(value) in msg, msg


@pytest.mark.parametrize("milestones,shown", [
    ((), "()"), ((6, 3), "(6.0, 3.0)"), ((0, 3), "(0.0, 3.0)"), ((3, 10), "(3.0, 10.0)"),
    ((3, 3), "(3.0, 3.0)"), (("x",), "('x',)"), (5, "5"),
])
def test_invalid_milestones(milestones, shown):
    with pytest.raises(ValueError, match=r"^milestones: ") as e:
        base(decay="multistep", milestones=milestones)
    assert shown in str(e.value)


@pytest.mark.parametrize("kind,name,valid", [
    ("scaling", "cubic", "sqrt, linear, none"),
    ("warmup", "gradual", "legw, constant, none"),
    ("decay", "step", "multistep, poly, cosine, exponential, constant"),
])
def test_unknown_rule_names_list_the_choices(kind, name, valid):
    with pytest.raises(ValueError, match=rf"^{kind}: .*{valid}.*") as e:
        base(**{kind: name})
    assert repr(name) in str(e.value)


@pytest.mark.parametrize("b,n,field", [(0, N, "global_batch_size"), (100.0, N, "global_batch_size"),
                                        (100, 0, "dataset_size"), (100, 1e4, "dataset_size")])
def test_invalid_scale_arguments(b, n, field):
    with pytest.raises(ValueError, match=rf"^{field}: .*got {b if field.startswith('g') else n}"):
        base().scale(b, n)


@pytest.mark.parametrize("step", [-1, -0.5, float("nan")])
def test_invalid_step(step):
    with pytest.raises(ValueError, match=r"^step: must be non-negative"):
        base().scale(100, N).lr_at_step(step)
    with pytest.raises(ValueError, match=r"^epoch: must be non-negative"):
        base().scale(100, N).step_at_epoch(step)


# ---------------------------------------------------------------- LEGW invariants


def test_warmup_steps_equal_across_batch_sizes_when_divisible():
    b = BaseRecipe(base_batch_size=1024, peak_lr=1.0, warmup_epochs=0.3125, epochs=90)
    steps = {b.scale(1024 * k, 2**20).warmup_steps for k in (1, 2, 4, 8, 16, 32, 64)}
    assert steps == {320}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10_000, 2_000_000), b0=st.sampled_from([32, 100, 128, 256, 1000]),
       w0=st.floats(0.01, 1.0), log2k=st.integers(0, 6))
def test_warmup_steps_equal_within_rounding(n, b0, w0, log2k):
    """``W_k = round(w0 * k * floor(N / (k B0)))`` and ``w0 N / B0 - w0 k < w0 k floor(...)``."""
    k = 2**log2k
    if k * b0 > n:
        return
    b = BaseRecipe(base_batch_size=b0, peak_lr=1.0, warmup_epochs=w0, epochs=1000)
    w_k = b.scale(k * b0, n).warmup_steps
    assert abs(w_k - max(1.0, w0 * n / b0)) <= w0 * k + 0.5 + 1e-9


@pytest.mark.parametrize("decay,kw", [("multistep", {"milestones": (30, 60, 80)}),
                                      ("constant", {})])
@pytest.mark.parametrize("k", [2, 4, 8, 32])
def test_lr_vs_epoch_is_sqrt_k_times_base_outside_warmup(decay, kw, k):
    b = BaseRecipe(base_batch_size=1024, peak_lr=0.5, warmup_epochs=0.3125, epochs=90,
                   decay=decay, **kw)
    r1, rk = b.scale(1024, 2**20), b.scale(1024 * k, 2**20)
    epochs = [e / 8 for e in range(0, 90 * 8 + 1)] + [95.0, 29.999, 30.0, 79.99]
    outside = [e for e in epochs if e >= rk.warmup_epochs]
    assert len(outside) > 500
    for e in outside:
        assert rk.lr_at_epoch(e) == pytest.approx(math.sqrt(k) * r1.lr_at_epoch(e), **EXACT), e


def test_poly_is_not_proportional_in_epochs():
    """Counted from the end of warmup, poly decays later in epochs at a larger batch."""
    b = BaseRecipe(1024, 5.656854, 0.3125, 90, decay="poly", power=2)
    r1, r32 = b.scale(1024, 1281167), b.scale(32768, 1281167)
    assert r1.lr_at_epoch(45) / r1.peak_lr == pytest.approx((1 - 55904 / 112199) ** 2)
    assert r32.lr_at_epoch(45) / r32.peak_lr == pytest.approx((1 - 1365 / 3120) ** 2)


# ---------------------------------------------------------------- the talk's tables


def test_table4_sqrt_scaling():
    b = BaseRecipe(base_batch_size=32, peak_lr=1.0, warmup_epochs=0, epochs=10,
                   decay="constant")
    for i, batch in enumerate([32, 64, 128, 256, 512, 1024]):
        assert b.scale(batch, 50_000).peak_lr == pytest.approx(2 ** (0.5 * i), **EXACT)


def test_table5_legw_warmup():
    b = BaseRecipe(base_batch_size=32, peak_lr=1.0, warmup_epochs=0.01, epochs=10)
    for i, batch in enumerate([32, 64, 128, 256, 512, 1024]):
        assert b.scale(batch, 50_000).warmup_epochs == pytest.approx(0.01 * 2**i, **EXACT)


TABLE6 = [(1024, 2.5, 0.3125, 391), (2048, 3.0, 0.625, 391), (4096, 3.5, 1.25, 390),
          (8192, 4.0, 2.5, 390), (16384, 4.5, 5.0, 390), (32768, 5.0, 10.0, 390)]


def test_table6_resnet50_imagenet():
    b = BaseRecipe(base_batch_size=1024, peak_lr=5.656854, warmup_epochs=0.3125, epochs=90,
                   decay="poly", power=2)
    for batch, log2_lr, warmup_epochs, warmup_steps in TABLE6:
        r = b.scale(batch, 1281167)
        assert math.log2(r.peak_lr) == pytest.approx(log2_lr, abs=1e-6)
        assert r.warmup_epochs == warmup_epochs
        assert r.warmup_steps == warmup_steps
        assert r.steps_per_epoch == 1281167 // batch and r.total_steps == 90 * (1281167 // batch)
        assert r.lr_at_step(warmup_steps - 1) == pytest.approx(r.peak_lr, **EXACT)


# ---------------------------------------------------------------- elastic resume


def test_resume_at_another_batch_size_continues_at_the_same_epoch():
    b = BaseRecipe(1024, 0.5, 0.3125, 90, decay="multistep", milestones=(30, 60, 80))
    r1, r4 = b.scale(1024, 1281167), b.scale(4096, 1281167)
    stop = 40_000                                            # 31.97 epochs at batch 1024
    epoch = r1.epoch_at_step(stop)
    resume = r4.step_at_epoch(epoch)
    assert resume == round(40_000 / 1251 * 312) == 9976
    assert r4.epoch_at_step(resume) == pytest.approx(epoch, abs=1 / 312)
    # Past the 30-epoch milestone at both batch sizes; LR is sqrt(4) times the base.
    assert r1.lr_at_step(stop) == pytest.approx(0.05, **EXACT)
    assert r4.lr_at_step(resume) == pytest.approx(2 * r1.lr_at_step(stop), **EXACT)


# ---------------------------------------------------------------- properties


recipes = st.builds(
    lambda b0, lr0, w0, epochs, decay, power, end_frac, gamma, scaling, warmup, ms: BaseRecipe(
        base_batch_size=b0, peak_lr=lr0, warmup_epochs=w0, epochs=epochs, decay=decay,
        power=power, end_lr=lr0 * end_frac, gamma=gamma, scaling=scaling, warmup=warmup,
        milestones=tuple(sorted({round(m * epochs, 3) for m in ms})) if decay == "multistep"
        else ()),
    b0=st.sampled_from([16, 32, 100, 128]), lr0=st.floats(1e-4, 10.0),
    w0=st.floats(0.0, 0.2), epochs=st.floats(1.0, 50.0),
    decay=st.sampled_from(["multistep", "poly", "cosine", "exponential", "constant"]),
    power=st.floats(0.1, 4.0), end_frac=st.floats(0.0, 0.01), gamma=st.floats(0.01, 1.0),
    scaling=st.sampled_from(["sqrt", "linear", "none", 0.25, "0.75"]),
    warmup=st.sampled_from(["legw", "constant", "none"]),
    ms=st.lists(st.floats(0.5, 0.95), min_size=1, max_size=3),
)


@pytest.mark.filterwarnings("ignore::legw.schedule.RecipeWarning")  # drawn recipes
@settings(max_examples=200, deadline=None)
@given(b=recipes, log2k=st.integers(0, 3), n=st.integers(2_000, 200_000),
       drop_last=st.booleans(), where=st.floats(0.0, 1.5), fractional=st.booleans())
def test_lr_is_finite_non_negative_and_at_most_peak(b, log2k, n, drop_last, where, fractional):
    try:
        r = b.scale(b.base_batch_size * 2**log2k, n, drop_last=drop_last)
    except ValueError as e:  # a too-long scaled warmup or a milestone inside it: rejected
        assert str(e).startswith(("warmup_epochs:", "milestones:")), e
        return
    step = where * r.total_steps
    step = step if fractional else math.floor(step)
    value = r.lr_at_step(step)
    assert math.isfinite(value) and 0 <= value <= r.peak_lr * (1 + 1e-12)


@pytest.mark.filterwarnings("ignore::legw.schedule.RecipeWarning")  # drawn recipes
@settings(max_examples=100, deadline=None)
@given(b=recipes)
def test_to_dict_from_dict_round_trip(b):
    d = b.to_dict()
    assert BaseRecipe.from_dict(d) == b
    assert d["milestones"] == list(b.milestones)
    r = b.scale(b.base_batch_size, 100_000, drop_last=False)
    assert Recipe.from_dict(r.to_dict()) == r


def test_from_dict_rejects_unknown_fields():
    d = base().to_dict() | {"lr": 0.1}
    with pytest.raises(ValueError, match=r"^recipe: unknown fields, got \['lr'\]"):
        BaseRecipe.from_dict(d)
    with pytest.raises(ValueError, match=r"^recipe: expected a dict"):
        BaseRecipe.from_dict([1, 2])


def test_lr_at_epoch_snaps_float_error_at_a_milestone():
    # 2.3 * 100 == 229.99999999999997: the milestone at epoch 2.3 (step 230) must apply.
    base = BaseRecipe(base_batch_size=10, peak_lr=1.0, warmup_epochs=0.0, epochs=5,
                      decay="multistep", milestones=(2.3,), gamma=0.5)
    r = base.scale(10, 1000)
    assert r.steps_per_epoch == 100
    assert r.lr_at_epoch(2.3) == 0.5
    assert r.lr_at_step(229) == 1.0
