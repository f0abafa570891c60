"""Offline measurement of the gradient noise scale ``B_simple = tr(Sigma) / |G|^2``.

A *draw* is one big batch of ``B = n * b`` fresh i.i.d. samples split into ``n`` micro-batches:
``|G_b|^2`` is the mean squared norm of the ``n`` micro-batch gradients and ``G_B`` their mean.
The estimator, its uncertainty and what ``B_simple`` means are in :mod:`legw.adaptive.noise`
(McCandlish et al. 2018, arXiv 1812.06162); the trainer measures the same online, for free,
from the micro-batch gradients it already has (``TrainConfig.noise_window``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from legw.adaptive.noise import NoiseScaleEstimate, check_sizes, estimate_from_norms
from legw.figures import pyplot, save_figure


def draw_norms(grad_fn: Callable[[Any], Any], micro_batches: Iterable[Any]) -> tuple[float, float]:
    """``(|G_b|^2, |G_B|^2)`` of one draw: ``grad_fn(micro_batch)`` returns a flat gradient
    (a 1-D torch tensor) of the mean loss over that micro batch; ``G_B`` is their mean."""
    total, small, n = None, 0.0, 0
    for mb in micro_batches:
        g = grad_fn(mb).detach().double()
        small += float(g.dot(g))
        total = g.clone() if total is None else total.add_(g)
        n += 1
    if n < 2:
        raise ValueError(f"a draw needs at least 2 micro batches, got {n}")
    total.div_(n)
    return small / n, float(total.dot(total))


def model_grad_fn(model: Any, loss_fn: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """``grad_fn((inputs, targets))`` -> flat gradient of ``loss_fn(model(inputs), targets)``.

    The model's ``.grad`` fields are left untouched (``torch.autograd.grad`` is used), so this
    can run between the steps of a training loop; parameters without a gradient count as 0.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]

    def grad_fn(batch: Any) -> Any:
        inputs, targets = batch
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                          for p, g in zip(params, grads)])

    return grad_fn


