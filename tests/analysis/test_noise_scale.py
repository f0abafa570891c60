"""B_simple on linear regression with Gaussian data, where it is known in closed form.

Model ``y = x.w* + eps``, ``x ~ N(0, I_d)``, ``eps ~ N(0, s2)``, per-sample loss
``(x.w - y)^2 / 2`` evaluated at ``w = w* + delta``. The per-sample gradient is
``g = x (x.delta - eps)``, so ``G = delta`` and (Isserlis) ``E[g g^T] = |delta|^2 I
+ 2 delta delta^T + s2 I``, i.e. ``Sigma = (|delta|^2 + s2) I + delta delta^T`` and

    B_simple = tr(Sigma) / |G|^2 = d (1 + s2 / |delta|^2) + 1.
"""

import math

import pytest
import torch

from legw.adaptive.noise import estimate_from_norms, unbiased_terms
from legw.analysis.noise_scale import draw_norms, estimate_noise_scale, model_grad_fn

D, S2 = 10, 1.0


def closed_form(delta_sq, d=D, s2=S2):
    return d * (1 + s2 / delta_sq) + 1


def regression_problem(seed, delta_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    w_star = torch.randn(D, generator=gen, dtype=torch.float64)
    delta = torch.randn(D, generator=gen, dtype=torch.float64)
    delta *= delta_scale / delta.norm()
    model = torch.nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta)[None])

    def sample(n_micro, b):
        out = []
        for _ in range(n_micro):
            x = torch.randn(b, D, generator=gen, dtype=torch.float64)
            y = x @ w_star + math.sqrt(S2) * torch.randn(b, generator=gen, dtype=torch.float64)
            out.append((x, y))
        return out

    def loss_fn(out, y):
        return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()

    return model, loss_fn, sample, float(delta.norm() ** 2)


def test_unbiased_terms_recover_exact_expectations():
    # plug E|G_B|^2 = G2 + T/B in: the formulas must return (G2, T) exactly
    g2, t, b, B = 3.0, 60.0, 4, 32
    grad_sq, trace = unbiased_terms(g2 + t / b, g2 + t / B, b, B)
    assert grad_sq == pytest.approx(g2) and trace == pytest.approx(t)


def test_unbiased_terms_swapped_sizes_are_wrong():
    g2, t, b, B = 3.0, 60.0, 4, 32
    grad_sq, trace = unbiased_terms(g2 + t / b, g2 + t / B, B, b)  # sizes swapped
    assert grad_sq != pytest.approx(g2, rel=0.1)


@pytest.mark.parametrize("seed,delta_scale,b,n", [(0, 1.0, 4, 8), (1, 0.5, 2, 16)])
def test_recovers_closed_form_noise_scale(seed, delta_scale, b, n):
    model, loss_fn, sample, delta_sq = regression_problem(seed, delta_scale)
    truth = closed_form(delta_sq)
    est = estimate_noise_scale(model_grad_fn(model, loss_fn), lambda k: sample(k, b),
                               micro_batch_size=b, batch_size=b * n, draws=300, seed=seed)
    assert est.valid and est.draws == 300
    assert abs(est.b_simple - truth) < 3 * est.stderr, (est.b_simple, truth, est.stderr)
    assert est.stderr < 0.15 * truth  # the check above is not vacuous
    assert est.ci_low < est.b_simple < est.ci_high
    assert est.grad_sq == pytest.approx(delta_sq, abs=4 * est.grad_sq_stderr)
    trace_truth = D * (delta_sq + S2) + delta_sq
    assert est.trace_sigma == pytest.approx(trace_truth, abs=4 * est.trace_sigma_stderr)


def test_swapped_formula_would_fail_the_closed_form_check():
    model, loss_fn, sample, delta_sq = regression_problem(0)
    truth = closed_form(delta_sq)
    grad_fn = model_grad_fn(model, loss_fn)
    small, big = zip(*(draw_norms(grad_fn, sample(8, 4)) for _ in range(300)))
    right = estimate_from_norms(small, big, 4, 32)
    wrong = estimate_from_norms(big, small, 4, 32)  # norms of the two sizes exchanged
    assert abs(right.b_simple - truth) < 3 * right.stderr
    assert not abs(wrong.b_simple - truth) < 3 * max(wrong.stderr, right.stderr)


def test_stderr_covers_truth_across_seeds():
    # calibration: with 68% one-sigma intervals, most of 12 independent seeds must cover
    hits = 0
    for seed in range(12):
        model, loss_fn, sample, delta_sq = regression_problem(100 + seed)
        est = estimate_noise_scale(model_grad_fn(model, loss_fn), lambda k, s=sample: s(k, 4),
                                   micro_batch_size=4, batch_size=16, draws=60, bootstrap=0)
        hits += abs(est.b_simple - closed_form(delta_sq)) < est.stderr
    assert 5 <= hits <= 12


def test_model_grad_fn_leaves_grad_fields_alone():
    model, loss_fn, sample, _ = regression_problem(0)
    g = model_grad_fn(model, loss_fn)(sample(1, 4)[0])
    assert g.shape == (D,) and model.weight.grad is None


@pytest.mark.parametrize("kwargs,field", [
    ({"micro_batch_size": 8, "batch_size": 8}, "batch_size"),
    ({"micro_batch_size": 0, "batch_size": 8}, "micro_batch_size"),
    ({"micro_batch_size": 3, "batch_size": 8}, "multiple"),
    ({"micro_batch_size": 2, "batch_size": 8, "draws": 1}, "draws"),
])
def test_bad_sizes(kwargs, field):
    kwargs = {"draws": 4, **kwargs}
    with pytest.raises(ValueError, match=field):
        estimate_noise_scale(lambda mb: torch.zeros(1), lambda n: [], **kwargs)


def test_estimate_from_norms_needs_two_draws():
    with pytest.raises(ValueError, match="2 draws"):
        estimate_from_norms([1.0], [0.5], 2, 8)
