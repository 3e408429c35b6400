"""Saving and loading genzoo pipelines: the folder format, its components loaded (checked first), and the atomic save.

The folder format is Diffusers' (``model_index.json`` + one folder per component, each written by the component's
own ``save_pretrained``) with two additions that let plain Diffusers load it without knowing genzoo:

- ``model_index.json`` names genzoo's classes as ``["genzoo_hub", "<registered name>"]``, the form Diffusers uses for
  classes that live in a code file of the repo, and
- a tiny ``genzoo_hub.py`` at the root and in each folder of a genzoo component. It holds no model code: it hands
  Diffusers the classes of the *installed* genzoo package and its registered plugins.

So, with genzoo installed (from its repository, ``pip install "genzoo @ git+https://github.com/genzoo/genzoo"``;
once genzoo is on PyPI: ``pip install genzoo``), ``diffusers.DiffusionPipeline.from_pretrained(repo,
trust_remote_code=True)`` returns genzoo's own pipeline class. genzoo's loader never executes those files: it reads
the names and looks them up in its registry (:mod:`genzoo.registry`), so loading with genzoo needs no
``trust_remote_code``.

Where a name points (a folder, or a Hub id downloaded) is :mod:`genzoo.pipelines.resolve`; the checks every file
passes before it is read are :mod:`genzoo.pipelines.untrusted`. Nothing is read through a symlink that leads outside
the pipeline's folder, its root (:func:`~genzoo.model_index.folder_root`: the folder, or for a Hub download the
repo's cache folder whose ``blobs`` the snapshot's links lead to), and no device, FIFO or socket is opened: each
component folder is checked whole (:func:`~genzoo.pipelines.untrusted.check_component_folder`) before genzoo or the
libraries' ``from_pretrained`` read a file of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import registry
from ..files import commit_folder
from ..model_index import (
    MODEL_INDEX,
    PipelineLoadError,
    check_in_folder,
    component_entries,
    folder_root,
    is_component_entry,
    one_line,
    read_model_index,
)
from ..project import PYPI_INSTALL, SOURCE_INSTALL
from .untrusted import (
    check_component_files,
    check_component_folder,
    check_finite_weights,
    check_safe_weights,
    model_kind,
)

SHIM_MODULE = "genzoo_hub"
SHIM_SOURCE = f'''\
"""Written by genzoo: no model code here.

This file lets plain Diffusers load this repository with the classes of the installed genzoo package and its
registered plugins:

    diffusers.DiffusionPipeline.from_pretrained(<this repo>, trust_remote_code=True)

Install genzoo from its repository first: {SOURCE_INSTALL}
(once genzoo is on PyPI: {PYPI_INSTALL}).

