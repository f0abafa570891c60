"""Which param groups of LARS / LAMB get the layer-wise trust ratio: the ``adapt`` setting.

``adapt`` is one per-group hyperparameter with three values:

* ``True`` (the default): every tensor of the group adapts, with or without weight decay --
  the paper's rule and its references (TF's LARS adapts every variable not in ``skip_list``;
  TF-Addons' LAMB every one not in ``exclude_from_layer_adaptation``, and its default decay is
  0).
* ``"with_decay"``: the group adapts only when its ``weight_decay != 0`` -- timm's rule
  (``timm.optim.Lars`` / ``Lamb`` with their default ``always_adapt=False``). With timm's
  defaults the two differ: ``Lars`` (decay 0) never adapts, ``Lamb`` (decay 0.01) always does.
* ``False``: never (plain momentum SGD for LARS, Adam(W) for LAMB): what
  :func:`legw.optim.param_groups` sets on the bias / normalization group.

Up to legw 0.1.0 the rule was two booleans, ``adapt and (weight_decay != 0 or always_adapt)``
with ``always_adapt=False``: the old default is ``"with_decay"``. The old spelling still works
for one release: ``always_adapt`` (as a constructor argument or a group key) is translated by
:func:`from_always_adapt` with a ``DeprecationWarning``, and state dicts saved with it load as
they trained.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

WITH_DECAY = "with_decay"
"""``adapt`` value: adapt only the groups whose ``weight_decay != 0`` (timm's rule)."""

AdaptSetting = bool | str
"""``True``, ``False`` or :data:`WITH_DECAY`."""


def check_adapt(group: dict[str, Any]) -> None:
    value = group["adapt"]
    if not (isinstance(value, bool) or value == WITH_DECAY):
        raise ValueError(f"adapt: expected True, False or {WITH_DECAY!r}, got {value!r}")


def adapts(group: dict[str, Any]) -> bool:
    """Whether ``group`` gets the trust ratio this step."""
    value = group["adapt"]
    return value is True or (value == WITH_DECAY and group["weight_decay"] != 0)


def from_always_adapt(adapt: Any, always_adapt: Any) -> Any:
    """The ``adapt`` value of the old pair ``(adapt, always_adapt)``, whose rule was ``adapt
    and (weight_decay != 0 or always_adapt)``: ``False`` stays ``False``; otherwise ``True``
    when ``always_adapt``, else :data:`WITH_DECAY`. Any other ``adapt`` is returned as it is
    (for :func:`check_adapt` to refuse)."""
    if not isinstance(always_adapt, bool):
        raise ValueError(f"always_adapt: expected True or False, got {always_adapt!r}")
    if adapt is False:
        return False
    if adapt is True or adapt == WITH_DECAY:
        return True if always_adapt else WITH_DECAY
    return adapt


def warn_always_adapt(where: str, always_adapt: Any) -> None:
    """The ``DeprecationWarning``, attributed to the first caller outside ``legw.optim`` and
    ``torch.optim`` (so Python's default filter shows it when that caller is a script)."""
    new = "adapt=True" if always_adapt is True else f"adapt={WITH_DECAY!r}"
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
            ("legw.optim", "torch.optim")):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"always_adapt ({where}) is deprecated and will be removed in the next release: "
        f"adapt=True now adapts every group, with or without weight decay (the paper's and "
        f"TF's rule); always_adapt={always_adapt!r} is {new}",
        DeprecationWarning, stacklevel=level)


def upgrade_saved_group(group: dict[str, Any]) -> dict[str, Any]:
    """A param group of a state dict saved with the old ``always_adapt`` key, in today's terms
    (the same trust-ratio rule it trained with); other groups unchanged."""
    if "always_adapt" not in group:
        return group
    group = dict(group)
    always = group.pop("always_adapt")
    group["adapt"] = from_always_adapt(group.get("adapt", True), always)
    return group
