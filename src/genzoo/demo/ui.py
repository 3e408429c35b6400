"""The demo's page (Gradio): the handlers that turn a user's mistake into one line, :func:`build_demo`'s two tabs
on a :class:`~genzoo.demo.backend.DemoBackend`, and :func:`launch`, which serves it as ``genzoo demo`` does."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..checks import error_line
from .backend import DemoBackend, is_loopback
from .limits import (
    ALL_CLASSES,
    CONCURRENCY_LIMIT,
    MAX_CACHE_BYTES,
    MAX_GUIDANCE,
    MAX_MODEL_BYTES,
    MAX_PROMPT_CHARS,
    MAX_QUEUE,
    MAX_SAMPLES,
    MAX_SECONDS_PER_REQUEST,
    MAX_SEED,
    MAX_STEPS,
    OWN_SOLVER,
    USER_ERRORS,
    check_text,
)
from .model import NUM_EXAMPLE_PROMPTS

if TYPE_CHECKING:
    import gradio


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImportError('The demo needs Gradio: pip install "gradio>=6.0" (genzoo\'s [demo] extra; in a source '
                          'checkout: pip install -e ".[demo]").') from None
    import tqdm

    # The page's progress (gr.Progress(track_tqdm=True)) patches tqdm's methods to read self._progress, which only
    # bars made after the patch have: closing or collecting an older bar (a Hub download's, a pipeline's) would
    # raise AttributeError in __del__. A class-level None makes those bars keep tqdm's own behaviour.
    if not hasattr(tqdm.tqdm, "_progress"):
        tqdm.tqdm._progress = None
    return gradio


def announce(backend: DemoBackend, host: str) -> str:
    """Print :meth:`DemoBackend.exposure` when ``host`` is not a loopback address; returns what was printed."""
    if is_loopback(host):
        return ""
    text = backend.exposure(host)
    print(text, flush=True)
    return text


def plain(text: str) -> str:
    """``text`` shown as it is in a Markdown component (its Markdown punctuation escaped)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|~])", r"\\\1", text)


def gradio_handlers(backend: DemoBackend) -> dict:
    """The functions behind the page's events (``describe``, ``generate``, ``compare``): the backend's, with a
    user's mistake shown as a one-line ``gradio.Error``.

    ``describe`` gives the updates of the page's controls for the chosen model (in the order steps, solver, class
    label, guidance, prompt, negative prompt, example prompts, card panel): each control is shown where the model
    takes it, and set to the model's default (the card's steps, every class in turn, empty guidance for the card's)
    or, where the model does not take it, emptied; a prompt is kept between two text models. When the model cannot
    be described, every control is hidden and emptied and the card panel says why, so no other model's card stays
    beside its name."""
    gr = _gradio()

    def user_errors(fn):
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as exc:
                raise gr.Error(error_line(exc), print_exception=False) from None
        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped

    def describe(name):
        try:
            controls = backend.describe(name)
        except USER_ERRORS as exc:
            controls = {"steps": None, "solvers": [OWN_SOLVER], "labels": [], "conditioning": "none",
                        "guidance": None, "examples": [], "card": None,
                        "figures": f"**This model cannot be shown:** {plain(error_line(exc))}"}
        steps = controls["steps"]
        labels = controls["labels"]
        text = controls["conditioning"] == "text"
        guidance = controls["guidance"]
        whose = "the card's" if controls["card"] else "the model's default"
        kept = {} if text else {"value": ""}  # a prompt stays for another text model, else it is emptied
        return (gr.update(value=steps, visible=steps is not None),
                gr.update(choices=controls["solvers"], value=OWN_SOLVER, visible=steps is not None),
                gr.update(choices=[ALL_CLASSES, *labels], value=ALL_CLASSES, visible=bool(labels)),
                gr.update(value="", visible=guidance is not None,
                          placeholder=f"empty: {whose}, {guidance:g}" if guidance is not None else ""),
                gr.update(visible=text, **kept), gr.update(visible=text, **kept),
                gr.update(samples=[[p] for p in controls["examples"]], visible=bool(controls["examples"])),
                controls["figures"])

    def example(chosen):
        """An example prompt clicked: it becomes the prompt."""
        return chosen[0] if isinstance(chosen, (list, tuple)) and chosen else ""

    @user_errors
    def generate(name, num_samples, seed, randomize, steps, solver, class_label, guidance_scale, prompt,
                 negative_prompt, progress=gr.Progress(track_tqdm=True)):
        """Sample from one model; returns the picture, the seed used and a description."""
        return backend.generate(name, num_samples, seed, randomize, steps, solver, class_label, guidance_scale,
                                prompt, negative_prompt, progress=progress)

    @user_errors
    def compare(dataset, num_samples, seed, progress=gr.Progress(track_tqdm=True)):
        """Every model trained on ``dataset``, sampled with the same seed at its own default settings."""
        return backend.compare(dataset, num_samples, seed, progress=progress)

    return {"describe": describe, "generate": generate, "compare": compare, "example": example}


