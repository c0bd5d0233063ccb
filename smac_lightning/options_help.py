"""A learner's options read from its signature and docstrings: their names (for the CLI's "did you mean")
and ``--model.help CLASS`` as one entry per option, grouped by section, where jsonargparse's help gives
each option three or four lines and a usage block besides."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
import sys
import textwrap
import typing

_ENTRY = re.compile(r"^(\s*)(\w+)(?: \([^)]*\))?: (.*)$")


def options_of(cls) -> list[inspect.Parameter]:
    """A class's ``__init__`` parameters, its bases' too where its ``__init__`` passes ``**kwargs`` on."""
    found = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        found += [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return found


def _init_hints(cls) -> dict:
    """The type hints of the ``__init__``s ``options_of`` reads, a subclass's over its bases'."""
    hints = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            hints = {**typing.get_type_hints(klass.__init__), **hints}
    return hints


def dotted_options(cls) -> list[str]:
    """Every option's name, a section's dotted into it (``actor.beta``)."""
    hints = _init_hints(cls)
    names = []
    for param in options_of(cls):
        section = _section_type(param, hints)
        names += [f"{param.name}.{f.name}" for f in dataclasses.fields(section)] if section else [param.name]
    return names


def documented_args(*objects) -> dict[str, str]:
    """The ``Args:`` entries of the objects' docstrings (``__init__``'s or the class's), one line each."""
    out = {}
    for obj in objects:
        lines = (inspect.getdoc(obj) or "").splitlines()
        if "Args:" not in [line.strip() for line in lines]:
            continue
        name, indent = None, None
        for line in lines[[line.strip() for line in lines].index("Args:") + 1:]:
            entry = _ENTRY.match(line)
            if entry and (indent is None or len(entry.group(1)) == indent):
                indent, name = len(entry.group(1)), entry.group(2)
                out[name] = entry.group(3).strip()
            elif name and line.strip() and len(line) - len(line.lstrip()) > (indent or 0):
                out[name] += " " + line.strip()
            elif line.strip():  # a section after Args
                break
    return out


def _section_type(param: inspect.Parameter, hints: dict):
    kind = hints.get(param.name, param.annotation)
    return kind if dataclasses.is_dataclass(kind) else None


def _shown(value) -> str:
    return "required" if value is inspect.Parameter.empty else str(value)


def _choices(kind) -> str:
    """``[a|b]`` where the type is a choice of literals (maybe None), else nothing."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] if typing.get_origin(kind) is not typing.Literal else [kind]
    if not args or any(typing.get_origin(a) is not typing.Literal for a in args):
        return ""
    return f" [{'|'.join(str(v) for a in args for v in typing.get_args(a))}]"


def compact_help(cls, prefix: str = "model") -> str:
    """One entry per option, ``<name>  <default>  <what it is>`` under its section's prefix
    (``--model.<name>``, ``--model.actor.<name>``), wrapped to the terminal."""
    width = min(shutil.get_terminal_size((120, 40)).columns, 140)
    hints, docs = _init_hints(cls), {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            docs = {**documented_args(klass.__init__, klass), **docs}
    plain, sections = [], []
    for param in options_of(cls):
        section = _section_type(param, hints)
        if section is not None:
            sections.append((f"--{prefix}.{param.name}.<name>: {docs.get(param.name, '')}".replace("``", ""), section))
        else:
            plain.append((param.name, _shown(param.default), docs.get(param.name, "") + _choices(hints.get(param.name))))
    groups = [(f"--{prefix}.<name>", plain)]
    for header, section in sections:
        fields, section_hints = documented_args(section), typing.get_type_hints(section)
        groups.append((header, [
            (f.name, _shown(f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty),
             fields.get(f.name, "") + _choices(section_hints.get(f.name)))
            for f in dataclasses.fields(section)
        ]))
    rows = [row for _, group in groups for row in group]
    name_width, value_width = max(len(r[0]) for r in rows), min(max(len(r[1]) for r in rows), 16)
    about = inspect.getdoc(sys.modules[cls.__module__]) or ""
    lines = [f"{cls.__name__}: {about.splitlines()[0]}" if about else cls.__name__]
    for header, group in groups:
        lines += textwrap.wrap(header, width)
        for name, value, doc in group:
            head = f"  {name:<{name_width}}  {value:<{value_width}}  "
            lines += textwrap.wrap(doc.replace("``", "") or "-", width, initial_indent=head, subsequent_indent=" " * len(head))
    lines += ["Every option with its type: python -m smac_lightning fit --help"]
    return "\n".join(lines)
