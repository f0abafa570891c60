"""The batch ramp's rules (legw.adaptive.ramp): parsing, Seesaw, the noise rule, the budget."""

import math

import pytest

from legw.adaptive.noise import OnlineNoiseScale
from legw.adaptive.ramp import BatchRamp, RampRule
from legw.schedule import BaseRecipe

N = 6400  # samples per epoch


def _base(**kw):
    fields = dict(base_batch_size=32, peak_lr=0.4, warmup_epochs=0.0, epochs=4.0,
                  decay="multistep", milestones=(1.0, 2.0, 3.0), gamma=0.5)
    return BaseRecipe(**{**fields, **kw})


def _walk(ramp, noise=lambda step: None):
    """(epoch, batch, lr) of every step until the budget is used."""
    steps = []
    while not ramp.done:
        batch = ramp.batch
        steps.append((ramp.epoch, batch, ramp.lr()))
        ramp.advance(batch, noise(len(steps)))
    return steps


def test_parse_names_and_fixed_points_and_refuses_what_is_no_ramp():
    assert RampRule.parse("noise").needs_noise and not RampRule.parse("seesaw").needs_noise
    fixed = RampRule.parse("64@0, 256@1.5,1024@3")
    assert fixed.points == ((64, 0.0), (256, 1.5), (1024, 3.0)) and str(fixed) == (
        "64@0,256@1.5,1024@3")
    assert fixed.start_batch(32) == 64 and RampRule.parse("noise").start_batch(32) == 32
    for text, message in [("fast", "expected noise, seesaw or B1@E1"),
                          ("64@1,128@2", "the first batch must start at epoch 0"),
                          ("128@0,64@1", "must not shrink"), ("64@0,128@0", "epochs must"),
                          ("64@0,128@x", "got '128@x'"), ("0@0", "got '0@0'")]:
        with pytest.raises(ValueError, match=f"^--batch-ramp: .*{message}"):
            RampRule.parse(text)


def test_seesaw_doubles_the_batch_where_the_schedule_halves_the_lr():
    # multistep x0.5 at epochs 1, 2, 3: the batch doubles there and the LR falls by sqrt(2)
    steps = _walk(BatchRamp(_base(), RampRule.parse("seesaw"), 1024, 32, N))
    by_epoch = {}
    for epoch, batch, lr in steps:
        by_epoch.setdefault(int(epoch), set()).add((batch, round(lr, 12)))
    assert by_epoch == {e: {(32 * 2**e, round(0.4 / math.sqrt(2) ** e, 12))} for e in range(4)}
    assert sum(b for _, b, _ in steps) == 4 * N  # every sample of the budget, once
    capped = _walk(BatchRamp(_base(), RampRule.parse("seesaw"), 64, 32, N))
    assert {b for _, b, _ in capped} == {32, 64}  # past the cap the LR decays as the schedule
    assert capped[-1][2] == pytest.approx(0.4 * 0.125 * math.sqrt(2))


def test_the_noise_rule_follows_b_noise_in_units_at_most_doubling_never_shrinking():
    # a problem of known noise: B_noise grows 40 -> 1000 over training
    ramp = BatchRamp(_base(decay="constant", milestones=()), RampRule.parse("noise"), 512, 32, N,
                     lr_power=0.5)
    noise = [None, -5.0, 40.0, 100.0, 1000.0, 1000.0, 1000.0, 50.0, math.inf, 300.0]
    batches = []
    for b_noise in noise:
        batches.append(ramp.batch)
        ramp.advance(ramp.batch, b_noise)
    #   None, negative: kept; 40 -> 32 (whole units); 100 -> 64, at most 2x per step; 1000 ->
    #   128, 256, 512 (the cap); a smaller or infinite B_noise never shrinks it
    assert batches == [32, 32, 32, 32, 64, 128, 256, 512, 512, 512]
    assert ramp.lr() == pytest.approx(0.4 * math.sqrt(512 / 32))
    half = BatchRamp(_base(), RampRule.parse("noise"), 512, 32, N, factor=0.5)
    half.advance(32, 200.0)
    assert half.batch == 64  # 0.5 x 200 = 100 -> 96 in units, but at most doubled