def build_demo(sources: list[str] | None = None, *, title: str = "genzoo", allow_any_model: bool = False,
               share_token_with_visitors: bool = False, max_model_bytes: int = MAX_MODEL_BYTES,
               max_cache_bytes: int = MAX_CACHE_BYTES,
               max_seconds_per_request: float = MAX_SECONDS_PER_REQUEST) -> gradio.Blocks:
    """The Gradio ``Blocks`` app of the demo, queued.

    Tab "Generate": choose a model, the number of samples, the seed (or a random one), the sampling steps and solver
    where the family has them, a class label and guidance scale for class-conditional models, a prompt and negative
    prompt (with clickable example prompts of its data set) for text-conditional ones; steps and guidance start at
    the settings the model card's figures were measured with, and the line under the picture says whether it was
    drawn with them. Tab "Compare": every model trained on one data set, sampled with one seed. Both are also API
    endpoints (``/generate``, ``/compare``) for ``gradio_client``; what a model does not take is ignored.

    The app is queued (Gradio's queue, at most :data:`MAX_QUEUE` requests waiting); each request gets a thread at
    once, and inside at most :data:`CONCURRENCY_LIMIT` samplings of more than one step run at a time, each model
    samples one request at a time, and one-step requests (GAN, VAE, a flow map at one step) run beside them. So a
    one-pass model is served while long many-step requests run, and every request (its waiting included) ends
    within ``max_seconds_per_request``. ``/describe``, which loads a model, has a limit of its own.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo); the only
            models served unless ``allow_any_model``.
        title (str): the page's title.
        allow_any_model (bool): also load folders and Hub ids visitors type (off); see :class:`DemoBackend`.
        share_token_with_visitors (bool): fetch visitors' Hub ids with the operator's token (off).
        max_model_bytes (int): the most bytes of files of a model typed into the box (200 MB).
        max_cache_bytes (int): the most bytes of weights of typed models kept in memory (2 GB).
        max_seconds_per_request (float): a request stops after this many seconds, its wait for a busy model
            included (60).

    Returns:
        the app, not yet served; ``app.genzoo`` is its :class:`DemoBackend`.

    Raises:
        ValueError: no sources were given and the zoo's ``pipelines/`` folder was not found, or a source is neither
            a pipeline folder nor a Hub id.
        ImportError: Gradio is not installed.
    """
    gr = _gradio()
    title = check_text("title", title, 200)
    backend = DemoBackend(sources, allow_any_model=allow_any_model,
                          share_token_with_visitors=share_token_with_visitors, max_model_bytes=max_model_bytes,
                          max_cache_bytes=max_cache_bytes, max_seconds_per_request=max_seconds_per_request)
    handlers = gradio_handlers(backend)
    models = backend.models
    datasets = backend.datasets()
    first = next(iter(models))
    box = "model (or type a folder or Hub id)" if backend.allow_any_model else "model"
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\nGANs, VAEs, DDPM and flow matching in Diffusers conventions: sample any pipeline, "
                    "or set the families side by side on one data set with one seed.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(list(models), value=first, label=box, allow_custom_value=True,
                                        elem_id="model")  # any other name gets the backend's one refusal
                    num_samples = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="samples", elem_id="num_samples")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="seed", minimum=0, maximum=MAX_SEED,
                                         elem_id="seed")
                        randomize = gr.Checkbox(value=False, label="randomize", elem_id="randomize")
                    steps = gr.Number(value=None, precision=0, label=f"sampling steps (1 to {MAX_STEPS})",
                                      elem_id="steps")  # bounded on the server, the message naming it
                    solver = gr.Dropdown([OWN_SOLVER], value=OWN_SOLVER, label="solver", elem_id="solver",
                                         allow_custom_value=True)  # the API's solver is checked by the model
                    class_label = gr.Dropdown([ALL_CLASSES], value=ALL_CLASSES, label="class label",
                                              allow_custom_value=True, elem_id="class_label")
                    guidance = gr.Textbox(value="", label=f"guidance scale (0 to {MAX_GUIDANCE:g})",
                                          placeholder="empty: the model's default", elem_id="guidance")
                    prompt = gr.Textbox(label="prompt", max_length=MAX_PROMPT_CHARS, elem_id="prompt")
                    negative_prompt = gr.Textbox(label="negative prompt", max_length=MAX_PROMPT_CHARS,
                                                 elem_id="negative_prompt")
                    examples = gr.Dataset(components=[prompt], samples=[], label="example prompts (click one)",
                                          samples_per_page=NUM_EXAMPLE_PROMPTS, elem_id="examples")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    image = gr.Image(label="samples", format="png", type="pil", elem_id="output")
                    info = gr.Markdown(elem_id="info")  # the settings that drew it: the card's or not
                    figures = gr.Markdown(elem_id="figures")  # the chosen model's card figures
        with gr.Tab("Compare"):
            with gr.Row():
                compare_data = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="data set",
                                           elem_id="compare_data")
                compare_samples = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="samples per model")
                compare_seed = gr.Number(value=0, precision=0, label="seed", minimum=0, maximum=MAX_SEED,
                                         elem_id="compare_seed")
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
            gallery = gr.Gallery(label="one seed, every family", columns=3, format="png", elem_id="gallery",
                                 object_fit="contain", height="auto", preview=False)

        controls = [steps, solver, class_label, guidance, prompt, negative_prompt, examples, figures]
        loading = dict(concurrency_id="describe", concurrency_limit=CONCURRENCY_LIMIT)
        # every sampling request gets a thread at once: the model's lock and the many-step semaphore inside
        # (genzoo.demo.model) decide who samples, so a one-step request never queues behind a long one
        sampling = dict(concurrency_id="sample", concurrency_limit=None)
        model.change(handlers["describe"], model, controls, api_name="describe", **loading)
        demo.load(handlers["describe"], model, controls, api_name=False, **loading)
        examples.click(handlers["example"], examples, prompt, api_name=False, queue=False)
        button.click(handlers["generate"], [model, num_samples, seed, randomize, steps, solver, class_label, guidance,
                                            prompt, negative_prompt], [image, seed, info], api_name="generate",
                     **sampling)
        compare_button.click(handlers["compare"], [compare_data, compare_samples, compare_seed], gallery,
                             api_name="compare", **sampling)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE)
    demo.genzoo = backend
    return demo


