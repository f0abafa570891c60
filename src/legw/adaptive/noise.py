"""The gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` from gradients at two batch sizes.

Pure arithmetic on squared gradient norms (no torch): the offline tool
(:mod:`legw.analysis.noise_scale`) and the online estimate (:class:`OnlineNoiseScale`, fed by
:class:`legw.adaptive.meter.NoiseMeter` in the trainer, the scaler and the planner) share it.

McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training"
(arXiv 1812.06162), section 2.2 and Appendix A. For per-sample gradients with mean ``G`` and
covariance ``Sigma``, the mean gradient of ``B`` i.i.d. samples satisfies

    E |G_B|^2 = |G|^2 + tr(Sigma) / B

so two batch sizes ``b < B`` give unbiased estimates of both terms::

    |G|^2     ~  (B |G_B|^2 - b |G_b|^2) / (B - b)
    tr(Sigma) ~  (|G_b|^2 - |G_B|^2) / (1/b - 1/B)

Here a *draw* is one big batch of ``B = n * b`` samples split into ``n`` micro-batches: ``|G_b|^2``
is the mean squared norm of the ``n`` micro-batch gradients and ``G_B`` their mean (in DDP the
per-rank gradient and the all-reduced one play these roles). Both estimates are averaged over
draws *separately* and only then divided (the estimates are unbiased, their ratio is not).

Uncertainty: the delta method on the ratio of the two means (``stderr``), and a bootstrap over
draws (``ci_low``/``ci_high``, the 16th and 84th percentiles, i.e. a 68% interval).

Critical batch: the paper's ``B_crit`` (the batch at which doubling the batch stops halving
the steps to a target loss) is, to first order, ``B_noise``; ``B_simple`` equals ``B_noise``
when the Hessian is a multiple of the identity and is the practical estimate the paper
measures (their Figure 7 compares it with ``B_crit``: same order, same trend during training).
Batches well below it scale almost perfectly; above it the returns diminish.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class NoiseScaleEstimate:
    """``b_simple = trace_sigma / grad_sq`` with its uncertainty over ``draws`` draws."""

    b_simple: float
    stderr: float
    ci_low: float
    ci_high: float
    grad_sq: float
    grad_sq_stderr: float
    trace_sigma: float
    trace_sigma_stderr: float
    micro_batch_size: int
    batch_size: int
    draws: int

    @property
    def valid(self) -> bool:
        """False when the ``|G|^2`` estimate is not positive (noise swamps the signal)."""
        return self.grad_sq > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


def unbiased_terms(small_sq: float, big_sq: float, micro_batch_size: int,
                   batch_size: int) -> tuple[float, float]:
    """One draw's unbiased ``(|G|^2, tr(Sigma))`` from ``|G_b|^2`` and ``|G_B|^2``."""
    b, B = micro_batch_size, batch_size
    grad_sq = (B * big_sq - b * small_sq) / (B - b)
    trace_sigma = (small_sq - big_sq) / (1 / b - 1 / B)
    return grad_sq, trace_sigma


def check_sizes(micro_batch_size: int, batch_size: int) -> None:
    """``ValueError`` unless ``0 < micro_batch_size < batch_size`` are integers."""
    for name, v in (("micro_batch_size", micro_batch_size), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if batch_size <= micro_batch_size:
        raise ValueError(f"batch_size ({batch_size}) must exceed micro_batch_size "
                         f"({micro_batch_size})")


def _mean_se(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def estimate_from_norms(small_sq: Sequence[float], big_sq: Sequence[float], micro_batch_size: int,
                        batch_size: int, *, bootstrap: int = 1000,
                        seed: int = 0) -> NoiseScaleEstimate:
    """``B_simple`` from per-draw squared norms ``|G_b|^2`` (``small_sq``) and ``|G_B|^2``.

    At least two draws are needed for an uncertainty.
    """
    check_sizes(micro_batch_size, batch_size)
    if len(small_sq) != len(big_sq):
        raise ValueError(f"small_sq and big_sq differ in length: {len(small_sq)} != {len(big_sq)}")
    if len(small_sq) < 2:
        raise ValueError(f"need at least 2 draws, got {len(small_sq)}")
    pairs = [unbiased_terms(s, g, micro_batch_size, batch_size) for s, g in zip(small_sq, big_sq)]
    gs, ts = [p[0] for p in pairs], [p[1] for p in pairs]
    n = len(pairs)
    ratio, stderr, (g, g_se), (t, t_se) = _ratio_of_means(gs, ts)
    rng = random.Random(seed)
    boots = []
    for _ in range(bootstrap):
        idx = [rng.randrange(n) for _ in range(n)]
        bg = sum(gs[i] for i in idx)
        boots.append(sum(ts[i] for i in idx) / bg if bg != 0 else math.inf)
    boots.sort()
    lo, hi = (_quantile(boots, 0.16), _quantile(boots, 0.84)) if boots else (math.nan, math.nan)
    return NoiseScaleEstimate(ratio, stderr, lo, hi, g, g_se, t, t_se, micro_batch_size,
                              batch_size, n)


def _ratio_of_means(gs: Sequence[float], ts: Sequence[float]
                    ) -> tuple[float, float, tuple[float, float], tuple[float, float]]:
    """``(mean T / mean G, its delta-method stderr, (mean G, se), (mean T, se))`` over draws."""
    n = len(gs)
    g, g_se = _mean_se(gs)
    t, t_se = _mean_se(ts)
    ratio = t / g if g != 0 else math.inf
    # Delta method: Var(T/G) ~ (Var T - 2 r Cov(T,G) + r^2 Var G) / G^2, on the means.
    cov = sum((a - g) * (c - t) for a, c in zip(gs, ts)) / (n - 1) / n
    var = (t_se**2 - 2 * ratio * cov + ratio**2 * g_se**2) / g**2 if g != 0 else math.inf
    return ratio, math.sqrt(max(var, 0.0)), (g, g_se), (t, t_se)


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_xs) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_xs) - 1)
    return sorted_xs[i] + (sorted_xs[j] - sorted_xs[i]) * (pos - i)