def test_the_linear_rule_and_a_fixed_ramp_and_the_trimmed_last_step():
    ramp = BatchRamp(_base(), RampRule.parse("32@0,96@1,160@2.5"), 160, 32, N, lr_power=1.0)
    steps = _walk(ramp)
    assert [b for e, b, _ in steps if e < 1] == [32] * 200
    assert {b for e, b, _ in steps if 1 <= e < 2.5} == {96}
    lr_at_96 = next(lr for e, b, lr in steps if b == 96)
    assert lr_at_96 == pytest.approx(0.2 * 3)  # epoch 1: 0.4 x 0.5, times k = 96/32
    assert sum(b for _, b, _ in steps) == 4 * N
    assert steps[-1][1] == (4 * N - sum(b for _, b, _ in steps[:-1]))  # trimmed, whole units


def test_a_ramp_is_refused_when_its_batches_are_not_whole_units():
    with pytest.raises(ValueError, match="first batch 48 must be a multiple of the micro"):
        BatchRamp(_base(), RampRule.parse("48@0"), 512, 32, N)
    with pytest.raises(ValueError, match="batch 80 is not a multiple"):
        BatchRamp(_base(), RampRule.parse("32@0,80@1"), 512, 32, N)
    with pytest.raises(ValueError, match="--ramp-factor: must be a positive number"):
        BatchRamp(_base(), RampRule.parse("noise"), 512, 32, N, factor=0.0)


def test_state_dict_round_trips_and_a_new_unit_rounds_the_batch_up():
    ramp = BatchRamp(_base(), RampRule.parse("noise"), 512, 32, N)
    for b_noise in (None, 64.0, 160.0):
        ramp.advance(ramp.batch, b_noise)
    state = ramp.state_dict()
    again = BatchRamp(_base(), RampRule.parse("noise"), 512, 32, N)
    again.load_state_dict(state)
    assert (again.samples, again.step, again.batch, again.lr()) == (
        ramp.samples, ramp.step, ramp.batch, ramp.lr())
    other = BatchRamp(_base(base_batch_size=64), RampRule.parse("noise"), 512, 64, N)
    other.load_state_dict(state)
    assert other.batch == 128  # 128 is two units of 64
    with pytest.raises(ValueError, match="the checkpoint's ramp is 'noise'"):
        BatchRamp(_base(), RampRule.parse("seesaw"), 512, 32, N).load_state_dict(state)


def test_the_online_noise_of_draws_at_several_batch_sizes_is_the_true_noise():
    # |G_b|^2 = G2 + T / b and |G_B|^2 = G2 + T / B exactly: every draw's terms are unbiased
    # at its own B, so a window of mixed batches gives B_noise = T / G2
    g2, t, b = 0.5, 400.0, 8
    noise = OnlineNoiseScale(b, 16, window=4)
    for big in (16, 32, 64, 128):
        out = noise.update(g2 + t / b, g2 + t / big, big)
    assert out["b_noise"] == pytest.approx(t / g2) and noise.full
    state = noise.state_dict()
    again = OnlineNoiseScale(b, 16, window=4)
    again.load_state_dict(state)
    assert again.means() == pytest.approx(noise.means())
    old = {k: v for k, v in state.items() if k != "batch_sizes"}  # a checkpoint before ramps
    again.load_state_dict(old)
    assert list(again.batch_sizes) == [16] * 4


