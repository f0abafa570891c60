"""``train(config) -> summary``: one code path for one process and for N under torchrun.

Per optimizer step (nanoGPT-style)::

    lr = recipe.lr_at_step(step) * group.get("lr_scale", 1)       # once per step, not per micro
    for each of the A micro-batches of this rank:
        loss_i = mean loss of the micro-batch
        (loss_i / A).backward()              # DDP all-reduces only on the last micro-step
    clip the global gradient norm; optimizer.step()

so the gradient is the mean over all ``B = b * W * A`` samples whatever ``W`` and ``A`` are.

Exit status of ``legw train``: 0 completed (or stopped at ``--max-steps``), 2 usage or disk
error, 3 diverged (a non-finite loss or gradient norm stopped the run; ``summary.json`` records
the step, the epoch and why). Everything a run can be refused for (flags, data, an output
directory that cannot be written or already holds another run, a resume that would change the
run) is checked before any file is written.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from legw.adaptive.meter import NoiseMeter
from legw.adaptive.noise import OnlineNoiseScale
from legw.io import check_writable_dir, remove_temporaries
from legw.lr_scheduler import (
    apply_hyperparameters,
    apply_recipe,
    hyperparameter_bases,
    set_hyperparameters,
    set_lr,
)
from legw.models.lstm import detach_hidden, hidden_to
from legw.training import checkpoint, dist
from legw.training.batches import (
    ImageBatches,
    RampBatches,
    StreamBatches,
    check_stream_batch,
    stream_steps_per_epoch,
)
from legw.training.config import TrainConfig
from legw.training.device import (
    autocast,
    batch_to,
    flush_denormals,
    match_param_layout,
    select_device,
)
from legw.training.evaluate import check_eval_data, image_metrics, perplexity
from legw.training.position import Position, resume_position
from legw.training.run_dir import RunDir, RunLog, describe_run

DIVERGED_EXIT_STATUS = 3


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one run and return its summary (also written to ``RUN/summary.json``)."""
    env = dist.detect()
    device = select_device(config.device, env.local_rank)
    dist.init(env, device)
    trainer = None
    try:
        with flush_denormals(device):
            trainer = _Trainer(config, env, device)
            summary = trainer.fit()
        dist.barrier()  # no rank leaves the group while another still talks to it
        return summary
    finally:
        # The trainer's DDP reducer and gradient hooks keep the process group alive; freed at
        # interpreter exit instead, gloo's threads abort the process ("terminate called
        # without an active exception") after a finished run. Only the cycle collector frees
        # the trainer: the first optimizer a process builds makes torch import torch.fx, whose
        # wrap() keeps its own frame in a local (a cycle), and that frame's f_back chain holds
        # _Trainer.__init__'s frame and so `self` (torch 2.13).
        del trainer
        gc.collect()
        dist.cleanup()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Trainer:
    def __init__(self, config: TrainConfig, env: dist.DistEnv, device: torch.device) -> None:
        self.config, self.env, self.device = config, env, device
        self.spec = spec = config.resolve(env.world_size)
        self.task = task = spec.task
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.run_dir = Path(spec.run_dir)
        check_writable_dir(self.run_dir, "--out")
        if not config.resume:
            RunDir(self.run_dir).check_new()
        self.B, self.micro, self.accum = (spec.global_batch_size, spec.micro_batch_size,
                                          spec.accumulation_steps)

        seed_everything(config.seed)
        self.data = task.load(config.data_dir)
        if config.evaluate:
            check_eval_data(task, self.data)
        ramp = spec.batch_ramp
        if ramp is not None and task.kind == "image":  # the batch changes: a stream of samples
            self.batches = RampBatches(self.data.train, self.micro, env.rank, env.world_size,
                                       config.seed)
        elif task.kind == "image":
            self.batches = ImageBatches(self.data.train, self.B, self.micro, env.rank,
                                        env.world_size, config.seed)
        else:  # a ramp's streams are re-cut at its batch each epoch
            self.batches = self._stream_batches(
                self.B if ramp is None else ramp.start_batch(spec.base.base_batch_size))
        self.ramp = spec.ramp(self.batches.dataset_size, None if task.kind == "image" else
                              partial(stream_steps_per_epoch, len(self.data.train),
                                      bptt=task.bptt))
        if self.ramp and task.kind == "text":  # its largest batch too must leave a window
            check_stream_batch(len(self.data.train), self.B, task.bptt)
        # a ramp's schedule is the recipe at its first batch, read at the epoch position
        self.recipe = self.ramp.schedule if self.ramp else spec.recipe(self.batches.dataset_size)

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = task.build_model(self.data).to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ddp = self.model  # what the forward runs through
        self.fsdp: list[torch.nn.Module] = []  # the sharded modules (--sharding fsdp)
        if spec.sharding == "fsdp":
            self.fsdp = dist.fully_shard_model(self.model, device)
        elif env.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer, self.param_report = spec.build_optimizer(
            self.model, self.ramp.lr() if self.ramp else self.recipe.lr_at_step(0))
        self._hyper_bases = hyperparameter_bases(self.optimizer)  # as built: the base run's
        self._scale_hyperparameters()
        self.meter = NoiseMeter(self.model.parameters(), self.accum,
                                noise=spec.noise_source is not None,
                                max_grad_norm=spec.clip_grad_norm, fsdp_modules=self.fsdp)
        self.noise = (OnlineNoiseScale(spec.noise_batch_size, self.B, spec.noise_window)
                      if spec.noise_source else None)
        self.adaptive = spec.adaptive_schedule(self.batches.dataset_size)
        torch.manual_seed(config.seed + 1 + env.rank)  # dropout streams differ per rank

        self.pos = Position()
        self.epoch_before_step = 0.0  # the epoch position its last step started at
        self.hidden: list[Any] | None = None
        self.last_eval: dict[str, float] = {}
        self.eval_step: int | None = None  # the step last_eval was measured at
        self.wall_before = 0.0
        self.diverged: dict[str, Any] | None = None
        # adaptive: at most the base run's steps (the gain is >= 1); a ramp: until its
        # samples are used
        total = (self.adaptive.base.total_steps if self.adaptive else
                 self.ramp.budget // self.ramp.unit if self.ramp else self.recipe.total_steps)
        self.stop_step = min(total, config.max_steps or total)
        self.log = RunLog(self.run_dir, dist.is_main(), config.quiet, self.stop_step, 0)

    # --- set-up ---------------------------------------------------------------------------

    def _resume(self) -> None:
        warn = self.log.result  # a resume and its warnings are printed under --quiet too
        found = checkpoint.load_latest(self.run_dir, warn=warn)
        if found is None:
            recorded = RunDir(self.run_dir).recorded_config()  # an attempt that saved no checkpoint
            if recorded is not None:
                self.spec.check_resume(*recorded)
            warn(f"resume: no checkpoint in {checkpoint.checkpoint_dir(self.run_dir)}; "
                 "starting fresh")
            if dist.is_main():  # records of an attempt that saved nothing
                RunDir(self.run_dir).truncate_metrics(0)
            return
        state, path = found
        if "config" in state:  # checkpoints hold it; without it the model load still checks
            self.spec.check_resume(state["config"], state["recipe"], str(path))
        try:
            if path.is_dir():  # sharded: resharded to this world size
                checkpoint.load_sharded_into(path, self.model, self.optimizer)
            else:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            match_param_layout(self.optimizer)  # a resume may switch --channels-last
            self._scale_hyperparameters()  # from the saved base values: another batch's
        except (RuntimeError, KeyError, ValueError) as e:
            raise ValueError(f"--resume: {path} does not fit this run's model and optimizer "
                             f"({type(e).__name__}); train into a new --out") from None
        if self.ramp is not None and state["position"]["global_batch_size"] != self.B:
            raise ValueError(f"--batch-size: a batch ramp resumes at its own largest batch "
                             f"{state['position']['global_batch_size']}, not {self.B}")
        self.pos, elastic = resume_position(state["position"], self.B, self.recipe)
        extra = state["extra"]
        if self.noise is not None and extra.get("noise") and not elastic \
                and self.noise.fits(extra["noise"]):  # else measured at another micro batch
            self.noise.load_state_dict(extra["noise"])
        if self.ramp is not None:
            self.ramp.load_state_dict(extra["ramp"])
            if self.task.kind == "text":  # the streams of the epoch it stands in
                self.batches = self._stream_batches(self.ramp.batch)
        if self.adaptive is not None and extra.get("adaptive"):
            self.adaptive.load_state_dict(extra["adaptive"])  # tau is in base steps: elastic
            if elastic:  # the window was measured at the old batch; k may be smaller now
                self.adaptive.set_gain(min(self.adaptive.gain,
                                           self.B / self.spec.base.base_batch_size))
            elif self.noise is not None:  # the coming step's gain, as advance() left it
                self.adaptive.set_gain_from(self.noise)
        self.last_eval, self.wall_before = dict(extra["last_eval"]), extra["wall_time_s"]
        self.eval_step = None if elastic else extra.get("eval_step")
        if self.eval_step is None and self.pos.step_in_epoch == 0 and self.last_eval:
            self.eval_step = self.pos.step  # an epoch end's (a checkpoint without eval_step)
        ranks = state["ranks"]
        if len(ranks) == self.env.world_size:
            checkpoint.set_rng_state(ranks[self.env.rank]["rng"])
            if not elastic and ranks[self.env.rank]["hidden"] is not None:
                self.hidden = [hidden_to(h, self.device) for h in ranks[self.env.rank]["hidden"]]
        else:
            warn(f"resume: checkpoint has {len(ranks)} ranks, this job {self.env.world_size}; "
                 "RNG streams are re-seeded")
        if elastic:
            old = state["position"]
            warn(f"elastic resume: global batch {old['global_batch_size']} -> {self.B}; epoch "
                 f"position {old['epoch'] + old['step_in_epoch'] / old['steps_per_epoch']:.4f}"
                 f" -> step {self.pos.step} (epoch {self.pos.epoch_position(self.recipe):.4f}),"
                 f" recipe re-derived for the new batch")
        if dist.is_main():
            RunDir(self.run_dir).truncate_metrics(int(state["position"]["step"]))
        warn(f"resumed from {path} at step {self.pos.step}")

    def _save(self) -> None:
        per_rank = {"rng": checkpoint.rng_state(),
                    "hidden": None if self.hidden is None
                    else [hidden_to(h, torch.device("cpu")) for h in self.hidden]}
        ranks = dist.gather_to_main(per_rank)
        if dist.is_main():
            self.log.flush()
        state = None
        if dist.is_main() or self.fsdp:
            state = {"position": self.pos.to_dict(self.B, self.recipe.steps_per_epoch),
                     "ranks": ranks, "recipe": self.spec.base.to_dict(),
                     "config": self.config.to_dict(),
                     "extra": {"last_eval": self.last_eval, "eval_step": self.eval_step,
                               "wall_time_s": self._wall(),
                               "noise": self.noise.state_dict() if self.noise else None,
                               "adaptive": self.adaptive.state_dict() if self.adaptive
                               else None,
                               "ramp": self.ramp.state_dict() if self.ramp else None}}
        if self.fsdp:  # every rank writes its shards
            checkpoint.save_sharded(self.run_dir, self.model, self.optimizer, state,
                                    self.pos.step, self.config.keep_checkpoints, dist.is_main())
        elif dist.is_main():
            state.update(model=self.model.state_dict(), optimizer=self.optimizer.state_dict())
            checkpoint.save(self.run_dir, state, self.pos.step, self.config.keep_checkpoints)
        dist.barrier()

    def _scale_hyperparameters(self) -> None:
        """``--optimizer-scaling`` at a fixed batch: the optimizer's betas, epsilon and decay
        scaled once to the run's batch (an adaptive run or a ramp: each step, _schedule), from
        the run's own base values: after a load the groups hold scaled values, and a sharded
        (DCP) load drops the ``legw_base`` they carry."""
        rule = self.spec.optimizer_scaling
        if rule != "none" and not self.spec.scales_per_step:
            apply_hyperparameters(self.optimizer, self.recipe, rule, self._hyper_bases)

    def _wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    # --- training -------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        if self.config.resume:
            self._resume()
        self.log.start_at(self.pos.step)
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in [*remove_temporaries(self.run_dir),
                          *remove_temporaries(checkpoint.checkpoint_dir(self.run_dir))]:
                self.log.result(f"removed {stale}, left by a run killed while writing it")
            RunDir(self.run_dir).write_config(describe_run(
                self.spec, self.recipe, self.param_report, device=str(self.device),
                dataset_size=self.batches.dataset_size, stop_step=self.stop_step))
        self.log.info(f"data: {self.data.source}")
        if self.ramp:
            r = self.ramp
            self.log.info(f"{self.task.name}: batch ramp {r.rule} from {r.start_batch} to "
                          f"{self.B} in steps of micro batch {self.micro} x world size "
                          f"{self.env.world_size}; LR {r.schedule.peak_lr:.6g} x (B / "
                          f"{r.start_batch})^{r.power:g} at peak, warmup "
                          f"{r.schedule.warmup_epochs:g} epochs, {self.recipe.epochs:g} epochs "
                          f"({r.budget} samples); run directory {self.run_dir}")
        else:
            budget = (f"adaptive: until the base recipe's {self.adaptive.base.total_steps} "
                      f"steps are used up (at most {self.stop_step} steps)" if self.adaptive
                      else f"peak LR {self.recipe.peak_lr:.6g}, warmup "
                      f"{self.recipe.warmup_steps} steps, {self.stop_step} of "
                      f"{self.recipe.total_steps} steps")
            self.log.info(f"{self.task.name}: global batch {self.B} = micro batch {self.micro} "
                          f"x world size {self.env.world_size} x {self.accum} accumulation "
                          f"steps; {self.recipe.steps_per_epoch} steps/epoch, {budget}; run "
                          f"directory {self.run_dir}")
        try:
            while (self.pos.step < self.stop_step and self.diverged is None
                   and not self._complete()):
                self._step()
                epoch_end = self.pos.step_in_epoch == 0
                if (self.diverged is None and self.config.evaluate
                        and (epoch_end or self._eval_due())):
                    self._evaluate(final=self.pos.step == self.stop_step or self._complete())
                every = self.config.checkpoint_every
                if self.diverged is None and (epoch_end or self.pos.step == self.stop_step
                                              or self._complete()
                                              or (every and self.pos.step % every == 0)):
                    self._save()
            return self._finish()
        finally:
            self.log.close()

    def _eval_due(self) -> bool:
        """``--eval-every E``: every ``round(E * steps_per_epoch)`` steps (a ramp's: when its
        step passed a multiple of ``E`` epochs), besides epoch ends."""
        every = self.config.eval_every
        if not every:
            return False
        if self.ramp is None:
            return self.pos.step % max(1, round(every * self.recipe.steps_per_epoch)) == 0
        return (math.floor(self._epoch() / every + 1e-9)
                > math.floor(self.epoch_before_step / every + 1e-9))

    def _epoch(self) -> float:
        """The position in epochs (a ramp's: samples used over samples per epoch)."""
        if self.ramp and self.task.kind == "image":
            return self.pos.samples_seen / self.batches.dataset_size
        if self.ramp:  # token streams: the epoch's steps at its batch
            return self.pos.epoch + self.pos.step_in_epoch / self.batches.steps_per_epoch
        return self.pos.epoch_position(self.recipe)

    def _step(self) -> None:
        """One optimizer step; the LR of an adaptive run is its gain's (see legw.adaptive), a
        ramp's batch and LR are the ramp's (legw.adaptive.ramp)."""
        step, self.epoch_before_step = self.pos.step, self._epoch()
        lr, batch, accum = self._schedule()
        text = self.task.kind == "text"
        if text and self.ramp is not None and batch != self.batches.global_batch_size:
            self.batches = self._stream_batches(batch)  # a ramp's new epoch
        if text and (self.pos.step_in_epoch == 0 or self.hidden is None):
            self.hidden = [hidden_to(self.model.init_hidden(self.micro), self.device)
                           for _ in range(accum)]
        tick = time.perf_counter()
        if self.fsdp:
            dist.broadcast_buffers(self.model)  # as DDP does: one set of BatchNorm statistics
        if self.ramp is not None and not text:
            micro_batches = self.batches.micro_batches(self.pos.samples_seen, batch)
        else:
            micro_batches = self.batches.micro_batches(self.pos.epoch, self.pos.step_in_epoch)
        loss_sum = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(micro_batches):
            x, y = batch_to(x, self.device, self.config.channels_last), y.to(self.device)
            last = i == accum - 1
            if self.fsdp:  # accumulate unsharded; one reduce-scatter on the last micro-step
                self.model.set_requires_gradient_sync(last)
            sync = contextlib.nullcontext() if last or self.ddp is self.model \
                else self.ddp.no_sync()
            with sync:
                with autocast(self.device):
                    if text:
                        logits, h = self.ddp(x, self.hidden[i])
                        self.hidden[i] = detach_hidden(h)
                        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                               y.reshape(-1))
                    else:
                        loss = F.cross_entropy(self.ddp(x).float(), y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        m = self.meter.measure(loss_sum / accum)  # loss and |G_b|^2 in one all-reduce
        epoch_position = self._epoch()
        if not m.finite:
            self.diverged = {"step": step, "epoch": epoch_position, "loss": m.loss,
                             "grad_norm": m.grad_norm}
            self.log.info(f"diverged at step {step} (epoch {epoch_position:.3f}): loss "
                          f"{m.loss}, grad norm {m.grad_norm}")
            return
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - tick
        rec = {"kind": "train", "step": step, "epoch": epoch_position, "lr": lr,
               "loss": m.loss, "grad_norm": m.grad_norm,
               "samples_per_s": batch / dt if dt > 0 else float("nan")}
        if self.adaptive is not None:
            rec.update(gain=self.adaptive.gain, tau=self.adaptive.tau)
        if self.noise is not None:
            rec.update(self.noise.update(m.small_sq, m.big_sq, batch))
        if self.adaptive is not None:
            self.adaptive.advance(self.noise)
        if self.ramp is not None:
            rec.update(self._advance_ramp(batch))
        else:
            self.pos.advance(self.B, self.recipe.steps_per_epoch)
        self.log.record(rec)

    def _schedule(self) -> tuple[float, int, int]:
        """The coming step's LR (written into the optimizer), global batch and micro-steps per
        rank: the recipe's, the adaptive gain's, or the ramp's."""
        if self.ramp is not None:
            batch = self.ramp.batch
            accum = self.meter.accumulation_steps = batch // (self.micro * self.env.world_size)
            lr = self.ramp.lr()
        elif self.adaptive is not None:
            lr, batch, accum = self.adaptive.lr(), self.B, self.accum
        else:
            return apply_recipe(self.optimizer, self.recipe, self.pos.step), self.B, self.accum
        set_lr(self.optimizer, lr)
        if self.spec.scales_per_step:  # betas, epsilon, decay at the step's effective batch
            set_hyperparameters(self.optimizer, *(self.ramp or self.adaptive).effective_scale,
                                self.spec.optimizer_scaling, self._hyper_bases)
        return lr, batch, accum

    def _advance_ramp(self, batch: int) -> dict[str, Any]:
        """After a ramp's step on ``batch`` samples: the rule grows the batch, the position
        moves; returns what the step's record adds."""
        self.ramp.advance_from(batch, self.noise)
        if self.task.kind == "image":
            self.pos.advance_samples(batch, self.batches.dataset_size)
        else:  # token streams: an epoch is its batch's steps
            self.pos.advance(batch, self.batches.steps_per_epoch)
        return {"batch_size": batch, **({"tau": self.ramp.tau}
                                        if self.ramp.budget_kind == "tau" else {})}

    def _stream_batches(self, batch: int) -> StreamBatches:
        """A ramp's token streams at ``batch``: the epoch's tokens cut into ``batch`` streams."""
        return StreamBatches(self.data.train, batch, self.micro, self.env.rank,
                             self.env.world_size, self.task.bptt)

    def _evaluate(self, final: bool) -> None:
        task, rec = self.task, {}
        if task.kind == "image":
            rec = image_metrics(self.model, self.data.test, task.eval_batch_size, self.device,
                                self.env.rank, self.env.world_size, self.config.channels_last)
        else:
            sharded = bool(self.fsdp)
            rec["valid_perplexity"] = perplexity(self.model, self.data.valid,
                                                 task.eval_batch_size, task.bptt, self.device,
                                                 sharded)
            if final:
                rec["test_perplexity"] = perplexity(self.model, self.data.test,
                                                    task.eval_batch_size, task.bptt, self.device,
                                                    sharded)
        self.last_eval, self.eval_step = rec, self.pos.step
        epoch = self._epoch()
        self.log.record({"kind": "eval", "step": self.pos.step, "epoch": epoch, **rec})
        self.log.result(f"epoch {epoch:.3f} step {self.pos.step}: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in rec.items()))

    def _finish(self) -> dict[str, Any]:
        if self.diverged is None and self.config.evaluate:
            need_test = self.task.kind == "text" and "test_perplexity" not in self.last_eval
            if self.eval_step != self.pos.step or need_test:
                self._evaluate(final=True)
        complete = self._complete()
        summary = {"status": "diverged" if self.diverged else
                   "completed" if complete else "stopped",
                   "task": self.task.name, "metric": self.task.metric,
                   "global_batch_size": self.B, "seed": self.config.seed,
                   "steps": self.pos.step,
                   "total_steps": (self.pos.step if complete else None)
                   if self.adaptive or self.ramp else self.recipe.total_steps,
                   "epochs": self._epoch(),
                   "samples_seen": self.pos.samples_seen, "final": self.last_eval,
                   "diverged_at": _why_diverged(self.diverged), "wall_time_s": self._wall(),
                   "run_dir": str(self.run_dir)}
        if dist.is_main():
            RunDir(self.run_dir).write_summary(summary)
            where = (f" at step {self.diverged['step']} (exit status {DIVERGED_EXIT_STATUS})"
                     if self.diverged else "")
            metrics = "".join(f", {k} {v:.4f}" for k, v in self.last_eval.items())
            self.log.result(f"{summary['status']}{where}{metrics}; wall time "
                          f"{summary['wall_time_s']:.1f} s")
        return summary

    def _complete(self) -> bool:
        """The whole schedule ran: the recipe's steps, or the adaptive position its budget."""
        if self.adaptive is not None:
            return self.adaptive.done
        if self.ramp is not None:
            return self.ramp.done
        return self.pos.step >= self.recipe.total_steps


def _why_diverged(diverged: dict[str, Any] | None) -> dict[str, Any] | None:
    """The divergence record with its reason spelled out: strict JSON writes the non-finite
    values themselves as ``null``."""
    if diverged is None:
        return None
    bad = [f"{k} {diverged[k]}" for k in ("loss", "grad_norm") if not math.isfinite(diverged[k])]
    return {**diverged, "reason": "non-finite " + " and ".join(bad)}
