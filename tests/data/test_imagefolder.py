import numpy as np
import pytest
import torch

Image = pytest.importorskip("PIL.Image")

from legw.data.imagefolder import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolder,
    _random_crop_box,
    eval_transform,
)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls, sizes in (("b_dog", [(40, 30), (33, 50)]), ("a_cat", [(64, 64)])):
        (tmp_path / cls).mkdir()
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a_cat" / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("train", [True, False])
def test_folder_shapes_and_labels(folder, train):
    ds = ImageFolder(folder, train=train, image_size=24, resize_size=28)
    assert ds.classes == ["a_cat", "b_dog"] and len(ds) == 3
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels == [0, 1, 1]
    for i in range(len(ds)):
        x, _ = ds[i]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32


def test_train_transform_is_seeded(folder):
    ds = ImageFolder(folder, train=True, image_size=16, resize_size=16)
    torch.manual_seed(0)
    a = ds[1][0]
    torch.manual_seed(0)
    b = ds[1][0]
    assert torch.equal(a, b)
    assert any(not torch.equal(a, ds[1][0]) for _ in range(5))


def test_eval_transform_center_crop_and_normalize():
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 30:50] = 255  # a white band in the center column range
    x = eval_transform(Image.fromarray(pixels), image_size=16, resize_size=20)
    assert x.shape == (3, 16, 16)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[:, 8, 8], white)  # the center is the white band


def test_random_crop_box_is_inside():
    torch.manual_seed(0)
    for w, h in [(10, 10), (300, 20), (5, 400)]:
        for _ in range(50):
            left, top, cw, ch = _random_crop_box(w, h)
            assert left >= 0 and left + cw <= w and top >= 0 and top + ch <= h and cw * ch > 0


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolder(tmp_path / "missing", train=True)
    (tmp_path / "cls").mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        ImageFolder(tmp_path, train=True)
    with pytest.raises(ValueError, match="image_size <= resize_size"):
        ImageFolder(tmp_path, train=False, image_size=300, resize_size=256)


def test_imagenet_task_loads_an_image_folder(tmp_path):
    from legw.tasks import get_task

    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            (tmp_path / split / cls).mkdir(parents=True)
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / cls / "0.png")
    data = get_task("imagenet-resnet50").load(str(tmp_path))
    assert data.num_classes == 2 and len(data.train) == 2 and len(data.test) == 2
    x, y = data.train.get(torch.tensor([0, 1]))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 1]
