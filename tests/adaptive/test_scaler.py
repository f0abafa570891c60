"""AdaptiveScaler: --scaling adaptive in a hand-written loop. The gain on a problem of known
noise, agreement with `legw train --scaling adaptive`, refusals, resume, and DDP (gloo, 2 ranks;
this file is also the ranks' script)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import final_params, make_mnist_dir, read_jsonl

from legw import BaseRecipe
from legw.adaptive.scaler import AdaptiveScaler
from legw.optim import LAMB, LARS

D, MEAN_SQ, TRACE = 20, 0.05, 4.0  # per-sample gradients: |G|^2 and tr(Sigma); B_noise = 80


def known_noise_micro_batches(step: int, count: int, micro: int) -> list[torch.Tensor]:
    """``count`` micro-batches of step ``step``: samples x ~ N(G, TRACE/D I) with |G|^2 =
    MEAN_SQ. The loss mean(w . x) has per-sample gradient x, whatever the weights."""
    gen = torch.Generator().manual_seed(1000 + step)
    mean = torch.full((D,), (MEAN_SQ / D) ** 0.5)
    return [mean + (TRACE / D) ** 0.5 * torch.randn(micro, D, generator=gen)
            for _ in range(count)]


def linear_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(D, 1, bias=False)


def train_known_noise(scaler: AdaptiveScaler, model: torch.nn.Module, micro: int,
                      steps: int | None = None, first_step: int = 0,
                      rank: int = 0) -> list[dict]:
    """Until the scaler is done (or ``steps`` steps); rank ``r`` of ``W`` takes its share of
    each step's ``W * A`` micro-batches."""
    records, step = [], first_step
    a = scaler.accumulation_steps
    world = scaler.schedule.batch_size // (micro * a)
    while not scaler.done and (steps is None or step < first_step + steps):
        model.zero_grad(set_to_none=True)
        for x in known_noise_micro_batches(step, world * a, micro)[rank * a:(rank + 1) * a]:
            (model(x).mean() / a).backward()
        records.append(scaler.step())
        step += 1
    return records


def test_the_gain_and_the_steps_match_a_problem_of_known_noise():
    b0, b, micro, n = 8, 64, 8, 1000
    base = BaseRecipe(base_batch_size=b0, peak_lr=1e-3, warmup_epochs=0.0, epochs=12)
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = AdaptiveScaler(model, opt, base, b, micro, n, window=200)
    records = train_known_noise(scaler, model, micro)
    expected = (TRACE / b0 + MEAN_SQ) / (TRACE / b + MEAN_SQ)  # 4.89 of k = 8
    late = [r["gain"] for r in records[200:]]
    assert sum(late) / len(late) == pytest.approx(expected, rel=0.1)
    assert records[-1]["b_noise"] == pytest.approx(TRACE / MEAN_SQ, rel=0.25)
    base_steps = 12 * n // b0  # 1500 base steps, r of them per step
    assert scaler.done and len(records) == pytest.approx(base_steps / expected, rel=0.1)
    for r in records:  # the LR is the base recipe's at tau times the gain (P = 1 for SGD)
        assert r["lr"] == pytest.approx(base.scale(b0, n).lr_at_step(r["tau"]) * r["gain"])


