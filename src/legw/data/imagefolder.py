"""ImageNet-style image folders (``root/<class>/<image>``) with the standard ResNet-50 transforms.

Needs ``torchvision`` (and through it Pillow); both are imported only when these functions run,
so the rest of legw works without them. Train: random-resized crop to 224 (scale 0.08-1), random
horizontal flip, normalize by the ImageNet mean/std; eval: resize the short side to 256, center
crop 224, normalize (He et al. 2015; Goyal et al. 2017).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(
            "image folders need torchvision: pip install torchvision (match your torch version)"
        ) from e
    return torchvision


def imagenet_transforms(train: bool, image_size: int = 224, resize_size: int = 256) -> Any:
    """The standard ResNet-50 train (``train=True``) or evaluation transform."""
    t = _torchvision().transforms
    normalize = t.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return t.Compose([t.RandomResizedCrop(image_size), t.RandomHorizontalFlip(),
                          t.ToTensor(), normalize])
    return t.Compose([t.Resize(resize_size), t.CenterCrop(image_size), t.ToTensor(), normalize])


def image_folder(
    root: str | os.PathLike, train: bool, image_size: int = 224, resize_size: int = 256
) -> Any:
    """A ``torchvision.datasets.ImageFolder`` over ``root`` with the standard transforms.

    ``root`` is e.g. ``imagenet/train`` or ``imagenet/val``, one sub-directory per class
    (classes are indexed in sorted order of the directory names).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found (expected root/<class>/<image>)")
    transform = imagenet_transforms(train, image_size, resize_size)
    dataset = _torchvision().datasets.ImageFolder(str(root), transform=transform)
    if len(dataset) == 0:
        raise ValueError(f"image folder {root} contains no images")
    return dataset
