"""Which samples each rank trains on at each step, independent of the world size.

Vocabulary: a *step* is one optimizer update on a *global batch* of ``B`` samples; each of the
``W`` ranks takes a contiguous slice of ``B / W`` samples and splits it into ``A`` micro-batches
of ``b`` samples (``B = b * W * A``). Because the global batch is chosen without reference to
``W`` or ``b``, two processes at micro batch ``b`` see the same samples per step as one process
at ``2b`` -- the runs differ only in floating-point summation order.

Images::

    perm  = permutation(N, seed, epoch)            # a fresh order every epoch, from (seed, epoch)
    batch t of the epoch = perm[t*B : (t+1)*B]     # drop_last: N // B steps per epoch
    rank r                = batch[r*B/W : (r+1)*B/W] -> A micro-batches of b

Token streams (language models, truncated BPTT)::

    train tokens -> batchify -> (T, B)   column j = stream j, read top to bottom
                   rank r owns columns [r*B/W, (r+1)*B/W), micro-batch i = b of those columns
    step t reads rows [t*bptt, (t+1)*bptt] (inputs) shifted by one (targets);
    (T - 1) // bptt steps per epoch; the hidden state of each micro-batch is carried over.
"""

from __future__ import annotations

import torch

from legw.data.ptb import batchify
from legw.data.sets import Batch, ImageSet


def permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a pure function of ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _shard(global_batch_size: int, micro_batch_size: int, rank: int, world_size: int
           ) -> tuple[int, int]:
    per_rank = global_batch_size // world_size
    if per_rank * world_size != global_batch_size or per_rank % micro_batch_size:
        raise ValueError(f"global_batch_size {global_batch_size} is not micro_batch_size "
                         f"{micro_batch_size} x world size {world_size} x accumulation steps")
    return rank * per_rank, per_rank // micro_batch_size


class ImageBatches:
    """Rank ``rank``'s micro-batches of every step (see the module docstring)."""

    def __init__(self, data: ImageSet, global_batch_size: int, micro_batch_size: int,
                 rank: int, world_size: int, seed: int) -> None:
        self.data, self.seed = data, seed
        self.global_batch_size, self.micro_batch_size = global_batch_size, micro_batch_size
        self.start, self.accumulation_steps = _shard(global_batch_size, micro_batch_size,
                                                     rank, world_size)
        self.steps_per_epoch = len(data) // global_batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"--batch-size: {global_batch_size} exceeds the {len(data)} "
                             "training samples")
        self._perm: tuple[int, torch.Tensor] | None = None

    @property
    def dataset_size(self) -> int:
        """Samples an epoch draws from: the schedule's ``N`` (``N // B`` steps an epoch)."""
        return len(self.data)

    def micro_batches(self, epoch: int, step_in_epoch: int) -> list[Batch]:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, permutation(len(self.data), self.seed, epoch))
        b = self.micro_batch_size
        first = step_in_epoch * self.global_batch_size + self.start
        idx = self._perm[1][first:first + b * self.accumulation_steps]
        return [self.data.get(idx[i * b:(i + 1) * b]) for i in range(self.accumulation_steps)]


class RampBatches:
    """Rank ``rank``'s micro-batches of a run whose global batch changes from step to step
    (a batch ramp): the epochs' orders (:func:`permutation`) joined into one stream of
    samples, each step the next ``B`` of it, so every sample is used once per epoch however
    the batch grows (a step may span two epochs' orders). Rank ``r`` takes the step's
    ``[r B / W, (r + 1) B / W)`` in micro-batches of ``b``, as :class:`ImageBatches` does."""

    def __init__(self, data: ImageSet, micro_batch_size: int, rank: int, world_size: int,
                 seed: int) -> None:
        self.data, self.seed, self.rank, self.world_size = data, seed, rank, world_size
        self.micro_batch_size = micro_batch_size
        self._perms: dict[int, torch.Tensor] = {}

    @property
    def dataset_size(self) -> int:
        return len(self.data)

    def _indices(self, first: int, count: int) -> torch.Tensor:
        """Dataset indices of stream positions ``[first, first + count)``."""
        n, parts = len(self.data), []
        while count > 0:
            epoch, offset = divmod(first, n)
            if epoch not in self._perms:
                self._perms = {e: p for e, p in self._perms.items() if e >= epoch}
                self._perms[epoch] = permutation(n, self.seed, epoch)
            take = min(count, n - offset)
            parts.append(self._perms[epoch][offset:offset + take])
            first, count = first + take, count - take
        return torch.cat(parts)

    def micro_batches(self, first: int, global_batch_size: int) -> list[Batch]:
        """This rank's micro-batches of the step on stream positions
        ``[first, first + global_batch_size)``."""
        start, accumulation = _shard(global_batch_size, self.micro_batch_size, self.rank,
                                     self.world_size)
        b = self.micro_batch_size
        idx = self._indices(first + start, b * accumulation)
        return [self.data.get(idx[i * b:(i + 1) * b]) for i in range(accumulation)]


def stream_steps_per_epoch(n_tokens: int, n_streams: int, bptt: int) -> int:
    """Full truncated-BPTT windows per epoch: ``(n_tokens // n_streams - 1) // bptt``."""
    return (n_tokens // n_streams - 1) // bptt


def check_stream_batch(n_tokens: int, n_streams: int, bptt: int) -> int:
    """:func:`stream_steps_per_epoch`, or ``ValueError`` naming ``--batch-size`` when the
    streams leave no window."""
    steps = stream_steps_per_epoch(n_tokens, n_streams, bptt)
    if steps <= 0:
        raise ValueError(f"--batch-size: {n_streams} streams of {n_tokens} tokens leave no "
                         f"window of {bptt} tokens")
    return steps


class StreamBatches:
    """Rank ``rank``'s token windows of every step (see the module docstring)."""

    def __init__(self, tokens: torch.Tensor, global_batch_size: int, micro_batch_size: int,
                 rank: int, world_size: int, bptt: int) -> None:
        self.bptt, self.micro_batch_size = bptt, micro_batch_size
        self.global_batch_size = global_batch_size
        start, self.accumulation_steps = _shard(global_batch_size, micro_batch_size, rank,
                                                world_size)
        self.steps_per_epoch = check_stream_batch(len(tokens), global_batch_size, bptt)
        cols = batchify(tokens, global_batch_size)
        width = micro_batch_size * self.accumulation_steps
        self.columns = cols[:, start:start + width].contiguous()

    @property
    def dataset_size(self) -> int:
        """The schedule's ``N`` for streams: windows an epoch times the streams, so that
        ``N // B`` is :attr:`steps_per_epoch` (a "sample" is one stream's window)."""
        return self.steps_per_epoch * self.global_batch_size

    def micro_batches(self, epoch: int, step_in_epoch: int) -> list[Batch]:
        del epoch  # every epoch reads the streams in the same order
        t0, b = step_in_epoch * self.bptt, self.micro_batch_size
        rows = self.columns[t0:t0 + self.bptt + 1]
        return [(rows[:-1, i * b:(i + 1) * b], rows[1:, i * b:(i + 1) * b])
                for i in range(self.accumulation_steps)]
