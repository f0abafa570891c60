"""Lightning 2.6 with LARS + LEGWScheduler (``"interval": "step"``) and gradient accumulation:
the LR of every optimizer step is the recipe's on 1 process and on 2 (DDP, gloo), a run resumed
from a checkpoint continues with the same LRs and weights, and the default ``"interval":
"epoch"`` gives a RecipeWarning instead of a silently stale LR.

Run by pytest; torchrun runs this file as the 2-process worker."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration
L = pytest.importorskip("lightning")

from integration_helpers import lr_recorder, run_two_processes, tiny_data, tiny_mlp  # noqa: E402

from legw import BaseRecipe, LEGWScheduler, RecipeWarning  # noqa: E402
from legw.optim import LARS, param_groups  # noqa: E402

MICRO, ACCUM, EPOCHS = 4, 2, 2
BASE = BaseRecipe(base_batch_size=4, peak_lr=1.0, warmup_epochs=0.25, epochs=EPOCHS)


class Module(L.LightningModule):
    def __init__(self, recipe, interval: str = "step") -> None:
        super().__init__()
        self.model, self.recipe, self.interval = tiny_mlp(), recipe, interval
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        groups, _ = param_groups(self.model, weight_decay=1e-2)
        optimizer = LARS(groups, lr=0.0, momentum=0.9)
        self.lrs = lr_recorder(optimizer)
        scheduler = LEGWScheduler(optimizer, self.recipe)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.interval}}


def fit(recipe, n: int, *, ckpt_dir: Path | None = None, resume: Path | None = None,
        interval: str = "step", **trainer_kw) -> Module:
    module = Module(recipe, interval)
    callbacks = []
    if ckpt_dir is not None:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1,
                                                             every_n_epochs=1))
    trainer = L.Trainer(accelerator="cpu", max_epochs=EPOCHS, accumulate_grad_batches=ACCUM,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=ckpt_dir is not None, callbacks=callbacks,
                        **{"devices": 1, **trainer_kw})
    loader = torch.utils.data.DataLoader(tiny_data(n), batch_size=MICRO)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, loader, ckpt_path=str(resume) if resume else None)
    return module


def test_lr_per_optimizer_step_and_resume(tmp_path):
    # 60 samples, batch 4: 15 batches per epoch; Lightning steps on the last, partial
    # accumulation too: ceil(60 / 8) = 8 optimizer steps per epoch (drop_last=False)
    recipe = BASE.scale(MICRO * ACCUM, 60, drop_last=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        full = fit(recipe, 60, ckpt_dir=tmp_path)
        assert full.global_step == recipe.total_steps == 16
        assert full.lrs == recipe.lrs()
        (first_epoch,) = tmp_path.glob("epoch=0-step=8.ckpt")
        resumed = fit(recipe, 60, resume=first_epoch)
    assert resumed.lrs == recipe.lrs()[8:]
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_default_epoch_interval_warns_of_a_stale_lr():
    recipe = BASE.scale(MICRO * ACCUM, 60, drop_last=False)
    with pytest.warns(RecipeWarning, match=r"8 optimizer steps ran since the previous "
                                           r"scheduler.step\(\).*'interval': 'step'"):
        module = fit(recipe, 60, interval="epoch")
    assert module.lrs[:8] == [recipe.lr_at_step(0)] * 8        # what "epoch" gave: stale


def worker(out: Path) -> None:
    torch.set_num_threads(1)
    # 2 processes x micro 4 x accumulation 2 = 16 per step; 96 samples: 6 steps per epoch
    recipe = BASE.scale(2 * MICRO * ACCUM, 96)
    module = fit(recipe, 96, devices=2, strategy="ddp")
    rank = module.global_rank
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": module.trainer.world_size, "global_step": module.global_step,
        "lrs": module.lrs, "expected": recipe.lrs(),
        "weights": [p.detach().flatten().tolist() for p in module.model.parameters()]}))


def test_two_processes_ddp_lr_per_optimizer_step(tmp_path):
    ranks = run_two_processes(__file__, tmp_path)
    for r in ranks:
        assert r["world_size"] == 2 and r["global_step"] == 12
        assert r["lrs"] == r["expected"] == BASE.scale(16, 96).lrs()
    assert ranks[0]["weights"] == ranks[1]["weights"]


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    worker(Path(sys.argv[1]))


class Plain(L.LightningModule):
    """The LR is the callback's: an optimizer without a scheduler."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_mlp()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=0.9)


ADAPTIVE_BASE = BaseRecipe(base_batch_size=4, peak_lr=0.2, warmup_epochs=0.25, epochs=3)


def fit_adaptive(ckpt_dir: Path | None = None, resume: Path | None = None):
    from legw.integrations.lightning import AdaptiveScaling

    # 64 samples in micro-batches of 4, 4 per step: 4 steps per epoch, global batch 16
    callback = AdaptiveScaling(ADAPTIVE_BASE, global_batch_size=16, micro_batch_size=4,
                               dataset_size=64, window=4)
    callbacks = [callback]
    if ckpt_dir is not None:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1,
                                                             every_n_epochs=1))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=100, accumulate_grad_batches=4,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=ckpt_dir is not None, callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(Plain(), torch.utils.data.DataLoader(tiny_data(64), batch_size=4),
                    ckpt_path=str(resume) if resume else None)
    return trainer, callback


def test_adaptive_scaling_follows_the_plain_loop_stops_when_done_and_resumes(tmp_path):
    from legw.adaptive.scaler import AdaptiveScaler

    trainer, callback = fit_adaptive(ckpt_dir=tmp_path)
    records = callback.records
    assert callback.scaler.done and trainer.global_step == len(records) < 48  # 48 base steps
    # the same run in a plain loop over the same micro-batches
    model = tiny_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    scaler = AdaptiveScaler(model, opt, ADAPTIVE_BASE, 16, 4, 64, window=4)
    batches, i, plain = list(torch.utils.data.DataLoader(tiny_data(64), batch_size=4)), 0, []
    while not scaler.done:
        opt.zero_grad(set_to_none=True)
        for _ in range(4):
            x, y = batches[i % len(batches)]
            i += 1
            (torch.nn.functional.cross_entropy(model(x), y) / 4).backward()
        plain.append(scaler.step())
    assert len(plain) == len(records)
    for a, b in zip(records, plain):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    # resumed after the first epoch (4 steps): the same records from step 4 on
    (first,) = tmp_path.glob("epoch=0-step=4.ckpt")
    _, resumed = fit_adaptive(resume=first)
    assert [r["tau"] for r in resumed.records] == [r["tau"] for r in records[4:]]
    assert [r["lr"] for r in resumed.records] == pytest.approx([r["lr"] for r in records[4:]])
