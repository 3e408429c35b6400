"""Typed options: one dataclass per owner (the trainer, each training method), from which the command line, the
recipe checks and ``--help`` are all generated, so the three cannot drift apart.

A field is declared with :func:`option`::

    @dataclass
    class MyConfig(Options):
        hidden_dim: int = option(128, "width of the MLP", minimum=1)
        loss: str = option("mse", "the reconstruction loss", choices=("mse", "bce"))
        teacher: str | None = option(None, "a pipeline folder or Hub id")

and the annotation gives the type: ``int``, ``float``, ``str``, ``bool``, ``list[int]``, each optionally ``| None``
(``None`` then means "not set": the default of whatever the option feeds). ``Options.add_arguments(parser)`` adds
``--hidden_dim`` etc. to an ``argparse`` parser; ``Options.from_mapping(values)`` builds the dataclass from a parsed
namespace or a recipe and checks every value (type, choices, range), because a value a recipe supplies never passes
through argparse's own checks. Errors are :class:`RecipeError` naming the option, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence

from .checks import check_positive_int, is_int


class RecipeError(ValueError):
    """A bad option: a recipe file that cannot be read or names options the trainer does not know, or a value that is
    not allowed (raised instead of argparse's usage block, so every caller reports one line)."""


def bool_arg(text) -> bool:
    """argparse type for on/off options: true/false, yes/no, on/off, 1/0 (and YAML booleans from a recipe)."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def finite_float(text) -> float:
    """argparse type for numbers: ``float`` without ``nan`` and ``inf``, which pass every range check unnoticed."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_list(text) -> list[int]:
    """argparse type for comma-separated positive integers such as ``32,64``."""
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [int(v) for v in str(text).replace(" ", "").strip("[]()").split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,64, got {text!r}") from None
    if not values or not all(is_int(v) and v >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers such as 32,64, got {text!r}")
    return [int(v) for v in values]


def option(
    default,
    help: str,
    *,
    choices: Sequence | Callable[[], Sequence] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    metavar: str | None = None,
    group: str | None = None,
):
    """A typed option: its default, its help text and what values are allowed.

    ``choices`` may be a callable (evaluated when the parser is built or a value is checked), for choices that come
    from the plugin registry. ``minimum`` and ``maximum`` are inclusive bounds, ``above`` and ``below`` exclusive
    ones. ``group`` is the ``--help`` section (default: the class's ``group_title``).
    """
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above,
                "below": below, "metavar": metavar, "group": group}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class Options:
    """Base class of genzoo's typed option sets (see the module docstring)."""

    #: The ``argparse`` group title of the options of this class (e.g. the method's name).
    group_title: typing.ClassVar[str] = "options"

    def __post_init__(self):
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, hints[f.name], getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Checks that involve several options at once; raise :class:`RecipeError`. Override as needed."""

    @classmethod
    def from_mapping(cls, values: Mapping | argparse.Namespace):
        """The options of this class taken from ``values`` (a parsed namespace or a recipe dict; other keys are
        ignored, missing ones take their defaults), checked.

        Args:
            values: a parsed namespace or a recipe.

        Returns:
            (Options): an instance of this class.

        Raises:
            RecipeError: for a value that is not allowed (one line naming the option).
        """
        if isinstance(values, argparse.Namespace):
            values = vars(values)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    # ------------------------------------------------------------------------------------------------ argparse
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--name`` per field to ``parser``, in argument groups by each option's ``group`` (default: the
        class's ``group_title``)."""
        groups: dict[str, argparse._ArgumentGroup] = {}
        hints = _type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, _ = _kind(hints[f.name])
            meta = f.metadata
            title = meta.get("group") or cls.group_title
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            kwargs: dict = {"default": default, "help": _help_text(meta, default)}
            if kind is bool:
                kwargs.update(type=bool_arg, nargs="?", const=True, metavar="true|false")
            elif kind == "int_list":
                kwargs.update(type=int_list, metavar="N,N,...")
            else:
                kwargs["type"] = finite_float if kind is float else kind
                choices = _choices(meta)
                if choices is not None:
                    kwargs["choices"] = list(choices)
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
            groups[title].add_argument(f"--{f.name}", **kwargs)


@functools.lru_cache(maxsize=None)
def _type_hints(cls) -> dict:
    """The resolved annotations of dataclass ``cls`` (strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _kind(annotation) -> tuple[object, bool]:
    """``(int | float | str | bool | "int_list", optional)`` for a field annotation."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported option type {annotation!r}")
        annotation = rest[0]
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (int,):
        return "int_list", optional
    if annotation in (int, float, str, bool):
        return annotation, optional
    raise TypeError(f"unsupported option type {annotation!r}: use int, float, str, bool or list[int], optionally | None")


def _choices(meta) -> Sequence | None:
    choices = meta.get("choices")
    return choices() if callable(choices) else choices


def _help_text(meta, default) -> str:
    text = meta["help"]  # argparse itself lists the choices
    if "default" in text:  # the help says what the default means
        return text
    if default is None:
        return text + " (default: not set)"
    if isinstance(default, bool):
        return f"{text} (default: {str(default).lower()})"
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    return f"{text} (default: {shown})"


def _checked(f: dataclasses.Field, annotation, value):
    """``value`` converted to the field's type (ints to floats, strings of an ``int_list``), or a
    :class:`RecipeError` naming the option."""
    name = f"--{f.name}"
    kind, optional = _kind(annotation)
    if value is None:
        if optional:
            return None
        raise RecipeError(f"{name} must be set, got None.")
    meta = f.metadata
    if kind is bool:
        try:
            value = bool_arg(value) if isinstance(value, str) else value
        except argparse.ArgumentTypeError:
            pass
        if not isinstance(value, bool):
            raise RecipeError(f"{name} must be true or false, got {value!r}.")
    elif kind is int:
        if not is_int(value):
            raise RecipeError(f"{name} must be an integer, got {value!r}.")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RecipeError(f"{name} must be a number, got {value!r}.")
        value = float(value)
        if not math.isfinite(value):
            raise RecipeError(f"{name} must be a finite number, got {value!r}.")
    elif kind is str:
        if not isinstance(value, str):
            raise RecipeError(f"{name} must be a string, got {value!r}.")
    else:  # int_list
        try:
            value = int_list(value)
        except argparse.ArgumentTypeError as exc:
            raise RecipeError(f"{name}: {exc}.") from None
    choices = _choices(meta)
    if choices is not None and value not in choices:
        raise RecipeError(f"{name} {value!r}: allowed {', '.join(map(str, choices))}.")
    low, high, above, below = (meta.get(k) for k in ("minimum", "maximum", "above", "below"))
    if kind is int and low is not None and high is None:
        check_positive_int(name, value, error=RecipeError, minimum=int(low))  # "a positive integer", ...
    if kind in (int, float) and (
        (low is not None and value < low) or (high is not None and value > high)
        or (above is not None and value <= above) or (below is not None and value >= below)
    ):
        bounds = [f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else "",
                  f"<= {high:g}" if high is not None else "", f"< {below:g}" if below is not None else ""]
        raise RecipeError(f"{name} must be {' and '.join(b for b in bounds if b)}, got {value!r}.")
    return value
