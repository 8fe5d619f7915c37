"""A small strict `key=value` parser against a dataclass, for the commands that must run without Hydra.

Nested dataclass fields are reached by dots (`deploy.episodes=20`); values are converted by the field's
annotation (int, float, bool, str, Optional, Literal, tuple). An unknown key, a missing `=`, or a value of
the wrong type is one CliArgError line that names the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")
_NONE = ("null", "none", "~")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_UNIONS = (Union, types.UnionType)  # Optional[X] and X | None


class CliArgError(ValueError):
    """A command-line argument that does not fit the command's dataclass (the message is one line)."""


def fields_of(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of dataclass `cls` -> its resolved type annotation."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out.update(fields_of(tp, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = tp
    return out


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in _UNIONS:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return "a comma-separated list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def convert(value: str, tp: Any, key: str) -> Any:
    """`value` converted to annotation `tp`; CliArgError saying why not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS:
        if type(None) in args and value.strip().lower() in _NONE:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return convert(value, a, key)
            except CliArgError:
                continue
        raise CliArgError(f"{key}={value}: expected {_type_name(tp)}")
    if origin is Literal:
        for a in args:
            if str(a) == value:
                return a
        close = difflib.get_close_matches(value, [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CliArgError(f"{key}={value}: expected {_type_name(tp)}{hint}")
    if origin is tuple:
        parts = [p for p in value.strip("()[] ").split(",") if p.strip()]
        inner = args[:1] * len(parts) if len(args) == 2 and args[1] is Ellipsis else args
        if len(inner) != len(parts):
            raise CliArgError(f"{key}={value}: expected {len(inner)} comma-separated values")
        return tuple(convert(p.strip(), a, key) for p, a in zip(parts, inner, strict=True))
    if tp is bool:
        v = value.strip().lower()
        if v in _TRUE or v in _FALSE:
            return v in _TRUE
        raise CliArgError(f"{key}={value}: expected true or false")
    if tp is int:
        try:
            return int(value)
        except ValueError:
            raise CliArgError(f"{key}={value}: expected an integer") from None
    if tp is float:
        try:
            return float(value)
        except ValueError:
            raise CliArgError(f"{key}={value}: expected a number") from None
    if tp is str:
        return value
    raise CliArgError(f"{key}: settable only in code (type {tp}), not from the command line")


def _build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # callers pass dataclasses only
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if any(k.startswith(f"{prefix}{f.name}.") for k in values):
                kwargs[f.name] = _build(tp, values, f"{prefix}{f.name}.")
        elif prefix + f.name in values:
            kwargs[f.name] = values[prefix + f.name]
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation: already says what to do
        raise CliArgError(" ".join(str(e).split())) from None


def _flat(obj: Any, prefix: str = "") -> list[str]:
    """key: value lines of a dataclass tree (dotted keys)."""
    lines = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        lines += _flat(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else [f"{prefix}{f.name}: {v!r}"]
    return lines


def parse(cls: type[T], args: list[str]) -> T:
    """Instance of dataclass `cls` from `key=value` strings; CliArgError (one line) on any bad argument.

    `--cfg` prints the resolved arguments and `--help` / `-h` the keys with their defaults, then exit (status 0).
    """
    known = fields_of(cls)
    if any(a in ("--help", "-h") for a in args):
        print("keys (key=value):\n" + "\n".join(f"  {line}" for line in _flat(_build(cls, {}))))
        raise SystemExit(0)
    if "--cfg" in args:
        print("\n".join(_flat(parse(cls, [a for a in args if a != "--cfg"]))))
        raise SystemExit(0)
    values: dict[str, Any] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        key = key.strip().lstrip("+")
        if not eq or not key:
            raise CliArgError(f"argument {arg!r}: expected key=value (keys: {', '.join(sorted(known))})")
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise CliArgError(f"unknown key '{key}'; {hint}valid keys: {', '.join(sorted(known))}")
        values[key] = convert(value, known[key], key)
    return _build(cls, values)


def one_line(e: BaseException) -> str:
    """An exception's message on one line (multi-line spec mismatches joined with '; ')."""
    text = "; ".join(ln.strip(" -") for ln in str(e).splitlines() if ln.strip())
    return text or type(e).__name__
