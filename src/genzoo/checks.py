"""The argument checks every part of genzoo shares, so that one kind of mistake reads the same everywhere: the
message names the argument, the value it got and what is allowed."""

from __future__ import annotations

import numbers


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