def test_agrees_step_for_step_with_legw_train(tmp_path):
    from legw.training.batches import ImageBatches
    from legw.training.config import TrainConfig
    from legw.training.device import flush_denormals
    from legw.training.trainer import seed_everything, train

    data = make_mnist_dir(tmp_path / "data")  # 256 samples
    config = TrainConfig(task="fashion-mnist-lstm", global_batch_size=128, micro_batch_size=32,
                         epochs=4.0, base_batch_size=32, base_lr=0.4, base_warmup_epochs=0.25,
                         scaling="adaptive", noise_window=4, num_threads=1, quiet=True,
                         data_dir=str(data), out_dir=str(tmp_path / "run"))
    train(config)
    expected = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]

    # the same run in a hand-written loop
    spec = config.resolve()
    task = spec.task
    with flush_denormals(torch.device("cpu")):
        seed_everything(config.seed)
        data_set = task.load(str(data))
        batches = ImageBatches(data_set.train, 128, 32, 0, 1, config.seed)
        torch.manual_seed(config.seed)
        model = task.build_model(data_set)
        opt, _ = spec.build_optimizer(model, lr=0.0)
        scaler = AdaptiveScaler(model, opt, spec.base, 128, 32, len(data_set.train),
                                window=4, max_grad_norm=spec.clip_grad_norm)
        records, step, spe = [], 0, batches.steps_per_epoch
        while not scaler.done:
            opt.zero_grad(set_to_none=True)
            for x, y in batches.micro_batches(step // spe, step % spe):
                (F.cross_entropy(model(x).float(), y) / scaler.accumulation_steps).backward()
            records.append(scaler.step())
            step += 1
    assert len(records) == len(expected) < 32  # fewer steps than the base run's 32
    for mine, theirs in zip(records, expected):
        assert ("b_noise" in mine) == ("b_noise" in theirs)
        for key in ("lr", "gain", "tau", "grad_norm", "b_noise"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (key, theirs)
    want = final_params(tmp_path / "run")
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, want[name], rtol=1e-6, atol=1e-7)


def test_the_lr_power_defaults_by_the_optimizer_class():
    model = linear_model()
    base = BaseRecipe(base_batch_size=8, peak_lr=0.1, warmup_epochs=0.0, epochs=1)
    for opt, power in ((torch.optim.SGD(model.parameters(), lr=0.1), 1.0),
                       (LARS(model.parameters(), lr=0.1), 1.0),
                       (torch.optim.Adam(model.parameters()), 0.5),
                       (torch.optim.AdamW(model.parameters()), 0.5),
                       (LAMB(model.parameters(), lr=0.1), 0.5)):
        scaler = AdaptiveScaler(model, opt, base, 64, 8, 640)
        assert scaler.schedule.lr_power == power, type(opt).__name__
        scaler.remove_hooks()
    explicit = AdaptiveScaler(model, torch.optim.Adam(model.parameters()), base, 64, 8, 640,
                              lr_power=1.0)
    assert explicit.schedule.lr_power == 1.0


def test_refusals_name_the_argument_and_change_nothing():
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    base = BaseRecipe(base_batch_size=8, peak_lr=0.1, warmup_epochs=0.0, epochs=1)
    with pytest.raises(ValueError, match="micro_batch_size: the gain needs 2"):
        AdaptiveScaler(model, opt, base, 64, 64, 640)
    with pytest.raises(ValueError, match="global_batch_size: 64 is not micro_batch_size 24"):
        AdaptiveScaler(model, opt, base, 64, 24, 640)
    with pytest.raises(ValueError, match="global_batch_size: adaptive scaling grows the batch"):
        AdaptiveScaler(model, opt, base, 4, 2, 640)
    with pytest.raises(ValueError, match="max_grad_norm"):
        AdaptiveScaler(model, opt, base, 64, 8, 640, max_grad_norm=0.0)
    with pytest.raises(ValueError, match="^optimizer_scaling: choose from none, srr"):
        AdaptiveScaler(model, opt, base, 64, 8, 640, optimizer_scaling="adam")
    scaler = AdaptiveScaler(model, opt, base, 64, 8, 640)
    scaler.check_accumulation_steps(8, "accumulate_grad_batches")
    with pytest.raises(ValueError, match=r"accumulate_grad_batches: 4, but global_batch_size 64 "
                                         r"= micro_batch_size 8 x world size 1 x 8"):
        scaler.check_accumulation_steps(4, "accumulate_grad_batches")
    x = known_noise_micro_batches(0, 1, 8)[0]
    for _ in range(3):  # 3 of the 8 micro-batches
        model(x).mean().backward()
    before = model.weight.detach().clone()
    with pytest.raises(RuntimeError, match="3 backward passes since the last step, expected "
                                           "accumulation_steps = 8"):
        scaler.step()
    model.zero_grad()
    for _ in range(8):
        (model(x * float("inf")).mean() / 8).backward()
    with pytest.raises(FloatingPointError, match="gradient norm (inf|nan) at step 0"):
        scaler.step()
    assert torch.equal(model.weight, before) and scaler.tau == 0 and scaler.steps == 0
    with pytest.raises(RuntimeError, match="after_step: no before_step"):
        scaler.after_step()


def test_srr_sets_adams_moments_at_each_steps_gain():
    model = linear_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    base = BaseRecipe(base_batch_size=8, peak_lr=1e-3, warmup_epochs=0.0, epochs=2)
    scaler = AdaptiveScaler(model, opt, base, 64, 8, 640, window=3, optimizer_scaling="srr")
    gains = []
    for step in range(6):
        model.zero_grad(set_to_none=True)
        for x in known_noise_micro_batches(step, 8, 8):
            (model(x).mean() / 8).backward()
        record = scaler.before_step()
        gains.append(record["gain"])
        g = record["gain"]
        assert opt.param_groups[0]["betas"] == pytest.approx((max(0.5, 1 - 0.1 * g),
                                                              1 - 0.001 * g))
        assert opt.param_groups[0]["eps"] == pytest.approx(1e-8 / g ** 0.5)
        opt.step()
        scaler.after_step()
    assert gains[0] == 1 and max(gains) > 2  # B_noise 80 over B0 8: the gain grows


def test_state_dict_resumes_bit_identically():
    base = BaseRecipe(base_batch_size=8, peak_lr=0.05, warmup_epochs=0.1, epochs=4)

    def fresh():
        model = linear_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        return model, opt, AdaptiveScaler(model, opt, base, 32, 8, 400, window=10)

    model, opt, scaler = fresh()
    whole = train_known_noise(scaler, model, 8, steps=30)
    model, opt, scaler = fresh()
    cut = train_known_noise(scaler, model, 8, steps=12)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict()}
    model, opt, scaler = fresh()
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    scaler.load_state_dict(saved["scaler"])
    cut += train_known_noise(scaler, model, 8, steps=18, first_step=12)
    assert cut == whole
    other = AdaptiveScaler(model, opt, base, 64, 8, 400)
    with pytest.raises(ValueError, match="state: saved at other batch sizes"):
        other.load_state_dict(saved["scaler"])


