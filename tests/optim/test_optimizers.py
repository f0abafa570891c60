"""LARS / LAMB against per-parameter references written from the formulas, and the template
every optimizer in ``OPTIMIZERS`` runs through."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from legw.optim import LAMB, LARS, OPTIMIZERS, build_optimizer

# ---------------------------------------------------------------- references (one tensor at a time)


def ref_trust(num: float, den: float, w_norm: float, d_norm: float) -> float:
    return num / den if w_norm > 0 and d_norm > 0 else 1.0


def ref_limit(trust: float, lr: float, g: dict) -> float:
    if g.get("max_trust") is not None:
        trust = min(trust, g["max_trust"])
    if g.get("trust_clip"):
        trust = min(trust / lr, 1.0)
    return trust


def adapts(g: dict) -> bool:
    """True: every group; "with_decay": groups with weight decay (timm's rule); False: none."""
    adapt = g.get("adapt", True)
    return adapt is True or (adapt == "with_decay" and g["weight_decay"] != 0)


def ref_lars(w, g, state, grp):
    lr, m, wd = grp["lr"], grp["momentum"], grp["weight_decay"]
    trust = 1.0
    if adapts(grp):
        wn, gn = w.norm().item(), g.norm().item()
        trust = ref_trust(grp.get("trust_coefficient", 1e-3) * wn,
                          gn + wd * wn + grp.get("eps", 0.0), wn, gn)
        trust = ref_limit(trust, lr, grp)
    d = (g + wd * w) * trust
    if m == 0:
        return w - lr * d
    state["v"] = d.clone() if "v" not in state else m * state["v"] + d
    step = d + m * state["v"] if grp.get("nesterov") else state["v"]
    return w - lr * step


def ref_lamb(w, g, state, grp):
    lr, wd = grp["lr"], grp["weight_decay"]
    b1, b2 = grp.get("betas", (0.9, 0.999))
    eps = grp.get("eps", 1e-6)
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    state["m"] = b1 * state.get("m", torch.zeros_like(w)) + (1 - b1) * g
    state["v"] = b2 * state.get("v", torch.zeros_like(w)) + (1 - b2) * g * g
    m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
    u = m_hat / (v_hat.sqrt() + eps) + wd * w
    trust = 1.0
    if adapts(grp):
        wn, un = w.norm().item(), u.norm().item()
        trust = ref_limit(ref_trust(wn, un, wn, un), lr, grp)
    return w - lr * trust * u


REFS = {LARS: ref_lars, LAMB: ref_lamb}

# ------------------------------------------------------------------------------------ helpers

SHAPES = [(4, 3), (5,), (2, 3, 2, 2), (7,)]


def make_params(dtype=torch.float64, seed=0, zero=()):
    gen = torch.Generator().manual_seed(seed)
    ps = []
    for i, s in enumerate(SHAPES):
        w = torch.zeros(s) if i in zero else torch.randn(s, generator=gen)
        ps.append(torch.nn.Parameter(w.to(dtype)))
    return ps


def grads_at(step, dtype=torch.float64, zero=()):
    gen = torch.Generator().manual_seed(1000 + step)
    out = []
    for i, s in enumerate(SHAPES):
        g = torch.randn(s, generator=gen)
        out.append(torch.zeros(s, dtype=dtype) if i in zero else g.to(dtype))
    return out


def run_ref(cls, groups_spec, defaults, steps, zero_w=(), zero_g=()):
    """Per-parameter reference trajectory; ``groups_spec`` maps param index lists to overrides."""
    ws = [p.detach().clone() for p in make_params(zero=zero_w)]
    states = [{} for _ in ws]
    for t in range(steps):
        gs = grads_at(t, zero=zero_g)
        for idx, over in groups_spec:
            grp = {**defaults, **over}
            for i in idx:
                ws[i] = REFS[cls](ws[i], gs[i], states[i], grp)
    return ws


def run_opt(cls, groups_spec, defaults, steps, zero_w=(), zero_g=(), chunk_size=None,
            fused=None):
    ps = make_params(zero=zero_w)
    opt = cls([{"params": [ps[i] for i in idx], **over} for idx, over in groups_spec],
              chunk_size=chunk_size, fused=fused, **defaults)
    for t in range(steps):
        for p, g in zip(ps, grads_at(t, zero=zero_g)):
            p.grad = g
        opt.step()
    return ps


GROUPS = [([0, 2], {}), ([1, 3], {"weight_decay": 0.0, "adapt": False})]

LARS_CASES = [
    dict(lr=0.5, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.5, momentum=0.9, weight_decay=1e-2, nesterov=True, trust_coefficient=0.02),
    dict(lr=0.5, momentum=0.0, weight_decay=0.0, eps=1e-3),
    dict(lr=0.5, momentum=0.9, weight_decay=0.0, adapt="with_decay"),
    dict(lr=0.5, momentum=0.9, weight_decay=1e-2, adapt="with_decay"),
    dict(lr=2.0, momentum=0.8, weight_decay=1e-1, max_trust=0.005),
    dict(lr=0.1, momentum=0.8, weight_decay=1e-1, trust_clip=True, trust_coefficient=0.05),
]
LAMB_CASES = [
    dict(lr=0.01, weight_decay=1e-2),
    dict(lr=0.01, weight_decay=0.0, betas=(0.8, 0.99), eps=1e-3),
    dict(lr=0.01, weight_decay=0.0, adapt="with_decay"),
    dict(lr=0.01, weight_decay=1e-2, adapt="with_decay"),
    dict(lr=0.01, weight_decay=1e-2, max_trust=0.5),
    dict(lr=3.0, weight_decay=1e-2, trust_clip=True),
]
CASES = [(LARS, c) for c in LARS_CASES] + [(LAMB, c) for c in LAMB_CASES]


def ids(case):
    if isinstance(case, type):
        return case.__name__
    return ",".join(f"{k}={v}" for k, v in case.items())


# ------------------------------------------------------------------------------------ parity


FUSED = [False, True]  # the multi-tensor chain and torch's fused kernels


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("chunk_size", [None, 5, 32768])
@pytest.mark.parametrize("cls,defaults", CASES, ids=ids)
def test_matches_reference(cls, defaults, chunk_size, fused):
    # chunk_size=5 cuts every tensor into pieces that straddle runs
    got = run_opt(cls, GROUPS, defaults, steps=4, chunk_size=chunk_size, fused=fused)
    want = run_ref(cls, GROUPS, defaults, steps=4)
    for p, w in zip(got, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
    # the trust ratio did something: the adapted group differs from the unadapted update
    plain = run_ref(cls, [([0, 1, 2, 3], {"adapt": False})], defaults, steps=4)
    if adapts(defaults):
        assert not torch.allclose(got[0].detach(), plain[0])


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("cls,defaults", [(LARS, LARS_CASES[0]), (LAMB, LAMB_CASES[0])], ids=ids)
def test_zero_weights_and_zero_grads(cls, defaults, chunk_size, fused):
    # param 0 starts at zero, param 2 always gets a zero gradient: trust = 1, no NaN
    got = run_opt(cls, GROUPS, defaults, steps=3, zero_w=(0,), zero_g=(2,), chunk_size=chunk_size,
                  fused=fused)
    want = run_ref(cls, GROUPS, defaults, steps=3, zero_w=(0,), zero_g=(2,))
    for p, w in zip(got, want):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
    assert got[0].abs().sum() > 0  # a zero layer leaves zero


@pytest.mark.parametrize("tensor_lr", [False, True])
@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lars_without_trust_ratio_is_torch_sgd(nesterov, dtype, chunk_size, fused, tensor_lr):
    # bit for bit: the fused path is SGD(fused=True), the multi-tensor one SGD(foreach=True),
    # with a float LR and with a tensor LR that changes every step (filled in place)
    a, b = make_params(dtype), make_params(dtype)
    hyper = dict(momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    lr_a, lr_b = (torch.tensor(0.3), torch.tensor(0.3)) if tensor_lr else (0.3, 0.3)
    ours = LARS([{"params": a[:2]}, {"params": a[2:], "weight_decay": 0.0}], adapt=False,
                lr=lr_a, chunk_size=chunk_size, fused=fused, **hyper)
    kind = {"fused": True} if fused else {"foreach": True}
    ref = torch.optim.SGD([{"params": b[:2]}, {"params": b[2:], "weight_decay": 0.0}],
                          lr=lr_b, **kind, **hyper)
    for t in range(5):
        if tensor_lr:
            lr_a.fill_(0.3 / (t + 1))
            lr_b.fill_(0.3 / (t + 1))
        for pa, pb, g in zip(a, b, grads_at(t, dtype)):
            pa.grad, pb.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb), f"step {t}"


@pytest.mark.parametrize("trust_coefficient", [1e-7, 50.0])
def test_lars_fused_cpu_step_keeps_tiny_and_large_trust_ratios(trust_coefficient):
    # the CPU fused path passes the ratio to torch's kernel as dampening = 1 - trust, which
    # the kernel turns back into 1 - dampening in float64: exact to ~1e-16 absolute
    defaults = dict(lr=0.5, momentum=0.9, weight_decay=1e-2, trust_coefficient=trust_coefficient)
    got = run_opt(LARS, GROUPS, defaults, steps=4, fused=True)
    want = run_ref(LARS, GROUPS, defaults, steps=4)
    for p, w in zip(got, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- template for every optimizer


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3),
    )


def loss_fn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 2, 5, 5, generator=gen)
    y = torch.randint(0, 3, (8,), generator=gen)
    return torch.nn.functional.cross_entropy(model(x), y)


