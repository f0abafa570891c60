"""legw.hyper: the batch-dependent optimizer hyperparameters (values at k = 1, 2, 64; limits)."""

import math

import pytest

from legw.hyper import MAX_ONE_MINUS_BETA, Hyperparameters, scale_beta, scale_hyperparameters

ADAM = Hyperparameters(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, ema_decay=0.9999)


def test_k_1_changes_nothing_and_none_changes_nothing():
    assert scale_hyperparameters(ADAM, 1.0, 1.0) == ADAM
    assert scale_hyperparameters(ADAM, 64.0, 8.0, rule="none") is ADAM


def test_k_2_halves_the_moment_horizons_and_keeps_the_timescales():
    h = scale_hyperparameters(ADAM, 2.0, math.sqrt(2))
    assert h.betas == pytest.approx((0.8, 0.998))           # 1 - beta doubled
    assert h.eps == pytest.approx(1e-8 / math.sqrt(2))
    assert h.weight_decay == pytest.approx(0.01 * math.sqrt(2))  # tau = B / (eta lambda D)
    assert h.ema_decay == pytest.approx(0.9999 ** 2)
    assert h.clamped == ()
    # the decay's timescale in epochs, B / (eta lambda D), is the same at both batches
    b0, eta0 = 128, 1e-3
    assert (b0 / (eta0 * 0.01)) == pytest.approx(2 * b0 / (math.sqrt(2) * eta0 * h.weight_decay))
    # a linear LR rule keeps the decay
    assert scale_hyperparameters(ADAM, 2.0, 2.0).weight_decay == pytest.approx(0.01)


def test_k_64_clamps_beta1_past_the_rules_limit_and_says_so():
    h = scale_hyperparameters(ADAM, 64.0, 8.0)
    # 64 x 0.1 = 6.4 > 0.5: beta1 held at 0.5; 64 x 0.001 = 0.064: beta2 = 0.936 as the rule says
    assert h.betas == pytest.approx((1 - MAX_ONE_MINUS_BETA, 0.936))
    assert h.clamped == ("betas[0]",)
    assert h.eps == pytest.approx(1e-8 / 8) and h.ema_decay == pytest.approx(0.9999 ** 64)
    assert scale_beta(0.99, 50.0) == (pytest.approx(0.5), False)  # exactly at the limit
    assert scale_beta(0.99, 51.0) == (0.5, True)


def test_a_beta_below_the_limit_is_never_raised_by_the_clamp():
    assert scale_beta(0.0, 1.0) == (0.0, False)   # beta1 = 0 (RMSprop-like) stays 0
    assert scale_beta(0.0, 4.0) == (0.0, True)    # 1 - beta would pass 1: held where it is
    assert scale_beta(0.3, 2.0) == (pytest.approx(0.3), True)
    assert scale_beta(0.3, 0.5) == (pytest.approx(0.65), False)  # a smaller batch raises it
    h = scale_hyperparameters(Hyperparameters(betas=(0.0, 0.99)), 1.0, 1.0)
    assert h.betas == (0.0, pytest.approx(0.99)) and h.clamped == ()


def test_an_l2_decay_is_not_scaled_the_decoupled_one_is():
    l2 = Hyperparameters(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decay_is_l2=True)
    assert scale_hyperparameters(l2, 4.0, 2.0).weight_decay == 0.01
    assert scale_hyperparameters(l2, 4.0, 2.0).decay_is_l2
    assert scale_hyperparameters(ADAM, 4.0, 2.0).weight_decay == pytest.approx(0.02)


def test_a_smaller_batch_scales_the_other_way_and_round_trips():
    up = scale_hyperparameters(ADAM, 4.0, 2.0)
    back = scale_hyperparameters(up, 0.25, 0.5)
    assert back.betas == pytest.approx(ADAM.betas) and back.eps == pytest.approx(ADAM.eps)
    assert back.weight_decay == pytest.approx(ADAM.weight_decay)
    assert back.ema_decay == pytest.approx(ADAM.ema_decay)
    assert Hyperparameters(**{**up.to_dict(), "betas": tuple(up.to_dict()["betas"]),
                              "clamped": ()}) == up


@pytest.mark.parametrize("kwargs, message", [
    (dict(base=Hyperparameters(betas=(1.0, 0.9)), k=2.0, lr_ratio=1.0), r"betas\[0\]: must lie"),
    (dict(base=Hyperparameters(ema_decay=-0.1), k=2.0, lr_ratio=1.0), "ema_decay: must lie"),
    (dict(base=ADAM, k=0.0, lr_ratio=1.0), "k: must be a positive number"),
    (dict(base=ADAM, k=2.0, lr_ratio=math.inf), "lr_ratio: must be a positive number"),
    (dict(base=ADAM, k=2.0, lr_ratio=1.0, rule="cubic"), "--optimizer-scaling: choose from"),
])
def test_bad_values_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scale_hyperparameters(**kwargs)