genzoo itself never runs this file; ``genzoo.load_pipeline(<this repo>)`` reads the class names instead.
"""

import genzoo.registry


def __getattr__(name):
    return genzoo.registry.find_component_class(name)
'''


def component_class(library: str, class_name: str, component: str):
    """The class a ``model_index.json`` entry names, from genzoo's registry, ``diffusers`` or ``transformers``.

    Nothing from the repository is imported or executed, and no module is imported because a repo names it: the
    library must be genzoo's shim name, ``diffusers``, ``transformers``, or a module of a registered genzoo plugin.
    """
    if library == SHIM_MODULE:
        try:
            return registry.find_component_class(class_name)
        except KeyError as exc:
            raise PipelineLoadError(f"Component {component!r}: {exc.args[0]}") from None
    top = library.split(".")[0]
    if top in ("diffusers", "transformers"):
        import importlib

        module = importlib.import_module(top)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise PipelineLoadError(f"Component {component!r}: {top} has no class {class_name!r}.")
        return cls
    # Folders written by plain Diffusers record the defining module, e.g. "genzoo.models.mlp_denoiser".
    try:
        cls = registry.find_component_class(class_name)
    except KeyError:
        cls = None
    if cls is not None and (cls.__module__ == library or cls.__module__.split(".")[0] == top):
        return cls
    raise PipelineLoadError(
        f"Component {component!r} is a {library}.{class_name}, which is neither in diffusers/transformers nor a "
        "registered genzoo component. Install the genzoo plugin that provides it (see docs/plugins.md)."
    )


def load_components(
    folder: Path, model_index: dict, allow_pickle: bool = False, torch_dtype=None, skip=(), root: Path | None = None
) -> dict[str, object]:
    """Instantiate every component recorded in ``model_index.json`` (except those in ``skip``).

    Each component is checked before anything large is built or read (its folder and files exist and stay inside
    ``root``, none is a device or FIFO, configs are JSON objects with sane numbers, the weights' tensor names and
    shapes are those of the model its config describes), loaded, and its weights checked for NaN and inf. Every
    failure is a one-line :class:`PipelineLoadError` naming the component. ``root``: the folder that links may lead
    into, by default :func:`~genzoo.model_index.folder_root` of ``folder`` (``folder`` itself, or the repo's cache
    folder for a Hub snapshot).
    """
    folder = Path(folder)
    root = folder_root(folder) if root is None else root
    components = {}
    for name, (library, class_name) in component_entries(model_index).items():
        if name in skip:
            continue
        if library is None or class_name is None:
            components[name] = None
            continue
        cls = component_class(library, class_name, name)
        sub = folder / name
        check_in_folder(root, sub, f"Component {name!r}:")  # a link to a folder elsewhere: refused, not followed
        if not sub.is_dir():
            raise PipelineLoadError(
                f"Component {name!r} ({library}.{class_name} in {MODEL_INDEX}): its folder {sub} is missing."
            )
        check_component_folder(root, sub, name)
        check_safe_weights(folder, name, allow_pickle)
        check_component_files(cls, name, sub, root)
        try:
            component = cls.from_pretrained(folder, subfolder=name, **_weight_kwargs(cls, allow_pickle, torch_dtype))
        except PipelineLoadError:
            raise
        except Exception as exc:  # the libraries' own errors for files that passed the checks above
            raise PipelineLoadError(
                f"Component {name!r}: {cls.__name__}.from_pretrained({sub}) failed: {type(exc).__name__}: "
                f"{one_line(exc)}"
            ) from exc
        if isinstance(component, torch.nn.Module):
            check_finite_weights(name, component)
        components[name] = component
    return components


def _weight_kwargs(cls, allow_pickle: bool, torch_dtype) -> dict:
    """``from_pretrained`` options for a component class: safetensors only (with ``allow_pickle``: safetensors
    first, the pickle only where there is no safetensors file -- the file the checks read) and the dtype for models;
    none for the rest."""
    kind = model_kind(cls)
    safetensors = None if allow_pickle else True
    if kind == "diffusers":
        return {"use_safetensors": safetensors, **({"torch_dtype": torch_dtype} if torch_dtype else {})}
    if kind == "transformers":
        return {"use_safetensors": safetensors, **({"dtype": torch_dtype} if torch_dtype else {})}
    return {}  # schedulers, tokenizers: configuration files only


def pipeline_entries(folder) -> set[str]:
    """The names of the entries of ``folder`` that belong to the pipeline saved there: ``model_index.json``,
    ``genzoo_hub.py`` and the folders of the components its ``model_index.json`` records (not those recorded as
    absent). Empty when the folder has no readable ``model_index.json``. Everything else in the folder (checkpoints,
    logs, samples, the user's files) is not the pipeline's, and a new save keeps it."""
    try:
        model_index = read_model_index(Path(folder))
    except PipelineLoadError:
        return set()
    entries = {MODEL_INDEX, f"{SHIM_MODULE}.py"}
    for key, value in model_index.items():
        if (isinstance(key, str) and key.isidentifier() and not key.startswith("_") and is_component_entry(value)
                and len(value) == 2 and all(isinstance(part, str) for part in value)):
            entries.add(key)
    return entries


def write_remote_code_files(folder: Path, pipeline) -> None:
    """Rewrite ``model_index.json`` to name genzoo classes through the shim, and write the shim files."""
    folder = Path(folder)
    model_index = read_model_index(folder)
    pipeline_name = registry.registered_name(type(pipeline))
    if pipeline_name is not None:
        model_index["_class_name"] = [SHIM_MODULE, pipeline_name]
        (folder / f"{SHIM_MODULE}.py").write_text(SHIM_SOURCE)
    for name, (library, class_name) in component_entries(model_index).items():
        component = getattr(pipeline, name, None)
        if component is None or library is None:
            continue
        registered = registry.registered_name(type(component))
        if registered is not None:
            model_index[name] = [SHIM_MODULE, registered]
            (folder / name / f"{SHIM_MODULE}.py").write_text(SHIM_SOURCE)
    (folder / MODEL_INDEX).write_text(json.dumps(model_index, indent=2, sort_keys=True) + "\n")


def commit_pipeline(target, write, replaces=()) -> Path:
    """Replace the pipeline saved in the folder ``target`` with what ``write(staging_folder)`` writes, in one swap
    (:func:`genzoo.files.commit_folder`): a reader sees the previous complete pipeline or the new one, never a mix,
    and a ``write`` that fails leaves the folder as it was.

    What the folder holds besides the saved pipeline (checkpoints, logs, samples, the user's files) is linked into the
    new folder; the previous pipeline's own entries (:func:`pipeline_entries`) and the names in ``replaces`` (files
    that describe the old pipeline, such as its samples and metrics) are not, so nothing stale stays behind. This is
    the one atomic save of a pipeline: ``GenzooPipeline.save_pretrained`` and the trainer's final save both use it.
    Returns the absolute path of the folder.
    """
    target = Path(target).expanduser()
    stale = pipeline_entries(target) | set(replaces)
    return commit_folder(target, write, keep=lambda name: name not in stale)
