"""ImageNet-style image folders (``root/<class>/<image>``) with the standard ResNet-50 transforms.

Needs only Pillow (imported lazily, when an image is first opened); no torchvision.

Transforms (He et al. 2015; Szegedy et al. 2015 crop; Goyal et al. 2017, arXiv 1706.02677):

- train: random-resized crop (area fraction ``U(0.08, 1)``, aspect ratio log-uniform in
  ``[3/4, 4/3]``, up to 10 tries, else a center crop) resized to 224, horizontal flip with
  probability 1/2;
- eval: resize the short side to 256, center crop 224;
- both: RGB float in [0, 1], then ``(x - mean) / std`` with the ImageNet channel statistics.

Randomness comes from torch's global generator, so ``torch.manual_seed`` and DataLoader worker
seeding make it reproducible.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def _pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("image folders need Pillow: pip install pillow") from e
    return Image


def _random_crop_box(width: int, height: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(left, top, w, h) of a random crop with area ~ U(scale) and log-uniform aspect ratio."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(()).item())
        aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand(()).item())
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, ()).item())
            top = int(torch.randint(0, height - h + 1, ()).item())
            return left, top, w, h
    side = min(width, height)  # fallback: the largest centered square
    return (width - side) // 2, (height - side) // 2, side, side


def _to_tensor(image: Any) -> torch.Tensor:
    """PIL RGB image -> normalized float tensor (3, H, W)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def train_transform(image: Any, image_size: int = 224) -> torch.Tensor:
    """Random-resized crop + horizontal flip + normalize (the ResNet-50 training transform)."""
    Image = _pil_image()
    left, top, w, h = _random_crop_box(*image.size)
    box = (left, top, left + w, top + h)
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
    if torch.rand(()).item() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _to_tensor(image)


def eval_transform(image: Any, image_size: int = 224, resize_size: int = 256) -> torch.Tensor:
    """Resize the short side to ``resize_size``, center crop ``image_size``, normalize."""
    Image = _pil_image()
    width, height = image.size
    s = resize_size / min(width, height)
    width, height = max(image_size, round(width * s)), max(image_size, round(height * s))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - image_size) // 2, (height - image_size) // 2
    return _to_tensor(image.crop((left, top, left + image_size, top + image_size)))


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``; classes indexed in sorted order of the directory names.

    ``dataset[i]`` returns ``(image (3, image_size, image_size) float32, label int)``.
    """

    def __init__(self, root: str | os.PathLike, train: bool, image_size: int = 224,
                 resize_size: int = 256) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"image folder {root} not found (expected root/<class>/<image>)"
            )
        if image_size < 1 or resize_size < image_size:
            raise ValueError(f"need 1 <= image_size <= resize_size, got image_size={image_size}, "
                             f"resize_size={resize_size}")
        self.root, self.train = root, train
        self.image_size, self.resize_size = image_size, resize_size
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((root / name).rglob("*"))
            if path.suffix.lower() in EXTENSIONS
        ]
        if not self.samples:
            raise ValueError(f"image folder {root} contains no images ({', '.join(EXTENSIONS)})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with _pil_image().open(path) as f:
                image = f.convert("RGB")
        except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
            raise ValueError(f"{path}: not a readable image ({type(e).__name__}); remove or "
                             "replace it") from None
        if self.train:
            return train_transform(image, self.image_size), label
        return eval_transform(image, self.image_size, self.resize_size), label
