"""A task's model, loss and batches in the plain form the analysis tools take.

The analysis cores (``comm``, ``noise_scale``, ``autobatch``) take a model, a loss function
and batch callables; this module builds them from a :mod:`legw.tasks` preset.

Language-model tasks: a sample is one window of ``bptt`` tokens (the task's unit of batch
size); the analysis tools start every window from a zero hidden state (the trainer carries
the state across steps), and the loss is the mean token cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from legw.schedule import BaseRecipe
from legw.training.batches import stream_steps_per_epoch


@dataclass
class Workload:
    """Everything the analysis commands need from a task."""

    name: str
    model: Any
    loss_fn: Callable[[Any, Any], Any]
    random_batch: Callable[[int], tuple[Any, Any]]
    """``n -> (inputs, targets)`` of the right shape and dtype, random values (for timing)."""
    dataset_size: int
    """Training samples per epoch of the data loaded (not the task's nominal size)."""
    recipe: BaseRecipe
    sample_fn: Callable[[int, Any], tuple[Any, Any]] | None = None
    """``(n, generator) -> (inputs, targets)``: ``n`` training samples, i.i.d. uniform."""
    optimizer: str = "sgd"
    hyper: dict[str, Any] | None = None
    clip_grad_norm: float | None = None
    source: str = ""
    """Where the data was read from."""

    def sample_batch(self, n: int, generator: Any = None) -> tuple[Any, Any]:
        """``n`` training samples drawn uniformly with replacement (i.i.d., as the noise-scale
        estimator assumes)."""
        if self.sample_fn is None:
            raise ValueError(f"task {self.name!r}: training data not loaded")
        return self.sample_fn(n, generator)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def build_optimizer(self, lr: float) -> Any:
        """The task's optimizer over its parameter groups (bias/norm layers excluded)."""
        from legw.optim import build_optimizer, param_groups

        groups, _ = param_groups(self.model, (self.hyper or {}).get("weight_decay", 0.0))
        hyper = {k: v for k, v in (self.hyper or {}).items() if k != "weight_decay"}
        return build_optimizer(self.optimizer, groups, lr=lr, **hyper)


def _image_workload(task: Any, data: Any, load_data: bool) -> Workload:
    model = task.build_model(data)
    x0, _ = data.train.get(torch.arange(1))
    shape = tuple(x0.shape[1:])

    def random_batch(n: int) -> tuple[Any, Any]:
        return torch.randn(n, *shape), torch.randint(0, data.num_classes, (n,))

    def sample(n: int, generator: Any) -> tuple[Any, Any]:
        return data.train.get(torch.randint(0, len(data.train), (n,), generator=generator))

    return Workload(task.name, model, torch.nn.functional.cross_entropy, random_batch,
                    len(data.train), task.recipe, sample if load_data else None)


class _WindowLM(torch.nn.Module):
    """``tokens (T, B) -> logits (T*B, V)`` from a fresh zero hidden state."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, _ = self.lm(tokens)
        return logits.reshape(-1, logits.shape[-1])


def _text_workload(task: Any, data: Any, load_data: bool) -> Workload:
    model = _WindowLM(task.build_model(data))
    bptt, tokens = task.bptt, data.train

    def loss_fn(logits: Any, targets: Any) -> Any:
        return torch.nn.functional.cross_entropy(logits, targets.reshape(-1))

    def random_batch(n: int) -> tuple[Any, Any]:
        return (torch.randint(0, data.vocab_size, (bptt, n)),
                torch.randint(0, data.vocab_size, (bptt, n)))

    def sample(n: int, generator: Any) -> tuple[Any, Any]:
        starts = torch.randint(0, len(tokens) - bptt - 1, (n,), generator=generator)
        idx = starts[None, :] + torch.arange(bptt)[:, None]  # (T, n)
        return tokens[idx], tokens[idx + 1]

    # Samples per epoch as the trainer counts them at the base batch (streams x windows).
    b0 = task.recipe.base_batch_size
    size = stream_steps_per_epoch(len(tokens), b0, bptt) * b0
    return Workload(task.name, model, loss_fn, random_batch, size, task.recipe,
                    sample if load_data else None)


def load_workload(name: str, *, load_data: bool = False, data_dir: str | None = None
                  ) -> Workload:
    """Build the workload of task ``name`` (its data is loaded: image shapes and the LM
    vocabulary come from it; ``load_data`` also enables sampling training batches)."""
    from legw.tasks import get_task

    task = get_task(name)
    data = task.load(data_dir)
    build = _text_workload if task.kind == "text" else _image_workload
    w = build(task, data, load_data)
    if w.dataset_size < 1:
        raise ValueError(f"the training data in {data.source} is too short for one sample")
    w.optimizer = task.optimizer
    w.hyper = {"weight_decay": task.weight_decay}
    if task.optimizer in ("sgd", "lars"):
        w.hyper["momentum"] = task.momentum
    w.clip_grad_norm = task.clip_grad_norm
    w.source = data.source
    return w