class OnlineNoiseScale:
    """``B_simple`` over the last ``window`` optimizer steps, from the norms a step already has.

    Each step with two or more micro-gradients gives one draw: ``|G_b|^2``, the mean squared
    norm of its micro-batch gradients (``b`` samples each, on every rank, before the
    all-reduce) and ``|G_B|^2`` of the step's full gradient (``B`` samples). Draws of the
    window are combined as in :func:`estimate_from_norms` (the two terms averaged separately,
    then divided); the window smooths the per-step noise while following
    ``B_noise`` as it grows during training.
    """

    def __init__(self, micro_batch_size: int, batch_size: int, window: int = 50) -> None:
        check_sizes(micro_batch_size, batch_size)
        if window < 2:
            raise ValueError(f"window must be at least 2 steps, got {window!r}")
        self.micro_batch_size, self.batch_size = micro_batch_size, batch_size
        self.small_sq: deque[float] = deque(maxlen=window)
        self.big_sq: deque[float] = deque(maxlen=window)
        self.batch_sizes: deque[int] = deque(maxlen=window)  # each draw's B (a batch ramp's)

    @property
    def full(self) -> bool:
        """Whether the window holds as many draws as it can."""
        return len(self.small_sq) == self.small_sq.maxlen

    def update(self, small_sq: float, big_sq: float, batch_size: int | None = None
               ) -> dict[str, float]:
        """Add one step's draw (its full gradient over ``batch_size`` samples, default the
        estimator's: a batch ramp's steps differ); return the step's unbiased terms and, once
        the window holds two draws, the windowed ``b_noise`` and its delta-method
        ``b_noise_stderr``. Each draw's terms are unbiased at its own sizes, so draws of
        several batch sizes average as they are."""
        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size != self.batch_size:
            check_sizes(self.micro_batch_size, batch_size)
        self.small_sq.append(small_sq)
        self.big_sq.append(big_sq)
        self.batch_sizes.append(batch_size)
        grad_sq, trace_sigma = unbiased_terms(small_sq, big_sq, self.micro_batch_size,
                                              batch_size)
        out = {"noise_grad_sq": grad_sq, "noise_trace_sigma": trace_sigma}
        if len(self.small_sq) >= 2:
            terms = self._terms()
            ratio, stderr, _, _ = _ratio_of_means([g for g, _ in terms], [t for _, t in terms])
            out.update(b_noise=ratio, b_noise_stderr=stderr)
        return out

    def _terms(self) -> list[tuple[float, float]]:
        return [unbiased_terms(s, g, self.micro_batch_size, b)
                for s, g, b in zip(self.small_sq, self.big_sq, self.batch_sizes)]

    def means(self) -> tuple[float, float] | None:
        """The window's mean unbiased ``(|G|^2, tr(Sigma))``; ``None`` before the first draw."""
        if not self.small_sq:
            return None
        terms = self._terms()
        n = len(terms)
        return sum(g for g, _ in terms) / n, sum(t for _, t in terms) / n

    def state_dict(self) -> dict[str, Any]:
        return {"small_sq": list(self.small_sq), "big_sq": list(self.big_sq),
                "batch_sizes": list(self.batch_sizes),
                "micro_batch_size": self.micro_batch_size, "batch_size": self.batch_size}

    def fits(self, state: dict[str, Any]) -> bool:
        """Whether ``state`` was measured at this estimator's two batch sizes: squared norms
        taken at other sizes would be read at the wrong ones (states saved before the sizes
        were recorded are taken as fitting)."""
        # checkpoints before the one name spelled the micro batch "small_batch_size"
        micro = state.get("micro_batch_size", state.get("small_batch_size"))
        return (micro in (None, self.micro_batch_size)
                and state.get("batch_size", self.batch_size) == self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.small_sq.clear()
        self.big_sq.clear()
        self.batch_sizes.clear()
        self.small_sq.extend(state["small_sq"])
        self.big_sq.extend(state["big_sq"])
        # states saved before the ramp: every draw at the estimator's batch
        self.batch_sizes.extend(state.get("batch_sizes",
                                          [self.batch_size] * len(state["small_sq"])))