def test_the_tau_budget_counts_each_step_as_its_gain_in_base_steps():
    base = _base(decay="constant", milestones=())  # 200 base steps an epoch, 800 in all
    ramp = BatchRamp(base, RampRule.parse("32@0,128@1"), 512, 32, N, budget="tau")
    while ramp.epoch < 1:
        ramp.advance(ramp.batch, gain=7.0)  # at B0 a step is one base step (clamped to 1)
    assert ramp.step == 200 and ramp.tau == 200 and ramp.batch == 128
    ramp.advance(128, gain=3.0)
    assert ramp.tau == 203 and ramp.epoch == pytest.approx(203 / 200)
    ramp.advance(128, gain=9.0)  # at most k = 128 / 32 = 4
    assert ramp.tau == 207
    while not ramp.done:
        ramp.advance(ramp.batch, gain=2.0)
    # 207 + 297 x 2 = 801: the step that reaches the budget is whole (no trimmed step)
    assert ramp.tau == 801 and ramp.samples == 200 * 32 + (2 + 297) * 128
    state = ramp.state_dict()
    with pytest.raises(ValueError, match="--ramp-budget: the checkpoint's is 'tau'"):
        BatchRamp(base, RampRule.parse("32@0,128@1"), 512, 32, N).load_state_dict(state)
    with pytest.raises(ValueError, match="--ramp-budget: choose from epochs, tau"):
        BatchRamp(base, RampRule.parse("noise"), 512, 32, N, budget="steps")


def test_seesaw_keeps_its_sqrt_rule_and_lr_powers_outside_0_1_are_refused():
    assert BatchRamp(_base(), RampRule.parse("seesaw"), 512, 32, N, lr_power=1.0).power == 0.5
    with pytest.raises(ValueError, match=r"lr_power: must lie in \[0, 1\], got 2"):
        BatchRamp(_base(), RampRule.parse("noise"), 512, 32, N, lr_power=2)


def _stream_steps(batch):
    """Steps of an epoch of 64,000 tokens cut into ``batch`` streams, windows of 10."""
    return (64_000 // batch - 1) // 10


def test_token_streams_change_their_batch_only_at_epoch_boundaries():
    base = _base(decay="constant", milestones=(), epochs=3.0)
    ramp = BatchRamp(base, RampRule.parse("noise"), 512, 32, _stream_steps(32) * 32,
                     epoch_steps=_stream_steps)
    seen = []  # (epoch index, batch) of every step, B_noise 1000 from the first step
    while not ramp.done:
        seen.append((ramp.epochs_done, ramp.batch))
        ramp.advance(ramp.batch, 1000.0)
    per_epoch = {e: {b for e2, b in seen if e2 == e} for e in range(3)}
    assert per_epoch == {0: {32}, 1: {64}, 2: {128}}  # one change an epoch, at most doubled
    assert [sum(1 for e2, _ in seen if e2 == e) for e in range(3)] == [
        _stream_steps(32), _stream_steps(64), _stream_steps(128)]  # each epoch whole
    assert ramp.epoch == 3.0 and ramp.step == len(seen)
    state = ramp.state_dict()
    again = BatchRamp(base, RampRule.parse("noise"), 512, 32, _stream_steps(32) * 32,
                      epoch_steps=_stream_steps)
    again.load_state_dict(state)
    assert (again.epochs_done, again.in_epoch, again.batch) == (3, 0, 256)
    with pytest.raises(ValueError, match="^--batch-ramp: token streams .* whole epochs"):
        BatchRamp(base, RampRule.parse("32@0,64@1.5"), 512, 32, 6400, epoch_steps=_stream_steps)


def test_a_token_stream_ramp_keeps_its_streams_on_a_resume_mid_epoch():
    base = _base(decay="constant", milestones=(), epochs=3.0)

    def ramp(unit):
        return BatchRamp(base, RampRule.parse("32@0,96@1"), 512, unit, _stream_steps(32) * 32,
                         epoch_steps=_stream_steps)

    cut = ramp(16)
    for _ in range(_stream_steps(32) + 5):  # 5 steps into epoch 1, at 96 streams
        cut.advance(cut.batch)
    state = cut.state_dict()
    again = ramp(32)  # other ranks whose unit divides 96: the same streams
    again.load_state_dict(state)
    assert (again.batch, again.in_epoch, again.epochs_done) == (96, 5, 1)
    state["batch"] = 80  # a noise ramp's batch of 5 units of 16, on ranks whose unit is 32
    with pytest.raises(ValueError, match="^--resume: a token-stream ramp stopped mid-epoch at 80"):
        ramp(32).load_state_dict(state)  # 80 streams would become 96 mid-epoch
