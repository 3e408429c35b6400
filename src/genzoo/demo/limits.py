"""What one request of the demo may ask for: the bounds, checked on the server whatever the page or an API client
sends, and the checks of a request's values (one-line ``ValueError``s that name the value and the bound)."""

from __future__ import annotations

import math

from ..checks import check_number, describe


#: The solver choice that keeps the scheduler the pipeline was saved with.
OWN_SOLVER = "the model's own"
#: Labels of the class drop-down that mean "no label": an unconditional call, which cycles through the classes.
ALL_CLASSES = "every class in turn"
#: The bounds on what one request may ask for, checked on the server whatever the page or an API client sends.
MAX_SAMPLES = 64
MAX_STEPS = 1000  # DDPM's default, the most steps any pipeline of the zoo takes
MAX_SEED = 2**32 - 1
#: samples x sampling steps of one request (a one-pass model counts one step): 16 samples of DDPM's 1000 steps
MAX_SAMPLE_STEPS = 16 * MAX_STEPS
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 300
MAX_LABEL_CHARS = 100  # a class label, a solver's name
MAX_NAME_CHARS = 300  # what is typed into the model box
#: Defaults of :class:`DemoBackend` (and ``genzoo demo``'s flags).
MAX_MODEL_BYTES = 200 * 10**6  # files of a model typed into the box (allow_any_model)
MAX_CACHE_BYTES = 2 * 10**9  # weights of the models typed into the box kept in memory at once
MAX_SECONDS_PER_REQUEST = 60.0
#: Samplings of more than one step at once; each model samples one request at a time besides, and one-step requests
#: (GANs, VAEs, a flow map at one step) are served beside them.
CONCURRENCY_LIMIT = 2
#: Requests waiting in the queue; more are refused by Gradio until some are served.
MAX_QUEUE = 64
#: Errors that are the user's to fix; they are shown in the page as one line.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError, NotImplementedError)


def _whole(value):
    """An integral float (what a slider may send: ``16.0``) as an ``int``; anything else as it is, for
    :func:`~genzoo.checks.check_int` to judge."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def check_text(name: str, value, limit: int) -> str:
    """``value`` if it is text of at most ``limit`` characters (``None`` is the empty text), else a one-line
    ``ValueError`` naming ``name`` and the bound."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {describe(value)} (type {type(value).__name__}).")
    if len(value) > limit:
        raise ValueError(f"{name} must be at most {limit} characters (the demo's bound), got {len(value)}.")
    return value


def check_guidance(value) -> float | None:
    """The guidance scale box: empty (``None``) for the model's default, else a number in [0, MAX_GUIDANCE]."""
    rule = f"a number in [0, {MAX_GUIDANCE:g}] (the demo's bound), or empty for the model's default"
    if value is None:
        return None
    if isinstance(value, str):  # the page's box
        text = check_text("guidance scale", value, MAX_LABEL_CHARS).strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            number = text  # check_number names it: not a number
        value = number
    return check_number("guidance scale", value, 0, MAX_GUIDANCE, low_open=False, high_open=False, rule=rule)


class RequestTimeout(TimeoutError):
    """A request ran past the demo's ``max_seconds_per_request``; shown in the page as one line."""


def check_sample_steps(num_samples: int, steps: int) -> None:
    """A one-line ``ValueError`` when ``num_samples`` x ``steps`` (the cost of one request) is over
    :data:`MAX_SAMPLE_STEPS`."""
    if num_samples * steps > MAX_SAMPLE_STEPS:
        raise ValueError(f"samples x sampling steps must be at most {MAX_SAMPLE_STEPS} (the demo's bound), got "
                         f"{num_samples} x {steps} = {num_samples * steps}; ask for fewer samples or steps.")
