"""``legw plan``: what a bigger batch costs, predicted from the gradient noise of the base run.

The model (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", eqs. 2.7-2.11):
to make the progress of one step of a noise-free optimizer, a batch ``B`` needs
``1 + B_noise / B`` steps, i.e. ``1 + B / B_noise`` times the examples an ideal tiny batch
needs. ``B_noise`` grows as training progresses, so the cost is integrated along the base run:
with ``f`` the fraction of the base run done and ``B_noise(f)`` measured there,

    epochs(B) / epochs(B0) = mean over f of  (1 + B / B_noise(f)) / (1 + B0 / B_noise(f))

(each slice of the base run is re-costed at ``B``; the base batch ``B0`` itself gives 1). Batches
well below ``B_noise`` scale perfectly (the ratio stays near 1: equal epochs suffice); far above
it the steps stop falling and the epochs grow linearly with ``B``. Steps are epochs x N / B.
The *critical batch* reported is ``B_noise`` at the end of the measured profile.

A short measurement sees only the start of training, where ``B_noise`` is smallest; beyond the
measured fraction the profile holds its last value, which overestimates the epochs needed (the
direction a planner should err in) and is reported as such (``measured_fraction``).

Wall time on ``p`` workers comes from :func:`legw.analysis.comm.predict_scaling` (measured
per-device throughput, ring all-reduce); worker-hours = time x p. The recommendation is the
fastest ``(B, p)`` whose worker-hours stay within ``cost_limit`` (default: twice the cheapest
plan's). Shallue et al. 2018 measured the same shape (perfect scaling, diminishing returns,
plateau) in steps-to-result; Pollux (Qiao et al. 2021) optimises the same trade-off online.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from legw.analysis.comm import DEFAULT_LATENCY, TEN_GBE_BANDWIDTH, predict_scaling
from legw.figures import pyplot, save_figure
from legw.schedule import BaseRecipe, RecipeError


@dataclass(frozen=True)
class NoiseProfile:
    """``B_noise`` along the base run: ``values[i]`` over the fractions
    ``[edges[i], edges[i+1])`` of its optimizer steps."""

    edges: list[float]
    values: list[float]
    measured_fraction: float
    """How far into the base run the measurement reached (1: the whole run)."""
    small_batch_size: int
    batch_size: int
    steps: int
    """Steps measured."""

    def at(self, fraction: float) -> float:
        """``B_noise`` at ``fraction`` of the base run (the last value beyond the measured part)."""
        for lo, hi, v in zip(self.edges, self.edges[1:], self.values):
            if lo <= fraction < hi:
                return v
        return self.values[-1]

    @property
    def critical_batch_size(self) -> float:
        return self.values[-1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "critical_batch_size": self.critical_batch_size}


def noise_profile(records: Sequence[dict[str, Any]], total_steps: int, small_batch_size: int,
                  batch_size: int, bins: int = 10) -> NoiseProfile:
    """Bin the per-step ``noise_grad_sq`` / ``noise_trace_sigma`` of training records (the
    trainer's ``metrics.jsonl``) into ``bins`` slices of the measured steps; each slice's
    ``B_noise`` is its mean ``tr(Sigma)`` over its mean ``|G|^2``. A slice whose ``|G|^2`` mean is
    not positive (noise swamps the signal) is merged into the next one."""
    recs = [r for r in records if r.get("kind") == "train" and "noise_trace_sigma" in r]
    if len(recs) < 2:
        raise ValueError("noise profile: no online noise measurements in the records (the run "
                         "needs 2+ micro-gradients per step: --micro-batch-size below the batch, "
                         "or DDP ranks, and --noise-window > 0)")
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps!r}")
    bins = max(1, min(bins, len(recs) // 2))
    edges, values = [0.0], []
    g_sum = t_sum = 0.0
    for i, r in enumerate(recs):
        g_sum += r["noise_grad_sq"]
        t_sum += r["noise_trace_sigma"]
        end_of_bin = (i + 1) * bins // len(recs) != i * bins // len(recs)
        if end_of_bin and g_sum > 0 and t_sum > 0:
            values.append(t_sum / g_sum)
            edges.append((r["step"] + 1) / total_steps)
            g_sum = t_sum = 0.0
    if not values:
        raise ValueError("noise profile: |G|^2 was never resolved above the noise; measure "
                         "longer or with a smaller micro batch")
    last = recs[-1]["step"] + 1
    return NoiseProfile(edges, values, min(1.0, last / total_steps), small_batch_size,
                        batch_size, len(recs))


def epochs_factor(profile: NoiseProfile, batch_size: int, base_batch_size: int,
                  points: int = 1000) -> float:
    """``epochs(B) / epochs(B0)``: the module docstring's integral, by the midpoint rule."""
    total = 0.0
    for i in range(points):
        bn = profile.at((i + 0.5) / points)
        total += (1 + batch_size / bn) / (1 + base_batch_size / bn)
    return total / points


def budget_recipe(base: BaseRecipe, epochs: float) -> BaseRecipe:
    """The base recipe stretched to ``epochs``: multistep milestones keep their place as a
    fraction of training; warmup and peak LR stay the base's (LEGW scales them per batch)."""
    fields = base.to_dict()
    stretch = epochs / base.epochs
    fields.update(epochs=epochs, milestones=[m * stretch for m in base.milestones])
    return BaseRecipe.from_dict(fields)


@dataclass(frozen=True)
class PlanRow:
    """The predicted cost of matching the base run at global batch ``B`` on ``workers``."""

    global_batch_size: int
    workers: int
    epochs: float
    epochs_factor: float
    steps: int
    peak_lr: float
    warmup_epochs: float
    warmup_steps: int
    step_s: float
    time_s: float
    worker_hours: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(profile: NoiseProfile, base: BaseRecipe, dataset_size: int, *,
              batch_sizes: Sequence[int] | None, workers: Sequence[int], model_bytes: float,
              compute_time: Callable[[float], float], latency: float = DEFAULT_LATENCY,
              bandwidth: float = TEN_GBE_BANDWIDTH, cost_limit: float | None = None,
              streams: bool = False) -> dict[str, Any]:
    """Every ``(B, p)``: epochs and steps to match the base run, the LEGW recipe for that
    budget, wall time and worker-hours; the recommendation; warnings. JSON-able.
    ``batch_sizes`` defaults to the base batch x 1, 2, 4, ... 64. ``streams``: a token-stream
    task, whose ramps change the batch at epoch boundaries only."""
    batch_sizes = batch_sizes or [base.base_batch_size * 2 ** k for k in range(7)]
    scaling, skipped = predict_scaling(batch_sizes, workers, model_bytes=model_bytes,
                                       dataset_size=dataset_size, compute_time=compute_time,
                                       latency=latency, bandwidth=bandwidth)
    rows = []
    for s in scaling:
        factor = epochs_factor(profile, s.global_batch_size, base.base_batch_size)
        recipe = budget_recipe(base, base.epochs * factor).scale(s.global_batch_size,
                                                                 dataset_size)
        time_s = recipe.total_steps * s.step_s
        rows.append(PlanRow(s.global_batch_size, s.workers, base.epochs * factor, factor,
                            recipe.total_steps, recipe.peak_lr, recipe.warmup_epochs,
                            recipe.warmup_steps, s.step_s, time_s, time_s * s.workers / 3600))
    if not rows:
        raise ValueError("--workers: no worker count divides any of the batch sizes")
    cheapest = min(r.worker_hours for r in rows)
    limit = 2 * cheapest if cost_limit is None else cost_limit
    within = [r for r in rows if r.worker_hours <= limit]
    best = min(within, key=lambda r: (r.time_s, r.worker_hours)) if within else None
    warnings = [f"batch {b}: equal-epoch scaling will lose accuracy; matching the base run "
                f"needs {f:.2f}x the epochs ({base.epochs * f:.1f} instead of {base.epochs:g})"
                for b, f in sorted({(r.global_batch_size, r.epochs_factor) for r in rows})
                if f > 1.1]
    crit = profile.critical_batch_size
    above = sorted({r.global_batch_size for r in rows if r.global_batch_size > crit})
    if above:
        warnings.append(f"batches above the critical batch ({_size(crit)}: "
                        f"{', '.join(map(str, above))}): the model counts optimisation steps; "
                        "on legw's LSTM such batches stayed 0.5-0.7 points short of the base at "
                        "the predicted budget (docs/results.md, study 10): treat these epochs as "
                        "a lower bound")
    if any(r.epochs_factor > 1.1 for r in rows):
        warnings.append("the epochs are those that match the base's optimisation progress; a "
                        "batch that generalises worse than the base needs more for the test "
                        "metric (legw's small ResNet did not reach its base at the predicted "
                        "epochs even at 4x the base batch: docs/results.md, study 10)")
    if profile.measured_fraction < 1:
        warnings.append(f"B_noise was measured over the first {profile.measured_fraction:.1%} "
                        "of the base run only and held at its last value after that: B_noise "
                        "grows during training, so these epochs are an upper estimate")
    return {"profile": profile.to_dict(), "base_recipe": base.to_dict(),
            "dataset_size": dataset_size, "model_bytes": model_bytes,
            "network": {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth},
            "cost_limit_worker_hours": limit, "cost_limit_default": cost_limit is None,
            "rows": [r.to_dict() for r in rows], "skipped": skipped,
            "recommended": best.to_dict() if best else None, "warnings": warnings,
            "rules": _rules_at_largest(profile, base, dataset_size, rows, scaling, model_bytes,
                                       compute_time, latency, bandwidth, streams)}


def _rules_at_largest(profile: NoiseProfile, base: BaseRecipe, dataset_size: int,
                      rows: list[PlanRow], scaling: list[Any], model_bytes: float,
                      compute_time: Callable[[float], float], latency: float,
                      bandwidth: float, streams: bool = False) -> dict[str, Any]:
    """:func:`rule_plan` at the largest batch planned, on the most workers planned for it."""
    from legw.analysis.comm import ring_allreduce_time

    largest = max(r.global_batch_size for r in rows)
    p = max(r.workers for r in rows if r.global_batch_size == largest)
    comm = ring_allreduce_time(p, model_bytes, latency=latency, bandwidth=bandwidth)
    return rule_plan(profile, base, dataset_size, largest, p,
                     lambda b: compute_time(b / p) + comm, streams)


HELD = {
    "legw": "LEGW at equal epochs: holds the base only below the critical batch (studies 1, 10)",
    "legw-budget": "LEGW at this plan's epochs: held the base below the critical batch; above "
                   "it the LSTM stayed 0.6-0.9 points short even at 100 epochs (study 10)",
    "adaptive": "--scaling adaptive: held the LSTM's base at 8192 (+0.35 points, 2 seeds) and "
                "the ResNet's (study 11)",
    "ramp": "--batch-ramp noise: held the LSTM's base at max batch 8192 in 10 epochs (study 12)",
    "seesaw": "--batch-ramp seesaw: held the LSTM's base at max batch 8192 in 10 epochs, 2 "
              "seeds (study 12)",
}
"""What legw measured of each rule holding the base run above the critical batch."""


def rule_plan(profile: NoiseProfile, base: BaseRecipe, dataset_size: int, batch_size: int,
              workers: int, step_time: Callable[[float], float],
              streams: bool = False) -> dict[str, Any]:
    """The rules that train at (or up to) ``batch_size``, side by side: optimizer steps,
    epochs of samples and wall time on ``workers`` (``step_time(B)``: one step at global batch
    B), each rule's batch for a ramp, and the recommendation: the fastest rule legw measured
    to hold the base (:data:`HELD`; LEGW at equal epochs when the batch is at most ~the
    critical batch, where it scales perfectly).

    The noise ramp is walked by its own rule (:class:`legw.adaptive.ramp.BatchRamp`) with
    ``B_noise`` read from the profile at each step's position; adaptive's steps integrate the
    gain ``r = (1 + B_noise/B0) / (1 + B_noise/B)`` over the base run (``tau`` advances by
    ``r`` a step); each step's batch is spread over all ``workers`` (the time model). With
    ``streams`` (token streams) a ramp's batch changes only at epoch boundaries, an epoch being
    ``dataset_size // B`` steps (its windows over the streams)."""
    from legw.adaptive.ramp import BatchRamp, RampRule

    b0, n, epochs = base.base_batch_size, dataset_size, base.epochs
    unit = profile.small_batch_size
    rules: dict[str, dict[str, Any]] = {}

    def add(name: str, batches: list[float], samples: float, ramp=None) -> None:
        rules[name] = {"steps": len(batches), "epochs": samples / n,
                       "time_s": sum(step_time(b) for b in batches), "held": HELD[name],
                       **({"ramp": ramp} if ramp else {})}

    factor = epochs_factor(profile, batch_size, b0)
    for name, recipe in (("legw", base), ("legw-budget", budget_recipe(base, epochs * factor))):
        try:
            steps = recipe.scale(batch_size, n).total_steps
        except RecipeError:  # e.g. LEGW's warmup longer than training: no such run
            continue
        add(name, [batch_size] * steps, steps * batch_size)
    base_steps, tau, count = base.scale(b0, n).total_steps, 0.0, 0
    while tau < base_steps:  # adaptive: each step advances the base run by its gain
        bn = profile.at(tau / base_steps)
        tau += min(max((1 + bn / b0) / (1 + bn / batch_size), 1.0), batch_size / b0)
        count += 1
    add("adaptive", [batch_size] * count, count * batch_size)
    for name, rule in (("ramp", "noise"), ("seesaw", "seesaw")):
        walk = BatchRamp(base, RampRule.parse(rule), batch_size, unit, n,
                         epoch_steps=(lambda b: max(1, n // b)) if streams else None)
        batches, changes = [], []
        while not walk.done:
            b = walk.batch
            if not changes or changes[-1][1] < b:  # (the last step's trimmed batch: not)
                changes.append((round(walk.epoch, 3), b))
            batches.append(b)
            walk.advance(b, profile.at(walk.samples / walk.budget))
        add(name, batches, walk.samples, changes)
    if factor <= 1.1:
        best = "legw"  # below the critical batch equal epochs suffice
    else:
        best = min(("adaptive", "ramp", "seesaw"), key=lambda r: rules[r]["time_s"])
    return {"global_batch_size": batch_size, "workers": workers, "rules": rules,
            "recommended": best}


def _size(batch: float) -> str:
    """A measured batch size for display: whole samples, or two digits below 10 (a very early
    measurement can put ``B_noise`` under one sample)."""
    return f"{batch:,.0f}" if batch >= 10 else f"{batch:.2g}"


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a table, the recommendation and the warnings."""
    prof, base = plan["profile"], plan["base_recipe"]
    lines = [f"critical batch (B_noise at the end of the measured profile): "
             f"{_size(prof['critical_batch_size'])}; base: batch {base['base_batch_size']}, "
             f"{base['epochs']:g} epochs; profile measured over "
             f"{prof['measured_fraction']:.0%} of the base run ({prof['steps']} steps)"]
    cols = ["batch", "workers", "epochs", "x base", "steps", "peak LR", "warmup st",
            "step s", "time h", "worker-h"]
    body = [[str(r["global_batch_size"]), str(r["workers"]), f"{r['epochs']:.1f}",
             f"{r['epochs_factor']:.2f}", str(r["steps"]), f"{r['peak_lr']:.4g}",
             str(r["warmup_steps"]), f"{r['step_s']:.3g}", f"{r['time_s'] / 3600:.3g}",
             f"{r['worker_hours']:.3g}"] for r in plan["rows"]]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    best = plan["recommended"]
    limit = plan["cost_limit_worker_hours"]
    how = " (default: 2x the cheapest plan)" if plan["cost_limit_default"] else ""
    if best:
        lines.append(f"recommended: batch {best['global_batch_size']} on {best['workers']} "
                     f"workers, {best['epochs']:.1f} epochs = {best['steps']} steps, peak LR "
                     f"{best['peak_lr']:.4g}, warmup {best['warmup_steps']} steps: "
                     f"{best['time_s'] / 3600:.3g} h, {best['worker_hours']:.3g} worker-hours "
                     f"(limit {limit:.3g}{how})")
    else:
        lines.append(f"no plan within the cost limit of {limit:.3g} worker-hours")
    lines += [f"warning: {w}" for w in plan["warnings"]]
    if plan.get("rules"):
        lines += format_rules(plan["rules"])
    return "\n".join(lines)


RULE_NAMES = {"legw": "legw, equal epochs", "legw-budget": "legw, the plan's epochs",
              "adaptive": "--scaling adaptive", "ramp": "--batch-ramp noise",
              "seesaw": "--batch-ramp seesaw"}


def format_rules(plan: dict[str, Any]) -> list[str]:
    """The rules at the largest batch, the recommended one and, for a ramp, its batches."""
    b, p, best = plan["global_batch_size"], plan["workers"], plan["recommended"]
    lines = [f"rules at batch {b} on {p} workers (predicted from the noise profile):"]
    width = max(len(v) for v in RULE_NAMES.values())
    for name, r in plan["rules"].items():
        mark = "*" if name == best else " "
        lines.append(f" {mark} {RULE_NAMES[name]:<{width}}  {r['steps']:>7,} steps  "
                     f"{r['epochs']:7.1f} epochs  {r['time_s'] / 3600:8.3g} h   {r['held']}")
    rec = plan["rules"][best]
    lines.append(f"recommended rule: {RULE_NAMES[best]} ({rec['steps']:,} steps, "
                 f"{rec['epochs']:.1f} epochs, {rec['time_s'] / 3600:.3g} h)")
    if "ramp" in rec:
        lines.append("  its batch from epoch: " + ", ".join(f"{bb}@{e:g}" for e, bb in rec["ramp"]
                                                          [:12]) + (" ..." if len(rec["ramp"]) > 12
                                                                    else ""))
    return lines


def plot_plan(plan: dict[str, Any], path: str) -> None:
    """Epochs needed, wall time and worker-hours vs global batch (a line per worker count),
    the critical batch marked."""
    plt = pyplot()
    fig, (ax_e, ax_t, ax_c) = plt.subplots(1, 3, figsize=(15, 4.4))
    rows = plan["rows"]
    batches = sorted({r["global_batch_size"] for r in rows})
    factors = {r["global_batch_size"]: r["epochs_factor"] for r in rows}
    base_epochs = plan["base_recipe"]["epochs"]
    ax_e.plot(batches, [base_epochs * factors[b] for b in batches], "o-",
              label="predicted to match the base")
    ax_e.axhline(base_epochs, color="gray", ls=":", label=f"equal epochs ({base_epochs:g})")
    ax_e.set(ylabel="epochs", title="epochs needed")
    for p in sorted({r["workers"] for r in rows}):
        pts = sorted((r["global_batch_size"], r) for r in rows if r["workers"] == p)
        xs = [b for b, _ in pts]
        ax_t.plot(xs, [r["time_s"] / 3600 for _, r in pts], "o-", ms=3, label=f"{p} workers")
        ax_c.plot(xs, [r["worker_hours"] for _, r in pts], "o-", ms=3, label=f"{p} workers")
    ax_t.set(ylabel="wall time (h)", title="time", yscale="log")
    ax_c.set(ylabel="worker-hours", title="cost", yscale="log")
    ax_c.axhline(plan["cost_limit_worker_hours"], color="gray", ls=":", label="cost limit")
    best = plan["recommended"]
    if best:
        ax_t.plot(best["global_batch_size"], best["time_s"] / 3600, "*", ms=14, color="k",
                  label="recommended")
    crit = plan["profile"]["critical_batch_size"]
    for ax in (ax_e, ax_t, ax_c):
        ax.axvline(crit, color="C3", ls="--", lw=1, label=f"critical batch {_size(crit)}")
        ax.set(xscale="log", xlabel="global batch size")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("legw plan: cost of matching the base run at larger batches "
                 "(McCandlish et al. 2018 model, B_noise measured while training)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def measure_noise(model: Any, loss_fn: Callable[[Any, Any], Any], batches: Any,
                  optimizer: Any, *, steps: int, micro_batches: int = 2,
                  recipe: Any = None) -> list[dict[str, Any]]:
    """Train a model of your own for ``steps`` steps and return per-step records like the
    trainer's ``metrics.jsonl`` (``step``, ``noise_grad_sq``, ``noise_trace_sigma``,
    ``samples_per_s``), for :func:`noise_profile`.

    ``batches`` yields ``(inputs, targets)`` at the base batch size (first dimension); each is
    split into ``micro_batches`` micro-batches and accumulated, and the micro-batch gradients
    (measured by the trainer's :class:`~legw.adaptive.meter.NoiseMeter`) are the small-batch
    draws. ``recipe`` (a scaled :class:`~legw.schedule.Recipe`) sets the LR of each step when
    given.
    """
    import time

    from legw.adaptive.meter import NoiseMeter
    from legw.adaptive.noise import unbiased_terms
    from legw.lr_scheduler import apply_recipe

    if micro_batches < 2:
        raise ValueError(f"micro_batches: need at least 2 to measure noise, got {micro_batches}")
    meter = NoiseMeter(model.parameters(), micro_batches)
    out: list[dict[str, Any]] = []
    try:
        for step, (x, y) in zip(range(steps), batches):
            if recipe is not None:
                apply_recipe(optimizer, recipe, step)
            t0 = time.perf_counter()
            n = len(x)
            if n % micro_batches:
                raise ValueError(f"batches: a batch of {n} does not split into "
                                 f"{micro_batches} equal micro-batches")
            b = n // micro_batches
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for i in range(micro_batches):
                micro_loss = loss_fn(model(x[i * b:(i + 1) * b]), y[i * b:(i + 1) * b])
                (micro_loss / micro_batches).backward()
                loss = loss + micro_loss.detach() / micro_batches
            m = meter.measure(loss)
            if not m.finite:
                raise ValueError(f"training diverged at step {step}")
            optimizer.step()
            g, tr = unbiased_terms(m.small_sq, m.big_sq, b, n)
            dt = time.perf_counter() - t0
            out.append({"kind": "train", "step": step, "noise_grad_sq": g,
                        "noise_trace_sigma": tr, "micro_batch_size": b,
                        "samples_per_s": n / dt if dt > 0 else math.nan})
    finally:
        meter.remove()
    if len(out) < steps:
        raise ValueError(f"batches: the source ran out after {len(out)} of {steps} steps")
    return out


def plan_for_model(model: Any, loss_fn: Callable[[Any, Any], Any], batches: Any,
                   optimizer: Any, base: BaseRecipe, dataset_size: int, *, steps: int,
                   micro_batches: int = 2, batch_sizes: Sequence[int] | None = None,
                   workers: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                   **network: Any) -> dict[str, Any]:
    """``legw plan`` for your own model and loop: a short measurement at the base batch
    (:func:`measure_noise`, its throughput at the micro batch taken as the worker's rate),
    then :func:`make_plan`. ``network`` passes ``latency``, ``bandwidth``, ``cost_limit``."""
    from legw.analysis.comm import constant_rate

    recipe = base.scale(base.base_batch_size, dataset_size)
    records = measure_noise(model, loss_fn, batches, optimizer, steps=steps,
                            micro_batches=micro_batches, recipe=recipe)
    rates = sorted(r["samples_per_s"] for r in records[1:] or records)
    profile = noise_profile(records, recipe.total_steps, records[0]["micro_batch_size"],
                            base.base_batch_size)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return make_plan(profile, base, dataset_size, batch_sizes=batch_sizes, workers=workers,
                     model_bytes=model_bytes, compute_time=constant_rate(rates[len(rates) // 2]),
                     **network)

