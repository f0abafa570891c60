"""Split a model's parameters into a decayed, trust-ratio group and an excluded group.

Biases and normalization parameters get neither weight decay nor the LARS/LAMB trust ratio
(You et al. 2017; Goyal et al. 2017 for the decay; excluding them raised ResNet-50 top-1 from
74.3% to 76.1% at batch 8K in one public report).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
"""Module types whose parameters are excluded by default."""

Exclude = Callable[[str, torch.Tensor], bool] | Sequence[str]


@dataclass
class GroupReport:
    """Which parameter went where (names as in ``model.named_parameters()``)."""

    weight_decay: float
    decayed: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    numel: dict[str, int] = field(default_factory=dict)

    def _block(self, title: str, names: list[str]) -> list[str]:
        total = sum(self.numel[n] for n in names)
        lines = [f"{title}: {len(names)} tensors, {total:,} values"]
        lines += [f"  {n}" for n in names]
        return lines

    def __str__(self) -> str:
        lines = self._block(f"weight_decay={self.weight_decay:g}, trust ratio", self.decayed)
        lines += self._block("weight_decay=0, no trust ratio (excluded)", self.excluded)
        if self.frozen:
            lines += self._block("frozen (requires_grad=False, not optimized)", self.frozen)
        return "\n".join(lines)


def _matcher(exclude: Exclude) -> Callable[[str, torch.Tensor], bool]:
    if callable(exclude):
        return exclude
    if isinstance(exclude, str) or not all(isinstance(s, str) for s in exclude):
        raise ValueError(
            f"exclude: expected a callable (name, param) -> bool or a list of name patterns, "
            f"got {exclude!r}"
        )
    patterns = list(exclude)

    def match(name: str, param: torch.Tensor) -> bool:
        for pat in patterns:
            is_glob = any(ch in pat for ch in "*?[")
            if fnmatch.fnmatchcase(name, pat) if is_glob else pat in name:
                return True
        return False

    return match


def param_groups(
    model: nn.Module, weight_decay: float, *, exclude: Exclude | None = None
) -> tuple[list[dict[str, Any]], GroupReport]:
    """Parameter groups for LARS/LAMB (and any torch optimizer) with layer exclusion.

    Returns ``(groups, report)``. ``groups`` holds up to two dicts (empty ones are left out):
    ``{"params": [...], "weight_decay": weight_decay}`` (the optimizer's own ``adapt``
    applies: LARS/LAMB adapt it by default, with or without decay) and
    ``{"params": [...], "weight_decay": 0.0, "adapt": False}`` for the excluded parameters
    (no decay and no trust ratio, whatever the optimizer's ``adapt``).
    Parameters with ``requires_grad=False`` are left out and listed as frozen; a parameter
    shared by several modules appears once, under its first name.

    ``exclude`` decides which parameters are excluded:

    * ``None`` (default): every parameter with ``ndim <= 1`` (biases, gains) and every
      parameter of a normalization layer (:data:`NORM_LAYERS`).
    * a callable ``(name, param) -> bool``.
    * a list of name patterns: a glob (``"*.bias"``, with ``*?[``) matches the whole name,
      any other string matches as a substring (``"bn"``, ``"embed"``). This replaces the
      default rule; add ``"bias"`` yourself if you want it too.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not weight_decay >= 0:
        raise ValueError(f"weight_decay: must be a number >= 0, got {weight_decay!r}")
    match = _matcher(exclude) if exclude is not None else None
    report = GroupReport(weight_decay=float(weight_decay))
    decayed: list[torch.Tensor] = []
    excluded: list[torch.Tensor] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            report.numel[name] = p.numel()
            if not p.requires_grad:
                report.frozen.append(name)
                continue
            if match is None:
                out = p.ndim <= 1 or isinstance(module, NORM_LAYERS)
            else:
                out = bool(match(name, p))
            (excluded if out else decayed).append(p)
            (report.excluded if out else report.decayed).append(name)
    groups = []
    if decayed:
        groups.append({"params": decayed, "weight_decay": float(weight_decay)})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "adapt": False})
    return groups, report
