"""A task's model, loss and batches in the plain form the analysis tools take.

The analysis cores (``legw.comm``, ``legw.noise_scale``, ``legw.autobatch``) take a model, a
loss function and batch callables; this module builds them for a named task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from legw.schedule import BaseRecipe


@dataclass
class Workload:
    """Everything the analysis commands need from a task."""

    name: str
    model: Any
    loss_fn: Callable[[Any, Any], Any]
    random_batch: Callable[[int], tuple[Any, Any]]
    """``n -> (inputs, targets)`` of the right shape and dtype, random values (for timing)."""
    dataset_size: int
    recipe: BaseRecipe
    train_data: tuple[Any, Any] | None = None
    """``(inputs, targets)`` tensors of the whole training set, when loaded."""

    def sample_batch(self, n: int, generator: Any = None) -> tuple[Any, Any]:
        """``n`` training samples drawn uniformly with replacement (i.i.d., as the noise-scale
        estimator assumes)."""
        import torch

        if self.train_data is None:
            raise ValueError(f"task {self.name!r}: training data not loaded")
        x, y = self.train_data
        idx = torch.randint(0, len(x), (n,), generator=generator)
        return x[idx], y[idx]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _fashion_mnist_lstm(load_data: bool) -> Workload:
    import torch

    from legw.models import LSTMClassifier

    model = LSTMClassifier(28, 128, 1, 10)

    def random_batch(n: int) -> tuple[Any, Any]:
        return torch.randn(n, 28, 28), torch.randint(0, 10, (n,))

    data = None
    if load_data:
        from legw.data import load_mnist, normalize

        images, labels = load_mnist("fashion-mnist", "train")
        data = (normalize(images, "fashion-mnist"), labels)
    # The untuned probe of the project notes: SGD momentum 0.9, LR 0.1 at batch 128,
    # warmup 0.05 epochs, poly p=2, 25 epochs.
    recipe = BaseRecipe(base_batch_size=128, peak_lr=0.1, warmup_epochs=0.05, epochs=25.0,
                        decay="poly", power=2.0)
    return Workload("fashion-mnist-lstm", model, torch.nn.functional.cross_entropy,
                    random_batch, 60_000, recipe, data)


BUILTIN = {"fashion-mnist-lstm": _fashion_mnist_lstm}


def load_workload(name: str, *, load_data: bool = False) -> Workload:
    """Build the workload of task ``name``; ``load_data`` also loads the training set."""
    if name not in BUILTIN:
        raise ValueError(f"task must be one of {sorted(BUILTIN)}, got {name!r}")
    return BUILTIN[name](load_data)