def estimate_noise_scale(grad_fn: Callable[[Any], Any],
                         sample_micro_batches: Callable[[int], Iterable[Any]], *,
                         micro_batch_size: int, batch_size: int, draws: int,
                         bootstrap: int = 1000, seed: int = 0) -> NoiseScaleEstimate:
    """Measure ``B_simple`` over ``draws`` draws.

    ``sample_micro_batches(n)`` returns ``n = batch_size // micro_batch_size`` fresh random
    micro batches of ``micro_batch_size`` samples each (one draw); ``grad_fn`` as in
    :func:`draw_norms` (e.g. :func:`model_grad_fn`).
    """
    check_sizes(micro_batch_size, batch_size)
    if batch_size % micro_batch_size:
        raise ValueError(f"batch_size {batch_size} must be a multiple of micro_batch_size "
                         f"{micro_batch_size}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise ValueError(f"draws must be an integer >= 2, got {draws!r}")
    n = batch_size // micro_batch_size
    small, big = [], []
    for _ in range(draws):
        s, g = draw_norms(grad_fn, sample_micro_batches(n))
        small.append(s)
        big.append(g)
    return estimate_from_norms(small, big, micro_batch_size, batch_size,
                               bootstrap=bootstrap, seed=seed)


def noise_scale_during_training(w: Any, recipe: Any, steps: int, *, points: int,
                                micro_batch_size: int, draw_batch_size: int, draws: int,
                                seed: int = 0) -> Iterator[dict[str, Any]]:
    """Train workload ``w`` with ``recipe`` (at its global batch) for ``steps`` steps on
    i.i.d. batches and measure ``B_simple`` at ``points`` evenly spaced steps (0 and ``steps``
    included), each from ``draws`` draws of ``draw_batch_size`` samples in micro batches of
    ``micro_batch_size``; yield the record after each measurement (its ``points`` grow by one
    each time).

    ``w`` is a :class:`~legw.analysis.workload.Workload`; the LR of each step is set by
    :func:`legw.lr_scheduler.apply_recipe`.
    """
    import time

    import torch

    from legw.lr_scheduler import apply_recipe

    gen = torch.Generator().manual_seed(seed)
    at = sorted({round(i * steps / (points - 1)) for i in range(points)}
                if points > 1 else {0})
    optimizer = w.build_optimizer(recipe.lr_at_step(0))
    grad_fn = model_grad_fn(w.model, w.loss_fn)
    b, big = micro_batch_size, draw_batch_size
    record: dict[str, Any] = {
        "task": w.name, "method": "B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018, "
        "App. A); stderr: delta method; ci: bootstrap 16-84th percentile over draws",
        "micro_batch_size": b, "draw_batch_size": big, "draws": draws,
        "global_batch_size": recipe.global_batch_size, "steps": steps, "seed": seed,
        "recipe": recipe.summary(), "optimizer": {"name": w.optimizer, **(w.hyper or {})},
        "clip_grad_norm": w.clip_grad_norm, "points": []}
    w.model.train()
    losses: list[float] = []
    for step in range(steps + 1):
        if step in at:
            t0 = time.perf_counter()
            est = estimate_noise_scale(
                grad_fn, lambda n: [w.sample_batch(b, gen) for _ in range(n)],
                micro_batch_size=b, batch_size=big, draws=draws, seed=seed + step)
            recent = losses[-LOSS_WINDOW:]
            record["points"].append({
                "step": step, "epoch": step / recipe.steps_per_epoch,
                "lr": recipe.lr_at_step(step),
                "train_loss": sum(recent) / len(recent) if recent else None,
                "seconds": time.perf_counter() - t0, **est.to_dict()})
            yield record
        if step == steps:
            break
        apply_recipe(optimizer, recipe, step)
        x, y = w.sample_batch(recipe.global_batch_size, gen)
        optimizer.zero_grad(set_to_none=True)
        loss = w.loss_fn(w.model(x), y)
        loss.backward()
        if w.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(w.model.parameters(), w.clip_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise ValueError(f"training diverged at step {step} (loss {losses[-1]})")


LOSS_WINDOW = 50
"""Training steps whose mean loss is recorded with each measurement."""


def plot_noise_scale(record: dict[str, Any], path: str) -> None:
    """B_simple vs training step with bootstrap error bars, and the training loss."""
    plt = pyplot()

    pts = [p for p in record["points"] if p["valid"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [p["step"] for p in pts]
    ys = [p["b_simple"] for p in pts]
    err = [[max(y - p["ci_low"], 0) for y, p in zip(ys, pts)],
           [max(p["ci_high"] - y, 0) for y, p in zip(ys, pts)]]
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label="B_simple (68% bootstrap ci)")
    ax.axhline(record["global_batch_size"], color="gray", ls=":",
               label=f"training batch {record['global_batch_size']}")
    ax.set(xlabel="training step", ylabel="B_simple = tr(Σ) / |G|²  (samples)")
    ax.set_title(f"{record['task']}: gradient noise scale during training "
                 f"(b={record['micro_batch_size']}, B={record['draw_batch_size']}, "
                 f"{record['draws']} draws)", fontsize=10)
    top = max([p["ci_high"] for p in pts if math.isfinite(p["ci_high"])] + ys
              + [record["global_batch_size"]], default=1.0)
    ax.set_ylim(0, 1.35 * top)  # head room for the legend
    ax.grid(alpha=0.3)
    losses = [(p["step"], p["train_loss"]) for p in record["points"] if p["train_loss"]]
    if losses:
        ax2 = ax.twinx()
        ax2.plot(*zip(*losses), color="C1", ls="--", marker=".", label="train loss")
        ax2.set_ylabel(f"train loss (mean of up to {LOSS_WINDOW} steps before)", color="C1")
        ax2.set_ylim(0, 1.35 * max(v for _, v in losses))
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    else:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
