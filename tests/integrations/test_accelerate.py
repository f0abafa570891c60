"""Accelerate, 2 processes (gloo), the documented path ``accelerator.prepare(model, optimizer,
dataloader, scheduler)`` with gradient accumulation and no special flags: the LR of every
optimizer step is the recipe's, and a run resumed mid-epoch from ``save_state`` continues with
the same LRs and weights. ``AcceleratedScheduler`` steps the scheduler ``num_processes`` times
per optimizer step; a scheduler that counted those calls ran a warmup half as long and the
second half of training at LR 0.

Run by pytest; torchrun runs this file as the 2-process worker."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration
pytest.importorskip("accelerate")

from integration_helpers import lr_recorder, run_two_processes, tiny_data, tiny_mlp  # noqa: E402

from legw import BaseRecipe, LEGWScheduler  # noqa: E402
from legw.optim import LAMB, param_groups  # noqa: E402

MICRO, PROCESSES, ACCUM, N, EPOCHS = 4, 2, 2, 96, 3
GLOBAL = MICRO * PROCESSES * ACCUM                  # 16: 6 optimizer steps per epoch
RECIPE = BaseRecipe(base_batch_size=4, peak_lr=0.02, warmup_epochs=0.25,
                    epochs=EPOCHS).scale(GLOBAL, N)  # x4: warmup 1 epoch (6 steps), 18 steps
SAVE_AT = 8                                          # optimizer steps: epoch 1, step 2


def train(accelerator, state_dir: Path, *, resume: bool) -> tuple[list[float], list[list]]:
    """The documented loop. Saves the state after ``SAVE_AT`` optimizer steps, or (resume)
    starts from it. Returns the LRs the optimizer steps ran at and the final weights."""
    model = tiny_mlp()
    groups, _ = param_groups(model, weight_decay=1e-2)
    optimizer = LAMB(groups, lr=0.0)
    scheduler = LEGWScheduler(optimizer, RECIPE)
    lrs = lr_recorder(optimizer)
    loader = torch.utils.data.DataLoader(tiny_data(N), batch_size=MICRO)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader,
                                                              scheduler)
    steps = 0
    if resume:
        accelerator.load_state(str(state_dir))
        steps = SAVE_AT
    per_epoch = len(loader) // ACCUM
    for epoch in range(steps // per_epoch, EPOCHS):
        batches = loader
        if epoch == steps // per_epoch and steps % per_epoch:
            batches = accelerator.skip_first_batches(loader, (steps % per_epoch) * ACCUM)
        for x, y in batches:
            with accelerator.accumulate(model):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                steps += 1
                if steps == SAVE_AT and not resume:
                    accelerator.save_state(str(state_dir))
    weights = [p.detach().flatten().tolist() for p in accelerator.unwrap_model(model).parameters()]
    return lrs, weights


def test_adaptive_scaler_in_the_accumulate_loop_follows_the_plain_loop():
    # Accelerate's gradient accumulation: accelerator.backward divides the loss by the steps,
    # the scaler steps when the gradients are synced (1 process)
    from accelerate import Accelerator

    from legw.adaptive.scaler import AdaptiveScaler

    base = BaseRecipe(base_batch_size=4, peak_lr=0.2, warmup_epochs=0.25, epochs=3)

    def run(accelerated: bool) -> list[dict]:
        model = tiny_mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        loader = torch.utils.data.DataLoader(tiny_data(64), batch_size=4)
        accelerator = Accelerator(cpu=True, gradient_accumulation_steps=4)
        if accelerated:
            model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        scaler = AdaptiveScaler(model, optimizer, base, 16, 4, 64, window=4)
        records = []
        while not scaler.done:
            for i, (x, y) in enumerate(loader):
                if accelerated:
                    with accelerator.accumulate(model):
                        accelerator.backward(torch.nn.functional.cross_entropy(model(x), y))
                        if accelerator.sync_gradients:
                            records.append(scaler.step())
                        optimizer.zero_grad()
                else:
                    (torch.nn.functional.cross_entropy(model(x), y) / 4).backward()
                    if i % 4 == 3:
                        records.append(scaler.step())
                        optimizer.zero_grad()
                if scaler.done:
                    break
        return records

    plain, accelerated = run(False), run(True)
    assert len(accelerated) == len(plain) < 48  # 48 base steps
    for a, b in zip(accelerated, plain):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def worker(out: Path) -> None:
    from accelerate import Accelerator

    torch.set_num_threads(1)
    first = Accelerator(cpu=True, gradient_accumulation_steps=ACCUM)
    lrs, weights = train(first, out / "state", resume=False)
    second = Accelerator(cpu=True, gradient_accumulation_steps=ACCUM)
    resumed_lrs, resumed_weights = train(second, out / "state", resume=True)
    rank = first.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({
        "num_processes": first.num_processes, "lrs": lrs, "weights": weights,
        "resumed_lrs": resumed_lrs, "resumed_weights": resumed_weights}))


def test_two_processes_lr_per_optimizer_step_and_resume(tmp_path):
    ranks = run_two_processes(__file__, tmp_path)
    assert RECIPE.total_steps == 18 and RECIPE.warmup_steps == 6
    for r in ranks:
        assert r["num_processes"] == 2
        assert r["lrs"] == RECIPE.lrs()                          # every optimizer step
        assert r["resumed_lrs"] == RECIPE.lrs()[SAVE_AT:]        # resumed mid-epoch
        for a, b in zip(r["resumed_weights"], r["weights"]):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-7)
    assert ranks[0]["weights"] == ranks[1]["weights"]             # DDP kept them in sync


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    worker(Path(sys.argv[1]))
