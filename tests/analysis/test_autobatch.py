"""Micro batch selection with fake timing functions, and one real timing on a tiny model."""

import pytest
import torch

from legw.analysis.autobatch import (
    OOM,
    SKIPPED,
    doublings,
    measure_curve,
    plan_batches,
    powers_of_two,
    select_micro_batch,
    time_training_step,
)

SIZES = [1, 2, 4, 8, 16, 32, 64]


def fake_timer(throughput, oom_from=None, error=MemoryError):
    """Steps take ``size / throughput[size]`` seconds (with a little jitter across repeats)."""
    calls = []

    def time_steps(size, repeats):
        calls.append(size)
        if oom_from is not None and size >= oom_from:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        base = size / throughput[size]
        jitter = (1.3, 1.0, 0.99, 1.0, 5.0)
        done = calls.count(size) - 1
        return [base * jitter[(done + i) % 5] for i in range(repeats)]

    time_steps.calls = calls
    return time_steps


def test_doublings_start_at_any_size():
    assert doublings(10, 1024) == [10, 20, 40, 80, 160, 320, 640]  # PTB's micro batch
    assert doublings(64, 256) == [64, 128, 256]
    assert doublings(2048, 1024) == [2048]


def test_powers_of_two():
    assert powers_of_two(4, 64) == [4, 8, 16, 32, 64]
    assert powers_of_two(1, 1) == [1]
    with pytest.raises(ValueError, match="power of two"):
        powers_of_two(3, 64)
    with pytest.raises(ValueError, match="smallest"):
        powers_of_two(64, 4)


def test_median_ignores_outlier_repeats():
    tput = {s: 100.0 * s for s in SIZES}
    points = measure_curve(fake_timer(tput), [8], repeats=5)
    assert points[0].samples_per_s == pytest.approx(100 * 8)


@pytest.mark.parametrize("interleave", [True, False])
def test_interleaved_rounds_visit_every_size_per_round(interleave):
    tput = {s: 100.0 * s for s in SIZES}
    timer = fake_timer(tput)
    points = measure_curve(timer, [4, 1, 2], repeats=3, interleave=interleave)
    assert [p.micro_batch_size for p in points] == [1, 2, 4]
    assert timer.calls == ([1, 2, 4] * 3 if interleave else [1, 2, 4])
    assert all(len(p.step_seconds) == 3 for p in points)
    assert [p.samples_per_s for p in points] == pytest.approx([100, 200, 400])


def test_min_statistic_ignores_slow_repeats():
    tput = {s: 100.0 * s for s in SIZES}
    (point,) = measure_curve(fake_timer(tput), [8], repeats=5, statistic="min")
    assert point.samples_per_s == pytest.approx(800 / 0.99)
    assert point.to_dict()["median_s"] == pytest.approx(8 / 800)
    with pytest.raises(ValueError, match="statistic"):
        measure_curve(fake_timer(tput), [8], statistic="mean")


def test_saturating_curve_picks_smallest_within_tolerance():
    tput = dict(zip(SIZES, [100, 190, 350, 600, 960, 990, 1000]))
    sel = select_micro_batch(measure_curve(fake_timer(tput), SIZES), tolerance=0.05)
    assert sel.peak_micro_batch_size == 64
    assert sel.chosen_micro_batch_size == 16  # 960 >= 950 > 600
    sel = select_micro_batch(measure_curve(fake_timer(tput), SIZES), tolerance=0.0)
    assert sel.chosen_micro_batch_size == 64


def test_non_monotonic_curve_peak_in_the_middle():
    # the CPU shape: bigger batches fall out of cache and get slower per sample
    tput = dict(zip(SIZES, [100, 300, 700, 1000, 960, 600, 400]))
    sel = select_micro_batch(measure_curve(fake_timer(tput), SIZES))
    assert (sel.peak_micro_batch_size, sel.chosen_micro_batch_size) == (8, 8)
    tput = dict(zip(SIZES, [100, 980, 700, 1000, 500, 990, 400]))
    sel = select_micro_batch(measure_curve(fake_timer(tput), SIZES))
    assert (sel.peak_micro_batch_size, sel.chosen_micro_batch_size) == (8, 2)


