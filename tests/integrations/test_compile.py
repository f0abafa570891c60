"""torch.compile of a model and of the LARS / LAMB step, driven by LEGWScheduler: a tensor LR
gives no recompile per new LR value (a float LR does), and the compiled steps follow the recipe
and the eager trajectory. Backend ``aot_eager`` (dynamo + AOTAutograd): the guards and the
recompiles are dynamo's, the same as with inductor, without minutes of C++ compilation."""

from __future__ import annotations

import warnings

import pytest
import torch

from legw import BaseRecipe, LEGWScheduler, RecipeWarning
from legw.optim import LAMB, LARS

pytestmark = pytest.mark.integration

RECIPE = BaseRecipe(base_batch_size=8, peak_lr=0.5, warmup_epochs=0.25, epochs=2).scale(8, 96)
# 12 steps per epoch, warmup 3 steps, 24 steps: a new LR at every step


class Counter:
    """A torch.compile backend that counts the graphs it is handed, then runs ``inner``."""

    def __init__(self, inner: str) -> None:
        self.graphs = 0
        self.inner = torch._dynamo.lookup_backend(inner)

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return self.inner(gm, example_inputs)


def train(cls, lr, *, compiled: bool, steps: int = RECIPE.total_steps):
    """``steps`` steps of a tiny model; returns (model, LRs used, model graphs, step graphs)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3))
    opt = cls(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = LEGWScheduler(opt, RECIPE)
    model_graphs, step_graphs = Counter("aot_eager"), Counter("aot_eager")
    forward = torch.compile(model, backend=model_graphs) if compiled else model
    step = torch.compile(opt.step, backend=step_graphs) if compiled else opt.step
    gen = torch.Generator().manual_seed(1)
    used, graphs_after = [], []
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        used.append(float(opt.param_groups[0]["lr"]))
        step()
        sched.step()
        graphs_after.append(step_graphs.graphs)
    return model, used, model_graphs.graphs, graphs_after


@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_tensor_lr_compiles_once_and_follows_the_recipe(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        model, used, model_graphs, step_graphs = train(cls, torch.tensor(0.0), compiled=True)
    assert len(set(used)) >= RECIPE.total_steps - 1        # a new LR (almost) every step
    assert used == pytest.approx(RECIPE.lrs(), rel=1e-6)   # float32 tensor LR
    # step 0 compiles, step 1 once more (the state now exists); then nothing, whatever the LR
    assert step_graphs[1] == step_graphs[-1] <= 2, step_graphs
    assert model_graphs == 1                               # one graph (AOT: fwd + bwd), once
    eager, eager_used, _, _ = train(cls, torch.tensor(0.0), compiled=False)
    assert eager_used == used
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_float_lr_recompiles_per_lr_value():
    # the defect a tensor LR avoids (test above: one compilation): with a float LR the
    # compiled step is specialised on its value, a new graph per new LR, until dynamo's
    # recompile limit (8 by default) sends the step back to eager. (Backend "eager" alone
    # would not show it: dynamo keeps floats symbolic there; real backends specialise them.)
    torch._dynamo.reset()
    model = torch.nn.Linear(4, 2)
    opt = LARS(model.parameters(), lr=0.0, weight_decay=1e-2)
    sched = LEGWScheduler(opt, RECIPE)
    counter = Counter("aot_eager")
    step = torch.compile(opt.step, backend=counter)
    for _ in range(6):
        model(torch.randn(3, 4)).sum().backward()
        step()
        sched.step()
        opt.zero_grad()
    lrs = {RECIPE.lr_at_step(t) for t in range(6)}         # 5 values (steps 2 and 3: the peak)
    assert counter.graphs >= len(lrs) == 5


def test_adaptive_scaler_reads_the_noise_of_a_compiled_model():
    # parameter hooks fire in eager autograd, after the compiled graph's backward: the gain is
    # the eager run's
    import torch.nn.functional as F

    from legw.adaptive.scaler import AdaptiveScaler

    def run(compiled: bool) -> list[dict]:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        forward = torch.compile(model, backend="aot_eager") if compiled else model
        base = BaseRecipe(base_batch_size=8, peak_lr=0.05, warmup_epochs=0.0, epochs=2)
        scaler = AdaptiveScaler(model, opt, base, 32, 8, 256, window=4)
        gen = torch.Generator().manual_seed(1)
        records = []
        for _ in range(6):
            opt.zero_grad(set_to_none=True)
            for _ in range(scaler.accumulation_steps):
                x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
                (F.cross_entropy(forward(x), y) / scaler.accumulation_steps).backward()
            records.append(scaler.step())
        return records

    eager, compiled = run(False), run(True)
    assert any(r["gain"] > 1 for r in eager)
    for a, b in zip(eager, compiled):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
