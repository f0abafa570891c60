"""The ``step`` LARS and LAMB share, and the old spelling of their ``adapt`` setting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from legw.optim import _adapt as A
from legw.optim._common import MeshNorms, buckets, local, mesh_norms, params_with_grad


class BucketedOptimizer(torch.optim.Optimizer):
    """The ``step`` LARS and LAMB share: per group, the parameters with a gradient, bucketed by
    (device, dtype, mesh), each bucket handed to the subclass's
    ``_update(keys, params, grads, group, mesh)``: ``keys`` index ``self.state`` (the
    parameters themselves), ``params`` and ``grads`` are the local tensors the kernels write
    (a DTensor's shard), ``mesh`` a :class:`MeshNorms` for sharded parameters, else None.

    It also owns the old spelling of the ``adapt`` setting (:mod:`legw.optim._adapt`): a
    constructor ``always_adapt`` (deprecated) reads ``adapt`` -- the default and every group's
    own -- by the old rule, as does an ``always_adapt`` group key; ``load_state_dict`` reads
    state dicts saved with the old key by the rule they trained with."""

    def __init__(self, params: Any, defaults: dict[str, Any],
                 always_adapt: bool | None = None) -> None:
        self._always_adapt = always_adapt
        self._adapt_arg = defaults["adapt"]
        if always_adapt is not None:
            A.warn_always_adapt("constructor argument", always_adapt)
            defaults = {**defaults, "adapt": A.from_always_adapt(defaults["adapt"],
                                                                  always_adapt)}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        always = param_group.get("always_adapt")
        if "always_adapt" in param_group:
            A.warn_always_adapt("param group key", always)
            param_group = {k: v for k, v in param_group.items() if k != "always_adapt"}
        elif "adapt" in param_group:
            always = self._always_adapt  # the group's own adapt, read by the old rule
        if always is not None:
            adapt = param_group.get("adapt", self._adapt_arg)
            param_group = {**param_group, "adapt": A.from_always_adapt(adapt, always)}
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``; groups saved with the old
        ``always_adapt`` key keep the trust-ratio rule they trained with."""
        groups = [A.upgrade_saved_group(g) for g in state_dict["param_groups"]]
        super().load_state_dict({**state_dict, "param_groups": groups})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = params_with_grad(group, type(self).__name__)
            for idx in buckets(params).values():
                ps = [params[i] for i in idx]
                mesh = mesh_norms(ps) if A.adapts(group) else None
                self._update(ps, [local(p) for p in ps], [local(p.grad) for p in ps], group,
                             mesh)
        return loss

    def _update(self, keys: list[Tensor], params: list[Tensor], grads: list[Tensor],
                group: dict[str, Any], mesh: MeshNorms | None) -> None:
        raise NotImplementedError
