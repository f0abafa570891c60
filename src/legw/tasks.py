"""Named training tasks: data, model, metric, default optimizer and the base recipe.

A :class:`Task` bundles what ``legw train TASK`` needs. ``recipe`` is the base recipe at the
task's base batch size and ``dataset_size`` the training samples per epoch, so
``task.recipe.scale(B, task.dataset_size)`` gives the schedule at any global batch ``B``
(``legw schedule --task`` uses exactly these two attributes).

For the language-model tasks a "sample" is one stream of one truncated-BPTT window: the
global batch ``B`` is the number of parallel token streams, an epoch has
``(len(train) // B - 1) // bptt`` steps, and ``dataset_size`` is that count at the base batch
times the base batch (so ``N // B0`` is the real number of steps per epoch). The trainer passes
``steps_per_epoch(B) * B`` at other batch sizes, so the schedule matches the loader exactly.

This module imports no torch: loaders and model builders import it when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from legw.schedule import BaseRecipe

KINDS = ("image", "text")
METRICS = {"image": "accuracy", "text": "perplexity"}

# Mikolov PTB: 929,589 training tokens (with <eos>); at 20 streams a stream has 46,479 tokens.
PTB_TRAIN_TOKENS = 929_589


@dataclass(frozen=True)
class Task:
    """A named preset: how to load the data, build the model, and train it at the base batch."""

    name: str
    """Name used on the command line."""
    description: str
    """One line for ``--help`` and run records."""
    kind: str
    """``image`` (classification, metric: test accuracy) or ``text`` (LM, metric: perplexity)."""
    recipe: BaseRecipe
    """Base recipe at the base batch size."""
    dataset_size: int
    """Training samples per epoch (see the module docstring for language models)."""
    optimizer: str
    """Default optimizer name (a key of ``legw.optim.OPTIMIZERS``)."""
    load: Callable[[str | None], Any]
    """``load(data_dir) -> ImageData | TextData``."""
    build_model: Callable[[Any], Any]
    """``build_model(data) -> torch.nn.Module``."""
    momentum: float = 0.0
    """Momentum of ``sgd`` / ``lars`` (ignored by the Adam family)."""
    weight_decay: float = 0.0
    """Weight decay; bias and normalisation parameters are excluded."""
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this value (``None``: no clipping)."""
    bptt: int = 0
    """Truncated-BPTT window (text tasks)."""
    eval_batch_size: int = 1000
    """Batch size for evaluation (streams for text tasks)."""

    @property
    def metric(self) -> str:
        return METRICS[self.kind]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "text" and self.bptt <= 0:
            raise ValueError(f"bptt: a text task needs a positive window, got {self.bptt!r}")


# --- loaders and builders (imported lazily: torch only when a task runs) -------------------

def _mnist_loader(name: str, channels: bool):
    def load(data_dir: str | None):
        from legw.data.mnist import MEAN_STD, find_mnist, load_mnist
        from legw.data.sets import ImageData, TensorImages

        mean, std = MEAN_STD[name]
        parts = []
        for split in ("train", "test"):
            images, labels = load_mnist(name, split, data_dir=data_dir)
            parts.append(TensorImages(images, labels, mean, std, channels_first=channels))
        source = find_mnist(name, "train", data_dir, download=False)[0].parent
        return ImageData(train=parts[0], test=parts[1], num_classes=10, source=str(source))

    return load


def _load_ptb(data_dir: str | None):
    from legw.data.ptb import load_ptb
    from legw.data.sets import TextData

    corpus = load_ptb(data_dir)
    return TextData(train=corpus.train, valid=corpus.valid, test=corpus.test,
                    vocab_size=len(corpus.vocab), source=corpus.source)


def _load_imagenet(data_dir: str | None):
    if data_dir is None:
        raise ValueError("--data-dir: imagenet-resnet50 needs an image folder "
                         "(DIR/train/CLASS/*.JPEG and DIR/val/CLASS/*.JPEG)")
    from pathlib import Path

    from legw.data.imagefolder import ImageFolder
    from legw.data.sets import DatasetImages, ImageData

    train = ImageFolder(Path(data_dir) / "train", train=True)
    test = ImageFolder(Path(data_dir) / "val", train=False)
    if test.classes != train.classes:
        extra = sorted(set(test.classes) ^ set(train.classes))
        raise ValueError(f"--data-dir: {data_dir}/val and {data_dir}/train must hold the same "
                         f"class folders; {len(extra)} differ, e.g. {extra[0]!r}")
    return ImageData(train=DatasetImages(train), test=DatasetImages(test),
                     num_classes=len(train.classes), source=str(data_dir))


def _lstm_classifier(data):
    from legw.models.lstm import LSTMClassifier

    return LSTMClassifier(input_size=28, hidden_size=128, num_layers=1,
                          num_classes=data.num_classes)


def _small_resnet(data):
    from legw.models.resnet import small_resnet

    return small_resnet(num_classes=data.num_classes, in_channels=1)


def _resnet50(data):
    from legw.models.resnet import resnet50

    return resnet50(num_classes=data.num_classes)


