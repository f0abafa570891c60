"""Command-line flags derived from dataclass fields: each field is declared once.

A field's type annotation gives the flag's type, its docstring (the string literal under it,
house style) the help text, and its ``metadata`` the rest::

    epochs: float | None = None
    \"\"\"Training length in epochs (default: the recipe's).\"\"\"
    global_batch_size: int | None = field(default=None, metadata=flag("--batch-size", "B"))
    evaluate: bool = field(default=True, metadata=flag("--no-eval", negate=True))

``add_arguments(group, Cls, names)`` adds the flags of those fields (``add_groups`` those of
every field with a ``group``); ``given(args, names)`` reads back the values the user gave
(flags left out are absent, not ``None``, so a file or a stored spec can supply them);
``from_args(Cls, args)`` makes the instance. Numbers
are read with :func:`integer` (64 bits) and :func:`number` (finite).

A field's rule is declared once too, as ``check=`` (one of the named :class:`Check` s below, or
any ``(value, flag) -> None`` that raises one ``ValueError`` line), and :func:`check_fields`
applies every field's rule and ``choices`` to an instance -- from ``__post_init__``, so a spec
made in Python is checked as one made from flags. Errors name the flag (:func:`flag_name`)::

    --workers: must be a positive integer, got 0

``aliases=`` keeps old spellings working: hidden from ``--help``, and one line on stderr
(``legw: --global-batch-size is deprecated; use --batch-size``) when used. No torch.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any


def flag(name: str | None = None, metavar: str | None = None, *,
         choices: Iterable[str] | None = None, negate: bool = False,
         check: Callable[[Any, str], None] | None = None, aliases: Iterable[str] = (),
         group: str | None = None) -> dict[str, Any]:
    """Field metadata: the flag's name (default ``--field-name``), its metavar, its choices,
    ``negate`` for a ``bool`` field that defaults to true (the flag turns it off), ``check``
    (the value's rule, applied by :func:`check_fields`; ``None`` values are never checked),
    ``aliases`` (deprecated spellings, hidden from ``--help``) and ``group`` (the ``--help``
    section of :func:`add_groups`)."""
    meta: dict[str, Any] = {}
    if name is not None:
        meta["flag"] = name
    if metavar is not None:
        meta["metavar"] = metavar
    if choices is not None:
        meta["choices"] = tuple(choices)
    if negate:
        meta["negate"] = True
    if check is not None:
        meta["check"] = check
    if aliases:
        meta["aliases"] = tuple(aliases)
    if group is not None:
        meta["group"] = group
    return meta


@dataclasses.dataclass(frozen=True)
class Check:
    """A named rule for one value: ``ok(value)``, else ``ValueError("FLAG: must be MUST, got
    VALUE")``. Each is declared once here and named in field metadata (``check=POSITIVE_INT``)."""

    must: str
    """What a valid value is, completing "must be ..."."""
    ok: Callable[[Any], bool]

    def __call__(self, value: Any, flag: str) -> None:
        if not self.ok(value):
            raise ValueError(f"{flag}: must be {self.must}, got {shown(value)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite real number (``bool`` is not one; ``nan`` fails every comparison)."""
    return (_is_int(v) or isinstance(v, float)) and -math.inf < v < math.inf


POSITIVE_INT = Check("a positive integer", lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT = Check("a non-negative integer", lambda v: _is_int(v) and v >= 0)
POSITIVE = Check("a positive number", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Check("a non-negative number", lambda v: _is_number(v) and v >= 0)
POWER_OF_TWO = Check("a power of two", lambda v: _is_int(v) and v >= 1 and not v & (v - 1))


def at_least(low: int) -> Check:
    """An integer ``>= low``."""
    return Check(f"an integer >= {low}", lambda v: _is_int(v) and v >= low)


def interval(low: float, high: float, closed: str = "[]") -> Check:
    """A number in ``[low, high]``; ``closed`` is how the ends print: ``"[)"`` leaves ``high``
    out, ``"(]"`` leaves ``low`` out, ``"()"`` both."""
    lo_in, hi_in = closed[0] == "[", closed[1] == "]"
    return Check(f"a number in {closed[0]}{low:g}, {high:g}{closed[1]}",
                 lambda v: _is_number(v) and (low <= v if lo_in else low < v)
                 and (v <= high if hi_in else v < high))


def one_of(choices: Iterable[Any]) -> Check:
    """One of ``choices`` (what a field's ``choices`` metadata checks)."""
    options = tuple(choices)
    return Check(f"one of {', '.join(map(str, options))}", lambda v: v in options)


def shown(value: Any) -> str:
    """A value as an error message quotes it: ``3``, ``0.5``, ``'x'``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if _is_int(value) else repr(value)


def check_fields(obj: Any) -> None:
    """Apply each field's ``choices`` and ``check`` to its value in dataclass instance
    ``obj`` (each element of a list), in field order; ``None`` (a default) is skipped.
    Raises the first rule's ``ValueError``, naming the field's flag."""
    cls = type(obj)
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        rules = ([one_of(meta["choices"])] if "choices" in meta else []) + \
            ([meta["check"]] if "check" in meta else [])
        if value is None or not rules:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            for rule in rules:
                rule(v, flag_name(cls, f.name))


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
    the namespace, so :func:`given` returns only what was given. A field's ``aliases`` are
    added with the same destination, hidden from ``--help``.
    """
    fields, hints, docs = _fields(cls), typing.get_type_hints(cls), field_docs(cls)
    for name in names:
        f = fields[name]
        meta = f.metadata
        help_text = (help_overrides or {}).get(name) or docs.get(name, "")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        base, many = _base_type(hints[name])
        if base is bool:
            value = {"nargs": 0, "const": not meta.get("negate")}
        else:
            value = {"type": _ARG_TYPES.get(base, base), "nargs": "+" if many else None,
                     **{k: meta[k] for k in ("metavar", "choices") if k in meta}}
        flag_text = flag_name(cls, name)
        group.add_argument(flag_text, action=_Store, help=_rst_free(help_text), **kwargs,
                           **value)
        for alias in meta.get("aliases", ()):
            add_deprecated(group, alias, flag_text, **kwargs, **value)


def add_deprecated(group: Any, old: str, replacement: str, **kwargs: Any) -> None:
    """A hidden old spelling ``old`` of flag ``replacement`` (same ``dest`` and type in
    ``kwargs``): it stores as the flag does and prints one line naming the replacement."""
    group.add_argument(old, action=_Deprecated, replacement=replacement, help=argparse.SUPPRESS,
                       **kwargs)


def add_groups(parser: Any, cls: type, titles: dict[str, str | None]) -> tuple[str, ...]:
    """Add the flags of every field of ``cls`` whose ``group`` is a key of ``titles``, each
    under its group's title (``None``: among the parser's own options; groups with one title
    share a section). Returns the names of the fields added, for :func:`given`."""
    sections: dict[str | None, Any] = {None: parser}
    added = []
    for key, title in titles.items():
        if title not in sections:
            sections[title] = parser.add_argument_group(title)
        names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("group") == key]
        add_arguments(sections[title], cls, names)
        added += names
    return tuple(added)


class _Store(argparse.Action):
    """Store the value (or ``const`` for a flag that takes none)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


class _Deprecated(_Store):
    """A hidden old spelling: stores as the flag it stands for, and says which that is."""

    def __init__(self, *args: Any, replacement: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"legw: {option_string} is deprecated; use {self.replacement}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The values of fields ``names`` that were given on the command line."""
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """An instance of dataclass ``cls`` from the values given on the command line (a flag
    left out keeps its field's default; a positional argument counts as given)."""
    return cls(**given(args, _fields(cls)))


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
