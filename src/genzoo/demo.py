"""A web demo of genzoo pipelines (Gradio), and the Hugging Face Space that serves one.

``genzoo demo [PATH_OR_REPO_ID ...]`` starts :func:`build_demo`'s app; ``genzoo space PATH_OR_REPO_ID OUT_DIR``
writes a Space folder with :func:`write_space`. The app loads each pipeline once per process, the first time it is
used, and samples under ``torch.no_grad()`` with the seed the page shows, so a seed always gives the same picture.
Mistakes (0 steps, an unknown label, a prompt for a model without text conditioning, a repo that does not exist)
come back as the pipeline's own one-line message in the page; the app keeps serving.

Gradio is an optional dependency: ``pip install "genzoo[demo]"``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

from .checks import error_line
from .conditioning import label_from_text
from .visualize import grid_shape, image_grid, scatter_figure

if TYPE_CHECKING:
    import gradio

#: The solver choice that keeps the scheduler the pipeline was saved with.
OWN_SOLVER = "the model's own"
#: Labels of the class drop-down that mean "no label": an unconditional call, which cycles through the classes.
ALL_CLASSES = "every class in turn"
MAX_SAMPLES = 64
#: Errors that are the user's to fix; they are shown in the page as the message the pipeline or loader raised.
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


class Model:
    """One pipeline of the demo: where it comes from, loaded once on first use, and what its card says."""

    def __init__(self, source: str):
        self.source = str(source)
        self.local = Path(self.source).is_dir()
        self.name = Path(self.source).name if self.local else self.source
        self._pipe = None
        self._scheduler = None  # the scheduler it was saved with, to build solvers from
        self._card = None
        self.lock = threading.Lock()  # one sampling at a time per pipeline (the scheduler is swapped per call)

    @property
    def pipe(self):
        if self._pipe is None:
            from . import load_pipeline

            pipe = load_pipeline(self.source)
            pipe.set_progress_bar_config(disable=False, leave=False)
            self._scheduler = getattr(pipe, "scheduler", None)
            self._pipe = pipe
        return self._pipe

    @property
    def card(self):
        """The model card (``huggingface_hub.ModelCard``), or ``None`` when there is none."""
        if self._card is None:
            from huggingface_hub import ModelCard

            try:
                self._card = ModelCard.load(Path(self.source) / "README.md" if self.local else self.source)
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
               guidance_scale=None, prompt: str = "", negative_prompt: str = "") -> tuple[np.ndarray, str]:
        """Seeded samples (``output_type="np"``) and a one-line description of the call. Options left empty are
        not passed, so the pipeline's own defaults apply and its own errors name what it does not take."""
        pipe = self.pipe
        options = {}
        if class_label not in (None, "", ALL_CLASSES):
            options["class_labels"] = label_from_text(str(class_label), getattr(pipe, "id2label", None))
        if prompt and prompt.strip():
            options["prompt"] = prompt
        if negative_prompt and negative_prompt.strip():
            options["negative_prompt"] = negative_prompt
        if isinstance(guidance_scale, str):  # the page's box: empty means the model's default
            text = guidance_scale.strip()
            try:
                guidance_scale = float(text) if text else None
            except ValueError:
                raise ValueError(f"guidance scale {text!r} is not a number; give a number >= 0, or leave it empty "
                                 "for the model's default.") from None
        if guidance_scale is not None:
            options["guidance_scale"] = float(guidance_scale)
        if self._scheduler is None:  # one pass (GAN, VAE): the page hides its steps box, whatever it holds
            steps = None
        elif steps is not None:
            steps = int(steps)
        with self.lock, torch.no_grad():
            pipe.scheduler = self._solver(solver) if self._scheduler is not None else None
            try:
                start = time.perf_counter()
                out = pipe(batch_size=int(num_samples), generator=torch.Generator().manual_seed(int(seed)),
                           num_inference_steps=steps, output_type="np", **options)
                seconds = time.perf_counter() - start
            finally:
                if self._scheduler is not None:
                    pipe.scheduler = self._scheduler
        samples = out.images if hasattr(out, "images") else out.samples
        shown_steps = "" if self._scheduler is None else f", {steps or pipe.default_num_inference_steps} steps"
        shown_solver = "" if solver in (None, OWN_SOLVER) else f" ({solver})"
        return samples, (f"{type(pipe).__name__}: {len(samples)} samples{shown_steps}{shown_solver}, seed {seed}, "
                         f"{seconds:.2f} s")

    def _solver(self, name):
        if name in (None, "", OWN_SOLVER):
            return self._scheduler
        classes = solver_classes(self._pipe)
        if name not in classes:
            raise ValueError(f"solver {name!r} is not one for {type(self._pipe).__name__}; "
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


def build_demo(sources: list[str] | None = None, *, title: str = "genzoo") -> gradio.Blocks:
    """The Gradio ``Blocks`` app of the demo.

    Tab "Generate": choose a model, the number of samples, the seed (or a random one), the sampling steps and solver
    where the family has them, a class label and guidance scale for class-conditional models, a prompt and negative
    prompt for text-conditional ones. Tab "Compare": every model trained on one data set, sampled with one seed.
    Both are also API endpoints (``/generate``, ``/compare``) for ``gradio_client``. Call ``.queue()`` (``genzoo
    demo`` and the Space do) so that requests wait their turn.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo).
        title (str): the page's title.

    Returns:
        the app, not yet served.

    Raises:
        ValueError: no sources were given and the zoo's ``pipelines/`` folder was not found.
        ImportError: Gradio is not installed.
    """
    gr = _gradio()
    sources = list(sources) if sources else zoo_sources()
    if not sources:
        raise ValueError("no models to show: pass folders or Hub ids (genzoo demo PATH_OR_REPO_ID ...); the zoo's "
                         "pipelines/ folder was not found.")
    models = {}
    for source in sources:
        model = Model(source)
        models[model.name] = model

    def model_for(name: str) -> Model:
        name = (name or "").strip()
        if name not in models:  # a folder or Hub id typed into the box: kept once it has loaded
            if not name:
                raise ValueError("choose a model.")
            model = Model(name)
            model.pipe
            models[name] = model
        return models[name]

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
        model = model_for(name)
        controls = model.controls()
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
                model.figures_markdown())

    @user_errors
    def generate(name, num_samples, seed, randomize, steps, solver, class_label, guidance_scale, prompt,
                 negative_prompt, progress=gr.Progress(track_tqdm=True)):
        """Sample from one model; returns the picture, the seed used and a description."""
        model = model_for(name)
        seed = random.randint(0, 2**32 - 1) if randomize else int(seed if seed is not None else 0)
        progress(0, desc=f"loading {model.name}")
        samples, what = model.sample(num_samples=num_samples, seed=seed, steps=steps, solver=solver,
                                     class_label=class_label, guidance_scale=guidance_scale, prompt=prompt,
                                     negative_prompt=negative_prompt)
        return picture(samples, what, model.dataset), seed, what

    @user_errors
    def compare(dataset, num_samples, seed, progress=gr.Progress(track_tqdm=True)):
        """Every model trained on ``dataset``, sampled with the same seed at its own default settings."""
        chosen = [m for m in models.values() if m.dataset == dataset]
        if not chosen:
            raise ValueError(f"no model trained on {dataset!r}; data sets of these models: {', '.join(datasets)}.")
        gallery = []
        for model in progress.tqdm(chosen, desc="models"):
            samples, what = model.sample(num_samples=num_samples, seed=int(seed))
            gallery.append((picture(samples, what, dataset), f"{model.name} -- {what}"))
        return gallery

    datasets = sorted({m.dataset for m in models.values() if m.dataset})
    first = next(iter(models))
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\nGANs, VAEs, DDPM and flow matching in Diffusers conventions: sample any pipeline, "
                    "or set the families side by side on one data set with one seed.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(list(models), value=first, label="model (or type a folder or Hub id)",
                                        allow_custom_value=True, elem_id="model")
                    num_samples = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="samples", elem_id="num_samples")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                        randomize = gr.Checkbox(value=False, label="randomize", elem_id="randomize")
                    steps = gr.Number(value=None, precision=0, label="sampling steps", elem_id="steps")
                    solver = gr.Dropdown([OWN_SOLVER], value=OWN_SOLVER, label="solver", elem_id="solver",
                                         allow_custom_value=True)  # the API's solver is checked by the model
                    class_label = gr.Dropdown([ALL_CLASSES], value=ALL_CLASSES, label="class label",
                                              allow_custom_value=True, elem_id="class_label")
                    guidance = gr.Textbox(value="", label="guidance scale", placeholder="empty: the model's default",
                                          elem_id="guidance")
                    prompt = gr.Textbox(label="prompt", elem_id="prompt")
                    negative_prompt = gr.Textbox(label="negative prompt", elem_id="negative_prompt")
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
                compare_seed = gr.Number(value=0, precision=0, label="seed", elem_id="compare_seed")
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
            gallery = gr.Gallery(label="one seed, every family", columns=3, format="png", elem_id="gallery")

        controls = [steps, solver, class_label, guidance, prompt, negative_prompt, figures]
        model.change(describe, model, controls, api_name="describe")
        demo.load(describe, model, controls, api_name=False)
        button.click(generate, [model, num_samples, seed, randomize, steps, solver, class_label, guidance, prompt,
                                negative_prompt], [image, seed, info], api_name="generate")
        compare_button.click(compare, [compare_data, compare_samples, compare_seed], gallery, api_name="compare")
    return demo


