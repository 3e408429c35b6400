"""What the three contracts share: running a table of checks and reporting every failure as one AssertionError."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Callable


def fresh_folder(parent, label: str) -> tempfile.TemporaryDirectory:
    """A new folder for one check, removed when its ``with`` block ends: under ``parent`` (created if missing), or a
    temporary one where ``parent`` is ``None``."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{label}-", dir=parent)


def reported(describe: Callable[..., str]):
    """A decorator that makes a check report any error other than its own AssertionError as an AssertionError too,
    naming the subject (``describe(subject)``), the check and the error, so that a failing check always reads the
    same way."""

    def decorator(function):
        @functools.wraps(function)
        def check(subject, *args, **kwargs) -> None:
            try:
                function(subject, *args, **kwargs)
            except AssertionError:
                raise
            except Exception as error:
                check_name = function.__name__.removeprefix("check_")
                raise AssertionError(f"{describe(subject)}: {check_name} raised {type(error).__name__}: {error}") from error

        return check

    return decorator


def run_checks(kind: str, table: dict[str, Callable[..., None]], subject_name: str, checks, run) -> None:
    """Run ``run(check)`` for each of the ``checks`` named (default: all of ``table``); one ``AssertionError``, headed
    "<subject_name> fails the genzoo <kind> contract", lists every check that failed with its message. A name not in
    ``table`` is a ``ValueError`` listing the allowed ones."""
    names = list(table) if checks is None else list(checks)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"Unknown {kind} checks {unknown}; allowed: {', '.join(table)}.")
    failures = []
    for name in names:
        try:
            run(table[name])
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    if failures:
        raise AssertionError(f"{subject_name} fails the genzoo {kind} contract:\n  " + "\n  ".join(failures))
