"""One pipeline of the demo (:class:`Model`): loaded once, on first use; what the page offers for it; seeded
sampling within the demo's bounds and time limit, with a solver swapped in for one call only."""

from __future__ import annotations

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
    MAX_LABEL_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    OWN_SOLVER,
    RequestTimeout,
    _whole,
    check_guidance,
    check_text,
)


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
        """What the page offers for this pipeline: steps, solvers (the model's own, then
        :func:`~genzoo.pipelines.drivers.solver_choices` of its ``model_kind``: registered schedulers, plugins'
        included, and Diffusers' solvers), class labels, prompts, guidance."""
        pipe = self.pipe
        steps = None if getattr(pipe, "scheduler", None) is None else pipe.default_num_inference_steps
        conditioning = getattr(pipe, "conditioning", "none")
        labels = list((getattr(pipe, "id2label", None) or {}).values()) if conditioning == "class" else []
        guidance = getattr(pipe, "default_guidance_scale", None) if conditioning != "none" else None
        solvers = [OWN_SOLVER, *self._solver_choices()]
        return {"steps": steps, "solvers": solvers, "labels": labels, "conditioning": conditioning,
                "guidance": guidance}

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

