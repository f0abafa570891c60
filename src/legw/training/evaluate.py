"""Evaluation: test accuracy for image tasks, perplexity for language models.

Image evaluation is sharded over ranks (rank ``r`` scores a contiguous slice of the test set)
and the sums are all-reduced. Perplexity needs the carried LSTM state along one sequence, so
rank 0 computes it and the sum is all-reduced (the other ranks contribute zeros).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from legw.data.ptb import batchify
from legw.data.sets import ImageSet
from legw.models.lstm import detach_hidden, hidden_to
from legw.training import dist
from legw.training.device import autocast, batch_to


@torch.no_grad()
def image_metrics(model: torch.nn.Module, data: ImageSet, batch_size: int, device: torch.device,
                  rank: int, world_size: int, channels_last: bool = False) -> dict[str, float]:
    """``test_accuracy`` (fraction) and mean ``test_loss`` over the whole test set, each rank
    on its ``1 / world_size`` of it. Every rank runs the same number of batches (of at most
    ``batch_size``): an FSDP model's forward is a collective."""
    was_training = model.training
    model.eval()
    n = len(data)
    lo, hi = n * rank // world_size, n * (rank + 1) // world_size
    largest_share = math.ceil(n / world_size)
    batches = max(1, math.ceil(largest_share / batch_size))
    sums = torch.zeros(3, dtype=torch.float64)  # loss, correct, count
    for i in range(batches):
        a, b = lo + (hi - lo) * i // batches, lo + (hi - lo) * (i + 1) // batches
        x, y = data.get(torch.arange(a, b))
        x, y = batch_to(x, device, channels_last), y.to(device)
        with autocast(device):
            logits = model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").item()
        sums[1] += (logits.argmax(dim=1) == y).sum().item()
        sums[2] += len(y)
    dist.all_reduce_sum(sums)
    model.train(was_training)
    return {"test_accuracy": sums[1].item() / sums[2].item(),
            "test_loss": sums[0].item() / sums[2].item()}


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokens: torch.Tensor, n_streams: int, bptt: int,
               device: torch.device, sharded: bool = False) -> float:
    """``exp(mean token cross-entropy)`` over ``tokens`` read as ``n_streams`` streams, on rank
    0; with ``sharded`` (an FSDP model, whose forward is a collective) on every rank."""
    sums = torch.zeros(2, dtype=torch.float64)  # loss, tokens
    if sharded or dist.is_main():
        was_training = model.training
        model.eval()
        data = batchify(tokens, n_streams).to(device)
        hidden = hidden_to(model.init_hidden(n_streams), device)
        for t in range(0, data.size(0) - 1, bptt):
            x, y = data[t:t + bptt], data[t + 1:t + 1 + bptt]
            x = x[:len(y)]
            with autocast(device):
                logits, hidden = model(x, hidden)
            hidden = detach_hidden(hidden)
            sums[0] += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       y.reshape(-1), reduction="sum").item()
            sums[1] += y.numel()
        model.train(was_training)
    if not sharded:
        dist.all_reduce_sum(sums)
    mean = sums[0].item() / sums[1].item()
    return math.exp(mean) if mean < _LOG_FLOAT_MAX else math.inf  # math.exp would raise


_LOG_FLOAT_MAX = math.log(1.7976931348623157e308)


def check_eval_data(task: Any, data: Any) -> None:
    """Refuse, before training starts, evaluation data the evaluation cannot use: an empty
    image test split, or validation / test text too short for the task's evaluation streams
    (each needs two rows: one input and its target)."""
    if task.kind == "image":
        if len(data.test) == 0:
            raise ValueError(f"the test split of {data.source} is empty; give the test files, "
                             "or train with --no-eval")
        return
    need = 2 * task.eval_batch_size
    for split in ("valid", "test"):
        n = len(getattr(data, split))
        if n < need:
            raise ValueError(f"the {split} split of {data.source} has {n} tokens, fewer than "
                             f"the {need} that evaluation over {task.eval_batch_size} streams "
                             "needs; give the whole split, or train with --no-eval")