def launch(sources: list[str] | None = None, *, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True, allow_any_model: bool = False, share_token_with_visitors: bool = False,
           max_model_bytes: int = MAX_MODEL_BYTES, max_cache_bytes: int = MAX_CACHE_BYTES,
           max_seconds_per_request: float = MAX_SECONDS_PER_REQUEST) -> gradio.Blocks:
    """Build the app (:func:`build_demo`, queued: :data:`CONCURRENCY_LIMIT` samplings of more than one step at a
    time, one per model, one-step requests beside them, at most :data:`MAX_QUEUE` waiting) and serve it, as
    ``genzoo demo`` does. On a host other than a loopback address it first prints what is exposed
    (:meth:`DemoBackend.exposure`).

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo).
        host (str): the address to serve on.
        port (int | None): the port (default: Gradio's, 7860 or the next free one).
        block (bool): serve until interrupted; ``False`` returns at once with the app running in the background
            (``demo.local_url`` is its address; ``demo.close()`` stops it).
        allow_any_model (bool): also load folders and Hub ids visitors type (off); see :class:`DemoBackend`.
        share_token_with_visitors (bool): fetch visitors' Hub ids with the operator's token (off).
        max_model_bytes (int): the most bytes of files of a model typed into the box (200 MB).
        max_cache_bytes (int): the most bytes of weights of typed models kept in memory (2 GB).
        max_seconds_per_request (float): a request stops after this many seconds, its wait for a busy model
            included (60).

    Returns:
        the running app.
    """
    demo = build_demo(sources, allow_any_model=allow_any_model, share_token_with_visitors=share_token_with_visitors,
                      max_model_bytes=max_model_bytes, max_cache_bytes=max_cache_bytes,
                      max_seconds_per_request=max_seconds_per_request)
    announce(demo.genzoo, host)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block)
    return demo