def test_ties_go_to_the_smallest_size():
    tput = dict(zip(SIZES, [100, 500, 800, 800, 800, 700, 700]))
    sel = select_micro_batch(measure_curve(fake_timer(tput), SIZES), tolerance=0.0)
    assert sel.peak_micro_batch_size == 4
    assert sel.chosen_micro_batch_size == 4


def test_out_of_memory_is_recorded_and_larger_sizes_skipped():
    tput = {s: 100.0 * s for s in SIZES}
    timer = fake_timer(tput, oom_from=16, error=RuntimeError)
    points = measure_curve(timer, SIZES)
    status = {p.micro_batch_size: p.status for p in points}
    assert status[8] == "ok" and status[16] == OOM
    assert status[32].startswith(SKIPPED) and status[64].startswith(SKIPPED)
    assert timer.calls.count(16) == 1 and timer.calls.count(8) == 5
    assert 32 not in timer.calls and 64 not in timer.calls
    assert points[-1].to_dict()["samples_per_s"] is None
    sel = select_micro_batch(points)
    assert sel.peak_micro_batch_size == 8


def test_out_of_memory_continue_when_asked():
    tput = {s: 100.0 * s for s in SIZES}

    def timer(size, repeats):
        if size == 16:
            raise MemoryError
        return [size / tput[size]] * repeats

    points = measure_curve(timer, SIZES, stop_after_oom=False)
    assert [p.status for p in points].count("ok") == 6
    assert select_micro_batch(points).peak_micro_batch_size == 64


def test_other_errors_propagate_and_all_oom_is_an_error():
    def broken(size, repeats):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape"):
        measure_curve(broken, SIZES)
    points = measure_curve(fake_timer({}, oom_from=1), SIZES)
    with pytest.raises(ValueError, match="out of memory"):
        select_micro_batch(points)
    with pytest.raises(ValueError, match="tolerance"):
        select_micro_batch(points, tolerance=1.5)


@pytest.mark.parametrize("global_bs,target,world,expect", [
    (8192, 64, 1, (64, 128)),
    (8192, 64, 4, (64, 32)),
    (128, 256, 1, (128, 1)),   # the global batch is smaller than the efficient micro batch
    (96, 64, 1, (48, 2)),      # not a power of two: 2 steps of 48
    (100, 64, 2, (50, 1)),
    (7, 2, 1, (1, 7)),
])
def test_plan_batches(global_bs, target, world, expect):
    plan = plan_batches(global_bs, target, world)
    assert (plan.micro_batch_size, plan.accumulation_steps) == expect
    assert plan.micro_batch_size * plan.accumulation_steps * plan.world_size == global_bs
    assert plan.micro_batch_size <= target


def test_plan_batches_rejects_indivisible_world_size():
    with pytest.raises(ValueError, match="world_size"):
        plan_batches(100, 8, 3)


def test_time_training_step_runs_and_updates_the_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = model.weight.detach().clone()

    def make_batch(n):
        return torch.randn(n, 4), torch.randint(0, 3, (n,))

    timer = time_training_step(model, torch.nn.functional.cross_entropy, make_batch, lr=0.1)
    points = measure_curve(timer, [2, 4], repeats=2)
    assert all(p.status == "ok" and len(p.step_seconds) == 2 for p in points)
    assert not torch.equal(before, model.weight)


def test_the_cpu_allocators_error_is_out_of_memory():
    from legw.training.device import is_out_of_memory

    error = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                         "can't allocate memory: you tried to allocate 3448068464705536 bytes.")
    assert is_out_of_memory(error) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))

    def timer(size, n):
        if size > 2:
            raise error
        return [0.01] * n

    points = measure_curve(timer, [1, 2, 4, 8], repeats=1)
    assert [p.status for p in points][2] == "out of memory"