LR = {"sgd": 0.1, "adam": 1e-2, "adamw": 1e-2, "lars": 2.0, "lamb": 2e-2}


def build(name, model, wd=1e-3):
    from legw.optim import param_groups

    groups, _ = param_groups(model, wd)
    return build_optimizer(name, groups, lr=LR[name], momentum=0.9, weight_decay=wd)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_template_trains_with_closure(name):
    model = small_model()
    opt = build(name, model)
    first = loss_fn(model).item()

    def closure():
        opt.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        return loss

    for _ in range(15):
        loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert loss.item() < first


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_template_state_dict_round_trip(name):
    model = small_model()
    opt = build(name, model)
    for s in range(3):
        opt.zero_grad()
        loss_fn(model, s).backward()
        opt.step()
    twin = copy.deepcopy(model)
    twin_opt = build(name, twin)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert twin_opt.param_groups[1]["adapt"] is False  # the excluded group, any optimizer
    for s in range(3, 6):
        for m, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad()
            loss_fn(m, s).backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_template_params_without_grad_and_empty_group(name):
    a, b = torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))
    b_before = b.detach().clone()
    opt = OPTIMIZERS[name]([{"params": [a, b]}], lr=0.1, weight_decay=1e-2)
    opt.add_param_group({"params": []})
    a.grad = torch.randn(3, 2)
    opt.step()
    assert torch.equal(b, b_before)
    assert len(opt.state[b]) == 0
    opt.zero_grad()
    assert a.grad is None
    opt.step()  # no gradients at all: nothing happens, nothing fails


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_template_bf16_params(name):
    ps = [torch.nn.Parameter(torch.randn(s).to(torch.bfloat16)) for s in SHAPES]
    # LARS steps are ~1e-3 * lr relative to the weights: bf16 needs a large lr to see them
    opt = OPTIMIZERS[name](ps, lr=100.0 if name == "lars" else 0.01, weight_decay=1e-2)
    before = [p.detach().clone() for p in ps]
    for t in range(2):
        for p, g in zip(ps, grads_at(t, torch.bfloat16)):
            p.grad = g
        opt.step()
    for p, p0 in zip(ps, before):
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
        assert not torch.equal(p, p0)


