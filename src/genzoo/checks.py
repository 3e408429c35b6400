"""The argument checks every part of genzoo shares, so that one kind of mistake reads the same everywhere: the
message names the argument, the value it got and what is allowed."""

from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(value) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value, error: type[Exception] = ValueError, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= ``minimum`` (bools rejected), else raise ``error``
    naming ``name`` and the value."""
    if not is_int(value) or value < minimum:
        wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise error(f"{name} must be {wanted}, got {value!r}.")
    return int(value)


def check_choice(name: str, value, allowed, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the argument, its value and the allowed values unless ``value`` is one of them."""
    if value not in allowed:
        raise error(f"Unknown {name}={value!r}; allowed: {', '.join(repr(a) for a in allowed)}.")


# ------------------------------------------------------------------ one-line messages for numbers, flags and choices
def error_line(exc: BaseException) -> str:
    """An exception's message on one line, as the command line and the demo show it (a ``KeyError``'s message
    without the quotes its ``str()`` adds)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(message).split()) or type(exc).__name__


def describe(value, limit: int = 80) -> str:
    """``repr(value)`` on one line (an array's or tensor's line breaks become spaces), cut to about ``limit``
    characters: what error messages show of a value."""
    text = " ".join(part.strip() for part in repr(value).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_real(value) -> bool:
    """A real number (Python or numpy, integer or float), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _not_a(value, what: str) -> str:
    """`` (type str, not a number)``: why ``value`` is the wrong kind of thing, for the end of a message."""
    return f" (type {type(value).__name__}, not {what})"


def _number_rule(low, high, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        if low == 0:
            return "a positive number" if low_open else "a non-negative number"
        return f"a number {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = True,
    high_open: bool = True,
    rule: str | None = None,
    error: type[Exception] = ValueError,
) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number (bools, strings, nan and inf rejected) within
    ``low``/``high`` (open ends by default), else raise ``error`` with a one-line message naming ``name``, the value
    and ``rule`` (by default written from the bounds, e.g. ``beta_end must be a number in (0, 1), got 2.0.``)."""
    rule = rule or _number_rule(low, high, low_open, high_open)
    note = None
    number = None
    if not is_real(value):
        note = _not_a(value, "a number")
    else:
        try:
            number = float(value)
        except (OverflowError, ValueError, TypeError):
            note = " (too large for a float)"
        else:
            if not math.isfinite(number):
                note = " (not finite)"
            elif low is not None and (number <= low if low_open else number < low):
                note = ""
            elif high is not None and (number >= high if high_open else number > high):
                note = ""
    if note is not None:
        raise error(f"{name} must be {rule}, got {describe(value)}{note}.")
    return number


def check_guidance_scale(name: str, value, maximum: float | None = None) -> float:
    """A classifier-free guidance scale (the ``guidance_scale`` of a call, a pipeline's stored default): a finite real
    number >= 0, at most ``maximum`` when given; returned as a ``float``, else a one-line ``ValueError``."""
    bound = f" and <= {maximum:g}" if maximum is not None else ""
    rule = f"a finite number >= 0{bound} (0: unconditional, 1: conditional alone, more: stronger guidance)"
    return check_number(name, value, low=0, high=maximum, low_open=False, high_open=False, rule=rule)


def check_int(
    name: str,
    value,
    minimum: int = 1,
    maximum: int | None = None,
    reason: str = "",
    error: type[Exception] = ValueError,
) -> int:
    """Like :func:`check_positive_int` with an upper bound (and the ``reason`` for it, shown in the message), a
    one-line message for any value and the type named when the value is not a number."""
    wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    if maximum is not None:
        wanted += f" at most {maximum}" + (f" ({reason})" if reason else "")
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        note = "" if is_real(value) else _not_a(value, "a number")
        raise error(f"{name} must be {wanted}, got {describe(value)}{note}.")
    return int(value)


def check_bool(name: str, value, error: type[Exception] = ValueError) -> bool:
    """Return ``value`` as a ``bool`` if it is one (Python or numpy), else raise: a string such as ``'false'`` or a
    number would otherwise be silently truthy."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise error(f"{name} must be True or False, got {describe(value)} (type {type(value).__name__}).")


def check_str_choice(name: str, value, allowed, error: type[Exception] = ValueError) -> str:
    """:func:`check_choice` for string options, with a one-line message for a value that is not a string at all."""
    if not isinstance(value, str):
        raise error(
            f"Unknown {name}={describe(value)} (type {type(value).__name__}); "
            f"allowed: {', '.join(repr(a) for a in allowed)}."
        )
    check_choice(name, value, allowed, error)
    return value