def launch(sources: list[str] | None = None, *, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True) -> gradio.Blocks:
    """Build the app (:func:`build_demo`), queue it and serve it, as ``genzoo demo`` does.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo).
        host (str): the address to serve on.
        port (int | None): the port (default: Gradio's, 7860 or the next free one).
        block (bool): serve until interrupted; ``False`` returns at once with the app running in the background
            (``demo.local_url`` is its address; ``demo.close()`` stops it).

    Returns:
        the running app.
    """
    demo = build_demo(sources)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block)
    return demo


SPACE_APP = '''"""A Hugging Face Space for {name}, written by `genzoo space` (genzoo {version})."""

from pathlib import Path

from genzoo.demo import build_demo

MODELS = [{model}]

demo = build_demo(MODELS, title={title!r})

if __name__ == "__main__":
    demo.queue().launch()
'''


def write_space(source: str, out_dir: str | os.PathLike, *, title: str | None = None,
                requirement: str | None = None) -> Path:
    """Write a folder that is a Hugging Face Space (Gradio) showing one pipeline with :func:`build_demo`.

    Upload it with ``genzoo push OUT_DIR USER/NAME --repo-type space`` (``genzoo.hub.push_space``).

    Args:
        source (str): a Hub id, loaded by id when the Space starts (and listed under ``models:`` in its card), or a
            saved pipeline folder, copied into the Space as ``model/``.
        out_dir (str | os.PathLike): a new or empty folder; nothing already there is overwritten.
        title (str | None): the Space's title (default: ``genzoo: <name>``).
        requirement (str | None): the pip requirement that installs genzoo in the Space (default
            ``genzoo[demo]==<this version>``; a ``git+https://...`` URL works too).

    Returns:
        ``out_dir``, holding ``app.py``, ``requirements.txt`` and ``README.md`` (and ``model/``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty folder.
        FileNotFoundError: ``source`` is a folder without ``model_index.json``.
    """
    import gradio

    from . import __version__

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new folder for the Space.")
    local = Path(source).is_dir()
    if local and not (Path(source) / "model_index.json").is_file():
        raise FileNotFoundError(f"{source} has no model_index.json: give a folder written by save_pretrained or "
                                "genzoo train, or a Hub id.")
    name = Path(source).name if local else source
    title = title or f"genzoo: {name}"
    out.mkdir(parents=True, exist_ok=True)
    if local:
        from .hub import files_to_upload

        for path in files_to_upload(Path(source)):
            target = out / "model" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        model = 'str(Path(__file__).parent / "model")'
    else:
        model = repr(source)
    (out / "app.py").write_text(SPACE_APP.format(name=name, version=__version__, model=model, title=title))
    (out / "requirements.txt").write_text((requirement or f"genzoo[demo]=={__version__}") + "\n")
    models = "" if local else f"models:\n- {source}\n"
    (out / "README.md").write_text(
        f"---\ntitle: {title!r}\nsdk: gradio\nsdk_version: {gradio.__version__}\napp_file: app.py\n{models}"
        f"tags:\n- genzoo\n- diffusers\n---\n\n# {title}\n\nA demo of the genzoo pipeline `{name}`: choose the number "
        "of samples, the seed and the sampling settings, and press Generate. Written by `genzoo space`.\n")
    return out
