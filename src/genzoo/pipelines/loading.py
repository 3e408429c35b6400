"""Saving and loading genzoo pipelines: local folders, Hub ids, safetensors only, no code from a repo.

The folder format is Diffusers' (``model_index.json`` + one folder per component, each written by the component's
own ``save_pretrained``) with two additions that let plain Diffusers load it without knowing genzoo:

- ``model_index.json`` names genzoo's classes as ``["genzoo_hub", "<registered name>"]``, the form Diffusers uses for
  classes that live in a code file of the repo, and
- a tiny ``genzoo_hub.py`` at the root and in each folder of a genzoo component. It holds no model code: it hands
  Diffusers the classes of the *installed* genzoo package and its registered plugins.

So, with genzoo installed, ``diffusers.DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`` returns
genzoo's own pipeline class. genzoo's loader never executes those files: it reads the names and looks them up in
its registry (:mod:`genzoo.registry`), so loading with genzoo needs no ``trust_remote_code``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .. import registry
from ..model_index import MODEL_INDEX, PipelineLoadError, component_entries, read_model_index

SHIM_MODULE = "genzoo_hub"
SHIM_SOURCE = '''\
"""Written by genzoo: no model code here.

This file lets plain Diffusers load this repository with the classes of the installed genzoo package
(``pip install genzoo``) and its registered plugins:

    diffusers.DiffusionPipeline.from_pretrained(<this repo>, trust_remote_code=True)

genzoo itself never runs this file; ``genzoo.load_pipeline(<this repo>)`` reads the class names instead.
"""

import genzoo.registry


def __getattr__(name):
    return genzoo.registry.find_component_class(name)
'''
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def resolve_pretrained_path(
    pretrained_model_name_or_path: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """A local folder as it is, or a Hub repo id downloaded with ``huggingface_hub.snapshot_download``.

    ``revision``, ``token``, ``cache_dir``, ``local_files_only`` and ``HF_HUB_OFFLINE`` are honoured. Pickled weights
    are not even downloaded unless ``allow_pickle=True``.
    """
    name = os.fspath(pretrained_model_name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists():
        raise PipelineLoadError(f"{name} is a file; a pipeline is a folder with {MODEL_INDEX} in it.")
    elif _looks_like_a_path(name):
        raise PipelineLoadError(f"No such folder: {name}")
    else:
        folder = _download(name, revision, token, cache_dir, local_files_only, allow_pickle)
    if not (folder / MODEL_INDEX).is_file():
        raise PipelineLoadError(
            f"{name} is not a pipeline: it has no {MODEL_INDEX}. Point at a folder written by "
            "`save_pretrained` (or a Hub repo pushed by genzoo)."
        )
    return folder


def _looks_like_a_path(name: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else that does not exist is a missing folder."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")


def _download(repo_id, revision, token, cache_dir, local_files_only, allow_pickle) -> Path:
    try:
        huggingface_hub.utils.validate_repo_id(repo_id)
    except huggingface_hub.errors.HFValidationError as exc:
        raise PipelineLoadError(f"{repo_id!r} is neither an existing folder nor a valid Hub repo id ({exc}).") from None
    not_local = f"{repo_id} is not a local folder"
    offline = local_files_only or huggingface_hub.constants.HF_HUB_OFFLINE
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=offline,
            ignore_patterns=None if allow_pickle else [f"*{s}" for s in PICKLE_SUFFIXES],
        )
    except LocalEntryNotFoundError as exc:
        where = f" at {cache_dir}" if cache_dir else ""
        if offline:
            why = "HF_HUB_OFFLINE=1" if huggingface_hub.constants.HF_HUB_OFFLINE else "local_files_only=True"
            raise PipelineLoadError(
                f"{not_local}, and Hub repo {repo_id} (revision {revision or 'main'}) is not in the local Hub cache"
                f"{where}, and {why} forbids downloading it. Download it once while online, or point at a local folder."
            ) from None
        raise PipelineLoadError(
            f"{not_local}; the Hub could not be reached for {repo_id} (revision {revision or 'main'}) and it is not in "
            f"the local Hub cache{where}: {' '.join(str(exc).split())}"
        ) from None
    except GatedRepoError:
        raise PipelineLoadError(f"{repo_id} is gated: accept its conditions on the Hub and pass a token.") from None
    except RepositoryNotFoundError:
        raise PipelineLoadError(
            f"{not_local}, and Hub repo {repo_id} was not found, or it is private and no valid token was given "
            "(pass `token=` or log in with `hf auth login`)."
        ) from None
    except RevisionNotFoundError:
        raise PipelineLoadError(f"Hub repo {repo_id} has no revision {revision!r}.") from None
    except huggingface_hub.errors.HfHubHTTPError as exc:
        raise PipelineLoadError(f"Could not download {repo_id} from the Hub: {exc}") from None
    except OSError as exc:  # connection errors and the like
        raise PipelineLoadError(f"Could not download {repo_id} from the Hub: {exc}") from None
    return Path(snapshot)


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


def check_safe_weights(folder: Path, component: str, allow_pickle: bool) -> None:
    """Refuse a component folder whose weights exist only as pickles, unless the caller opted in."""
    sub = folder / component
    if not sub.is_dir():
        return
    files = [p.name for p in sub.iterdir() if p.is_file()]
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if pickles and not has_safetensors and not allow_pickle:
        raise PipelineLoadError(
            f"Component {component!r} has only pickled weights ({', '.join(pickles)}) and no .safetensors file. "
            "Unpickling can run arbitrary code, so genzoo refuses it. If you trust the source, pass "
            "allow_pickle=True (or convert the weights to safetensors)."
        )


def load_components(
    folder: Path, model_index: dict, allow_pickle: bool = False, torch_dtype=None, skip=()
) -> dict[str, object]:
    """Instantiate every component recorded in ``model_index.json`` (except those in ``skip``)."""
    components = {}
    for name, (library, class_name) in component_entries(model_index).items():
        if name in skip:
            continue
        if library is None or class_name is None:
            components[name] = None
            continue
        cls = component_class(library, class_name, name)
        check_safe_weights(folder, name, allow_pickle)
        components[name] = cls.from_pretrained(folder, subfolder=name, **_weight_kwargs(cls, allow_pickle, torch_dtype))
    return components


def _weight_kwargs(cls, allow_pickle: bool, torch_dtype) -> dict:
    """``from_pretrained`` options for a component class: safetensors-only and dtype for models, none for the rest."""
    from diffusers import ModelMixin

    if issubclass(cls, ModelMixin):
        return {"use_safetensors": not allow_pickle, **({"torch_dtype": torch_dtype} if torch_dtype else {})}
    if cls.__module__.startswith("transformers") and hasattr(cls, "can_generate"):  # a transformers model
        return {"use_safetensors": not allow_pickle, **({"dtype": torch_dtype} if torch_dtype else {})}
    return {}  # schedulers, tokenizers: configuration files only


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
