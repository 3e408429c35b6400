"""Sharing on the Hugging Face Hub: push a pipeline folder with a model card; load by id with
:func:`genzoo.load_pipeline` (see :mod:`genzoo.pipelines.loading`).

What a push uploads is the pipeline folder exactly as ``save_pretrained`` wrote it -- ``model_index.json``, one
folder per component, safetensors weights and the ``genzoo_hub.py`` files that let plain Diffusers load it with
``trust_remote_code=True`` -- plus ``README.md`` (the model card), and, when the folder comes from the trainer,
``samples.png``, ``metrics.json`` and ``recipe.yaml``. Checkpoints, tracker logs (wherever ``--logging_dir`` put
them, TensorBoard event files and ``wandb`` folders anywhere; ``include_logs=True`` uploads them), intermediate sample
grids and hidden files stay local. A push refuses, before any request, a symlink that leads outside the folder and a
file that holds the token it is about to use or any other secret in play (:mod:`genzoo.secrets`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData

from . import registry
from .conditioning import conditioning_of
from .files import folder_files
from .model_index import (
    MODEL_INDEX,
    PipelineLoadError,
    component_configs,
    folder_root,
    one_line,
    pipeline_class_name,
    read_json_object,
    read_model_index,
    read_yaml_mapping,
)
from .project import PYPI_INSTALL, SOURCE_INSTALL, TORCH_CPU_INSTALL
from .secrets import check_files, secrets_in_play

#: Metrics of `genzoo eval` that come from what a pipeline declares (its likelihoods), whatever the data set, with
#: their names in a model card; each data set adds its own (``DataSet.card_metrics``): :func:`eval_metrics`.
PIPELINE_METRICS = {
    "nll_nats": "NLL of held-out data (nats, exact flow likelihood)",
    "iwae_nll_nats": "NLL bound of held-out data (nats, IWAE)",
}
#: Top-level folders of a training run's output folder that stay local.
LOCAL_ONLY = ("checkpoints", "logs", "samples")
#: The project name the trainer gives its trackers (Accelerate's TensorBoard writes into ``<logging_dir>/genzoo``).
TRACKER_PROJECT = "genzoo"
#: Folders of Weights & Biases runs, wherever they are.
WANDB_FOLDER = "wandb"
#: How TensorBoard names its event files, wherever they are.
TENSORBOARD_EVENTS = "events.out.tfevents."


def tracker_folders(folder: Path) -> set[tuple[str, ...]]:
    """Where the run that wrote ``folder`` logged (as path parts under ``folder``): its ``logging_dir`` from
    ``recipe.yaml`` (``logs`` when unknown); the tracker's project folder when ``logging_dir`` is the folder
    itself. A ``logging_dir`` outside the folder has nothing to exclude."""
    folder = Path(folder)
    logging_dir = "logs"
    try:
        recipe = _load_yaml(folder / "recipe.yaml")
    except OSError:  # unreadable, or a link out of the folder (which the upload list refuses by itself)
        recipe = {}
    if isinstance(recipe.get("logging_dir"), str) and recipe["logging_dir"].strip():
        logging_dir = recipe["logging_dir"].strip()
    found = {("logs",)}
    path = Path(os.path.normpath(folder / logging_dir))  # an absolute logging_dir stays absolute
    try:
        parts = path.relative_to(Path(os.path.normpath(folder))).parts
    except ValueError:
        return found
    found.add(parts + (TRACKER_PROJECT,) if not parts else parts)
    return found


def _is_log(parts: tuple[str, ...], trackers: set[tuple[str, ...]]) -> bool:
    return (
        any(parts[: len(t)] == t for t in trackers)
        or WANDB_FOLDER in parts[:-1]
        or parts[-1].startswith(TENSORBOARD_EVENTS)
    )


def _is_hidden(parts: tuple[str, ...]) -> bool:
    """A hidden file, or a file in a hidden folder (staging folders, locks, caches): never uploaded."""
    return any(part.startswith(".") for part in parts)


def _additions(folder: Path, files: list[Path]) -> list[CommitOperationAdd]:
    """One commit operation per file, at its path under ``folder``."""
    return [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
            for path in files]


def files_to_upload(folder: Path, *, include_logs: bool = False) -> list[Path]:
    """The files a push uploads: every file of the pipeline folder except training state, tracker logs,
    intermediate sample grids, hidden files and folders, and the model card (which is written fresh).

    Tracker logs are the run's ``logging_dir`` (read from ``recipe.yaml``; ``logs`` by default), TensorBoard event
    files (``events.out.tfevents.*``) and ``wandb`` folders, wherever they are.

    Args:
        folder (Path): a folder written by ``save_pretrained`` or the trainer.
        include_logs (bool): upload the tracker logs too.

    Returns:
        The files, sorted.

    Raises:
        genzoo.files.OutsideFolderError: a symlink in the folder leads outside it (named, with its target).
    """
    folder = Path(folder)
    files = folder_files(folder)  # first: refuses a link leading outside (recipe.yaml too) before anything is read
    trackers = tracker_folders(folder)
    local_only = {name for name in LOCAL_ONLY if not (include_logs and name == "logs")}
    chosen = []
    for path in files:
        parts = path.relative_to(folder).parts
        if parts[0] in local_only or _is_hidden(parts) or parts == ("README.md",):
            continue
        if not include_logs and _is_log(parts, trackers):
            continue
        chosen.append(path)
    return chosen


def _push_secrets(token: str | None) -> dict[str, str]:
    """The secrets no uploaded file may hold: the token this push uses (``token``, else the one
    ``huggingface_hub`` would use) and every other secret in play."""
    from huggingface_hub import get_token

    used = token if isinstance(token, str) else get_token()
    secrets = {used.strip(): "the Hub token this push uses"} if used else {}
    for value, source in secrets_in_play().items():
        secrets.setdefault(value, source)
    return secrets


def _load_json(path: Path) -> dict:
    """The JSON object in ``path`` (a file of a pipeline folder), ``{}`` where there is none; read as
    :func:`~genzoo.model_index.read_json_object` reads: bounded, and never through a link out of the folder."""
    path = Path(path)
    return read_json_object(path, root=folder_root(path.parent)) if path.exists() or path.is_symlink() else {}


def _load_yaml(path: Path) -> dict:
    """The YAML mapping in ``path`` (a recipe), ``{}`` where there is none; bounded, and never through a link out of
    the folder (:func:`~genzoo.model_index.read_yaml_mapping`)."""
    return read_yaml_mapping(path, root=folder_root(Path(path).parent))


def eval_metrics(dataset: str | None = None) -> dict[str, str]:
    """Metrics of `genzoo eval` that go into a model card, with their names there: :data:`PIPELINE_METRICS` and the
    registered data set ``dataset``'s ``card_metrics`` (``None``, or a data set no package registers: those of every
    registered data set)."""
    from .data.sets import get_dataset, registered_datasets

    data = get_dataset(dataset) if dataset else None
    sets = [data] if data is not None else list(registered_datasets().values())
    metrics = dict(PIPELINE_METRICS)
    for data in sets:
        for name, label in data.card_metrics.items():
            metrics.setdefault(name, label)
    return metrics


def _pipeline_class(folder: Path):
    """The registered pipeline class that ``folder``'s ``model_index.json`` names."""
    name = pipeline_class_name(read_model_index(folder))
    try:
        return registry.get("pipeline", name)
    except KeyError as exc:
        raise PipelineLoadError(f"{folder}: {exc.args[0]}") from None