@pytest.mark.parametrize("fused", FUSED)
def test_bf16_close_to_float64(fused):
    for cls, defaults in ((LARS, LARS_CASES[0]), (LAMB, LAMB_CASES[0])):
        ps = [torch.nn.Parameter(p.detach().to(torch.bfloat16)) for p in make_params()]
        if fused and cls is LARS:  # torch's fused CPU SGD is wrong in bf16: test_lars_half_cpu
            with pytest.raises(ValueError, match="fused: no fused kernel"):
                cls(ps, fused=fused, **defaults)
            continue
        opt = cls(ps, fused=fused, **defaults)
        for t in range(3):
            for p, g in zip(ps, grads_at(t, torch.bfloat16)):
                p.grad = g
            opt.step()
        want = run_ref(cls, [([0, 1, 2, 3], {})], defaults, steps=3)
        for p, w in zip(ps, want):
            torch.testing.assert_close(p.double(), w, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("fused", FUSED)
def test_mixed_dtypes_in_one_group(fused):
    ps = make_params()
    ps[1] = torch.nn.Parameter(ps[1].detach().float())
    opt = LARS(ps, fused=fused, **LARS_CASES[0])
    for t in range(3):
        for p, g in zip(ps, grads_at(t)):
            p.grad = g.to(p.dtype)
        opt.step()
    want = run_ref(LARS, [([0, 1, 2, 3], {})], LARS_CASES[0], steps=3)
    for p, w in zip(ps, want):
        torch.testing.assert_close(p.double(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_sparse_gradients_are_refused(cls):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    opt = cls(emb.parameters(), lr=0.1, weight_decay=1e-2)
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("cls,field,value", [
    (LARS, "lr", -1.0), (LARS, "momentum", -0.1), (LARS, "weight_decay", -1e-4),
    (LARS, "trust_coefficient", 0.0), (LARS, "eps", -1.0), (LARS, "max_trust", 0.0),
    (LARS, "nesterov", "yes"), (LARS, "adapt", 1), (LARS, "lr", math.nan),
    (LAMB, "lr", -1.0), (LAMB, "betas", (0.9, 1.0)), (LAMB, "betas", (-0.1, 0.9)),
    (LAMB, "betas", 0.9), (LAMB, "eps", -1e-6), (LAMB, "weight_decay", "1e-2"),
    (LAMB, "bias_correction", None), (LAMB, "trust_clip", "no"), (LAMB, "adapt", "always"),
    (LAMB, "adapt", None),
])
def test_invalid_hyperparameters(cls, field, value):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=field.split("[")[0]):
        cls([p], **{"lr": 0.1, field: value})
    with pytest.raises(ValueError, match=field.split("[")[0]):  # per-group override too
        cls([{"params": [p], field: value}], lr=0.1)


@pytest.mark.parametrize("cls", [LARS, LAMB])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_invalid_chunk_size(cls, value):
    with pytest.raises(ValueError, match="chunk_size"):
        cls([torch.nn.Parameter(torch.ones(2))], lr=0.1, chunk_size=value)


def test_non_contiguous_params_are_not_cut():
    base = torch.randn(6, 4, dtype=torch.float64)
    ps = [torch.nn.Parameter(base.t()), torch.nn.Parameter(torch.randn(9, dtype=torch.float64))]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    a = LAMB(ps, lr=0.01, weight_decay=1e-2, chunk_size=4)
    b = LAMB(qs, lr=0.01, weight_decay=1e-2, chunk_size=None)
    for t in range(3):
        for p, q in zip(ps, qs):
            p.grad = torch.ones_like(p) * (t + 1)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        LARS([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.0, nesterov=True)


# ------------------------------------------------------------- fused kernels and the fallback


def mlp():
    # no bias in front of a normalization: its gradient would be rounding noise, which Adam's
    # normalisation amplifies differently on each path
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(50, 8), torch.nn.LayerNorm(8),
                               torch.nn.ReLU(), torch.nn.Linear(8, 3))


def train_small(cls, fused, steps, start=0, model=None, opt_state=None, **hyper):
    model = model or mlp()
    from legw.optim import param_groups

    opt = cls(param_groups(model, 1e-3)[0], fused=fused, **hyper)
    if opt_state is not None:
        opt.load_state_dict(copy.deepcopy(opt_state))
    for s in range(start, start + steps):
        opt.zero_grad()
        loss_fn(model, s).backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("cls,hyper", [(LARS, dict(lr=2.0)), (LAMB, dict(lr=2e-2))], ids=ids)
@pytest.mark.parametrize("src,dst", [(True, False), (False, True)])
def test_checkpoints_move_between_paths(cls, hyper, src, dst):
    model, opt = train_small(cls, src, 3, **hyper)
    state = opt.state_dict()
    twin, twin_opt = train_small(cls, dst, 3, start=3, model=copy.deepcopy(model),
                                 opt_state=state, **hyper)
    same, _ = train_small(cls, src, 3, start=3, model=copy.deepcopy(model), opt_state=state,
                          **hyper)
    ref, ref_opt = train_small(cls, src, 3, start=3, model=model, opt_state=state, **hyper)
    for p, q, r in zip(twin.parameters(), same.parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, rtol=1e-4, atol=1e-6)  # other path: to rounding
        assert torch.equal(q, r)  # same path: bit for bit
    a, b = twin_opt.state_dict()["state"], ref_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert {n: type(v) for n, v in a[k].items()} == {n: type(v) for n, v in b[k].items()}
        for n, v in a[k].items():
            if isinstance(v, torch.Tensor):
                assert v.dtype == b[k][n].dtype and v.shape == b[k][n].shape


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_params_without_grad_and_empty_group_each_path(cls, fused):
    a, b = torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))
    b_before = b.detach().clone()
    opt = cls([{"params": [a, b]}], lr=0.1, weight_decay=1e-2, fused=fused)
    opt.add_param_group({"params": []})
    a.grad = torch.randn(3, 2)
    opt.step()
    assert torch.equal(b, b_before) and len(opt.state[b]) == 0
    opt.zero_grad()
    opt.step()


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_lamb_without_bias_correction_same_on_both_paths(chunk_size):
    hyper = dict(lr=0.01, weight_decay=1e-2, bias_correction=False, betas=(0.8, 0.99))
    a = run_opt(LAMB, GROUPS, hyper, steps=3, chunk_size=chunk_size, fused=True)
    b = run_opt(LAMB, GROUPS, hyper, steps=3, chunk_size=chunk_size, fused=False)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [LARS, LAMB])
def test_fused_flag_is_checked(cls):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="fused"):
        cls([p], lr=0.1, fused="yes")
    with pytest.raises(ValueError, match="fused"):  # no fused kernel on the meta device
        cls([torch.nn.Parameter(torch.ones(2, device="meta"))], lr=0.1, fused=True)


def test_auto_takes_fused_kernels_on_cpu(monkeypatch):
    calls = []
    for name in ("_fused_sgd_", "_fused_adam_", "_fused_adamw_"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _r=real, _n=name, **k: (calls.append(_n),
                                                                           _r(*a, **k)))
    for cls, fused in ((LARS, None), (LAMB, None), (LARS, False), (LAMB, False)):
        calls.clear()
        run_opt(cls, GROUPS, dict(lr=0.1, weight_decay=1e-2), steps=1, fused=fused)
        assert bool(calls) == (fused is None), (cls, fused, calls)
