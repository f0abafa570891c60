"""Device selection on a machine without CUDA: ``auto`` falls back to the CPU, and an explicit
``--device cuda`` is a one-line user error (exit 2) before anything is written; CPU training
flushes denormals to zero and restores the mode it found."""

import pytest
import torch
from helpers import make_mnist_dir, one_line_error

from legw.adaptive.meter import add_grad_sq
from legw.training import trainer
from legw.training.config import TrainConfig
from legw.training.device import (
    autocast,
    batch_to,
    flush_denormals,
    flushing_denormals,
    match_param_layout,
    select_device,
)
from legw.training.trainer import train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")


@no_cuda
def test_auto_is_the_cpu_without_cuda():
    assert select_device("auto", 0) == torch.device("cpu")
    assert select_device("cpu", 0) == torch.device("cpu")


@no_cuda
def test_cuda_without_cuda_raises_naming_the_flag():
    with pytest.raises(ValueError, match="--device: cuda requested"):
        select_device("cuda", 0)


@no_cuda
def test_cli_device_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    data = make_mnist_dir(tmp_path / "data", n_train=32, n_test=16)
    out = tmp_path / "run"
    line = one_line_error(capsys, ["train", "fashion-mnist-lstm", "--data-dir", str(data),
                                   "--device", "cuda", "--max-steps", "1", "--quiet",
                                   "--out", str(out)])
    assert line == "legw: error: --device: cuda requested but no CUDA device is available"
    assert not out.exists()  # refused before the run directory was made


def test_autocast_is_off_on_the_cpu():
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.parametrize("before", [False, True])
def test_flush_denormals_on_the_cpu_restores_the_mode_it_found(before):
    torch.set_flush_denormal(before)
    try:
        with flush_denormals(torch.device("cpu")):
            assert torch.tensor(1e-40).mul(1.0).item() == 0.0  # a denormal reads as zero
        assert flushing_denormals() is before
    finally:
        torch.set_flush_denormal(False)


def test_flush_denormals_leaves_other_devices_alone():
    with flush_denormals(torch.device("cuda")):  # a device object; no CUDA needed
        assert not flushing_denormals()


def spy_after_fit(monkeypatch, probe):
    """Run ``probe(trainer)`` when ``_Trainer.fit`` returns, still inside ``train``."""
    fit = trainer._Trainer.fit

    def fit_then_probe(self):
        summary = fit(self)
        probe(self)
        return summary

    monkeypatch.setattr(trainer._Trainer, "fit", fit_then_probe)


def resnet_config(data, out, **kw):
    return TrainConfig(task="fashion-mnist-resnet", global_batch_size=16, micro_batch_size=8,
                       quiet=True, num_threads=1, data_dir=str(data), out_dir=str(out), **kw)


def test_cpu_training_runs_with_denormals_flushed(tmp_path, monkeypatch):
    seen = []
    spy_after_fit(monkeypatch, lambda t: seen.append(flushing_denormals()))
    data = make_mnist_dir(tmp_path / "data", n_train=32, n_test=16)
    train(TrainConfig(task="fashion-mnist-lstm", global_batch_size=16, max_steps=1, quiet=True,
                      evaluate=False, data_dir=str(data), out_dir=str(tmp_path / "run")))
    assert seen == [True]
    assert not flushing_denormals()


def test_batch_to_puts_image_batches_in_channels_last_memory():
    cpu = torch.device("cpu")
    rgb = batch_to(torch.randn(4, 3, 8, 8), cpu, channels_last=True)
    assert rgb.is_contiguous(memory_format=torch.channels_last) and not rgb.is_contiguous()
    assert batch_to(torch.randn(4, 3, 8, 8), cpu).is_contiguous()
    tokens = torch.randn(4, 28, 28)  # an LSTM's (batch, time, features): left as it is
    assert batch_to(tokens, cpu, channels_last=True).is_contiguous()


