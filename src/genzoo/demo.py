"""A web demo of genzoo pipelines (Gradio), and the Hugging Face Space that serves one.

``genzoo demo [PATH_OR_REPO_ID ...]`` starts :func:`build_demo`'s app; ``genzoo space PATH_OR_REPO_ID OUT_DIR``
writes a Space folder with :func:`write_space`. The app loads each pipeline once per process, the first time it is
used, and samples under ``torch.no_grad()`` with the seed the page shows, so a seed always gives the same picture.
Mistakes (0 steps, an unknown label, a prompt for a model without text conditioning, a model the demo does not
serve) come back as one-line messages in the page; the app keeps serving.

What a visitor controls is untrusted (see "Putting the demo in public" in docs/demo.md):

- the demo serves only the models it was started with (:class:`DemoBackend` resolves them once, at start); any other
  name typed into the model box gets one fixed refusal, whatever exists on the server. ``allow_any_model=True``
  (``--allow-any-model``) lets visitors load other folders and Hub ids: Hub ids are fetched without the operator's
  token (unless ``share_token_with_visitors=True``) and only up to ``max_model_bytes``; folders must hold
  ``model_index.json`` and nothing in them may lead outside them; the models loaded so are kept in a cache bounded
  by ``max_cache_bytes`` of weights (least recently used first out; the started models are pinned, not counted).
- every number and text is bounded on the server (:data:`MAX_SAMPLES`, :data:`MAX_STEPS`, :data:`MAX_SEED`,
  :data:`MAX_GUIDANCE`, :data:`MAX_PROMPT_CHARS`, :data:`MAX_LABEL_CHARS`) and a request stops after
  ``max_seconds_per_request`` (checked before every sampling step).
- requests are queued: at most :data:`CONCURRENCY_LIMIT` samplings at a time, one per model, so a one-pass model
  (GAN, VAE) is not stuck behind a long many-step request on another model.

Gradio is an optional dependency: ``pip install "genzoo[demo]"``.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import math
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

from .checks import check_bool, check_int, check_number, describe, error_line
from .conditioning import label_from_text
from .files import OutsideFolderError, check_inside, commit_folder, folder_files, remove_stale_staging
from .visualize import grid_shape, image_grid, scatter_figure

if TYPE_CHECKING:
    import gradio

#: The solver choice that keeps the scheduler the pipeline was saved with.
OWN_SOLVER = "the model's own"
#: Labels of the class drop-down that mean "no label": an unconditional call, which cycles through the classes.
ALL_CLASSES = "every class in turn"
#: The bounds on what one request may ask for, checked on the server whatever the page or an API client sends.
MAX_SAMPLES = 64
MAX_STEPS = 1000  # DDPM's default, the most steps any pipeline of the zoo takes
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 300
MAX_LABEL_CHARS = 100  # a class label, a solver's name
MAX_NAME_CHARS = 300  # what is typed into the model box
#: Defaults of :class:`DemoBackend` (and ``genzoo demo``'s flags).
MAX_MODEL_BYTES = 200 * 10**6  # files of a model typed into the box (allow_any_model)
MAX_CACHE_BYTES = 2 * 10**9  # weights of the models typed into the box kept in memory at once
MAX_SECONDS_PER_REQUEST = 60.0
#: Samplings at once (Gradio's queue); each model samples one request at a time besides.
CONCURRENCY_LIMIT = 2
#: Requests waiting in the queue; more are refused by Gradio until some are served.
MAX_QUEUE = 64
#: Errors that are the user's to fix; they are shown in the page as one line.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError, NotImplementedError)


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImportError('The demo needs Gradio: pip install "genzoo[demo]".') from None
    return gradio


def zoo_folders() -> tuple[Path, ...]:
    """Where ``genzoo demo`` looks for models when it is given none: the ``pipelines/`` folder of the working
    directory, else of the source checkout genzoo runs from."""
    return Path.cwd() / "pipelines", Path(__file__).resolve().parents[2] / "pipelines"


def zoo_sources() -> list[str]:
    """The folders of the zoo (``pipelines/<name>`` with a ``model_index.json``), from the first place that has one."""
    for root in zoo_folders():
        found = sorted(str(p) for p in root.glob("*") if (p / "model_index.json").is_file())
        if found:
            return found
    return []


def solver_classes(pipe) -> dict:
    """The samplers a pipeline can swap in, by name: genzoo's own and Diffusers' solvers that fit its model."""
    import diffusers

    from . import DDPMScheduler, FlowMatchEulerScheduler, FlowMatchHeunScheduler

    kind = getattr(pipe, "model_kind", None)
    if kind == "flow":
        return {"Euler (genzoo)": FlowMatchEulerScheduler, "Heun (genzoo)": FlowMatchHeunScheduler,
                "DPM-Solver++ (Diffusers)": diffusers.DPMSolverMultistepScheduler,
                "UniPC (Diffusers)": diffusers.UniPCMultistepScheduler}
    if kind == "diffusion":
        return {"DDPM (genzoo)": DDPMScheduler, "DDIM (Diffusers)": diffusers.DDIMScheduler,
                "DPM-Solver++ (Diffusers)": diffusers.DPMSolverMultistepScheduler,
                "UniPC (Diffusers)": diffusers.UniPCMultistepScheduler}
    return {}


# ------------------------------------------------------------------------------------------- checks of one request
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


def _time_bounded(pipe, max_seconds: float):
    """A ``progress_bar`` for ``pipe`` that stops the sampling loop (:class:`RequestTimeout`) once ``max_seconds``
    have passed: genzoo's pipelines with steps (DDPM, flow matching, flow maps) iterate
    ``self.progress_bar(timesteps)``, as Diffusers' do, so the deadline is checked before every step."""
    original = pipe.progress_bar
    deadline = time.monotonic() + max_seconds

    def progress_bar(iterable=None, total=None):
        bar = original(iterable=iterable, total=total)
        if iterable is None:  # a bar advanced by hand: nothing to bound here
            return bar

        def steps():
            done = 0
            try:
                for item in bar:
                    if time.monotonic() > deadline:
                        raise RequestTimeout(
                            f"sampling stopped after {done} of {len(iterable) if hasattr(iterable, '__len__') else '?'}"
                            f" steps: this demo allows at most {max_seconds:g} s per request; ask for fewer sampling "
                            "steps or samples.")
                    yield item
                    done += 1
            finally:
                bar.close()

        return steps()

    return progress_bar


