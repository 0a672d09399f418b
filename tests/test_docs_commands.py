"""Every command the docs tell a user to type parses: each ``clinloop ...`` and ``python
benchmarks|scripts/NAME.py ...`` of README.md and docs/**/*.md (fenced blocks, and inline spans
that start with one) goes through the real argparse parsers, ``train --method M``'s and
``evaluate --protocol P``'s own flags included. Nothing runs: a script runs up to its
``parse_args``, which stops it.

Placeholders (``N``, ``DIR``, ``<path>``) pass as values. A placeholder method or protocol stands
for each choice (those of a ``# M = a, b`` comment in the block; on docs/methods/FAMILY.md, the
methods of FAMILY's trainer), and all must parse. Inline spans and commands with ``...`` or
``[optional]`` parts are fragments: required flags and flag values may be missing, and without
``--method``/``--protocol`` some choice must accept the flags."""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import runpy
import shlex
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# (doc file, "" for any; text in the command) -> why that command is not checked
SKIP: dict[tuple[str, str], str] = {}
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_:]*|[a-z]|<[^>]*>|\.\.\.|…")  # N, DIR, HOST:PORT, r, <path>
DEFINE = re.compile(r"#\s*([A-Z])\s*=\s*([\w.-]+(?:\s*,\s*[\w.-]+)*)")  # "# M = mecca, mecca-unet"
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
COMMAND = re.compile(r"(?:\S+/)?(?:clinloop|python3?) ")
SCRIPT = re.compile(r"(benchmarks|scripts)/\w+\.py")
SEPARATORS = {"&&", "||", ";", "|"}
DESCRIPTION = re.compile(r"\s{3,}[A-Za-z]+ [a-z(][^\[\]#]*$")  # a synopsis row's "   train a model folder"
# outside quotes: "[method flags]" (no dash: prose), "| --tokens-file F]" (an alternative), "[", "]"
SYNOPSIS = re.compile(r"""'[^']*'|"[^"]*"|\[(?!-)[^\]]*\]|\s\|\s[^\]'"]*\]|[\[\]]""")


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` so that a script stops right after parsing."""


def is_placeholder(value: str) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER.fullmatch(value))


def fenced_lines(block: str, first: int) -> list[tuple[int, str, bool]]:
    """(line number, logical line, is a synopsis row) of a code block: ``\\`` continuations and indented
    ``[--flag``/``--flag`` synopsis lines joined, ``$`` prompts and column descriptions dropped."""
    out: list[tuple[int, str]] = []
    for i, line in enumerate(block.splitlines(), first):
        joined = out and (out[-1][1].endswith("\\") or re.match(r"\s+\[?-", line))
        line = re.sub(r"^\$ ", "", line)
        if joined:
            out[-1] = (out[-1][0], out[-1][1].rstrip("\\") + " " + line.strip())
        else:
            out.append((i, line))
    return [(n, DESCRIPTION.sub("", s), bool(DESCRIPTION.search(s))) for n, s in out]


def doc_commands(text: str) -> list[tuple[int, str, str, bool]]:
    """(line, command text, its code block's text, is a fragment) of ``text``'s commands."""
    found = []
    for m in FENCE.finditer(text):
        first = text.count("\n", 0, m.start(2)) + 1
        found += [(n, s, m.group(2), row) for n, s, row in fenced_lines(m.group(2), first)]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in SPAN.finditer(prose):
        span = " ".join(m.group(1).split())
        if re.match(r"([A-Z_]+=\S+ )*(\.venv/bin/)?(clinloop |python3? (benchmarks|scripts)/)", span):
            found.append((prose.count("\n", 0, m.start()) + 1, span, "", True))
    return sorted((n, s, c, frag) for n, s, c, frag in found if COMMAND.search(s))


def expand(command: str, comments: str) -> list[list[str]]:
    """The argv lists a doc command stands for: brackets opened, ``{a,b}`` and ``# M = a, b`` expanded."""
    command = SYNOPSIS.sub(lambda m: m.group(0) if m.group(0)[0] in "'\"" else " ", command)
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:  # an apostrophe in prose
        tokens = command.split()
    tokens = [u for t in tokens for u in ([t[:-1], ";"] if t.endswith(";") and t != ";" else [t])]  # "a; b"
    tokens = [t for i, t in enumerate(tokens) if t not in ("...", "…") or tokens[i - 1].startswith("-")]
    tokens = [t.split("|")[0] if "|" in t and t not in SEPARATORS else t for t in tokens]  # "png|nii": the first
    choices = [t[1:-1].split(",") if re.fullmatch(r"\{[\w.,-]+\}", t) else [t] for t in tokens]
    for name, values in DEFINE.findall(comments):
        choices = [[v.strip() for v in values.split(",")] if c == [name] else c for c in choices]
    return [list(argv) for argv in itertools.product(*choices)]


def split_commands(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """(program, argv) of each ``clinloop`` / ``python benchmarks/NAME.py`` in a shell line."""
    out = []
    for _, seg in itertools.groupby(tokens, lambda t: t in SEPARATORS):
        seg = list(itertools.dropwhile(lambda t: re.match(r"[A-Z_]+=", t), seg))  # OMP_NUM_THREADS=1 ...
        if seg and Path(seg[0]).name == "clinloop":
            out.append(("clinloop", seg[1:]))
        elif seg[1:] and Path(seg[0]).name in ("python", "python3") and SCRIPT.fullmatch(seg[1]):
            out.append((seg[1], seg[2:]))
    return out


def or_placeholder(convert):
    """``convert`` passing placeholders through unchanged."""
    def parse(value):
        return value if is_placeholder(value) else convert(value)
    parse.__name__ = getattr(convert, "__name__", "value")  # argparse's "invalid int value: 'x'"
    parse.relaxed = True
    return parse


class _Choices(list):  # argparse's choices, placeholders included
    def __contains__(self, value):
        return is_placeholder(value) or list.__contains__(self, value)


def relax(parser: argparse.ArgumentParser, fragment: bool) -> argparse.ArgumentParser:
    """``parser`` accepting placeholders as values (and, for a fragment, missing required flags), and
    flags only in full (an abbreviation breaks once another flag shares its prefix)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                relax(sub, fragment)
        elif action.choices is not None:
            action.choices = _Choices(action.choices)
        if callable(action.type) and not getattr(action.type, "relaxed", False):
            action.type = or_placeholder(action.type)
        if fragment and action.option_strings and action.nargs is None:
            action.nargs = "?"  # "the `--init` flag": named without its value
        action.required = action.required and not fragment
    return parser


def complaint(fn) -> str | None:
    """None when ``fn()`` parses, else argparse's (or the registry's) message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            fn()
    except SystemExit as e:
        return None if e.code == 0 else (err.getvalue().strip().splitlines() or [str(e)])[-1]
    except ValueError as e:
        return str(e)
    return None


def over(value, choices, check) -> str | None:
    """A given choice must pass; a placeholder: every choice; none given (a fragment): some choice."""
    if value is None:
        errors = [check(c) for c in choices]
        return None if None in errors else f"no choice accepts it (as {choices[0]}: {errors[0]})"
    if is_placeholder(value):
        return next((f"{c}: {e}" for c in choices if (e := check(c))), None)
    return check(value)


def check_clinloop(argv: list[str], fragment: bool, page: str = "") -> str | None:
    """None when ``clinloop *argv`` parses, the method's or protocol's flags included. A placeholder
    method on docs/methods/<family>.md stands for the methods of that family's trainer."""
    from clinloop.api import PROTOCOLS, TRAINERS, check_protocol_method, load
    from clinloop.cli import build_parser, evaluate, train

    parsed = []
    err = complaint(lambda: parsed.append(relax(build_parser(), fragment).parse_known_args(argv)))
    if err or not parsed:
        return err  # parsed nothing: --help or --version
    args, extra = parsed[0]
    if extra and not getattr(args, "accepts_extra", False):
        return f"clinloop {args.command}: error: unrecognized arguments: {' '.join(extra)}"
    if args.command not in ("train", "evaluate") or args.help:
        return None
    if not fragment and None in (args.method, getattr(args, "protocol", "")):
        return f"{args.command}: --method (and --protocol) required"
    if args.command == "train":
        family = [m for m in TRAINERS if TRAINERS[m] == TRAINERS.get(Path(page).stem)] or sorted(TRAINERS)
        return over(args.method, family,
                    lambda m: complaint(lambda: relax(train.method_parser(m), fragment).parse_args(extra)))

    def parse(p: str, m: str) -> None:
        check_protocol_method(load(PROTOCOLS, p, "protocol"), p, m)
        ns = relax(evaluate.protocol_parser(p, m), fragment).parse_args(extra)
        evaluate._train_options(getattr(ns, "train_args", ""))  # mecca's --train-args "--size 48 ..."
    return over(args.protocol, sorted(PROTOCOLS), lambda p: over(
        args.method, load(PROTOCOLS, p, "protocol").METHODS, lambda m: complaint(lambda: parse(p, m))))


def check_script(path: str, argv: list[str], fragment: bool) -> str | None:
    """Run ``path`` as ``__main__`` with ``argv`` until its parser has parsed, and stop it there."""
    if "parse_args(" not in (ROOT / path).read_text(encoding="utf-8"):
        return f"{path} has no argparse parser to check against (not run)"
    real, called = argparse.ArgumentParser.parse_args, []

    def parse_and_stop(self, args=None, namespace=None):
        called.append(self)
        raise _Parsed(real(relax(self, fragment), args, namespace))
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_and_stop), \
            mock.patch.object(sys, "argv", [path, *argv]), \
            mock.patch.object(sys, "path", [str((ROOT / path).parent), *sys.path]):
        try:
            err = complaint(lambda: runpy.run_path(str(ROOT / path), run_name="__main__"))
        except _Parsed:
            return None
    return err if called else f"{path} ended without calling parse_args"


def doc_failures(name: str, text: str) -> tuple[list[str], int]:
    """('file:line: command: complaint' for each command that does not parse, commands checked)."""
    failures, checked = [], 0
    for line, command, comments, fragment in doc_commands(text):
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", command)  # a quoted '[{...}]' is a value, not a synopsis
        fragment = fragment or "..." in bare or "[" in bare
        seen = set()  # a command beside an expanded M is checked once
        for argv in expand(command, comments):
            for program, args in split_commands(argv):
                shown = shlex.join([program, *args])
                if shown in seen or any(n in (name, "") and text_ in shown for (n, text_) in SKIP):
                    continue
                seen.add(shown)
                checked += 1
                err = (check_clinloop(args, fragment, name) if program == "clinloop"
                       else check_script(program, args, fragment))
                if err:
                    failures.append(f"{name}:{line}: {shown}\n    -> {err}")
    return failures, checked


def test_doc_commands_parse():
    failures, checked = [], 0
    for path in DOC_FILES:
        f, n = doc_failures(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        failures, checked = failures + f, checked + n
    assert checked > 100, f"only {checked} doc commands found: is the extractor broken?"
    assert not failures, f"{len(failures)} documented commands do not parse:\n" + "\n".join(failures)


def test_checker_reports_each_bad_flag_with_its_line():
    md = ("Start `clinloop serve --port 8000`, not `clinloop serve --prot 8000`.\n\n```bash\n"
          "OMP_NUM_THREADS=1 .venv/bin/clinloop train --method lexu --data D --out O \\\n"
          "    --epochs 2 --bogus-flag 3   # M = lexu, unet\n"
          "clinloop evaluate --protocol lexu --method M --data D --out O --limit N && clinloop serve --nope | head\n"
          "$ clinloop data info PATH -o structure=cup; python benchmarks/paired_cases.py a.csv b.csv --bogus\n"
          "clinloop: error: this output line is not a command\n```\n")
    failures, checked = doc_failures("x.md", md)
    assert checked == 8  # M is lexu, then unet; `head` and the output line are no commands
    assert [f.split("\n")[0] for f in failures] == [
        "x.md:1: clinloop serve --prot 8000",
        "x.md:4: clinloop train --method lexu --data D --out O --epochs 2 --bogus-flag 3",
        "x.md:6: clinloop serve --nope",
        "x.md:7: benchmarks/paired_cases.py a.csv b.csv --bogus"]
    assert failures[1].endswith("error: unrecognized arguments: --bogus-flag 3")
    assert failures[3].endswith("paired_cases.py: error: unrecognized arguments: --bogus")
