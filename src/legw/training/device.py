"""The device a run trains on, and the precision it computes in there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def select_device(name: str, local_rank: int) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (this process's ``LOCAL_RANK`` GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device: cuda requested but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``MemoryError``, ``torch.OutOfMemoryError`` and the allocators' errors (CUDA's
    "out of memory", the CPU allocator's "can't allocate memory"): the errors the CLI reports
    as one line with a remedy, and ``legw autobatch`` records as a size that does not fit."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def batch_to(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """``x`` on ``device``; a 4-D image batch in channels-last memory when the model is."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 \
        else x


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (momentum, Adam's moments) its parameter's memory
    layout, as a state created by the step would have: a checkpoint written in the other
    ``--channels-last`` layout loads its state in that layout, which the fused and chunked
    optimizer paths (which need matching layouts) would then skip for the rest of the run."""
    for p, state in optimizer.state.items():
        if not isinstance(p, torch.Tensor):  # a wrapper's own entry (AdaScale's statistics)
            continue
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape \
                    and value.stride() != p.stride():
                state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op on the CPU (fp32 keeps CPU runs bit-reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def flushing_denormals() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero now (torch has no getter)."""
    return torch.tensor(1e-40).mul(1.0).item() == 0.0


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """On the CPU, flush denormal floats to zero while the block runs, then restore the
    previous mode. A saturated or diverging LSTM fills its gates' gradients with denormals,
    which the CPU computes on a microcode slow path: ~17x slower per step, measured by
    ``benchmarks/denormals.py``. Only values below 1.2e-38 change, far under anything fp32 can
    add to a weight of normal size. GPUs compute denormals at full speed: CUDA is left alone.

    The mode is a CPU register of each thread: this sets the calling thread's, and torch's
    worker threads take it when they are started while it is on, as in a ``legw train``
    process, whose pool starts inside the block. Workers started before keep their own mode
    (an in-process caller that already ran a multi-threaded op: there, call
    ``torch.set_flush_denormal(True)`` before the first one)."""
    if device.type != "cpu":
        yield
        return
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