def test_channels_last_trains_the_same_model_in_nhwc(tmp_path, monkeypatch):
    """The trainer keeps the layout it was asked for; the numbers are checked below."""
    layouts = []

    def conv_layout(t):  # a conv weight with several input channels (C = 1 fits both layouts)
        conv = next(m for m in t.model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        layouts.append(conv.weight.is_contiguous(memory_format=torch.channels_last))

    spy_after_fit(monkeypatch, conv_layout)
    data = make_mnist_dir(tmp_path / "data", n_train=64, n_test=32)
    summaries = [train(resnet_config(data, tmp_path / f"run-{cl}", max_steps=3,
                                     channels_last=cl))
                 for cl in (False, True)]
    assert layouts == [False, True]
    # the loss after 3 steps: the same training up to rounding, damped by the mean over samples
    a, b = (s["final"] for s in summaries)
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-3)


def test_channels_last_adds_no_error_beyond_float32_rounding(tmp_path):
    """Three LARS steps of the ResNet in NHWC and in NCHW, each against the same steps in
    float64. The two fp32 layouts sum their convolutions in different orders, and LARS's
    trust ratio (eta * |w| / |g|, lr 2) turns a last-bit difference in a gradient into
    differences near 1e-4 in the weights -- how large depends on the CPU's kernels (one
    machine of this kind measured 3.6e-4 between the layouts). What does not depend on the
    machine: the channels-last run is as close to the exact (float64) result as the default
    layout is, within a factor for the two runs' independent rounding."""
    data_dir = make_mnist_dir(tmp_path / "data", n_train=64, n_test=16)
    spec = resnet_config(data_dir, tmp_path / "r").resolve()
    data = spec.task.load(str(data_dir))
    x, y = data.train.get(torch.arange(16))

    def run(dtype, channels_last):
        torch.manual_seed(0)
        model = spec.task.build_model(data).to(dtype)
        xb = x.to(dtype)
        if channels_last:
            model, xb = (model.to(memory_format=torch.channels_last),
                         xb.contiguous(memory_format=torch.channels_last))
        opt, _ = spec.build_optimizer(model, lr=2.0)
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), y).backward()
            opt.step()
        return {k: v.detach().double() for k, v in model.state_dict().items()
                if v.is_floating_point()}

    exact = run(torch.float64, False)
    nchw, nhwc = run(torch.float32, False), run(torch.float32, True)
    for name, ref in exact.items():
        err_nchw = (nchw[name] - ref).abs().max().item()
        err_nhwc = (nhwc[name] - ref).abs().max().item()
        floor = 1e-6 * ref.abs().max().item() + 1e-12  # a few float32 ulps of the tensor
        assert err_nhwc <= 8 * max(err_nchw, floor), (name, err_nhwc, err_nchw)


def test_a_resume_that_switches_layout_gives_the_optimizer_state_the_new_one(tmp_path,
                                                                             monkeypatch):
    mismatched = []

    def state_layouts(t):  # LARS's momentum buffers against their parameters
        mismatched.extend(key for p, state in t.optimizer.state.items()
                          for key, v in state.items()
                          if isinstance(v, torch.Tensor) and v.shape == p.shape
                          and v.stride() != p.stride())

    data = make_mnist_dir(tmp_path / "data", n_train=64, n_test=32)
    out = tmp_path / "run"
    train(resnet_config(data, out, max_steps=2, evaluate=False))
    spy_after_fit(monkeypatch, state_layouts)
    summary = train(resnet_config(data, out, max_steps=4, evaluate=False, resume=True,
                                  channels_last=True))
    assert summary["steps"] == 4
    assert mismatched == []


def test_noise_hook_squares_a_channels_last_gradient():
    grad = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    into = torch.zeros((), dtype=torch.float64)
    add_grad_sq(into, grad)
    assert into.item() == pytest.approx((grad.double() ** 2).sum().item(), rel=1e-6)


def test_match_param_layout_gives_state_its_parameter_layout_and_skips_other_entries():
    conv = torch.nn.Conv2d(3, 4, 3)
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    conv(torch.randn(2, 3, 5, 5)).sum().backward()
    optimizer.step()  # momentum buffers in the default layout
    optimizer.state["wrapper"] = {"norms": torch.ones(3)}  # an entry that is no parameter
    conv.to(memory_format=torch.channels_last)
    before = optimizer.state[conv.weight]["momentum_buffer"].clone()
    match_param_layout(optimizer)
    buffer = optimizer.state[conv.weight]["momentum_buffer"]
    assert buffer.stride() == conv.weight.stride() and torch.equal(buffer, before)
    assert torch.equal(optimizer.state["wrapper"]["norms"], torch.ones(3))
