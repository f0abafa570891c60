"""The plain-loop and torch.compile snippets of docs/integrations.md run as written, at most 10
lines each, and follow the recipe."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from legw import BaseRecipe, RecipeWarning

DOC = Path(__file__).parent.parent / "docs" / "integrations.md"


def block(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"no python block after <!-- {marker} --> in {DOC.name}"
    code = m.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    return code


def namespace(n: int, batch: int) -> dict:
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 5), torch.randint(0, 2, (n,)))
    return {"torch": torch, "dataset": data, "model": torch.nn.Linear(5, 2),
            "loader": torch.utils.data.DataLoader(data, batch_size=batch, drop_last=True),
            "loss_fn": torch.nn.functional.cross_entropy}


def test_plain_loop_snippet_runs_the_whole_recipe():
    ns = namespace(2048, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        exec(compile(block("plain-loop"), str(DOC), "exec"), ns)
    recipe, scheduler = ns["recipe"], ns["scheduler"]
    assert recipe.total_steps == 12 and scheduler.last_epoch == 12


@pytest.mark.integration
def test_compile_snippet_follows_the_recipe_without_recompiling(monkeypatch):
    # backend "aot_eager" instead of inductor: the same guards, seconds instead of a minute
    graphs = []
    aot_eager = torch._dynamo.lookup_backend("aot_eager")
    real_compile = torch.compile

    def counting_compile(fn):
        def backend(gm, example_inputs):
            graphs.append(fn)
            return aot_eager(gm, example_inputs)
        return real_compile(fn, backend=backend)

    monkeypatch.setattr(torch, "compile", counting_compile)
    torch._dynamo.reset()
    ns = namespace(512, 32)                                  # 16 steps
    from legw import LEGWScheduler
    from legw.optim import LARS, param_groups

    ns.update(LARS=LARS, param_groups=param_groups, LEGWScheduler=LEGWScheduler,
              recipe=BaseRecipe(32, 0.5, 0.25, 1.0).scale(32, 512))
    seen = []  # the LR of every optimizer step, read as it starts (a global step pre-hook)
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(float(opt.param_groups[0]["lr"])))
    try:
        exec(compile(block("compile"), str(DOC), "exec"), ns)
    finally:
        hook.remove()
    recipe = ns["recipe"]
    assert seen == pytest.approx(recipe.lrs(), rel=1e-6)
    assert len(set(seen)) == len(set(recipe.lrs()))
    step_graphs = [g for g in graphs if g is not ns["model"]]
    assert len(step_graphs) <= 2 and len(graphs) - len(step_graphs) == 1, graphs
