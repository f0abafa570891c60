"""Command-line flags derived from dataclass fields: each field is declared once.

A field's type annotation gives the flag's type, its docstring (the string literal under it,
house style) the help text, and its ``metadata`` the rest::

    epochs: float | None = None
    \"\"\"Training length in epochs (default: the recipe's).\"\"\"
    global_batch_size: int | None = field(default=None, metadata=flag("--batch-size", "B"))
    evaluate: bool = field(default=True, metadata=flag("--no-eval", negate=True))

``add_arguments(group, Cls, names)`` adds the flags of those fields; ``given(args, Cls, names)``
reads back the values the user gave (flags left out are absent, not ``None``, so a file or a
stored spec can supply them). Errors name the flag through :func:`flag_name`; numbers are read
with :func:`integer` (64 bits) and :func:`number` (finite), which the hand-written flags of the
commands use too. No torch.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Iterable
from typing import Any


def flag(name: str | None = None, metavar: str | None = None, *,
         choices: Iterable[str] | None = None, negate: bool = False) -> dict[str, Any]:
    """Field metadata: the flag's name (default ``--field-name``), its metavar, its choices,
    and ``negate`` for a ``bool`` field that defaults to true (the flag turns it off)."""
    meta: dict[str, Any] = {}
    if name is not None:
        meta["flag"] = name
    if metavar is not None:
        meta["metavar"] = metavar
    if choices is not None:
        meta["choices"] = tuple(choices)
    if negate:
        meta["negate"] = True
    return meta


def integer(text: str) -> int:
    """An argparse type: an integer that fits in 64 bits (torch, numpy and checkpoints hold
    no more), so an absurd value is refused naming its flag, not deep inside torch."""
    value = int(text)
    if not -2**63 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} does not fit in 64 bits")
    return value


def number(text: str) -> float:
    """An argparse type: a finite number (``inf`` and ``nan`` are refused naming the flag)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


_ARG_TYPES: dict[type, Any] = {int: integer, float: number}


def option(name: str) -> str:
    """The flag of a hand-written argparse destination: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def flag_name(cls: type, name: str) -> str:
    """The flag of field ``name`` of dataclass ``cls``."""
    return _fields(cls)[name].metadata.get("flag") or option(name)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it, for ``cls`` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def add_arguments(group: Any, cls: type, names: Iterable[str],
                  help_overrides: dict[str, str] | None = None) -> None:
    """Add the flags of fields ``names`` of ``cls`` to an argparse parser or group.

    Every flag defaults to ``argparse.SUPPRESS``: a flag the user did not give is absent from
    the namespace, so :func:`given` returns only what was given.
    """
    fields, hints, docs = _fields(cls), typing.get_type_hints(cls), field_docs(cls)
    for name in names:
        f = fields[name]
        meta = f.metadata
        help_text = (help_overrides or {}).get(name) or docs.get(name, "")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                                  "help": _rst_free(help_text)}
        base, many = _base_type(hints[name])
        if base is bool:
            kwargs["action"] = "store_false" if meta.get("negate") else "store_true"
        else:
            kwargs["type"] = _ARG_TYPES.get(base, base)
            if many:
                kwargs["nargs"] = "+"
            if "metavar" in meta:
                kwargs["metavar"] = meta["metavar"]
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
        group.add_argument(flag_name(cls, name), **kwargs)


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The values of fields ``names`` that were given on the command line."""
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _base_type(hint: Any) -> tuple[type, bool]:
    """``(element type, is a list)`` of an annotation such as ``int | None`` or
    ``tuple[float, ...] | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        # ``str | float`` (a rule name or a number): read as text, the dataclass parses it
        hint = args[0] if len(args) == 1 else str
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return typing.get_args(hint)[0], True
    return hint, False


def _rst_free(text: str) -> str:
    """Help text without reST markup (``x`` -> x) and with argparse's % escaped."""
    return text.replace("``", "").replace("%", "%%")