def data_kind(folder: Path) -> str:
    """What a saved pipeline generates, as its classes declare it: the ``data_kind`` of the class of the component
    that draws the samples (the pipeline class's ``main_component``, else its ``labelled_component``), read from the
    folder without loading it. A model class that declares none (Diffusers' ``UNet2DModel``, ``AutoencoderKL``) or
    is not registered makes images.

    Args:
        folder (Path): a saved pipeline folder.

    Returns:
        ``"image"`` or ``"vector"``.

    Raises:
        PipelineLoadError: ``model_index.json`` names a pipeline class that is not registered.
    """
    pipeline_class = _pipeline_class(Path(folder))
    component = getattr(pipeline_class, "main_component", None) or getattr(pipeline_class, "labelled_component", None)
    if not component:
        return "image"
    class_name = str(_load_json(Path(folder) / component / "config.json").get("_class_name", ""))
    try:
        model_class = registry.find_component_class(class_name)
    except KeyError:  # Diffusers' own models, which genzoo does not register
        return "image"
    return getattr(model_class, "data_kind", "image")


def conditioning_of_folder(folder: Path) -> tuple[str, dict[int, str] | None]:
    """How a saved pipeline is conditioned, read from its files without loading it: decided by
    ``genzoo.conditioning.conditioning_of`` from the saved component configs and the ``labelled_component`` of the
    pipeline class that ``model_index.json`` names, exactly as for the pipeline loaded from the folder.

    Args:
        folder (Path): a saved pipeline folder.

    Returns:
        ``("text", None)``, ``("class", id2label)`` or ``("none", None)``.

    Raises:
        PipelineLoadError: ``model_index.json`` names a pipeline class that is not registered.
    """
    model_index = read_model_index(folder)
    pipeline_class = _pipeline_class(folder)
    labelled_component = getattr(pipeline_class, "labelled_component", None)
    return conditioning_of(component_configs(folder, model_index), labelled_component)


