"""Options of the trainers and protocols: one dataclass each, defaults in one place.

Every ``clinloop train --method M`` / ``clinloop evaluate --protocol P`` flag is a
field of the method's / protocol's options dataclass (``SPATrainOptions``,
``LexuTrainOptions``, ..., ``MECCAProtocolOptions``). The command line builds its
flags from these fields (``clinloop.cli._options``) and parses into them; the
Python API (:func:`clinloop.train`, :func:`clinloop.evaluate`) takes the same
names as keywords. A field's flag is ``--`` + its name with dashes; older
spellings are listed in the field's ``flags`` metadata and accepted as flags and
as keywords (e.g. ``held_out_fraction`` also answers to ``--val-fraction`` /
``val_fraction`` and ``--test-fraction`` / ``test_fraction``).

This module has no argparse: the library never parses command lines.
"""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def opt(default: Any = MISSING, *, help: str = "", flags: tuple[str, ...] = (), choices=None, type=None,
        default_factory: Any = MISSING, cli_required: bool = False, metavar: str | None = None,
        action: str | None = None, cli: bool = True, at_least: float | None = None, above: float | None = None):
    """A dataclass field with its command-line description.

    ``flags``: extra (older) option strings accepted besides ``--name-with-dashes``;
    ``type``: the argparse type when it cannot be read from the default (``None``
    defaults); ``cli_required``: required on the command line though optional in
    Python (e.g. ``out`` of a protocol); ``action``: e.g. ``"append"``; ``cli=False``:
    no flag (a Python-only option, e.g. a dict); ``at_least`` / ``above``: the value's
    bound (``None`` values pass), checked by :func:`check_bounds` when the options are made."""
    md = {"help": help, "flags": tuple(flags), "choices": choices, "type": type, "cli_required": cli_required,
          "metavar": metavar, "action": action, "cli": cli, "at_least": at_least, "above": above}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=md)
    return field(default=default, metadata=md)


def flag_name(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def check_bounds(opts) -> None:
    """``ValueError`` naming the flag and the value for a field of ``opts`` outside its ``at_least`` /
    ``above`` bound (see :func:`opt`); ``None`` (unset) values pass."""
    for f in dataclasses.fields(opts):
        v = getattr(opts, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        lo, above = f.metadata.get("at_least"), f.metadata.get("above")
        if lo is not None and v < lo:
            raise ValueError(f"{flag_name(f)} must be >= {lo:g}, got {v}")
        if above is not None and v <= above:
            raise ValueError(f"{flag_name(f)} must be > {above:g}, got {v}")


def keyword_aliases(cls) -> dict[str, str]:
    """Old keyword spelling -> field name, from every field's extra ``flags``."""
    out = {}
    for f in dataclasses.fields(cls):
        for fl in f.metadata.get("flags", ()):
            out[fl.lstrip("-").replace("-", "_")] = f.name
    return out


def make_options(cls: type[T], where: str = "", **kwargs) -> T:
    """``cls(**kwargs)`` with old keyword spellings mapped to the field names; an
    unknown keyword is a ``TypeError`` naming it and listing the valid ones."""
    aliases = keyword_aliases(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    given: dict[str, Any] = {}
    for k, v in kwargs.items():
        name = aliases.get(k, k)
        if name not in names:
            raise TypeError(f"{where or cls.__name__}: unknown option {k!r}; valid options: "
                            f"{', '.join(sorted(names - {'method', 'protocol'}))}")
        if name in given:
            raise TypeError(f"{where or cls.__name__}: option {name!r} given twice (as {k!r})")
        given[name] = v
    return cls(**given)


def command_line(verb: str, opts, skip: tuple[str, ...] = ()) -> str:
    """The ``clinloop <verb>`` command reproducing ``opts``: ``--method``/``--protocol``
    first, then every other field that is set (not None/False), sorted by name."""
    parts = ["clinloop", verb]
    d = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
    for k in ("protocol", "method"):
        if k in d and k not in skip:
            parts += [f"--{k}", str(d.pop(k))]
    for k, v in sorted(d.items()):
        if k in skip or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, (list, tuple)):
            for x in v:
                parts += [flag, shlex.quote(str(x))]
        else:  # quoted: an empty value ('') or one with spaces parses back as given
            parts += [flag] if v is True else [flag, shlex.quote(str(v))]
    return " ".join(parts)


# ---------------------------------------------------------------- the fields every trainer / protocol has
@dataclass(kw_only=True)
class TrainOptions:
    """Options of every trainer (``clinloop train``)."""

    method: str = opt(help="method to train")
    data: str = opt(help="dataset path (any supported layout)")
    out: str = opt(help="model folder to write")
    format: str | None = opt(None, help="override layout auto-detection", type=str)
    seed: int = opt(0, help="random seed")
    resume: bool = opt(False, help="continue from the last checkpoint in --out")
    device: str = opt("cpu", help="torch device (cpu, cuda, cuda:1, mps)")

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(kw_only=True)
class ProtocolOptions:
    """Options of every protocol (``clinloop evaluate``). ``out`` is optional in
    Python (no file written, the results are returned) and required on the CLI."""

    method: str = opt(help="method to evaluate")
    protocol: str = opt(help="protocol")
    data: str = opt(help="dataset path")
    format: str | None = opt(None, help="override layout auto-detection", type=str)
    model: str | None = opt(None, help="model folder; default: the shipped model for the method", type=str)
    limit: int | None = opt(None, help="evaluate at most this many cases", type=int, at_least=1)
    seed: int = opt(0, help="random seed")
    out: str | None = opt(None, help="results file to write", type=str, cli_required=True)

    def __post_init__(self) -> None:
        check_bounds(self)
