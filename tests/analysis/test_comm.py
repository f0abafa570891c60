"""The talk's Table 3 (ResNet-50, 90 epochs, 10^18 flops) and the ring all-reduce model."""

import math

import pytest

from legw.analysis.comm import (
    RESNET50_TABLE3,
    RESNET50_TALK_VALUES,
    binary_prefix_slip,
    constant_rate,
    predict_scaling,
    ring_allreduce_time,
    table3_row,
)


def _row(b):
    return table3_row(b, **RESNET50_TABLE3)


def test_model_bytes_is_104_mb():
    assert RESNET50_TABLE3["params"] * RESNET50_TABLE3["bytes_per_param"] == 104e6


def test_table3_batch_32_matches_talk():
    r = _row(32)
    talk = RESNET50_TALK_VALUES[32]
    assert r.messages == pytest.approx(90 * 1_281_167 / 32)
    assert r.messages == pytest.approx(talk["messages"], rel=0.005)  # 3.60M
    assert r.bytes_moved == pytest.approx(talk["bytes_moved"], rel=0.005)  # 374 TB
    assert r.comp_comm_ratio == pytest.approx(talk["comp_comm_ratio"], rel=0.005)  # 2,674


def test_table3_batch_32k_matches_formula_not_printed_messages():
    r = _row(32768)
    talk = RESNET50_TALK_VALUES[32768]
    assert r.messages == pytest.approx(3516, rel=0.002)
    assert abs(r.messages - talk["messages"]) / talk["messages"] > 0.04  # the printed 3,686
    assert r.bytes_moved == pytest.approx(talk["bytes_moved"], rel=0.005)  # 366 GB
    assert r.comp_comm_ratio == pytest.approx(talk["comp_comm_ratio"], rel=0.02)  # 2.7M


def test_binary_prefix_slip_explains_3686():
    assert binary_prefix_slip(3.6e6, 1024) == pytest.approx(3686.4)
    assert round(3.6e6 / 1024) == 3516  # the decimal reading


def test_ratio_is_linear_in_batch():
    r1, r2 = _row(1024), _row(4096)
    assert r2.comp_comm_ratio == pytest.approx(4 * r1.comp_comm_ratio)
    assert table3_row(32, params=10, dataset_size=100, epochs=1).comp_comm_ratio is None


@pytest.mark.parametrize("field,kwargs", [
    ("global_batch_size", {"global_batch_size": 0}),
    ("params", {"params": -5}),
    ("epochs", {"epochs": float("nan")}),
    ("total_flops", {"total_flops": 0}),
])
def test_table3_bad_input(field, kwargs):
    args = {"global_batch_size": 32, **RESNET50_TABLE3, **kwargs}
    with pytest.raises(ValueError, match=field):
        table3_row(args.pop("global_batch_size"), **args)


def test_ring_allreduce_formula():
    assert ring_allreduce_time(1, 1e8, latency=1e-3, bandwidth=1e9) == 0.0
    # p=2: 2 alpha + M / beta
    assert ring_allreduce_time(2, 1e8, latency=1e-3, bandwidth=1e9) == pytest.approx(0.002 + 0.1)
    # p=4: 6 alpha + 1.5 M / beta
    assert ring_allreduce_time(4, 1e8, latency=1e-3, bandwidth=1e9) == pytest.approx(0.006 + 0.15)
    # bandwidth term tends to 2 M / beta for many workers
    big = ring_allreduce_time(10_000, 1e8, latency=0.0, bandwidth=1e9)
    assert big == pytest.approx(0.2, rel=1e-3)
    with pytest.raises(ValueError, match="workers"):
        ring_allreduce_time(0, 1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        ring_allreduce_time(2, 1.0, bandwidth=0)


def _predict(batches, workers, rate=1000.0):
    return predict_scaling(batches, workers, model_bytes=104e6, dataset_size=1_281_167,
                           compute_time=constant_rate(rate))


def test_one_worker_has_no_communication_and_full_efficiency():
    rows, _ = _predict([256], [1])
    (r,) = rows
    assert r.comm_s == 0 and r.efficiency == 1 and r.speedup == 1
    assert r.epoch_s == pytest.approx(1_281_167 / 1000)


def test_efficiency_falls_with_workers_and_rises_with_batch():
    workers = [1, 2, 4, 8, 16, 32]
    batches = [256, 1024, 4096, 16384]
    rows, skipped = _predict(batches, workers)
    assert not skipped
    eff = {(r.global_batch_size, r.workers): r.efficiency for r in rows}
    for b in batches:
        series = [eff[b, p] for p in workers]
        assert all(x > y for x, y in zip(series, series[1:])), series
    for p in workers[1:]:
        series = [eff[b, p] for b in batches]
        assert all(x < y for x, y in zip(series, series[1:])), series
    assert all(0 < e <= 1 for e in eff.values())


def test_epoch_time_formula():
    rows, _ = predict_scaling([64], [4], model_bytes=1e6, dataset_size=6400,
                              compute_time=constant_rate(100.0), latency=1e-4, bandwidth=1e8)
    (r,) = rows
    comm = 6 * 1e-4 + 1.5 * 1e6 / 1e8
    assert r.micro_batch_size == 16
    assert r.comm_s == pytest.approx(comm)
    assert r.epoch_s == pytest.approx(100 * (16 / 100 + comm))
    assert r.efficiency == pytest.approx(0.64 / (4 * (0.16 + comm)))


def test_indivisible_pairs_are_skipped_with_reason():
    rows, skipped = _predict([32], [1, 3, 64])
    assert [r.workers for r in rows] == [1]
    assert {s["workers"] for s in skipped} == {3, 64}
    assert all("divide" in s["reason"] for s in skipped)


def test_constant_rate_rejects_zero():
    with pytest.raises(ValueError, match="samples_per_second"):
        constant_rate(0.0)
    assert math.isclose(constant_rate(50.0)(10), 0.2)
