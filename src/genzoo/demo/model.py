"""One pipeline of the demo (:class:`Model`): loaded once, on first use; what the page offers for it (its card's
measurement settings as defaults, example prompts); seeded sampling within the demo's bounds and time limit, with a
solver swapped in for one call only and the options the model does not take ignored."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..checks import check_int, check_number, describe
from ..conditioning import label_from_text
from ..pipelines.drivers import solver_choices
from .limits import (
    ALL_CLASSES,
    CONCURRENCY_LIMIT,
    MAX_LABEL_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    OWN_SOLVER,
    RequestTimeout,
    _whole,
    check_guidance,
    check_sample_steps,
    check_text,
)

#: At most CONCURRENCY_LIMIT samplings of more than one step run at once in this process (each model also samples one
#: request at a time); one-step requests (GAN, VAE, a flow map at one step) do not wait for these.
_MANY_STEP_SAMPLINGS = threading.BoundedSemaphore(CONCURRENCY_LIMIT)
#: Example prompts offered for a text-conditional model.
NUM_EXAMPLE_PROMPTS = 6


def _acquire(lock, deadline: float | None, what: str, max_seconds) -> None:
    """Take ``lock`` (a lock or semaphore), waiting at most until ``deadline`` (``time.monotonic()``; ``None``: as
    long as it takes); past it, a :class:`RequestTimeout` that says what was busy."""
    if deadline is None:
        lock.acquire()
    elif not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise RequestTimeout(f"{what} stayed busy with other requests for {max_seconds:g} s, this demo's bound per "
                             "request; try again in a moment.")


def read_eval_settings(path) -> dict | None:
    """The settings a card's figures were measured with, from the ``eval.json`` that ``genzoo eval`` writes beside a
    pipeline: ``{"steps": int | None, "guidance": float | None}`` (``None``: the pipeline's own default); ``None``
    when there is no such file or it does not parse. Values outside the demo's bounds are left out."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    settings = {"steps": None, "guidance": None}
    try:
        if data.get("num_inference_steps") is not None:
            settings["steps"] = check_int("num_inference_steps", data["num_inference_steps"], 1, MAX_STEPS)
    except ValueError:
        pass
    try:
        if data.get("guidance_scale") is not None:
            settings["guidance"] = check_guidance(data["guidance_scale"])
    except ValueError:
        pass
    return settings


def _time_bounded(pipe, deadline: float, max_seconds: float):
    """A ``progress_bar`` for ``pipe`` that stops the sampling loop (:class:`RequestTimeout`) once ``deadline``
    (``time.monotonic()``, ``max_seconds`` after the request began) has passed: genzoo's pipelines with steps (DDPM,
    flow matching, flow maps) iterate ``self.progress_bar(timesteps)``, as Diffusers' do, so the deadline is
    checked before every step."""
    original = pipe.progress_bar

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
        self._eval = None  # eval.json's settings: None unread, False absent
        self._examples = None
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
        from .. import load_pipeline

        if self.local:
            pipe = load_pipeline(self.source)
        elif self.fresh_cache:
            from ..pipelines.resolve import resolve_pretrained_path

            cache = tempfile.mkdtemp(prefix="genzoo-demo-")
            try:
                pipe = load_pipeline(self.source, token=self.token, revision=self.revision, cache_dir=cache)
                folder = resolve_pretrained_path(self.source, revision=self.revision, token=self.token,
                                                 cache_dir=cache, local_files_only=True)
                self._card = self._read_card(folder / "README.md")
                self._eval = read_eval_settings(folder / "eval.json") or False
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
    def card_settings(self) -> dict | None:
        """The settings its card's figures were measured with (``eval.json`` beside the pipeline, as the zoo's folders
        and ``genzoo eval --update-card`` have it): ``{"steps", "guidance"}``, each the pipeline's own default where
        the file leaves it open (``None`` for a one-pass model, or an unconditional one's guidance); ``None`` when
        the model has no ``eval.json``."""
        if self._eval is None:
            if self.local:
                self._eval = read_eval_settings(Path(self.source) / "eval.json") or False
            elif self.fresh_cache:
                self.pipe  # reads it from the download
            else:
                from huggingface_hub import hf_hub_download

                try:
                    path = hf_hub_download(self.source, "eval.json", token=self.token, revision=self.revision)
                    self._eval = read_eval_settings(path) or False
                except Exception:  # no eval.json, or a Hub that cannot be reached: the pipeline's defaults
                    self._eval = False
        if not self._eval:
            return None
        pipe = self.pipe
        steps = self._eval["steps"]
        if self._scheduler is None:
            steps = None
        elif steps is None:
            steps = pipe.default_num_inference_steps
        guidance = self._eval["guidance"]
        if getattr(pipe, "conditioning", "none") == "none":
            guidance = None
        elif guidance is None:
            guidance = getattr(pipe, "default_guidance_scale", None)
        return {"steps": steps, "guidance": guidance}

    @property
    def default_steps(self) -> int | None:
        """The sampling steps a request leaves empty takes: its card's, else the pipeline's default (``None``: a
        one-pass model)."""
        self.pipe  # loads it, and the scheduler it was saved with
        if self._scheduler is None:
            return None
        card = self.card_settings
        return card["steps"] if card else self.pipe.default_num_inference_steps

    @property
    def default_guidance(self) -> float | None:
        """The guidance scale a request leaves empty takes: its card's, else the pipeline's default (``None``: an
        unconditional model)."""
        if getattr(self.pipe, "conditioning", "none") == "none":
            return None
        card = self.card_settings
        return card["guidance"] if card else getattr(self.pipe, "default_guidance_scale", None)

    def example_prompts(self) -> list[str]:
        """A few prompts for a text-conditional model: its data set's own captions
        (:meth:`genzoo.data.DataSet.example_prompts`, a plugin's data set included), those whose every word its
        tokenizer knows; none for other models and data sets no package registers."""
        if self._examples is None:
            examples = []
            if getattr(self.pipe, "conditioning", "none") == "text" and self.dataset:
                from ..data.sets import get_dataset

                data = get_dataset(self.dataset)
                captions = (data.example_prompts(NUM_EXAMPLE_PROMPTS) if data is not None else None) or []
                examples = [c for c in captions if isinstance(c, str) and not self.unknown_words(c)]
            self._examples = examples
        return list(self._examples)

    def unknown_words(self, prompt: str) -> list[str]:
        """The words of ``prompt`` its tokenizer does not know (each read as one unknown token, which says nothing
        to the model), in order, once each; ``[]`` for a model without a tokenizer."""
        tokenizer = getattr(self.pipe, "tokenizer", None)
        unk = getattr(tokenizer, "unk_token_id", None)
        if tokenizer is None or unk is None or not prompt.strip():
            return []
        try:
            encoded = tokenizer(prompt, return_offsets_mapping=True, truncation=False)
        except Exception:  # a slow tokenizer has no offsets: nothing to say
            return []
        words = [prompt[a:b] for token, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]) if token == unk]
        return list(dict.fromkeys(words))

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
        """What the page offers for this pipeline: steps and guidance (their defaults: :attr:`default_steps`,
        :attr:`default_guidance`, the card's where it has them; ``None`` where the model takes none), solvers (the
        model's own, then :func:`~genzoo.pipelines.drivers.solver_choices` of its ``model_kind``: registered
        schedulers, plugins' included, and Diffusers' solvers), class labels, the conditioning (``"none"``,
        ``"class"``, ``"text"``), example prompts and the card's settings (:attr:`card_settings`)."""
        pipe = self.pipe
        conditioning = getattr(pipe, "conditioning", "none")
        labels = list((getattr(pipe, "id2label", None) or {}).values()) if conditioning == "class" else []
        solvers = [OWN_SOLVER, *self._solver_choices()]
        return {"steps": self.default_steps, "solvers": solvers, "labels": labels, "conditioning": conditioning,
                "guidance": self.default_guidance, "examples": self.example_prompts(), "card": self.card_settings}

    def sample(self, *, num_samples: int, seed: int, steps=None, solver: str = OWN_SOLVER, class_label=None,
               guidance_scale=None, prompt: str = "", negative_prompt: str = "",
               max_seconds: float | None = None) -> tuple[np.ndarray, str]:
        """Seeded samples (``output_type="np"``) and a one-line description of the call: the settings that drew
        them and whether they are its card's (``... -- the card's settings`` or ``... -- not the card's 100
        steps``). Steps and guidance left empty take :attr:`default_steps` and :attr:`default_guidance`.

        Every value is checked against the demo's bounds first (samples 1 to :data:`MAX_SAMPLES`, steps 1 to
        :data:`MAX_STEPS`, samples x steps at most :data:`MAX_SAMPLE_STEPS`, seed 0 to :data:`MAX_SEED`, guidance
        in [0, :data:`MAX_GUIDANCE`], prompts of at most :data:`MAX_PROMPT_CHARS` characters): a ``ValueError``
        names the value and the bound. Then what the model does not take is ignored, and the description says so:
        steps and solver of a one-pass model, a prompt of a model without text conditioning, a class label of one
        without classes, guidance of an unconditional one (so values left in the page from another model never make
        a request fail). Words of a prompt the model's tokenizer does not know are named in the description.

        ``max_seconds`` bounds the whole request, the wait for the model (one request at a time per model, at most
        :data:`CONCURRENCY_LIMIT` samplings of more than one step at once) included: past it a
        :class:`RequestTimeout` stops the sampling loop before its next step."""
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
        if steps is not None:
            steps = check_int("num_inference_steps", _whole(steps), 1, MAX_STEPS, "the demo's bound")
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        pipe = self.pipe
        conditioning = getattr(pipe, "conditioning", "none")
        ignored = []  # what this model does not take: values left in the page by another model, or an API client's
        if self._scheduler is None:
            ignored += ["sampling steps"] * (steps is not None) + ["solver"] * (solver != OWN_SOLVER)
            steps, solver = None, OWN_SOLVER
        if conditioning != "text":
            ignored += ["prompt"] * bool(prompt.strip()) + ["negative prompt"] * bool(negative_prompt.strip())
            prompt = negative_prompt = ""
        if conditioning != "class":
            ignored += ["class label"] * (class_label not in ("", ALL_CLASSES))
            class_label = ""
        if conditioning == "none":
            ignored += ["guidance scale"] * (guidance_scale is not None)
            guidance_scale = None
        steps = self.default_steps if steps is None else steps
        card = self.card_settings
        if guidance_scale is None and card is not None:
            guidance_scale = card["guidance"]  # else the pipeline's own default, which it applies itself
        check_sample_steps(num_samples, steps or 1)
        options = {}
        if class_label not in ("", ALL_CLASSES):
            options["class_labels"] = label_from_text(class_label, getattr(pipe, "id2label", None))
        if prompt.strip():
            options["prompt"] = prompt
        if negative_prompt.strip():
            options["negative_prompt"] = negative_prompt
        if guidance_scale is not None:
            options["guidance_scale"] = guidance_scale
        many_steps = steps is not None and steps > 1
        _acquire(self.lock, deadline, self.name, max_seconds)
        try:
            if many_steps:
                _acquire(_MANY_STEP_SAMPLINGS, deadline, "the demo", max_seconds)
            try:
                samples, seconds = self._call(pipe, num_samples, seed, steps, solver, options, deadline, max_seconds)
            finally:
                if many_steps:
                    _MANY_STEP_SAMPLINGS.release()
        finally:
            self.lock.release()
        shown = [f"{len(samples)} sample{'s' * (len(samples) != 1)}"]
        if steps is not None:
            shown.append(f"{steps} step{'s' * (steps != 1)}" + ("" if solver == OWN_SOLVER else f" ({solver})"))
        used_guidance = self.default_guidance if guidance_scale is None else guidance_scale
        if used_guidance is not None:
            shown.append(f"guidance {used_guidance:g}")
        what = f"{type(pipe).__name__}: {', '.join([*shown, f'seed {seed}', f'{seconds:.2f} s'])}"
        what += self._against_card(steps, used_guidance, solver)
        if ignored:
            what += f"; ignored, as {self.name} does not take them: {', '.join(ignored)}"
        unknown = list(dict.fromkeys(self.unknown_words(prompt) + self.unknown_words(negative_prompt)))
        if unknown:
            what += f"; words this model does not know (not in its training captions): {', '.join(unknown)}"
        return samples, what

    def _against_card(self, steps, guidance, solver) -> str:
        """`` -- the card's settings``, `` -- not the card's 100 steps``, or nothing for a model without an
        ``eval.json``."""
        card = self.card_settings
        if card is None:
            return ""
        differs = []
        if card["steps"] is not None and steps != card["steps"]:
            differs.append(f"{card['steps']} steps")
        if solver != OWN_SOLVER:
            differs.append("the model's own solver")
        if card["guidance"] is not None and guidance != card["guidance"]:
            differs.append(f"guidance {card['guidance']:g}")
        return f" — not the card's {', '.join(differs)}" if differs else " — the card's settings"

    def _call(self, pipe, num_samples, seed, steps, solver, options, deadline, max_seconds):
        """One call of the pipeline (the model's lock held): the solver swapped in and the time bound set for this
        call only. Returns (samples, seconds)."""
        with torch.no_grad():
            pipe.scheduler = self._solver(solver) if self._scheduler is not None else None
            own_bar = "progress_bar" in pipe.__dict__
            original_bar = pipe.progress_bar
            if deadline is not None:
                pipe.progress_bar = _time_bounded(pipe, deadline, max_seconds)
            try:
                start = time.perf_counter()
                out = pipe(batch_size=num_samples, generator=torch.Generator().manual_seed(seed),
                           num_inference_steps=steps, output_type="np", **options)
                seconds = time.perf_counter() - start
            finally:
                if self._scheduler is not None:
                    pipe.scheduler = self._scheduler
                if deadline is not None:
                    if own_bar:
                        pipe.progress_bar = original_bar
                    else:
                        del pipe.progress_bar
        return (out.images if hasattr(out, "images") else out.samples), seconds

    def _solver_choices(self) -> dict:
        """The solvers this pipeline can swap in: :func:`~genzoo.pipelines.drivers.solver_choices` of its kind and
        its own scheduler's config (a flow on another path than the straight one gets genzoo's solvers alone)."""
        config = getattr(self._scheduler, "config", None)
        return solver_choices(getattr(self._pipe, "model_kind", None), config)

    def _solver(self, name):
        if name in (None, "", OWN_SOLVER):
            return self._scheduler
        classes = self._solver_choices()
        if name not in classes:
            raise ValueError(f"solver {describe(name)} is not one for {type(self._pipe).__name__}; "
                             f"choose one of {', '.join([OWN_SOLVER, *classes])}.")
        from ..schedulers import diffusers_scheduler

        cls = classes[name]
        if cls.__module__.partition(".")[0] != "diffusers":  # genzoo's or a plugin's: from the saved config
            return cls.from_config(self._scheduler.config)
        self._pipe.scheduler = self._scheduler  # the helper reads the model's kind and scheduler from the pipeline
        return diffusers_scheduler(cls, self._pipe)

