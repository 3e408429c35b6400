"""The trainer's options as markdown tables, generated from the parser that ``genzoo train --help`` prints
(:func:`genzoo.training.build_parser`), so the documentation site's options page cannot drift from it.

The page has two parts: the options every method has (the trainer's, the data's and the conditioning options of
:class:`genzoo.methods.MethodConfig`), one table per ``--help`` group with each option's own default; then one
section per training method with the defaults it changes (``Method.trainer_defaults``) and its own options.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence

from .. import registry
from ..data import add_data_arguments
from ..methods.base import MethodConfig
from .arguments import DEFAULT_METHOD, TrainerConfig, build_parser, method_class

#: The HTML id prefix of each method's section on the options page: ``method-<name>``.
METHOD_ANCHOR = "method-{}"


def builtin_methods() -> list[str]:
    """The names of genzoo's own training methods (plugins' methods left out), sorted.

    Returns:
        The registered ``--method`` names whose class lives in the ``genzoo`` package.
    """
    return [e.name for e in registry.entries("method") if e.target.startswith("genzoo.")]


def format_default(value) -> str:
    """An option's default as the options page shows it (plain text, as ``--help`` and a recipe spell it).

    Args:
        value: the default of an ``argparse`` action.

    Returns:
        ``"not set"`` for ``None``, ``"true"``/``"false"`` for booleans, ``"32,64"`` for a list of integers, else
        ``str(value)``.
    """
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def option_actions(parser: argparse.ArgumentParser) -> list[tuple[str, list[argparse.Action]]]:
    """The options of ``parser`` by ``--help`` group, in ``--help`` order (``--help`` itself left out).

    Args:
        parser: a trainer parser, as :func:`genzoo.training.build_parser` builds it.

    Returns:
        ``[(group title, [action, ...]), ...]`` for every group that holds an option.
    """
    groups = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        if actions:
            groups.append((group.title, actions))
    return groups


def _common_parser() -> argparse.ArgumentParser:
    """The options every method has, with their own defaults (no method's ``trainer_defaults``)."""
    parser = argparse.ArgumentParser(add_help=False)
    TrainerConfig.add_arguments(parser)
    add_data_arguments(parser)
    MethodConfig.add_arguments(parser)
    return parser


def _raw_help(method: str | None) -> dict[str, str]:
    """Help texts of the typed options without the ``(default: ...)`` that ``--help`` appends (the table has its own
    default column, and a method may change the default)."""
    classes = [TrainerConfig, MethodConfig] + ([method_class(method).Config] if method else [])
    return {f.name: f.metadata["help"] for cls in classes for f in dataclasses.fields(cls) if "help" in f.metadata}


_CODE_SPAN = re.compile(r"(`[^`]*`)")
_ESCAPES = {"\\": "\\\\", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|", "&": "&amp;", "<": "&lt;",
            ">": "&gt;"}


def _markdown_text(text: str) -> str:
    """Plain help text made safe for a markdown table cell (code spans kept as they are)."""
    parts = _CODE_SPAN.split(" ".join(text.split()))
    return "".join(part if i % 2 else "".join(_ESCAPES.get(c, c) for c in part) for i, part in enumerate(parts))


def _help_cell(action: argparse.Action, raw_help: dict[str, str], prog: str) -> str:
    text = raw_help.get(action.dest, action.help or "")
    if "%" in text:  # argparse's own expansion of %(default)s, %(prog)s, ...
        text = text % {**vars(action), "prog": prog}
    cell = _markdown_text(text)
    if action.choices is not None:
        cell += "; one of " + ", ".join(f"`{c}`" for c in action.choices)
    return cell


def _public_path(cls: type) -> str:
    """``genzoo.methods.DDPMMethod`` rather than ``genzoo.methods.ddpm.DDPMMethod`` where the package exports it."""
    package = cls.__module__.rpartition(".")[0]
    module = sys.modules.get(package)
    if package and getattr(module, cls.__name__, None) is cls:
        return f"{package}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _default_cell(value) -> str:
    return "not set" if value is None else f"`{format_default(value)}`"


def _table(actions: Sequence[argparse.Action], raw_help: dict[str, str], prog: str) -> list[str]:
    lines = ["| option | default | help |", "|---|---|---|"]
    lines += [f"| `{a.option_strings[0]}` | {_default_cell(a.default)} | {_help_cell(a, raw_help, prog)} |"
              for a in actions]
    return lines + [""]


def _same_option(a: argparse.Action, b: argparse.Action) -> bool:
    return a.help == b.help and a.choices == b.choices and type(a) is type(b)


def options_markdown(methods: Sequence[str] | None = None, heading_level: int = 2) -> str:
    """The trainer's options as markdown: what the documentation site's "Trainer options" page shows.

    Every option of ``genzoo.training.build_parser`` appears with its default and help: the options every method
    has once, one table per ``--help`` group; then, per method, the trainer defaults it changes and its own options.

    Args:
        methods: the ``--method`` names to document (default: genzoo's own, ``builtin_methods``).
        heading_level: the markdown level of the page's top sections (2: ``##``).

    Returns:
        Markdown text: headings and tables.
    """
    methods = builtin_methods() if methods is None else list(methods)
    h2, h3, h4 = ("#" * (heading_level + i) for i in range(3))
    common = _common_parser()
    common_actions = {a.dest: a for _, actions in option_actions(common) for a in actions}
    prog = build_parser(DEFAULT_METHOD).prog

    lines = [f"{h2} Options of every method", ""]
    raw = _raw_help(None)
    for title, actions in option_actions(common):
        lines += [f"{h3} {title}", ""] + _table(actions, raw, prog)

    for name in methods:
        parser = build_parser(name)
        raw = _raw_help(name)
        cls = method_class(name)
        summary = (f"`{prog} --method {name}`: the method `{_public_path(cls)}`, its options "
                   f"`{_public_path(cls.Config)}`.")
        lines += [f"{h2} Method `{name}`", "", summary, ""]
        changed = [a for _, actions in option_actions(parser) for a in actions
                   if a.dest in common_actions and _same_option(a, common_actions[a.dest])
                   and a.default != common_actions[a.dest].default]
        if changed:
            lines += [f"Defaults `{name}` changes:", "",
                      f"| option | default with `{name}` | default of the option |", "|---|---|---|"]
            lines += [f"| `{a.option_strings[0]}` | {_default_cell(a.default)} | "
                      f"{_default_cell(common_actions[a.dest].default)} |" for a in changed]
            lines.append("")
        for title, actions in option_actions(parser):
            own = [a for a in actions if a.dest not in common_actions or not _same_option(a, common_actions[a.dest])]
            if own:
                lines += [f"{h4} {title}", ""] + _table(own, raw, prog)
    return "\n".join(lines).rstrip() + "\n"