def resident_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of a pipeline's modules (each tensor counted once)."""
    seen, total = set(), 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return total


class Model:
    """One pipeline of the demo: where it comes from, loaded once on first use, and what its card says.

    Args:
        source (str): a saved pipeline folder or a Hub id.
        name (str | None): what the page calls it (default: the folder's name, or the Hub id).
        token (str | bool | None): the Hub token to fetch a Hub id with (``None``: the logged-in user's; ``False``:
            none).
        revision (str | None): the Hub revision (a commit, to load exactly what was checked).
        fresh_cache (bool): download a Hub id into a temporary folder, removed once the pipeline is in memory
            (models typed into the box leave nothing on disk).
    """

    def __init__(self, source: str, *, name: str | None = None, token=None, revision: str | None = None,
                 fresh_cache: bool = False):
        self.source = str(source)
        self.local = Path(self.source).is_dir()
        self.name = name or (Path(self.source).name if self.local else self.source)
        self.token = token
        self.revision = revision
        self.fresh_cache = fresh_cache
        self._pipe = None
        self._scheduler = None  # the scheduler it was saved with, to build solvers from
        self._card = None
        self._load_lock = threading.Lock()
        self.lock = threading.Lock()  # one sampling at a time per pipeline (the scheduler is swapped per call)

    @property
    def pipe(self):
        if self._pipe is None:
            with self._load_lock:
                if self._pipe is None:
                    self._load()
        return self._pipe

    def _load(self) -> None:
        from . import load_pipeline

        if self.local:
            pipe = load_pipeline(self.source)
        elif self.fresh_cache:
            from .pipelines.loading import resolve_pretrained_path

            cache = tempfile.mkdtemp(prefix="genzoo-demo-")
            try:
                pipe = load_pipeline(self.source, token=self.token, revision=self.revision, cache_dir=cache)
                folder = resolve_pretrained_path(self.source, revision=self.revision, token=self.token,
                                                 cache_dir=cache, local_files_only=True)
                self._card = self._read_card(folder / "README.md")
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        else:
            pipe = load_pipeline(self.source, token=self.token, revision=self.revision)
        pipe.set_progress_bar_config(disable=False, leave=False)
        self._scheduler = getattr(pipe, "scheduler", None)
        self._pipe = pipe

    @staticmethod
    def _read_card(path):
        from huggingface_hub import ModelCard

        try:
            return ModelCard.load(path) if Path(path).is_file() else False
        except Exception:  # a card that does not parse: the demo works without it
            return False

    @property
    def resident_bytes(self) -> int:
        return resident_bytes(self.pipe)

    @property
    def card(self):
        """The model card (``huggingface_hub.ModelCard``), or ``None`` when there is none."""
        if self._card is None:
            if self.local:
                self._card = self._read_card(Path(self.source) / "README.md")
            elif self.fresh_cache:
                self.pipe  # reads the card from the download
            else:
                from huggingface_hub import ModelCard

                try:
                    self._card = ModelCard.load(self.source, token=self.token)
                except Exception:  # no card, or a Hub that cannot be reached: the demo works without it
                    self._card = False
        return self._card or None

    @property
    def dataset(self) -> str | None:
        card = self.card
        datasets = getattr(card.data, "datasets", None) if card else None
        return datasets[0] if datasets else None

    def figures_markdown(self) -> str:
        """The card's evaluation figures as a small markdown table."""
        card = self.card
        results = (getattr(card.data, "eval_results", None) or []) if card else []
        results = [r for r in results if not r.metric_type.startswith("train_")]  # the evaluation, not the loss
        if not results:
            return f"**{self.name}**: no evaluation figures in its model card."

        def value(v):
            return format(v, ".4g") if isinstance(v, (int, float)) else v

        rows = "\n".join(f"| {r.metric_name or r.metric_type} | {value(r.metric_value)} |" for r in results)
        data = f" on `{results[0].dataset_name}`" if results[0].dataset_name else ""
        return f"**{self.name}**: its model card's evaluation{data}\n\n| metric | value |\n|---|---|\n{rows}"

    def controls(self) -> dict:
        """What the page offers for this pipeline: steps, solvers, class labels, prompts, guidance."""
        pipe = self.pipe
        steps = None if getattr(pipe, "scheduler", None) is None else pipe.default_num_inference_steps
        conditioning = getattr(pipe, "conditioning", "none")
        labels = list((getattr(pipe, "id2label", None) or {}).values()) if conditioning == "class" else []
        guidance = getattr(pipe, "default_guidance_scale", None) if conditioning != "none" else None
        return {"steps": steps, "solvers": [OWN_SOLVER, *solver_classes(pipe)], "labels": labels,
                "conditioning": conditioning, "guidance": guidance}

    def sample(self, *, num_samples: int, seed: int, steps=None, solver: str = OWN_SOLVER, class_label=None,
               guidance_scale=None, prompt: str = "", negative_prompt: str = "",
               max_seconds: float | None = None) -> tuple[np.ndarray, str]:
        """Seeded samples (``output_type="np"``) and a one-line description of the call. Options left empty are
        not passed, so the pipeline's own defaults apply and its own errors name what it does not take.

        Every value is checked against the demo's bounds first (samples 1 to :data:`MAX_SAMPLES`, steps 1 to
        :data:`MAX_STEPS`, seed 0 to :data:`MAX_SEED`, guidance in [0, :data:`MAX_GUIDANCE`], prompts of at most
        :data:`MAX_PROMPT_CHARS` characters): a ``ValueError`` names the value and the bound. ``max_seconds``
        stops a sampling loop that runs longer (:class:`RequestTimeout`)."""
        num_samples = check_int("samples", _whole(num_samples), 1, MAX_SAMPLES, "the demo's bound")
        seed = check_int("seed", _whole(seed), 0, MAX_SEED)
        solver = check_text("solver", solver, MAX_LABEL_CHARS) or OWN_SOLVER
        if isinstance(class_label, int) and not isinstance(class_label, bool):
            class_label = str(class_label)
        class_label = check_text("class label", class_label, MAX_LABEL_CHARS)
        guidance_scale = check_guidance(guidance_scale)
        prompt = check_text("prompt", prompt, MAX_PROMPT_CHARS)
        negative_prompt = check_text("negative prompt", negative_prompt, MAX_PROMPT_CHARS)
        if max_seconds is not None:
            max_seconds = check_number("max_seconds", max_seconds, 0, low_open=False)
        pipe = self.pipe
        if self._scheduler is None:  # one pass (GAN, VAE): the page hides its steps box, whatever it holds
            steps = None
        elif steps is not None:
            steps = check_int("num_inference_steps", _whole(steps), 1, MAX_STEPS, "the demo's bound")
        options = {}
        if class_label not in ("", ALL_CLASSES):
            options["class_labels"] = label_from_text(class_label, getattr(pipe, "id2label", None))
        if prompt.strip():
            options["prompt"] = prompt
        if negative_prompt.strip():
            options["negative_prompt"] = negative_prompt
        if guidance_scale is not None:
            options["guidance_scale"] = guidance_scale
        with self.lock, torch.no_grad():
            pipe.scheduler = self._solver(solver) if self._scheduler is not None else None
            own_bar = "progress_bar" in pipe.__dict__
            original_bar = pipe.progress_bar
            if max_seconds is not None:
                pipe.progress_bar = _time_bounded(pipe, max_seconds)
            try:
                start = time.perf_counter()
                out = pipe(batch_size=num_samples, generator=torch.Generator().manual_seed(seed),
                           num_inference_steps=steps, output_type="np", **options)
                seconds = time.perf_counter() - start
            finally:
                if self._scheduler is not None:
                    pipe.scheduler = self._scheduler
                if max_seconds is not None:
                    if own_bar:
                        pipe.progress_bar = original_bar
                    else:
                        del pipe.progress_bar
        samples = out.images if hasattr(out, "images") else out.samples
        shown_steps = "" if self._scheduler is None else f", {steps or pipe.default_num_inference_steps} steps"
        shown_solver = "" if solver == OWN_SOLVER else f" ({solver})"
        return samples, (f"{type(pipe).__name__}: {len(samples)} samples{shown_steps}{shown_solver}, seed {seed}, "
                         f"{seconds:.2f} s")

    def _solver(self, name):
        if name in (None, "", OWN_SOLVER):
            return self._scheduler
        classes = solver_classes(self._pipe)
        if name not in classes:
            raise ValueError(f"solver {describe(name)} is not one for {type(self._pipe).__name__}; "
                             f"choose one of {', '.join([OWN_SOLVER, *classes])}.")
        from .schedulers import diffusers_scheduler

        cls = classes[name]
        if cls.__module__.startswith("genzoo"):
            return cls.from_config(self._scheduler.config)
        self._pipe.scheduler = self._scheduler  # the helper reads the model's kind and scheduler from the pipeline
        return diffusers_scheduler(cls, self._pipe)