def _usage_call(conditioning: str, id2label: dict | None) -> str:
    if conditioning == "text":
        return 'out = pipe(prompt="a handwritten seven", guidance_scale=2.0, generator=torch.Generator().manual_seed(0))'
    if conditioning == "class":
        names = [str(name) for name in id2label.values()]  # from the folder: written as data, never as code
        shown = ", ".join(repr(name) for name in names[:10])
        return (f"out = pipe(class_labels=[{names[0]!r}] * 4, generator=torch.Generator().manual_seed(0))  "
                f"# label names: {' '.join(shown.split())}{' ...' if len(names) > 10 else ''}")
    return "out = pipe(batch_size=16, generator=torch.Generator().manual_seed(0))"


def _evaluation_section(evaluation: dict, repo_id: str) -> str:
    labels = eval_metrics(evaluation.get("dataset"))
    rows = [f"| {labels[name]} | {value:.4g} |" for name, value in evaluation.items()
            if name in labels and isinstance(value, (int, float))]
    if not rows:
        return ""
    command = f"genzoo eval {repo_id} --dataset {evaluation.get('dataset')} --num-samples {evaluation.get('num_samples')}"
    if evaluation.get("num_inference_steps"):
        command += f" --steps {evaluation['num_inference_steps']}"
    if evaluation.get("guidance_scale") is not None:
        command += f" --guidance-scale {evaluation['guidance_scale']}"
    command += f" --seed {evaluation.get('seed', 0)}"
    return (
        "## Evaluation\n\n"
        f"Measured offline against held-out data (docs/evaluation.md) with `{command}`, "
        f"{evaluation.get('model_calls_per_sample')} model call(s) per sample:\n\n"
        "| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n\n"
    )