def _lstm_lm(hidden: int, layers: int, dropout: float, init_range: float):
    def build(data):
        from legw.models.lstm import LSTMLanguageModel

        return LSTMLanguageModel(data.vocab_size, hidden, layers, dropout=dropout,
                                 init_range=init_range)

    return build


def _ptb_dataset_size(bptt: int, base_batch_size: int = 20) -> int:
    steps = (PTB_TRAIN_TOKENS // base_batch_size - 1) // bptt
    return steps * base_batch_size


# LSTM base recipe, tuned once at batch 128 on Fashion-MNIST (SGD momentum 0.9, poly p=2,
# 10 epochs): `legw tune fashion-mnist-lstm --batch-size 128 --epochs 10 --lr-factors 0.5 1 2 4
# --warmup-epochs 0.02 0.1` picked peak LR 0.4, warmup 0.1 epochs (89.96% test accuracy);
# see docs/results.md. MNIST (not downloadable where this was tuned) shares it.
_LSTM_MNIST_RECIPE = BaseRecipe(base_batch_size=128, peak_lr=0.4, warmup_epochs=0.1,
                                epochs=10, decay="poly", power=2.0)

TASKS: dict[str, Task] = {
    "mnist-lstm": Task(
        name="mnist-lstm", kind="image",
        description="MNIST rows as 28 time steps, LSTM-128 + linear head",
        recipe=_LSTM_MNIST_RECIPE, dataset_size=60_000,
        optimizer="sgd", momentum=0.9,
        load=_mnist_loader("mnist", channels=False),
        build_model=_lstm_classifier),
    "fashion-mnist-lstm": Task(
        name="fashion-mnist-lstm", kind="image",
        description="Fashion-MNIST rows as 28 time steps, LSTM-128 + linear head",
        recipe=_LSTM_MNIST_RECIPE, dataset_size=60_000,
        optimizer="sgd", momentum=0.9,
        load=_mnist_loader("fashion-mnist", channels=False),
        build_model=_lstm_classifier),
    "fashion-mnist-resnet": Task(
        name="fashion-mnist-resnet", kind="image",
        description="Fashion-MNIST, small ResNet, LARS (Table 6 recipe scaled to batch 128)",
        # 2**2.5 at 1024 scaled by sqrt(128/1024) = 2.0; warmup 0.3125 / 8 epochs.
        recipe=BaseRecipe(base_batch_size=128, peak_lr=2.0, warmup_epochs=0.3125 / 8,
                          epochs=10, decay="poly", power=2.0),
        dataset_size=60_000, optimizer="lars", momentum=0.9, weight_decay=5e-4,
        load=_mnist_loader("fashion-mnist", channels=True),
        build_model=_small_resnet, eval_batch_size=500),
    "ptb-small": Task(
        name="ptb-small", kind="text",
        description="PTB word LM, 2x200 LSTM, 20 steps (Zaremba et al. 2014, small)",
        # Zaremba's lr 1.0 and clip 5 act on a loss summed over the 20 unrolled steps; legw's
        # loss is the mean per token, so the same updates take lr 20 and clip 5 / 20 = 0.25.
        # lr for 4 epochs, then x0.5 per epoch: milestones at epochs 4..12.
        recipe=BaseRecipe(base_batch_size=20, peak_lr=20.0, warmup_epochs=0.0, epochs=13,
                          decay="multistep", milestones=tuple(range(4, 13)), gamma=0.5),
        dataset_size=_ptb_dataset_size(bptt=20), optimizer="sgd", clip_grad_norm=0.25,
        load=_load_ptb, build_model=_lstm_lm(200, 2, dropout=0.0, init_range=0.1),
        bptt=20, eval_batch_size=20),
    "ptb-large": Task(
        name="ptb-large", kind="text",
        description="PTB word LM, 2x1500 LSTM, 35 steps, dropout 0.65 (Zaremba et al., large)",
        # Zaremba's lr 1.0 / clip 10 on a loss summed over 35 steps = lr 35 / clip 10 / 35 on
        # the per-token mean. lr for 14 epochs, then /1.15 per epoch: milestones at 14..54.
        recipe=BaseRecipe(base_batch_size=20, peak_lr=35.0, warmup_epochs=0.0, epochs=55,
                          decay="multistep", milestones=tuple(range(14, 55)), gamma=1 / 1.15),
        dataset_size=_ptb_dataset_size(bptt=35), optimizer="sgd", clip_grad_norm=10.0 / 35,
        load=_load_ptb, build_model=_lstm_lm(1500, 2, dropout=0.65, init_range=0.04),
        bptt=35, eval_batch_size=20),
    "imagenet-resnet50": Task(
        name="imagenet-resnet50", kind="image",
        description="ImageNet ResNet-50, LARS, poly p=2, 90 epochs (talk Table 6)",
        recipe=BaseRecipe(base_batch_size=1024, peak_lr=2**2.5, warmup_epochs=0.3125,
                          epochs=90, decay="poly", power=2.0),
        dataset_size=1_281_167, optimizer="lars", momentum=0.9, weight_decay=1e-4,
        load=_load_imagenet, build_model=_resnet50, eval_batch_size=250),
}


def get_task(name: str) -> Task:
    """The preset called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: unknown task {name!r}; choose from {', '.join(TASKS)}") from None
