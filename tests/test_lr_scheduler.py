"""The PyTorch adapters: set_lr / apply_recipe / LEGWScheduler follow the recipe exactly."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legw import BaseRecipe, LEGWScheduler, RecipeWarning, apply_recipe, set_lr
from legw.schedule import Recipe

N = 1000  # samples: 10 steps/epoch at batch 100, 2 at batch 400


def recipe(batch: int = 100, decay: str = "poly", **kw) -> Recipe:
    fields = dict(base_batch_size=100, peak_lr=0.1, warmup_epochs=0.5, epochs=4, decay=decay)
    fields.update(kw)
    return BaseRecipe(**fields).scale(batch, N)


def make_optimizer(groups: int = 1, **kw) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3)) for _ in range(groups)]
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=1.0, **kw)
    return opt, params


def train_step(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    opt.zero_grad()
    sum((p**2).sum() for p in params).backward()
    opt.step()


def run(opt, sched, params, steps: int) -> list[float]:
    used = []
    for _ in range(steps):
        used.append(opt.param_groups[0]["lr"])
        train_step(opt, params)
        sched.step()
    return used


def test_scheduler_matches_recipe_every_step():
    r = recipe()                                    # W = 5, T = 40
    opt, (p,) = make_optimizer()
    sched = LEGWScheduler(opt, r)
    def step_at(t: int) -> None:
        lr = opt.param_groups[0]["lr"]
        assert lr == r.lr_at_step(t) and sched.get_last_lr() == [lr]
        before = p.detach().clone()
        train_step(opt, [p])
        # plain SGD: p <- p - lr * 2p, so the optimizer really ran at this LR
        torch.testing.assert_close(p.detach(), before - lr * 2 * before)
        sched.step()
        assert sched.last_epoch == t + 1

    for t in range(r.total_steps):
        step_at(t)
    # past the end: stays at end_lr, and says the loop outruns the recipe
    with pytest.warns(RecipeWarning, match="past the end of the recipe"):
        for t in range(r.total_steps, r.total_steps + 5):
            step_at(t)


def test_apply_recipe_and_set_lr():
    r = recipe()
    opt, _ = make_optimizer()
    assert apply_recipe(opt, r, 3) == r.lr_at_step(3) == opt.param_groups[0]["lr"]
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25


def test_tensor_lr_is_updated_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([p], lr=lr)
    set_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == 0.5


def test_lr_scale_per_group():
    r = recipe()
    opt, params = make_optimizer(groups=3)
    opt.param_groups[1]["lr_scale"] = 0.1
    opt.param_groups[2]["lr_scale"] = 0
    sched = LEGWScheduler(opt, r)
    for t in range(12):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == [r.lr_at_step(t), r.lr_at_step(t) * 0.1, 0.0]
        train_step(opt, params)
        sched.step()
    set_lr(opt, 2.0)
    assert [g["lr"] for g in opt.param_groups] == [2.0, pytest.approx(0.2), 0.0]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "0.1", None])
def test_bad_lr_scale_names_the_field(bad):
    opt, _ = make_optimizer(groups=2)
    opt.param_groups[1]["lr_scale"] = bad
    with pytest.raises(ValueError, match=rf"^lr_scale: param group 1 .*got {re.escape(repr(bad))}"):
        set_lr(opt, 0.1)


def test_recipe_must_be_a_recipe():
    opt, _ = make_optimizer()
    with pytest.raises(ValueError, match=r"^recipe: expected a legw Recipe.*BaseRecipe"):
        LEGWScheduler(opt, BaseRecipe(100, 0.1, 0.5, 4))


def test_state_dict_round_trip_resumes_exactly():
    r = recipe(decay="multistep", milestones=(2, 3), gamma=0.5)
    opt, params = make_optimizer(momentum=0.9)
    sched = LEGWScheduler(opt, r)
    full = run(opt, sched, params, 35)
    final = params[0].detach().clone()

    opt, params = make_optimizer(momentum=0.9)
    sched = LEGWScheduler(opt, r)
    first = run(opt, sched, params, 17)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(),
                "params": [p.detach() for p in params]}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)       # plain data only

    opt2, params2 = make_optimizer(momentum=0.9)
    with torch.no_grad():
        for p, saved in zip(params2, ckpt["params"]):
            p.copy_(saved)
    sched2 = LEGWScheduler(opt2, r)                 # sets the LR of step 0 ...
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])           # ... and this restores step 17
    assert sched2.last_epoch == 17 and sched2.get_last_lr() == [r.lr_at_step(17)]
    rest = run(opt2, sched2, params2, 18)
    assert first + rest == full
    torch.testing.assert_close(params2[0].detach(), final, rtol=0, atol=0)


def test_load_state_dict_at_another_batch_size_maps_the_epoch():
    r100, r400 = recipe(100), recipe(400)           # 10 and 2 steps/epoch (N = 1000)
    assert (r100.steps_per_epoch, r400.steps_per_epoch) == (10, 2)
    opt, params = make_optimizer()
    sched = LEGWScheduler(opt, r100)
    run(opt, sched, params, 25)                     # epoch 2.5
    state = sched.state_dict()

    opt4, _ = make_optimizer()
    sched4 = LEGWScheduler(opt4, r400)
    sched4.load_state_dict(state)
    assert sched4.last_epoch == 5                   # 2.5 epochs * 2 steps/epoch
    assert opt4.param_groups[0]["lr"] == r400.lr_at_step(5) == r400.lr_at_epoch(2.5)


def test_retarget_to_another_batch_size():
    b = BaseRecipe(100, 0.1, 0.05, 10, decay="multistep", milestones=(4, 8))
    r100, r400 = b.scale(100, 10_000), b.scale(400, 10_000)   # 100 and 25 steps/epoch
    opt, params = make_optimizer()
    sched = LEGWScheduler(opt, r100)
    run(opt, sched, params, 130)                    # epoch 1.3
    sched.retarget(r400)
    assert sched.recipe is r400 and sched.last_epoch == 33    # 32.5 rounds half up
    assert opt.param_groups[0]["lr"] == r400.lr_at_step(33) == pytest.approx(0.2)
    run(opt, sched, params, 67)                     # to step 100 = epoch 4: the milestone
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def _doc_block(marker: str) -> str:
    doc = (Path(__file__).parent.parent / "docs" / "schedule.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", doc, re.S)
    assert m, f"no python block after <!-- {marker} --> in docs/schedule.md"
    return m.group(1)


def test_own_loop_example_from_docs_runs():
    code = _doc_block("own-loop")
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    ns: dict = {}
    exec(compile(code, "docs/schedule.md", "exec"), ns)
    r, opt = ns["recipe"], ns["opt"]
    assert r.global_batch_size == 512 and r.total_steps == 24
    assert opt.param_groups[0]["lr"] == r.lr_at_step(r.total_steps - 1)
    assert all(torch.isfinite(p).all() for p in ns["model"].parameters())


def test_scheduler_example_from_docs_runs():
    ns: dict = {}
    exec(compile(_doc_block("scheduler"), "docs/schedule.md", "exec"), ns)
    r, sched = ns["recipe"], ns["scheduler"]
    assert sched.last_epoch == r.total_steps


def test_import_legw_is_torch_free_and_exports_lazily():
    code = ("import sys, legw, legw.schedule\n"
            "assert 'torch' not in sys.modules\n"
            "assert 'LEGWScheduler' in dir(legw)\n"
            "legw.LEGWScheduler\n"
            "assert 'torch' in sys.modules\n"
            "try:\n    legw.nonesuch\nexcept AttributeError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "module 'legw' has no attribute 'nonesuch'"