def make_model_card(
    folder: str | os.PathLike, repo_id: str, license: str = "apache-2.0", notes: str = ""
) -> ModelCard:
    """A model card for the pipeline in ``folder``: metadata (library, tags, pipeline tag, data set, licence, training
    results from ``metrics.json``, evaluation results from ``eval.json``), the sample grid, how to load and call it,
    the evaluation, ``notes`` and the recipe that trained it.

    Args:
        folder (str | os.PathLike): a saved pipeline folder.
        repo_id (str): the Hub id the card is written for (used in its loading and evaluation commands).
        license (str): the licence in the card's metadata.
        notes (str): markdown added before the recipe, e.g. how the model was reproduced.

    Returns:
        The card (``str(card)`` is the README.md text).

    Raises:
        ValueError: ``repo_id`` is not a Hub id (it is written into the card's code; only a valid id is).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"repo_id {repo_id!r} is not a Hub id: {one_line(exc)}") from None
    folder = Path(folder)
    pipeline = pipeline_class_name(read_model_index(folder))
    metrics = _load_json(folder / "metrics.json")
    recipe = _load_yaml(folder / "recipe.yaml")
    method = metrics.get("method") or recipe.get("method") or pipeline.replace("Pipeline", "").lower()
    dataset = str(metrics.get("dataset") or recipe.get("dataset") or "unknown")
    kind = data_kind(folder)
    conditioning, id2label = conditioning_of_folder(folder)
    pipeline_tag = None
    if kind == "image":
        pipeline_tag = "text-to-image" if conditioning == "text" else "unconditional-image-generation"
    task = pipeline_tag or "unconditional-generation"

    eval_results = [
        EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset, metric_type=f"train_{name}",
                   metric_name=f"final training {name} (mean of the last steps)", metric_value=round(float(value), 6))
        for name, value in sorted(metrics.get("final_losses", {}).items())
    ]
    evaluation = _load_json(folder / "eval.json")  # written by `genzoo eval`, when it ran
    labels = eval_metrics(evaluation.get("dataset"))
    for name, value in sorted(evaluation.items()):
        if name in labels and isinstance(value, (int, float)):
            eval_results.append(EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset,
                                           metric_type=name, metric_name=labels[name],
                                           metric_value=round(float(value), 6)))
    data = ModelCardData(
        library_name="diffusers",
        tags=["genzoo", method, f"{kind}-data", pipeline.lower()]
        + ([f"{conditioning}-conditional"] if conditioning != "none" else []),
        pipeline_tag=pipeline_tag,
        datasets=[dataset],
        license=license,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    samples = "![Samples from this model](samples.png)\n\n" if (folder / "samples.png").is_file() else ""
    facts = ""
    if metrics:
        facts = (
            f"Trained for {metrics.get('global_step')} steps of batch {metrics.get('train_batch_size')} x "
            f"{metrics.get('gradient_accumulation_steps', 1)} on {metrics.get('num_processes', 1)} process(es) "
            f"(mixed precision: {metrics.get('mixed_precision', 'no')}) in {metrics.get('train_seconds_this_run')} s "
            f"({metrics.get('steps_per_second')} steps/s). Data: {metrics.get('data', dataset)}.\n\n"
        )
        if metrics.get("wall_seconds_this_run") and metrics.get("machine"):
            facts += (f"Wall-clock time of the whole run (data, training, saving): "
                      f"{metrics['wall_seconds_this_run'] / 60:.1f} minutes on {metrics['machine']}.\n\n")
    recipe_block = ""
    if recipe:
        recipe_block = (
            "## Training recipe\n\nReproduce it with `genzoo train --config recipe.yaml` (or "
            "`accelerate launch train/train.py --config recipe.yaml`); the file is in this repository:\n\n"
            f"```yaml\n{yaml.safe_dump(recipe, sort_keys=True)}```\n"
        )
    body = f"""# {repo_id}

A genzoo `{pipeline}` ({method}) trained on `{dataset}`.

{samples}{facts}## How to use

Install genzoo from its repository (once genzoo is on PyPI: `{PYPI_INSTALL}`); on a machine without a GPU, install
torch from its CPU index first (`{TORCH_CPU_INSTALL}`):

```bash
{SOURCE_INSTALL}
```

With genzoo:

```python
import torch
import genzoo

pipe = genzoo.load_pipeline("{repo_id}")
{_usage_call(conditioning, id2label)}
```

With plain Diffusers (genzoo must be installed; the repository's `genzoo_hub.py` hands Diffusers genzoo's classes):

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)
```

Or from the command line: `genzoo sample {repo_id} --num-samples 16 --out samples.png`.

{_evaluation_section(evaluation, repo_id)}{notes.strip() + chr(10) + chr(10) if notes.strip() else ""}{recipe_block}"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    license: str = "apache-2.0",
    include_logs: bool = False,
) -> str:
    """Upload a saved pipeline folder (and its model card) to ``repo_id``, in one commit.

    What is uploaded is :func:`files_to_upload`; before any request the push refuses a symlink that leads outside
    the folder and a file that holds the token it uses or any other secret in play (:mod:`genzoo.secrets`).

    Args:
        folder (str | os.PathLike): a folder written by ``save_pretrained`` or the trainer.
        repo_id (str): ``namespace/name`` on the Hub; the repo is created if needed.
        token (str | None): a Hub token (default: ``HF_TOKEN`` or the stored login).
        private (bool | None): create the repo private (only applies when it is created).
        commit_message (str | None): the commit message (default: "Upload <pipeline class> with genzoo").
        revision (str | None): a branch to push to, created from ``main`` if it does not exist yet.
        create_pr (bool): open a pull request instead of committing to the branch.
        license (str): the licence in the model card.
        include_logs (bool): upload the tracker logs too (``logging_dir``, TensorBoard event files, ``wandb``).

    Returns:
        The commit URL.

    Raises:
        FileNotFoundError: ``folder`` has no ``model_index.json``.
        genzoo.files.OutsideFolderError: a symlink in the folder leads outside it.
        genzoo.secrets.SecretInFileError: a file (named) holds the token or another secret; nothing is uploaded.
    """
    folder = Path(folder)
    if not (folder / MODEL_INDEX).is_file():
        raise FileNotFoundError(f"{folder} has no {MODEL_INDEX}: push a folder written by save_pretrained or the trainer.")
    files = files_to_upload(folder, include_logs=include_logs)
    card = str(make_model_card(folder, repo_id, license=license)).encode()
    check_files([*files, (folder / "README.md (the model card)", card)], _push_secrets(token))
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [*_additions(folder, files), CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card)]
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload {pipeline_class_name(read_model_index(folder))} with genzoo",
        revision=revision,
        create_pr=create_pr,
    )
    return str(info)


def push_space(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a Space folder written by ``genzoo.demo.write_space`` to the Space ``repo_id``, in one commit.

    Args:
        folder (str | os.PathLike): the Space folder (``app.py``, ``requirements.txt``, ``README.md``).
        repo_id (str): ``namespace/name`` of the Space; created as a Gradio Space if needed.
        token (str | None): a Hub token (default: ``HF_TOKEN`` or the stored login).
        private (bool | None): create the Space private (only applies when it is created).
        commit_message (str | None): the commit message.

    Returns:
        The commit URL.

    Raises:
        FileNotFoundError: ``folder`` has no ``app.py`` or ``README.md``.
        genzoo.files.OutsideFolderError: a symlink in the folder leads outside it.
        genzoo.secrets.SecretInFileError: a file (named) holds the token or another secret; nothing is uploaded.
    """
    folder = Path(folder)
    if not (folder / "app.py").is_file() or not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder} has no app.py and README.md: write a Space with `genzoo space` first.")
    files = [path for path in folder_files(folder)
             if not _is_hidden(path.relative_to(folder).parts) and not _is_log(path.relative_to(folder).parts, set())]
    check_files(files, _push_secrets(token))
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    info = api.create_commit(repo_id, _additions(folder, files), repo_type="space",
                             commit_message=commit_message or "Upload a genzoo demo Space")
    return str(info)

