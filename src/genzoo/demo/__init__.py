"""A web demo of genzoo pipelines (Gradio), and the Hugging Face Space that serves one.

``genzoo demo [PATH_OR_REPO_ID ...]`` starts :func:`build_demo`'s app; ``genzoo space PATH_OR_REPO_ID OUT_DIR``
writes a Space folder with :func:`write_space`. The app loads each pipeline once per process, the first time it is
used, and samples under ``torch.no_grad()`` with the seed the page shows, so a seed always gives the same picture.
Mistakes (0 steps, an unknown label, a model the demo does not serve) come back as one-line messages in the page;
the app keeps serving. What a model does not take (a prompt for a GAN, steps for a VAE) is ignored, and the line
under the picture says so; steps and guidance start at the settings its card's figures were measured with
(``eval.json``), and that line says whether the picture was drawn with them.

What a visitor controls is untrusted (see "Putting the demo in public" in docs/demo.md):

- the demo serves only the models it was started with (:class:`DemoBackend` resolves them once, at start); any other
  name typed into the model box gets one fixed refusal, whatever exists on the server. ``allow_any_model=True``
  (``--allow-any-model``) lets visitors load other folders and Hub ids: Hub ids are fetched without the operator's
  token (unless ``share_token_with_visitors=True``) and only up to ``max_model_bytes``; folders must hold
  ``model_index.json`` and nothing in them may lead outside them; the models loaded so are kept in a cache bounded
  by ``max_cache_bytes`` of weights (least recently used first out; the started models are pinned, not counted).
- every number and text is bounded on the server (:data:`MAX_SAMPLES`, :data:`MAX_STEPS`, :data:`MAX_SAMPLE_STEPS`,
  :data:`MAX_SEED`, :data:`MAX_GUIDANCE`, :data:`MAX_PROMPT_CHARS`, :data:`MAX_LABEL_CHARS`) and a request, its
  wait for a busy model included, stops after ``max_seconds_per_request`` (checked before every sampling step).
- requests are queued: at most :data:`CONCURRENCY_LIMIT` samplings of more than one step at a time, one per model,
  and one-step requests (GAN, VAE, a flow map at one step) beside them, so a cheap request is not stuck behind long
  many-step requests.

The package, one module per part:

- :mod:`~genzoo.demo.limits`: the bounds of one request and the checks of its values;
- :mod:`~genzoo.demo.model`: :class:`Model`, one pipeline loaded once and sampled within those bounds;
- :mod:`~genzoo.demo.backend`: :class:`DemoBackend`, the session: what is served, the page's calls without the page;
- :mod:`~genzoo.demo.ui`: the Gradio page (:func:`build_demo`, :func:`launch`);
- :mod:`~genzoo.demo.space`: the Space writer (:func:`write_space`).

Gradio is an optional dependency (the ``[demo]`` extra: ``pip install -e ".[demo]"`` in a source checkout, or
``pip install "gradio>=6.0"``); only :mod:`~genzoo.demo.ui` and the Space need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

#: public name -> the module of this package that defines it, imported on first use: ``genzoo demo --help`` and
#: the bounds (:mod:`~genzoo.demo.limits`) need neither torch nor Gradio
_LAZY = {
    **dict.fromkeys(("DemoBackend", "picture"), ".backend"),
    **dict.fromkeys(("ALL_CLASSES", "CONCURRENCY_LIMIT", "MAX_CACHE_BYTES", "MAX_GUIDANCE", "MAX_LABEL_CHARS",
                     "MAX_MODEL_BYTES", "MAX_PROMPT_CHARS", "MAX_QUEUE", "MAX_SAMPLE_STEPS", "MAX_SAMPLES",
                     "MAX_SECONDS_PER_REQUEST", "MAX_SEED", "MAX_STEPS", "OWN_SOLVER", "RequestTimeout"), ".limits"),
    **dict.fromkeys(("Model", "resident_bytes"), ".model"),
    **dict.fromkeys(("space_files", "write_space"), ".space"),
    **dict.fromkeys(("announce", "build_demo", "gradio_handlers", "launch"), ".ui"),
}

if TYPE_CHECKING:
    from .backend import DemoBackend, picture
    from .limits import (
        ALL_CLASSES,
        CONCURRENCY_LIMIT,
        MAX_CACHE_BYTES,
        MAX_GUIDANCE,
        MAX_LABEL_CHARS,
        MAX_MODEL_BYTES,
        MAX_PROMPT_CHARS,
        MAX_QUEUE,
        MAX_SAMPLE_STEPS,
        MAX_SAMPLES,
        MAX_SECONDS_PER_REQUEST,
        MAX_SEED,
        MAX_STEPS,
        OWN_SOLVER,
        RequestTimeout,
    )
    from .model import Model, resident_bytes
    from .space import space_files, write_space
    from .ui import announce, build_demo, gradio_handlers, launch


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "ALL_CLASSES", "CONCURRENCY_LIMIT", "MAX_CACHE_BYTES", "MAX_GUIDANCE", "MAX_LABEL_CHARS", "MAX_MODEL_BYTES",
    "MAX_PROMPT_CHARS", "MAX_QUEUE", "MAX_SAMPLE_STEPS", "MAX_SAMPLES", "MAX_SECONDS_PER_REQUEST", "MAX_SEED",
    "MAX_STEPS", "OWN_SOLVER",
    "DemoBackend", "Model", "RequestTimeout", "announce", "build_demo", "gradio_handlers", "launch", "picture",
    "resident_bytes", "space_files", "write_space",
]
