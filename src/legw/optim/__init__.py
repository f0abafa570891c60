"""Optimizers for large-batch training: LARS and LAMB (multi-tensor), layer exclusion, names.

* :class:`LARS`, :class:`LAMB` -- ``torch.optim.Optimizer`` subclasses, whole-group updates
  through torch's fused SGD/Adam kernels where available (else ``torch._foreach_*`` chains),
  no host synchronisation inside ``step()``; every tensor adapts by default (``adapt=True``;
  ``adapt="with_decay"`` is timm's rule).
* :func:`param_groups` -- biases and normalization parameters get no weight decay and no trust
  ratio (``adapt=False``).
* :data:`OPTIMIZERS`, :func:`build_optimizer` -- ``sgd``, ``adam``, ``adamw``, ``lars``, ``lamb``
  by name, with one calling convention.
"""

from legw.optim.build import OPTIMIZERS, build_optimizer
from legw.optim.groups import NORM_LAYERS, GroupReport, param_groups
from legw.optim.lamb import LAMB
from legw.optim.lars import LARS

__all__ = [
    "LAMB",
    "LARS",
    "NORM_LAYERS",
    "OPTIMIZERS",
    "GroupReport",
    "build_optimizer",
    "param_groups",
]