def test_the_readme_snippet_runs_as_written():
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "AdaptiveScaler(" in b)
    torch.manual_seed(0)
    train_set = torch.utils.data.TensorDataset(torch.randn(1024, 5), torch.randint(0, 2, (1024,)))

    def next_micro_batches():
        for _ in range(64):  # 8192 = 64 micro-batches of 128, drawn from the set
            idx = torch.randint(0, len(train_set), (128,))
            yield train_set[idx]

    model = torch.nn.Linear(5, 2)
    ns = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
          "train_set": train_set, "next_micro_batches": next_micro_batches,
          "loss_fn": F.cross_entropy}
    exec(code, ns)
    scaler = ns["scaler"]
    assert scaler.done and 0 < scaler.steps < 80  # the base run: 10 epochs x 8 steps


@pytest.mark.integration
def test_two_ranks_measure_what_one_process_measures_over_the_same_micro_batches(tmp_path):
    from integration_helpers import run_two_processes

    ranks = run_two_processes(__file__, tmp_path)
    # one process, the step's 4 micro-batches accumulated (2 ranks x 2 each under DDP)
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = AdaptiveScaler(model, opt, DDP_BASE, 32, 8, 320, window=8)
    one = train_known_noise(scaler, model, 8, steps=12)
    for r in ranks:
        assert r["accumulation_steps"] == 2
        assert len(r["records"]) == len(one) == 12
        for mine, theirs in zip(r["records"], one):
            assert mine.keys() == theirs.keys()
            for key in mine:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
    assert ranks[0]["weight"] == ranks[1]["weight"]


DDP_BASE = BaseRecipe(base_batch_size=8, peak_lr=0.05, warmup_epochs=0.1, epochs=4)


