"""LARS with float16 / bfloat16 parameters on the CPU stays off torch's fused CPU SGD kernel,
which torch 2.13.0 gets wrong in reduced precision (``_common.FUSED_SGD_CPU_DTYPES``)."""

import pytest
import torch
from test_optimizers import GROUPS, LARS_CASES, grads_at, make_params, run_ref

from legw.optim import LARS

HALF = [torch.bfloat16, torch.float16]


def _run(dtype, fused, defaults, steps=4):
    ps = [torch.nn.Parameter(p.detach().to(dtype)) for p in make_params()]
    opt = LARS([{"params": [ps[i] for i in idx], **over} for idx, over in GROUPS],
               fused=fused, **defaults)
    for t in range(steps):
        for p, g in zip(ps, grads_at(t)):
            p.grad = g.to(dtype)
        opt.step()
    return [p.detach() for p in ps]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("defaults", LARS_CASES[:2])
def test_auto_is_the_multi_tensor_path_and_near_the_reference(dtype, defaults):
    auto, foreach = _run(dtype, None, defaults), _run(dtype, False, defaults)
    assert all(torch.equal(a, b) for a, b in zip(auto, foreach))
    for p, w in zip(auto, run_ref(LARS, GROUPS, defaults, steps=4)):
        torch.testing.assert_close(p.double(), w, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_fused_true_is_refused_naming_the_flag(dtype):
    w = torch.nn.Parameter(torch.zeros(16, dtype=dtype))
    with pytest.raises(ValueError, match=r"fused: no fused kernel for a torch\.(b)?float16"):
        LARS([w], lr=0.1, fused=True)


def test_torch_fused_cpu_sgd_still_wrong_in_bfloat16():
    # the reason for the rule; when this fails, torch fixed the kernel and the rule can go
    gen = torch.Generator().manual_seed(0)
    w0, g = torch.randn(64, generator=gen), 0.1 * torch.randn(64, generator=gen)
    out = []
    for kind in ({"fused": True}, {"foreach": True}):
        w = torch.nn.Parameter(w0.bfloat16())
        w.grad = g.bfloat16()
        torch.optim.SGD([w], lr=0.5, **kind).step()
        out.append(w.detach().double())
    want = w0.double() - 0.5 * g.double()
    assert (out[1] - want).abs().max() < 0.02
    assert (out[0] - want).abs().max() > 0.05
