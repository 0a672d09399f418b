"""argparse flags from an options dataclass (:mod:`clinloop.config_options`), and back.

The flag of field ``foo_bar`` is ``--foo-bar`` (plus the older spellings in the
field's ``flags`` metadata); its default is the field's default; booleans that
default to False are ``store_true`` switches. Parsing gives a namespace whose
attributes are the field names, turned into the dataclass by :func:`parse_into`.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from clinloop.config_options import flag_name


def _arg_type(cls, f: dataclasses.Field):
    if f.metadata.get("type") is not None:
        return f.metadata["type"]
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    return hint if hint in (int, float, str) else None


def add_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (), title: str | None = None) -> None:
    """Add one flag per field of ``cls`` (except ``skip``) to ``parser``."""
    g = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        md = f.metadata
        names = [flag_name(f), *md.get("flags", ())]
        kw: dict = {"dest": f.name, "help": md.get("help") or None}
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        if md.get("action") == "append":
            kw.update(action="append", default=list(default or []), metavar=md.get("metavar"))
        elif isinstance(default, bool) or typing.get_type_hints(cls)[f.name] is bool:
            if default:
                raise TypeError(f"{cls.__name__}.{f.name}: a boolean option must default to False")
            kw.update(action="store_true", default=False)
        else:
            kw.update(default=default, type=_arg_type(cls, f))
            if md.get("choices") is not None:
                kw["choices"] = md["choices"]
            if md.get("metavar"):
                kw["metavar"] = md["metavar"]
        if required or md.get("cli_required"):
            kw["required"] = True
        g.add_argument(*names, **kw)


def parse_into(cls, ns: argparse.Namespace, **fixed):
    """The dataclass ``cls`` from a parsed namespace (plus ``fixed`` values)."""
    vals = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    vals.update(fixed)
    return cls(**vals)
