"""HF Trainer (transformers 5) with ``optimizers=(LAMB, LEGWScheduler)``: a tiny GPT-2 built
from its config, synthetic token data, gradient accumulation. The LR of every optimizer step is
the recipe's (LAMB's betas and decay scaled to the batch, ``optimizer_scaling="srr"``), a
resumed run continues with the same LRs, hyperparameters and weights, and a recipe shorter than
the Trainer's loop (its default ``dataloader_drop_last=False``) gives a RecipeWarning. The
adaptive rule's callback stops at the budget, logs its LR and resumes."""

from __future__ import annotations

import warnings

import pytest
import torch

pytestmark = pytest.mark.integration
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from integration_helpers import lr_recorder  # noqa: E402

from legw import BaseRecipe, LEGWScheduler, RecipeWarning  # noqa: E402
from legw.optim import LAMB, param_groups  # noqa: E402

MICRO, ACCUM, N, EPOCHS = 4, 2, 60, 2   # 15 batches/epoch -> 8 optimizer steps (last: 1 batch)
BASE = BaseRecipe(base_batch_size=4, peak_lr=0.01, warmup_epochs=0.25, epochs=EPOCHS)
RECIPE = BASE.scale(MICRO * ACCUM, N, drop_last=False)   # ceil(60 / 8) = 8 steps per epoch


def token_data(n: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (n, 1), generator=gen)
    ids = (starts + torch.arange(8)) % 32                      # learnable: count up mod 32
    return [{"input_ids": row, "labels": row} for row in ids]


def fit(tmp_path, recipe, *, save_steps: int = 0, resume: str | None = None,
        optimizer_scaling: str = "none"):
    """One Trainer run; returns (LRs of the optimizer steps, final weights, trainer)."""
    config = transformers.GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1,
                                     n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    groups, _ = param_groups(model, weight_decay=1e-2)
    optimizer = LAMB(groups, lr=0.0)
    scheduler = LEGWScheduler(optimizer, recipe, optimizer_scaling=optimizer_scaling)
    lrs = lr_recorder(optimizer)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ACCUM, num_train_epochs=EPOCHS, use_cpu=True, seed=0,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        report_to="none", disable_tqdm=True, logging_strategy="no")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=token_data(N),
                                   optimizers=(optimizer, scheduler))
    trainer.train(resume_from_checkpoint=resume)
    return lrs, [p.detach().clone() for p in model.parameters()], trainer


def test_trainer_lr_per_optimizer_step_and_resume(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        lrs, weights, trainer = fit(tmp_path / "full", RECIPE, save_steps=5,
                                    optimizer_scaling="srr")
        assert trainer.state.global_step == RECIPE.total_steps == 16
        assert lrs == RECIPE.lrs()
        resumed_lrs, resumed, again = fit(tmp_path / "resumed", RECIPE, optimizer_scaling="srr",
                                          resume=str(tmp_path / "full" / "checkpoint-5"))
    assert resumed_lrs == RECIPE.lrs()[5:]
    for t in (trainer, again):  # k = 2: LAMB's betas 1 - 2 (1 - beta), decay x sqrt(2)
        groups = t.optimizer.param_groups
        assert all(g["betas"] == pytest.approx((0.8, 0.998)) for g in groups)
        assert max(g["weight_decay"] for g in groups) == pytest.approx(1e-2 * 2 ** 0.5)
    for a, b in zip(resumed, weights):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_recipe_shorter_than_the_trainer_loop_warns(tmp_path):
    # the recipe assumes drop_last (60 // 8 = 7 steps per epoch); the Trainer keeps the last
    # partial batch and runs 8: its last 2 steps would train at the end LR, 0
    short = BASE.scale(MICRO * ACCUM, N)
    assert short.total_steps == 14
    with pytest.warns(RecipeWarning, match=r"optimizer step 14 is past the end of the recipe "
                                           r"\(14 steps.*drop_last=False"):
        lrs, _, _ = fit(tmp_path, short)
    assert len(lrs) == 16 and lrs[14:] == [0.0, 0.0]


def test_adaptive_scaling_callback_stops_at_the_budget_and_logs_the_lr_it_set(tmp_path):
    from legw.integrations.transformers import AdaptiveScalingCallback

    base = BaseRecipe(base_batch_size=4, peak_lr=0.05, warmup_epochs=0.25, epochs=4)
    config = transformers.GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1,
                                     n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)

    def trainer(max_grad_norm: float = 0.0, optimizer=None, save_steps: int = 0):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config)
        # 64 samples, micro-batches of 4, 4 per step: 4 steps per epoch at global batch 16
        callback = AdaptiveScalingCallback(base, global_batch_size=16, micro_batch_size=4,
                                           dataset_size=64, window=4)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=4,
            gradient_accumulation_steps=4, num_train_epochs=100, use_cpu=True, seed=0,
            save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
            restore_callback_states_from_checkpoint=True, report_to="none", disable_tqdm=True,
            logging_steps=1, max_grad_norm=max_grad_norm)
        optimizers = (optimizer(model), None) if optimizer else (None, None)
        return transformers.Trainer(model=model, args=args, train_dataset=token_data(64),
                                    callbacks=[callback], optimizers=optimizers), callback

    sgd, callback = trainer(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
                            save_steps=4)
    sgd.train()
    records, scaler = callback.records, callback.scaler
    assert scaler.done and sgd.state.global_step == len(records) < 64  # 64 base steps
    assert any(r["gain"] > 1.5 for r in records)
    at_base = base.scale(4, 64)
    for r in records:  # SGD: the full gain
        assert r["lr"] == pytest.approx(at_base.lr_at_step(r["tau"]) * r["gain"])
    logged = [h["learning_rate"] for h in sgd.state.log_history if "learning_rate" in h]
    assert logged == [r["lr"] for r in records]
    # resumed at step 4: the rebuilt callback continues the position and the gain
    resumed, _ = trainer(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0))
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    (rebuilt,) = [c for c in resumed.callback_handler.callbacks
                  if isinstance(c, AdaptiveScalingCallback)]
    assert [r["tau"] for r in rebuilt.records] == pytest.approx([r["tau"] for r in records[4:]])
    assert [r["lr"] for r in rebuilt.records] == pytest.approx([r["lr"] for r in records[4:]])
    default, callback = trainer()  # the Trainer's AdamW: the square root of the gain
    default.train()
    assert callback.scaler.schedule.lr_power == 0.5 and callback.scaler.done
    clipping, _ = trainer(max_grad_norm=1.0)
    with pytest.raises(ValueError, match=r"max_grad_norm: the Trainer clips before"):
        clipping.train()
