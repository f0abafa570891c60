"""The sharding invariant: which samples each rank sees does not depend on the world size or
the accumulation, and every sample is seen once per epoch."""

import pytest
import torch

from legw.data.ptb import batchify
from legw.data.sets import TensorImages
from legw.training.batches import (
    ImageBatches,
    StreamBatches,
    permutation,
    stream_steps_per_epoch,
)

N = 96


class Indices:
    """An image set whose input is the sample index, so a batch says which samples it holds."""

    def __len__(self) -> int:
        return N

    def get(self, indices: torch.Tensor):
        return indices.clone(), indices % 10


def step_samples(B: int, b: int, world: int, epoch: int, step: int, seed: int = 0) -> list[int]:
    """The samples of one optimizer step, over all ranks and micro-batches, in rank order."""
    out: list[int] = []
    for rank in range(world):
        loader = ImageBatches(Indices(), B, b, rank, world, seed)
        for x, _ in loader.micro_batches(epoch, step):
            assert len(x) == b
            out += x.tolist()
    return out


@pytest.mark.parametrize("B, b, world", [(24, 24, 1), (24, 6, 1), (24, 12, 2), (24, 3, 4),
                                         (24, 2, 3)])
def test_a_step_is_the_same_global_batch_whatever_the_split(B, b, world):
    perm = permutation(N, seed=0, epoch=1)
    for step in range(N // B):
        assert step_samples(B, b, world, epoch=1, step=step) == \
            perm[step * B:(step + 1) * B].tolist()


@pytest.mark.parametrize("B, b, world", [(32, 8, 2), (16, 16, 1), (48, 4, 3)])
def test_every_sample_once_per_epoch(B, b, world):
    seen = [s for step in range(N // B) for s in step_samples(B, b, world, epoch=0, step=step)]
    assert sorted(seen) == list(range(N))  # B divides N: no sample dropped, none twice


def test_drop_last_drops_the_tail_of_the_permutation():
    loader = ImageBatches(Indices(), 40, 40, 0, 1, seed=3)
    assert loader.steps_per_epoch == 2
    seen = [s for t in range(2) for s in step_samples(40, 40, 1, 0, t, seed=3)]
    assert len(set(seen)) == 80 and set(seen) == set(permutation(N, 3, 0)[:80].tolist())


def test_permutation_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(permutation(N, 1, 2), permutation(N, 1, 2))
    assert not torch.equal(permutation(N, 1, 2), permutation(N, 1, 3))
    assert not torch.equal(permutation(N, 1, 2), permutation(N, 2, 2))


@pytest.mark.parametrize("B, b, world", [(24, 5, 1), (24, 8, 2), (25, 5, 2)])
def test_a_split_that_does_not_tile_the_batch_is_refused(B, b, world):
    with pytest.raises(ValueError, match="is not micro_batch_size"):
        ImageBatches(Indices(), B, b, 0, world, 0)


def test_a_batch_larger_than_the_data_names_the_flag():
    with pytest.raises(ValueError, match="--batch-size: 128 exceeds the 96 training samples"):
        ImageBatches(Indices(), 128, 128, 0, 1, 0)


def test_tensor_images_normalise_and_add_a_channel_axis():
    images = torch.tensor([[[0, 255]], [[51, 102]]], dtype=torch.uint8)  # (2, 1, 2)
    flat = TensorImages(images, torch.tensor([1, 2]), mean=0.5, std=0.25)
    x, y = flat.get(torch.tensor([0]))
    assert x.shape == (1, 1, 2) and torch.allclose(x, torch.tensor([[[-2.0, 2.0]]]))
    x, _ = TensorImages(images, torch.tensor([1, 2]), 0.5, 0.25, channels_first=True).get(
        torch.tensor([1]))
    assert x.shape == (1, 1, 1, 2) and y.tolist() == [1]


def test_streams_split_into_columns_and_windows_independent_of_world_size():
    tokens = torch.arange(1000)
    B, bptt = 8, 5
    cols = batchify(tokens, B)
    spe = stream_steps_per_epoch(len(tokens), B, bptt)
    assert spe == (1000 // 8 - 1) // 5
    for world, b in [(1, 8), (1, 2), (2, 4), (4, 1)]:
        for step in (0, spe - 1):
            xs, ys = [], []
            for rank in range(world):
                loader = StreamBatches(tokens, B, b, rank, world, bptt)
                assert loader.steps_per_epoch == spe
                for x, y in loader.micro_batches(epoch=0, step_in_epoch=step):
                    assert x.shape == (bptt, b) and torch.equal(y[:-1], x[1:])
                    xs.append(x)
                    ys.append(y)
            rows = cols[step * bptt:(step + 1) * bptt + 1]
            assert torch.equal(torch.cat(xs, dim=1), rows[:-1])
            assert torch.equal(torch.cat(ys, dim=1), rows[1:])


def test_too_many_streams_leave_no_window():
    with pytest.raises(ValueError, match="--batch-size: 100 streams"):
        StreamBatches(torch.arange(300), 100, 100, 0, 1, bptt=5)
