"""A model EMA whose decay follows the batch (Busbridge et al., "How to Scale Your EMA",
NeurIPS 2023, arXiv 2307.13813).

An EMA of the weights with momentum ``rho`` per step averages over ``1 / (1 - rho)`` steps. At
a batch ``k`` times larger there are ``k`` times fewer steps per epoch, so the same average in
epochs needs::

    rho -> rho ** k,    k = batch_size / base_batch_size

(:func:`legw.hyper.scale_hyperparameters`'s EMA rule). Updated once per step at ``k B0``,
``rho ** k`` tracks piecewise-constant weights exactly as ``rho`` updated ``k`` times per step
at ``B0`` does.

::

    ema = ema_model(model, decay=0.9999, base_batch_size=256, batch_size=4096)
    ...; opt.step(); ema.update_parameters(model)    # once per optimizer step
    evaluate(ema)                                     # ema.module is the averaged model
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from legw.flags import POSITIVE_INT
from legw.hyper import Hyperparameters, scale_hyperparameters


def scaled_ema_decay(decay: float, base_batch_size: int, batch_size: int) -> float:
    """``decay ** (batch_size / base_batch_size)``: an EMA momentum tuned per step at
    ``base_batch_size``, at ``batch_size`` (Busbridge et al. 2023, arXiv 2307.13813).
    ``decay`` must lie in ``[0, 1)``, the batch sizes be positive integers (``ValueError``)."""
    POSITIVE_INT(base_batch_size, "base_batch_size")
    POSITIVE_INT(batch_size, "batch_size")
    k = batch_size / base_batch_size
    # the EMA rule alone: no betas or eps, and the LR ratio only moves the weight decay
    scaled = scale_hyperparameters(Hyperparameters(ema_decay=decay), k, lr_ratio=1.0)
    assert scaled.ema_decay is not None
    return scaled.ema_decay


def ema_model(model: torch.nn.Module, decay: float, base_batch_size: int | None = None,
              batch_size: int | None = None,
              device: torch.device | str | None = None) -> AveragedModel:
    """A ``torch.optim.swa_utils.AveragedModel`` of ``model`` (a deep copy, on ``device``)
    keeping an EMA with momentum ``decay`` per step, scaled to ``batch_size`` by
    :func:`scaled_ema_decay` when both batch sizes are given (neither: ``decay`` as is).

    Call ``ema.update_parameters(model)`` after each optimizer step; the first call copies the
    weights, each later one is ``ema = rho ema + (1 - rho) weights``. ``use_buffers=True``:
    the buffers (BatchNorm's running mean and variance) are averaged too, so ``ema.module``
    evaluates as is, without recomputing the BatchNorm statistics (``update_bn``). Integer
    buffers (``num_batches_tracked``) are averaged and truncated; BatchNorm reads them only
    with ``momentum=None``."""
    if (base_batch_size is None) != (batch_size is None):
        raise ValueError("base_batch_size, batch_size: give both or neither, got "
                         f"{base_batch_size!r}, {batch_size!r}")
    if base_batch_size is None:
        base_batch_size = batch_size = 1  # k = 1: decay unchanged, still checked
    rho = scaled_ema_decay(decay, base_batch_size, batch_size)
    return AveragedModel(model, device=device, multi_avg_fn=get_ema_multi_avg_fn(rho),
                         use_buffers=True)