def worker(out: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from legw.training.dist import cleanup

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = linear_model()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = AdaptiveScaler(ddp, opt, DDP_BASE, 32, 8, 320, window=8)
    records, a = [], scaler.accumulation_steps
    for step in range(12):
        opt.zero_grad(set_to_none=True)
        mine = known_noise_micro_batches(step, 2 * a, 8)[rank * a:(rank + 1) * a]
        for i, x in enumerate(mine):
            if i < a - 1:
                with ddp.no_sync():
                    (ddp(x).mean() / a).backward()
            else:
                (ddp(x).mean() / a).backward()
        records.append(scaler.step())
    (out / f"rank{rank}.json").write_text(json.dumps({
        "accumulation_steps": a, "records": records,
        "weight": model.weight.detach().flatten().tolist()}))
    scaler.remove_hooks()
    del scaler, ddp, opt  # DDP's reducer holds the group: free it before cleanup frees that
    gc.collect()
    cleanup()  # not destroy_process_group alone: gloo may abort at exit (legw.training.dist)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).parents[1]))
    worker(Path(sys.argv[1]))


def test_the_ramp_scaler_agrees_step_for_step_with_legw_train_batch_ramp(tmp_path):
    from legw.adaptive import RampScaler
    from legw.training.batches import RampBatches
    from legw.training.config import TrainConfig
    from legw.training.device import flush_denormals
    from legw.training.trainer import seed_everything, train

    data = make_mnist_dir(tmp_path / "data")  # 256 samples
    config = TrainConfig(task="fashion-mnist-lstm", global_batch_size=128, micro_batch_size=8,
                         epochs=4.0, base_batch_size=16, base_lr=0.4, base_warmup_epochs=0.1,
                         batch_ramp="noise", noise_window=3, num_threads=1, quiet=True,
                         data_dir=str(data), out_dir=str(tmp_path / "run"))
    train(config)
    expected = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]

    spec = config.resolve()
    with flush_denormals(torch.device("cpu")):
        seed_everything(config.seed)
        data_set = spec.task.load(str(data))
        batches = RampBatches(data_set.train, 8, 0, 1, config.seed)
        torch.manual_seed(config.seed)
        model = spec.task.build_model(data_set)
        opt, _ = spec.build_optimizer(model, lr=0.0)
        ramp = RampScaler(model, opt, spec.base, 128, 8, len(data_set.train), rule="noise",
                          window=3, max_grad_norm=spec.clip_grad_norm)
        records = []
        while not ramp.done:
            opt.zero_grad(set_to_none=True)
            micro = batches.micro_batches(ramp.samples, ramp.batch_size)
            assert len(micro) == ramp.accumulation_steps
            for x, y in micro:
                (F.cross_entropy(model(x).float(), y) / ramp.accumulation_steps).backward()
            records.append(ramp.step())
    assert len(records) == len(expected) and len({r["batch_size"] for r in records}) >= 3
    for mine, theirs in zip(records, expected):
        assert mine["batch_size"] == theirs["batch_size"]
        for key in ("lr", "grad_norm", "b_noise"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (key, theirs)
    want = final_params(tmp_path / "run")
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, want[name], rtol=1e-6, atol=1e-7)


def test_the_ramp_scaler_refuses_a_noise_rule_it_cannot_measure_and_resumes():
    from legw.adaptive import RampScaler

    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    base = BaseRecipe(base_batch_size=16, peak_lr=0.1, warmup_epochs=0.0, epochs=2.0)
    with pytest.raises(ValueError, match="micro_batch_size: the noise rule and the tau "
                                         "budget need 2"):
        RampScaler(model, opt, base, 64, 16, 256)
    with pytest.raises(ValueError, match="--batch-ramp: expected noise, seesaw"):
        RampScaler(model, opt, base, 64, 8, 256, rule="grow")
    ramp = RampScaler(model, opt, base, 64, 8, 256, rule="seesaw")
    assert (ramp.batch_size, ramp.accumulation_steps, ramp.samples) == (16, 2, 0)
    state = ramp.state_dict()
    ramp.ramp.advance(16)
    ramp.load_state_dict(state)
    assert ramp.samples == 0
