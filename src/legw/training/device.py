"""The device a run trains on, and the precision it computes in there."""

from __future__ import annotations

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


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op on the CPU (fp32 keeps CPU runs bit-reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
