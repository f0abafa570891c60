"""LEGWScheduler follows the optimizer's own step count: exact LR per optimizer step however
often ``scheduler.step()`` is called, and a RecipeWarning when the loop and the recipe disagree.
The same against the real frameworks: ``tests/integrations/``."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from legw import BaseRecipe, LEGWScheduler, RecipeWarning, apply_recipe
from legw.optim import LAMB, LARS
from legw.schedule import Recipe

N = 1000  # samples: 10 steps/epoch at batch 100


def recipe(batch: int = 100, **kw) -> Recipe:
    fields = dict(base_batch_size=100, peak_lr=0.1, warmup_epochs=0.5, epochs=4)
    return BaseRecipe(**{**fields, **kw}).scale(batch, N)   # W = 5, T = 40


def setup(lr=1.0, cls=torch.optim.SGD, **kw):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3))
    opt = cls([p], lr=lr, **kw)
    return opt, p


def started(steps: int = 0):
    """The default recipe's scheduler on a fresh SGD, after ``steps`` optimizer steps, each
    followed by one ``scheduler.step()``."""
    r = recipe()
    opt, p = setup()
    sched = LEGWScheduler(opt, r)
    for _ in range(steps):
        optimizer_step(opt, p)
        sched.step()
    return r, opt, p, sched


def optimizer_step(opt, p) -> float:
    """One update; returns the LR it ran at (read when the optimizer runs)."""
    opt.zero_grad()
    (p**2).sum().backward()
    lr = opt.param_groups[0]["lr"]
    opt.step()
    return float(lr)


@pytest.fixture
def strict():
    """RecipeWarnings are errors: a test that expects none fails on any."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        yield


@pytest.mark.parametrize("calls", [1, 2, 4])
def test_exact_however_often_the_scheduler_is_stepped(calls, strict):
    # Accelerate's AcceleratedScheduler calls step() num_processes times per optimizer step;
    # counting calls would run a 2x shorter warmup and reach the end LR halfway.
    r, opt, p, sched = started()
    used = []
    for _ in range(r.total_steps):
        used.append(optimizer_step(opt, p))
        for _ in range(calls):
            sched.step()
    assert used == r.lrs()
    assert sched.last_epoch == r.total_steps and sched.state_dict()["last_epoch"] == r.total_steps


def test_micro_steps_without_an_optimizer_step_do_not_advance(strict):
    r, opt, p, sched = started()
    used = []
    for t in range(12):
        used.append(optimizer_step(opt, p))
        sched.step()
        if t % 3 == 0:  # a wrapper that steps the scheduler on every micro-step as well
            sched.step()
            sched.step()
    assert used == r.lrs()[:12]


def test_position_is_the_optimizer_step_count_in_the_checkpoint():
    # saved between optimizer.step() and scheduler.step(): the optimizer's count is saved
    r, opt, p, sched = started(7)
    optimizer_step(opt, p)                      # step 7 ran; the scheduler not yet stepped
    state = sched.state_dict()
    assert state["last_epoch"] == 8
    opt2, p2 = setup()
    sched2 = LEGWScheduler(opt2, r)
    sched2.load_state_dict(state)
    assert optimizer_step(opt2, p2) == r.lr_at_step(8)


def test_resume_with_a_tensor_lr_and_lars_is_exact(strict):
    r = recipe(decay="cosine")
    opt, p = setup(lr=torch.tensor(0.0), cls=LARS, weight_decay=1e-2)
    sched = LEGWScheduler(opt, r)
    lr_tensor = opt.param_groups[0]["lr"]
    full = []
    for _ in range(20):
        full.append(optimizer_step(opt, p))
        sched.step()
    assert opt.param_groups[0]["lr"] is lr_tensor           # filled in place, never replaced
    assert isinstance(sched.get_last_lr()[0], torch.Tensor)
    final = p.detach().clone()

    opt, p = setup(lr=torch.tensor(0.0), cls=LARS, weight_decay=1e-2)
    sched = LEGWScheduler(opt, r)
    first = []
    for _ in range(9):
        first.append(optimizer_step(opt, p))
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "p": p.detach()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    opt2, p2 = setup(lr=torch.tensor(0.0), cls=LARS, weight_decay=1e-2)
    with torch.no_grad():
        p2.copy_(ckpt["p"])
    sched2 = LEGWScheduler(opt2, r)
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    rest = []
    for _ in range(11):
        rest.append(optimizer_step(opt2, p2))
        sched2.step()
    assert first + rest == full
    assert full == pytest.approx([r.lr_at_step(t) for t in range(20)], rel=1e-6)  # float32
    assert torch.equal(p2.detach(), final)


def test_step_with_a_position_jumps_and_checks_it():
    r, opt, p, sched = started()
    sched.step(17)
    assert sched.last_epoch == 17 and optimizer_step(opt, p) == r.lr_at_step(17)
    sched.step()
    assert sched.last_epoch == 18
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=rf"^epoch: .*got {bad!r}"):
            sched.step(bad)


def test_past_the_end_warns_once_at_the_first_extra_step():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        r, opt, p, sched = started(recipe().total_steps)  # exactly the recipe: silent
    assert optimizer_step(opt, p) == 0.0         # step 40 of 40: the end LR
    with pytest.warns(RecipeWarning, match=r"optimizer step 40 is past the end of the recipe "
                                           r"\(40 steps.*drop_last=False"):
        sched.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        optimizer_step(opt, p)
        sched.step()                             # once per scheduler


def test_apply_recipe_past_the_end_warns():
    r = recipe()
    opt, _ = setup()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        apply_recipe(opt, r, r.total_steps - 1)
    with pytest.warns(RecipeWarning, match=r"past the end of the recipe \(40 steps\)"):
        apply_recipe(opt, r, r.total_steps)


def test_several_optimizer_steps_per_scheduler_step_warn():
    # Lightning's default "interval": "epoch" steps the scheduler once per epoch
    r, opt, p, sched = started()
    for _ in range(3):
        optimizer_step(opt, p)
    with pytest.warns(RecipeWarning, match=r"3 optimizer steps ran since the previous "
                                           r"scheduler.step\(\).*'interval': 'step'"):
        sched.step()
    assert sched.last_epoch == 3                 # the position is still the optimizer's


def test_scheduler_step_without_optimizer_steps_warns_and_stays():
    r, opt, p, sched = started()
    with pytest.warns(RecipeWarning, match=r"no optimizer step has been counted"):
        for _ in range(5):                       # e.g. a "fast-forward" loop
            sched.step()
    assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == r.lr_at_step(0)


def test_legw_optimizers_are_counted_once_per_step(strict):
    r = recipe()
    opt, p = setup(lr=0.0, cls=LAMB, weight_decay=1e-2)
    sched = LEGWScheduler(opt, r)
    for _ in range(6):
        optimizer_step(opt, p)
        sched.step()
    assert sched.last_epoch == 6 and opt.state[p]["step"].item() == 6


def test_loading_the_same_recipe_does_not_rebuild_it(strict):
    # a recipe that warned once when built must not warn again on every resume
    with pytest.warns(RecipeWarning, match="warmup"):
        r = BaseRecipe(base_batch_size=100, peak_lr=0.1, warmup_epochs=0.3, epochs=4).scale(
            800, 8000)                           # warmup 2.4 of 4 epochs
    opt, p = setup()
    sched = LEGWScheduler(opt, r)
    optimizer_step(opt, p)
    sched.step()
    state = sched.state_dict()
    sched2 = LEGWScheduler(setup()[0], r)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 1
