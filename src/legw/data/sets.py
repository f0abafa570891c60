"""What a task's loader returns: labelled images (:class:`ImageData`) or token streams
(:class:`TextData`), in memory, with batch access by index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class ImageSet(Protocol):
    """Indexable labelled images: ``get(indices) -> (float inputs, int64 labels)``."""

    def __len__(self) -> int: ...
    def get(self, indices: torch.Tensor) -> Batch: ...


class TensorImages:
    """uint8 images in memory, normalised per batch: ``x = (pixels / 255 - mean) / std``.

    ``channels_first`` adds a channel axis (``(B, 1, H, W)`` for CNNs); otherwise rows are
    returned as a sequence ``(B, H, W)`` (28 time steps of 28 pixels for the LSTM).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float,
                 channels_first: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ValueError(f"images: expected uint8 (N, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
        self.images, self.labels = images, labels.long()
        self.mean, self.std, self.channels_first = mean, std, channels_first

    def __len__(self) -> int:
        return len(self.images)

    def get(self, indices: torch.Tensor) -> Batch:
        x = (self.images[indices].float() / 255.0 - self.mean) / self.std
        if self.channels_first:
            x = x.unsqueeze(1)
        return x, self.labels[indices]


class DatasetImages:
    """A map-style dataset of ``(image tensor, label)`` pairs (e.g. an image folder) as an
    :class:`ImageSet`; samples are decoded in the training process, one at a time."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, indices: torch.Tensor) -> Batch:
        pairs = [self.dataset[int(i)] for i in indices]
        return (torch.stack([x for x, _ in pairs]),
                torch.tensor([y for _, y in pairs], dtype=torch.long))


@dataclass
class ImageData:
    train: ImageSet
    test: ImageSet
    num_classes: int
    source: str = ""
    """Where the data was read from (a directory), for start-up lines and messages."""


@dataclass
class TextData:
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab_size: int
    source: str = ""
    """Where the data was read from (a directory or a package), for start-up lines and
    messages."""