def data_density(dataset: str | None, n: int = 20000) -> np.ndarray | None:
    """Points of a built-in 2-D data set, for the density drawn under a 2-D model's samples (``None`` otherwise)."""
    from .data.builtin import TOY_DATASETS, toy_points

    if dataset not in TOY_DATASETS:
        return None
    return toy_points(dataset, n, np.random.default_rng(0))


def picture(samples: np.ndarray, title: str = "", dataset: str | None = None) -> PIL.Image.Image:
    """Samples as a picture: an image grid, or a scatter plot over the data's density for 2-D points."""
    if samples.ndim == 4:
        return PIL.Image.fromarray(image_grid(samples, *grid_shape(len(samples))))
    fig = scatter_figure(samples, title=title, background=data_density(dataset))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return PIL.Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _is_hub_id(text: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _looks_like_a_path(name: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else is meant as a folder (the loader's own rule)."""
    from .pipelines.loading import looks_like_a_path

    return looks_like_a_path(name)


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (127.0.0.1, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DemoBackend:
    """What the demo serves and how much one request may cost; :func:`build_demo` puts a page on it.

    The models are resolved once, here: a folder to its absolute path (it must hold ``model_index.json``), a Hub id
    kept as the id (fetched, with the operator's token, when first used). The page's model box serves these by name
    and refuses anything else with one fixed message (:meth:`refusal`), which says nothing of what exists on the
    server -- unless ``allow_any_model``.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo).
        allow_any_model (bool): also load what visitors type into the model box: a pipeline folder on this machine
            (it must hold ``model_index.json``, nothing in it may lead outside it, its files at most
            ``max_model_bytes``) or a Hub id (at most ``max_model_bytes`` of files, checked before downloading,
            downloaded into a temporary folder that is removed once loaded). Off by default.
        share_token_with_visitors (bool): fetch the Hub ids visitors type with the operator's token (their private
            and gated models become reachable to every visitor). Off by default: visitors' Hub ids are fetched
            anonymously (``token=False``).
        max_model_bytes (int): the most bytes of files a model typed into the box may have.
        max_cache_bytes (int): the most bytes of weights (parameters and buffers) of models typed into the box kept
            in memory at once; the least recently used go first. The started models are loaded once and kept (the
            operator chose them), outside this bound.
        max_seconds_per_request (float): a request's sampling stops after this many seconds (checked before every
            sampling step; one-pass models, GANs and VAEs, are a single cheap call).

    Raises:
        ValueError: no sources, a source that is neither a pipeline folder nor a valid Hub id, or a bad bound.
        FileNotFoundError: a source folder without ``model_index.json``.
    """

    def __init__(self, sources: list[str] | None = None, *, allow_any_model: bool = False,
                 share_token_with_visitors: bool = False, max_model_bytes: int = MAX_MODEL_BYTES,
                 max_cache_bytes: int = MAX_CACHE_BYTES, max_seconds_per_request: float = MAX_SECONDS_PER_REQUEST):
        self.allow_any_model = check_bool("allow_any_model", allow_any_model)
        self.share_token_with_visitors = check_bool("share_token_with_visitors", share_token_with_visitors)
        self.max_model_bytes = check_int("max_model_bytes", max_model_bytes)
        self.max_cache_bytes = check_int("max_cache_bytes", max_cache_bytes)
        self.max_seconds_per_request = check_number("max_seconds_per_request", max_seconds_per_request, 0)
        sources = [os.fspath(s) for s in sources] if sources else zoo_sources()
        if not sources:
            raise ValueError("no models to show: pass folders or Hub ids (genzoo demo PATH_OR_REPO_ID ...); the zoo's "
                             "pipelines/ folder was not found.")
        self.models: dict[str, Model] = {}  # the started models, by the name the page shows: pinned
        for source in sources:
            model = self._started(source)
            if model.name in self.models:  # two folders of one name: the second by its full path
                model.name = model.source
            self.models[model.name] = model
        self._typed: collections.OrderedDict = collections.OrderedDict()  # resolved target -> Model, oldest first
        self._typed_bytes: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def _started(source: str) -> Model:
        path = Path(source).expanduser()
        if path.is_dir():
            folder = Path(os.path.realpath(path))
            if not (folder / "model_index.json").is_file():
                raise FileNotFoundError(f"{source} has no model_index.json: give folders written by save_pretrained "
                                        "or genzoo train, or Hub ids.")
            return Model(str(folder), name=folder.name)
        if _looks_like_a_path(source) or not _is_hub_id(source):
            raise ValueError(f"{describe(source)} is neither a pipeline folder nor a valid Hub id.")
        return Model(source)  # the operator's model: fetched with the operator's token, when first used

    # ------------------------------------------------------------------------------------------------ the model box
    def refusal(self, name) -> str:
        """The one message for a name that is not served: the same whether it is a folder, a file, a Hub id or
        nothing at all, so the box tells a visitor nothing about the server."""
        return (f"model {describe(name, 40)} is not served by this demo; choose one of: "
                f"{', '.join(self.models)}.")

    def model_for(self, name) -> Model:
        """The model the box names: a started one by its name; with ``allow_any_model`` a folder or Hub id."""
        if not isinstance(name, str):
            raise ValueError(f"model must be text, got {describe(name)} (type {type(name).__name__}).")
        name = name.strip()
        if name in self.models:
            return self.models[name]
        if not self.allow_any_model:
            raise ValueError(self.refusal(name))
        if not name:
            raise ValueError(f"choose a model: one of {', '.join(self.models)}, or a pipeline folder or Hub id.")
        check_text("model", name, MAX_NAME_CHARS)
        key, model = self._resolve_typed(name)
        with self._lock:
            if key in self._typed:
                self._typed.move_to_end(key)
                return self._typed[key]
        try:
            size = model.resident_bytes  # loads it
        except USER_ERRORS:
            raise
        except Exception as exc:  # a download cut short, a connection refused, ...
            raise OSError(f"could not load {describe(name)}: {error_line(exc)}") from None
        if size > self.max_cache_bytes:
            raise ValueError(f"model {describe(name)} takes {size} bytes of weights in memory, more than the "
                             f"{self.max_cache_bytes} bytes this demo keeps for models typed into the box.")
        with self._lock:
            if key in self._typed:  # loaded meanwhile by another request
                self._typed.move_to_end(key)
                return self._typed[key]
            self._typed[key] = model
            self._typed_bytes[key] = size
            while sum(self._typed_bytes.values()) > self.max_cache_bytes:
                old, _ = self._typed.popitem(last=False)
                del self._typed_bytes[old]
        return model

    def cached(self) -> list[str]:
        """The models typed into the box that are in memory, least recently used first."""
        with self._lock:
            return [m.name for m in self._typed.values()]

    def _resolve_typed(self, name: str):
        """(the resolved target, a :class:`Model` not yet loaded) for a folder or Hub id typed into the box."""
        if _looks_like_a_path(name) or Path(name).is_dir():
            return self._typed_folder(name)
        if not _is_hub_id(name):
            raise ValueError(f"model {describe(name)} is neither a pipeline folder (one holding model_index.json) "
                             "nor a Hub model id.")
        return self._typed_hub_id(name)

    def _typed_folder(self, name: str):
        not_a_pipeline = (f"model {describe(name)} is neither a pipeline folder (one holding model_index.json) nor "
                          "a Hub model id.")
        try:
            folder = Path(os.path.realpath(name))
            if not (folder.is_dir() and (folder / "model_index.json").is_file()):
                raise ValueError(not_a_pipeline)
            files = folder_files(folder)  # refuses any link that leads outside the folder (a component, a file)
            size = sum(path.stat().st_size for path in files)
        except OutsideFolderError:
            raise
        except OSError:  # unreadable: the same answer as missing
            raise ValueError(not_a_pipeline) from None
        if size > self.max_model_bytes:
            raise ValueError(f"model {describe(name)} has {size} bytes of files, more than the {self.max_model_bytes} "
                             "bytes this demo loads for a model typed into the box.")
        return ("folder", str(folder)), Model(str(folder), name=name)

    def _typed_hub_id(self, name: str):
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        token = None if self.share_token_with_visitors else False
        try:
            info = HfApi().model_info(name, files_metadata=True, token=token)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            why = "" if self.share_token_with_visitors else " (this demo fetches visitors' models without a token)"
            raise ValueError(f"Hub model {name} was not found, or it is private or gated{why}.") from None
        except Exception as exc:  # offline, unreachable, refused: one line
            raise OSError(f"could not look up Hub model {name}: {error_line(exc)}") from None
        from .pipelines.loading import PICKLE_SUFFIXES  # never downloaded, so not counted

        files = [s for s in (info.siblings or []) if not s.rfilename.endswith(PICKLE_SUFFIXES)]
        unknown = [s.rfilename for s in files if s.size is None]
        size = sum(s.size or 0 for s in files)
        if unknown or size > self.max_model_bytes:
            what = f"files of unknown size ({', '.join(unknown[:3])})" if unknown else f"{size} bytes of files"
            raise ValueError(f"Hub model {name} has {what}, more than the {self.max_model_bytes} bytes this demo "
                             "downloads for a model typed into the box.")
        return ("hub", name, info.sha), Model(name, token=token, revision=info.sha, fresh_cache=True)

    # --------------------------------------------------------------------------------------------- the page's calls
    def describe(self, name) -> dict:
        """What the page shows for the model ``name``: :meth:`Model.controls` and its card's figures."""
        model = self.model_for(name)
        return {**model.controls(), "figures": model.figures_markdown()}

    def generate(self, name, num_samples, seed, randomize=False, steps=None, solver=OWN_SOLVER, class_label=None,
                 guidance_scale=None, prompt="", negative_prompt="", progress=None):
        """Sample one model: (the picture, the seed used, a one-line description)."""
        model = self.model_for(name)
        if check_bool("randomize", randomize):
            seed = random.randint(0, MAX_SEED)
        elif seed is None:
            seed = 0
        if progress is not None:
            progress(0, desc=f"loading {model.name}")
        samples, what = model.sample(num_samples=num_samples, seed=seed, steps=steps, solver=solver,
                                     class_label=class_label, guidance_scale=guidance_scale, prompt=prompt,
                                     negative_prompt=negative_prompt, max_seconds=self.max_seconds_per_request)
        return picture(samples, what, model.dataset), int(_whole(seed)), what

    def datasets(self) -> list[str]:
        return sorted({m.dataset for m in self.models.values() if m.dataset})

    def compare(self, dataset, num_samples, seed, progress=None) -> list:
        """Every started model trained on ``dataset``, sampled with one seed at its own default settings, all within
        one request's time."""
        check_text("data set", dataset, MAX_LABEL_CHARS)
        chosen = [m for m in self.models.values() if m.dataset == dataset]
        if not chosen:
            raise ValueError(f"no model trained on {describe(dataset)}; data sets of these models: "
                             f"{', '.join(self.datasets())}.")
        num_samples = check_int("samples", _whole(num_samples), 1, MAX_SAMPLES, "the demo's bound")
        seed = check_int("seed", _whole(seed), 0, MAX_SEED)
        start = time.monotonic()
        gallery = []
        for model in (progress.tqdm(chosen, desc="models") if progress is not None else chosen):
            left = self.max_seconds_per_request - (time.monotonic() - start)
            if left <= 0:
                raise RequestTimeout(f"compare stopped after {len(gallery)} of {len(chosen)} models: this demo allows "
                                     f"at most {self.max_seconds_per_request:g} s per request.")
            samples, what = model.sample(num_samples=num_samples, seed=seed, max_seconds=left)
            gallery.append((picture(samples, what, dataset), f"{model.name} -- {what}"))
        return gallery

    # ------------------------------------------------------------------------------------------------- in public
    def exposure(self, host: str) -> str:
        """What a visitor of ``host`` can reach and spend: the models, whether any other may be loaded, whether the
        operator's Hub token is used, and the bounds (``genzoo demo --host`` prints it for a non-loopback host)."""
        from huggingface_hub import get_token

        has_token = get_token() is not None
        hub_ids = [m.name for m in self.models.values() if not m.local]
        if not self.allow_any_model:
            typed = "off: only the models above; any other name gets one fixed refusal"
        else:
            typed = (f"ON (--allow-any-model): visitors may load any pipeline folder on this machine that holds "
                     f"model_index.json, and any Hub model of at most {self.max_model_bytes} bytes of files; at most "
                     f"{self.max_cache_bytes} bytes of their weights are kept in memory")
        if not has_token:
            token = "none found (HF_TOKEN, hf auth login)"
        else:
            used = [f"for the started Hub models ({', '.join(hub_ids)})"] if hub_ids else []
            if self.allow_any_model and self.share_token_with_visitors:
                used.append("for ANY Hub id a visitor types (--share-token-with-visitors)")
            token = "found; used " + " and ".join(used) if used else "found; never used for visitors' requests"
        return "\n".join([
            f"genzoo demo on {host}: whoever can reach this address can use it.",
            f"  models served: {', '.join(self.models)}",
            f"  models typed into the box: {typed}",
            f"  the operator's Hub token: {token}",
            f"  bounds per request: samples 1..{MAX_SAMPLES}, sampling steps 1..{MAX_STEPS}, seed 0..{MAX_SEED}, "
            f"guidance scale 0..{MAX_GUIDANCE:g}, prompts up to {MAX_PROMPT_CHARS} characters, "
            f"{self.max_seconds_per_request:g} s",
            f"  queue: {CONCURRENCY_LIMIT} samplings at a time, one per model; at most {MAX_QUEUE} requests waiting",
        ])


def announce(backend: DemoBackend, host: str) -> str:
    """Print :meth:`DemoBackend.exposure` when ``host`` is not a loopback address; returns what was printed."""
    if is_loopback(host):
        return ""
    text = backend.exposure(host)
    print(text, flush=True)
    return text


def gradio_handlers(backend: DemoBackend) -> dict:
    """The functions behind the page's events (``describe``, ``generate``, ``compare``): the backend's, with a
    user's mistake shown as a one-line ``gradio.Error``."""
    gr = _gradio()

    def user_errors(fn):
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as exc:
                raise gr.Error(error_line(exc), print_exception=False) from None
        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped

    @user_errors
    def describe(name):
        controls = backend.describe(name)
        steps = controls["steps"]
        labels = controls["labels"]
        text = controls["conditioning"] == "text"
        guidance = controls["guidance"]
        return (gr.update(value=steps, visible=steps is not None),
                gr.update(choices=controls["solvers"], value=OWN_SOLVER, visible=steps is not None),
                gr.update(choices=[ALL_CLASSES, *labels], value=ALL_CLASSES, visible=bool(labels)),
                gr.update(value="", visible=guidance is not None,
                          placeholder=f"empty: the model's default, {guidance}" if guidance is not None else ""),
                gr.update(visible=text), gr.update(visible=text),
                controls["figures"])

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

    return {"describe": describe, "generate": generate, "compare": compare}


def build_demo(sources: list[str] | None = None, *, title: str = "genzoo", allow_any_model: bool = False,
               share_token_with_visitors: bool = False, max_model_bytes: int = MAX_MODEL_BYTES,
               max_cache_bytes: int = MAX_CACHE_BYTES,
               max_seconds_per_request: float = MAX_SECONDS_PER_REQUEST) -> gradio.Blocks:
    """The Gradio ``Blocks`` app of the demo, queued.

    Tab "Generate": choose a model, the number of samples, the seed (or a random one), the sampling steps and solver
    where the family has them, a class label and guidance scale for class-conditional models, a prompt and negative
    prompt for text-conditional ones. Tab "Compare": every model trained on one data set, sampled with one seed.
    Both are also API endpoints (``/generate``, ``/compare``) for ``gradio_client``.

    The app is queued (Gradio's queue): at most :data:`CONCURRENCY_LIMIT` samplings run at once (``/generate`` and
    ``/compare`` share one limit; ``/describe``, which loads a model, has its own), each model samples one request
    at a time, and at most :data:`MAX_QUEUE` requests wait. So a one-pass model (GAN, VAE) is served while a long
    many-step request runs on another model, and every request ends within ``max_seconds_per_request``.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo); the only
            models served unless ``allow_any_model``.
        title (str): the page's title.
        allow_any_model (bool): also load folders and Hub ids visitors type (off); see :class:`DemoBackend`.
        share_token_with_visitors (bool): fetch visitors' Hub ids with the operator's token (off).
        max_model_bytes (int): the most bytes of files of a model typed into the box (200 MB).
        max_cache_bytes (int): the most bytes of weights of typed models kept in memory (2 GB).
        max_seconds_per_request (float): a request's sampling stops after this many seconds (60).

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
                                      elem_id="steps")
                    solver = gr.Dropdown([OWN_SOLVER], value=OWN_SOLVER, label="solver", elem_id="solver",
                                         allow_custom_value=True)  # the API's solver is checked by the model
                    class_label = gr.Dropdown([ALL_CLASSES], value=ALL_CLASSES, label="class label",
                                              allow_custom_value=True, elem_id="class_label")
                    guidance = gr.Textbox(value="", label=f"guidance scale (0 to {MAX_GUIDANCE:g})",
                                          placeholder="empty: the model's default", elem_id="guidance")
                    prompt = gr.Textbox(label="prompt", max_length=MAX_PROMPT_CHARS, elem_id="prompt")
                    negative_prompt = gr.Textbox(label="negative prompt", max_length=MAX_PROMPT_CHARS,
                                                 elem_id="negative_prompt")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    image = gr.Image(label="samples", format="png", type="pil", elem_id="output")
                    info = gr.Markdown(elem_id="info")
                with gr.Column(scale=1):
                    figures = gr.Markdown(elem_id="figures")
        with gr.Tab("Compare"):
            with gr.Row():
                compare_data = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="data set",
                                           elem_id="compare_data")
                compare_samples = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="samples per model")
                compare_seed = gr.Number(value=0, precision=0, label="seed", minimum=0, maximum=MAX_SEED,
                                         elem_id="compare_seed")
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
            gallery = gr.Gallery(label="one seed, every family", columns=3, format="png", elem_id="gallery")

        controls = [steps, solver, class_label, guidance, prompt, negative_prompt, figures]
        loading = dict(concurrency_id="describe", concurrency_limit=CONCURRENCY_LIMIT)
        sampling = dict(concurrency_id="sample", concurrency_limit=CONCURRENCY_LIMIT)
        model.change(handlers["describe"], model, controls, api_name="describe", **loading)
        demo.load(handlers["describe"], model, controls, api_name=False, **loading)
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
    """Build the app (:func:`build_demo`, queued: :data:`CONCURRENCY_LIMIT` samplings at a time, one per model, at
    most :data:`MAX_QUEUE` waiting) and serve it, as ``genzoo demo`` does. On a host other than a loopback address
    it first prints what is exposed (:meth:`DemoBackend.exposure`).

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
        max_seconds_per_request (float): a request's sampling stops after this many seconds (60).

    Returns:
        the running app.
    """
    demo = build_demo(sources, allow_any_model=allow_any_model, share_token_with_visitors=share_token_with_visitors,
                      max_model_bytes=max_model_bytes, max_cache_bytes=max_cache_bytes,
                      max_seconds_per_request=max_seconds_per_request)
    announce(demo.genzoo, host)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block)
    return demo


# --------------------------------------------------------------------------------------------------------- the Space
MAX_TITLE_CHARS = 100
MAX_REQUIREMENT_CHARS = 500

#: The Space's app.py: fixed code; the values (models, title) are written into it with ``repr``.
SPACE_APP = '''"""A Hugging Face Space written by `genzoo space`: the genzoo demo of one pipeline."""

from pathlib import Path

from genzoo.demo import build_demo

MODELS = {models}
TITLE = {title}

demo = build_demo(MODELS, title=TITLE)

if __name__ == "__main__":
    demo.launch()
'''
#: The Space's models in app.py when the pipeline is copied into it.
SPACE_LOCAL_MODELS = '[str(Path(__file__).parent / "model")]'


def check_line(name: str, value, limit: int, hint: str = "") -> str:
    """``value`` if it is one line of printable text of 1 to ``limit`` characters, else a one-line ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {describe(value)} (type {type(value).__name__}).")
    if not value.strip() or len(value) > limit or not value.isprintable():
        raise ValueError(f"{name} must be one line of printable text of 1 to {limit} characters, got "
                         f"{describe(value)}{hint}.")
    return value


def check_requirement(requirement: str) -> str:
    """One pip requirement: a PEP 508 requirement (``genzoo[demo]==1.0``, ``genzoo[demo] @ git+https://...``) or a
    ``git+https://`` / ``https://`` URL, on one line; not a pip option (``--index-url ...``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    check_line("requirement", requirement, MAX_REQUIREMENT_CHARS)
    text = requirement.strip()
    if text.startswith(("git+https://", "https://")) and " " not in text:
        return text
    try:
        Requirement(text)
    except InvalidRequirement:
        raise ValueError(f"requirement must be one pip requirement (genzoo[demo]==<version>, genzoo[demo] @ "
                         f"git+https://...) or a git+https:// URL, got {describe(requirement)}.") from None
    return text


def space_files(source: str, *, title: str | None = None, requirement: str | None = None) -> dict:
    """The checked values of a Space: ``{"local": bool, "source": str, "title": str, "requirement": str, "app":
    app.py's text, "readme": README.md's text}``. Every value reaches the files through ``repr`` (app.py) or
    ``yaml.safe_dump`` (the README's front matter); see :func:`write_space`."""
    import gradio
    import yaml

    from . import __version__

    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a folder or a Hub id, got {describe(source)}.")
    source = os.fspath(source)
    if not source or "\x00" in source or len(source) > 4096:
        raise ValueError(f"source must be a pipeline folder or a Hub id, got {describe(source)}.")
    try:
        local = Path(source).is_dir()
    except OSError:  # a name too long for the file system: not a folder; the Hub id check below refuses it
        local = False
    if local:
        if not (Path(source) / "model_index.json").is_file():
            raise FileNotFoundError(f"{source} has no model_index.json: give a folder written by save_pretrained or "
                                    "genzoo train, or a Hub id.")
        name = Path(os.path.realpath(source)).name
    else:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(source)
        except HFValidationError as exc:
            raise ValueError(f"{describe(source)} is neither a pipeline folder nor a valid Hub id "
                             f"({error_line(exc)})") from None
        name = source
    if title is None:
        title = f"genzoo: {name}"
        check_line("title", title, MAX_TITLE_CHARS, hint=" (from the folder's name; pass --title)")
    else:
        check_line("title", title, MAX_TITLE_CHARS)
    requirement = check_requirement(requirement or f"genzoo[demo]=={__version__}")
    models = SPACE_LOCAL_MODELS if local else repr([source])
    app = SPACE_APP.format(models=models, title=repr(title))
    front = {"title": title, "sdk": "gradio", "sdk_version": gradio.__version__, "app_file": "app.py"}
    if not local:
        front["models"] = [source]
    front["tags"] = ["genzoo", "diffusers"]
    matter = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=float("inf"))
    model_line = (f"It samples the Hub model `{source}`." if not local else
                  "It samples the pipeline in `model/`.")
    readme = (f"---\n{matter}---\n\nA demo of a genzoo pipeline, written by `genzoo space`: choose the number of "
              f"samples, the seed and the sampling settings, and press Generate. {model_line}\n")
    return {"local": local, "source": source, "title": title, "requirement": requirement, "app": app,
            "readme": readme}


def write_space(source: str, out_dir: str | os.PathLike, *, title: str | None = None,
                requirement: str | None = None) -> Path:
    """Write a folder that is a Hugging Face Space (Gradio) showing one pipeline with :func:`build_demo`.

    Upload it with ``genzoo push OUT_DIR USER/NAME --repo-type space`` (``genzoo.hub.push_space``). Every value
    reaches the files through a serialiser: app.py holds the models and title as Python literals (``repr``), the
    README's front matter is ``yaml.safe_dump``'s. The Space serves only its model (``allow_any_model`` stays off).
    The folder is written beside ``out_dir`` and renamed into place, so an interrupted write leaves no half Space
    (what a killed one leaves is removed by the next call).

    Args:
        source (str): a Hub id (checked with ``huggingface_hub.utils.validate_repo_id``), loaded by id when the
            Space starts and listed under ``models:`` in its card; or a saved pipeline folder, copied into the
            Space as ``model/`` (nothing in it may be a link that leads outside it).
        out_dir (str | os.PathLike): a new or empty folder; nothing already there is overwritten.
        title (str | None): the Space's title, one printable line of at most :data:`MAX_TITLE_CHARS` characters
            (default: ``genzoo: <name>``).
        requirement (str | None): the pip requirement that installs genzoo in the Space, one line (default
            ``genzoo[demo]==<this version>``; ``genzoo[demo] @ git+https://...`` or a ``git+https://`` URL works too).

    Returns:
        ``out_dir``, holding ``app.py``, ``requirements.txt`` and ``README.md`` (and ``model/``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty folder.
        FileNotFoundError: ``source`` is a folder without ``model_index.json``.
        ValueError: ``source`` is neither a folder nor a valid Hub id; a title or requirement that is not one line.
        genzoo.files.OutsideFolderError: a link in the pipeline folder leads outside it (nothing is written).
    """
    out = Path(out_dir)
    remove_stale_staging(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new folder for the Space.")
    space = space_files(source, title=title, requirement=requirement)
    copies = []
    if space["local"]:
        from .hub import files_to_upload

        folder = Path(source)
        folder_files(folder)  # refuses any link in the pipeline folder that leads outside it, before writing
        for path in files_to_upload(folder):
            check_inside(folder, path)
            copies.append((path, Path("model") / path.relative_to(folder)))

    def write(staging: Path) -> None:
        for path, relative in copies:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (staging / "app.py").write_text(space["app"], encoding="utf-8")
        (staging / "requirements.txt").write_text(space["requirement"] + "\n", encoding="utf-8")
        (staging / "README.md").write_text(space["readme"], encoding="utf-8")

    commit_folder(out, write, keep=())
    return out
