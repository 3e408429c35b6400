"""Reading a saved pipeline folder's ``model_index.json`` and its components' configs, without loading any weights.

This module sits below both :mod:`genzoo.pipelines` (which loads folders) and :mod:`genzoo.hub` (which describes
them in model cards), and imports neither.

A folder may come from anyone (a Hub repo, a download), so everything here checks what it reads before using it:
``model_index.json`` and every config must be a JSON object, component names must be plain folder names (checked in
:func:`component_entries`, before any component file is opened), and every error is a :class:`PipelineLoadError`
with a one-line message naming the file, the component or the value and what is allowed.

No file is read through a symlink that leads outside the pipeline's folder (:func:`folder_root` says which folder
that is: the folder itself, or for a Hub download the repo's cache folder, where the snapshot's links lead), and
reads are bounded by the bytes read, not by what ``st_size`` claims (``/dev/zero`` claims 0): a device, FIFO or
socket is refused unread, without blocking.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

from .checks import describe
from .files import OutsideFolderError, check_inside, read_limited

MODEL_INDEX = "model_index.json"
#: JSON files a pipeline folder holds (``model_index.json``, configs) are a few kB; anything beyond this is refused
#: unread rather than parsed into memory.
MAX_JSON_BYTES = 16 * 2**20


class PipelineLoadError(OSError):
    """A pipeline folder or repo could not be found, read or trusted; the message says which and why.

    An ``OSError``, as Diffusers' and ``huggingface_hub``'s loading errors are, so ``except OSError`` catches every
    failure to load.
    """


def one_line(text, limit: int = 300) -> str:
    """``text`` (an exception, a message) on one line, shortened to about ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The folder names ``huggingface_hub`` gives a repo in its cache: ``models--namespace--name`` (and the same for
#: datasets and Spaces). A snapshot ``<repo folder>/snapshots/<commit>`` holds symlinks to ``../../blobs/<hash>``.
HUB_REPO_FOLDER = re.compile(r"(models|datasets|spaces)--.+")


def folder_root(folder) -> Path:
    """The folder that symlinks in the pipeline folder ``folder`` may lead to: ``folder`` itself, or, for a snapshot
    in a Hub cache (``<cache>/models--ns--name/snapshots/<commit>``, with ``blobs`` beside ``snapshots``: what
    ``huggingface_hub.snapshot_download`` returns), the repo's cache folder ``models--ns--name``, since the snapshot's
    files are links to its ``blobs``. The layout is read from the real path (every link resolved), so a link
    elsewhere cannot make a folder look like a snapshot of a larger tree."""
    folder = Path(folder)
    real = Path(os.path.realpath(folder))
    repo = real.parent.parent
    if real.parent.name == "snapshots" and HUB_REPO_FOLDER.fullmatch(repo.name) and (repo / "blobs").is_dir():
        return repo
    return folder


def check_in_folder(root, path, what: str | None = None) -> Path:
    """``path`` resolved, if it stays inside ``root`` (:func:`genzoo.files.check_inside`); otherwise a one-line
    :class:`PipelineLoadError` naming the path and where it leads, after ``what`` (e.g. ``"Component 'unet':"``)."""
    try:
        return check_inside(root, path)
    except OutsideFolderError as exc:
        raise PipelineLoadError(f"{what} {exc}" if what else str(exc)) from None


def _read_text(path: Path, label: str, what: str | None, root, limit: int) -> str:
    """The UTF-8 text of the file ``path`` for :func:`read_json_object` and :func:`read_yaml_mapping`."""
    if root is not None:
        check_in_folder(root, path, what)
    try:
        return read_limited(path, limit, label).decode("utf-8")
    except FileNotFoundError:
        raise PipelineLoadError(f"{label} is missing.") from None
    except UnicodeDecodeError as exc:
        raise PipelineLoadError(f"{label} is not UTF-8 text: {one_line(exc)}") from None
    except OSError as exc:
        if exc.errno is None:  # read_limited's own refusals (not a regular file, too large): they name the file
            raise PipelineLoadError(f"{one_line(exc)} (a configuration file of a pipeline is a regular file of at "
                                    f"most {limit} bytes).") from None
        raise PipelineLoadError(f"{label} cannot be read: {one_line(exc.strerror or exc)}") from None


def read_json_object(path: Path, what: str | None = None, root=None, limit: int | None = None) -> dict:
    """The JSON object in the file ``path``; :class:`PipelineLoadError` naming the file if it leads outside the
    folder ``root`` (when given; see :func:`folder_root`), is not a regular file (a device, FIFO or socket: refused
    without reading or blocking), is larger than ``limit`` bytes (default :data:`MAX_JSON_BYTES`; counted as read,
    so ``/dev/zero`` cannot fill the memory), is not valid UTF-8 JSON, or holds something other than an object."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    text = _read_text(path, label, what, root, MAX_JSON_BYTES if limit is None else limit)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PipelineLoadError(f"{label} is not valid JSON: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise PipelineLoadError(f"{label} must hold a JSON object ({{...}}), not a {type(data).__name__}.")
    return data


def read_yaml_mapping(path: Path, root=None) -> dict:
    """The YAML mapping in the file ``path`` (a run's ``recipe.yaml``), ``{}`` where there is no such file, read as
    :func:`read_json_object` reads JSON: inside ``root``, a regular file of at most :data:`MAX_JSON_BYTES`;
    :class:`PipelineLoadError` naming the file if it is not that, not YAML, or not a mapping."""
    import yaml

    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return {}
    text = _read_text(path, str(path), None, root, MAX_JSON_BYTES)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise PipelineLoadError(f"{path} is not valid YAML: {one_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PipelineLoadError(f"{path} must hold a mapping of option names to values, not a {type(data).__name__}.")
    return data


def read_model_index(folder: Path) -> dict:
    """The ``model_index.json`` of ``folder``, a JSON object inside the folder (else :class:`PipelineLoadError`)."""
    return read_json_object(Path(folder) / MODEL_INDEX, root=folder_root(folder))


def pipeline_class_name(model_index: dict) -> str:
    """The pipeline class named by ``_class_name`` (a string, or Diffusers' ``[module, class]`` list form)."""
    name = model_index.get("_class_name")
    if isinstance(name, (list, tuple)):
        name = name[1] if len(name) == 2 and all(isinstance(part, str) for part in name) else None
    if not isinstance(name, str) or not name:
        raise PipelineLoadError(
            f"{MODEL_INDEX} has no usable _class_name: {describe(model_index.get('_class_name'))} (expected a class "
            'name, or ["module", "ClassName"]).'
        )
    return name


def check_component_name(name) -> str:
    """``name`` if it can name a component: a Python identifier (it becomes a pipeline attribute and an argument of
    the pipeline class), hence a plain folder name -- never empty, ``.``, ``..``, absolute or with a separator."""
    if not isinstance(name, str) or not name.isidentifier():
        raise PipelineLoadError(
            f"{MODEL_INDEX} names a component {describe(name)}: a component name must be a plain folder name "
            "(a Python identifier such as 'unet'; no paths, '.', '..' or separators)."
        )
    return name


def is_component_entry(value) -> bool:
    """Whether a ``model_index.json`` value is shaped like a component entry (a list); other values are pipeline
    config values (:func:`pipeline_config_values`)."""
    return isinstance(value, (list, tuple))


def pipeline_config_values(pipeline_class, model_index: dict) -> dict:
    """The pipeline config values of ``model_index.json`` that ``pipeline_class`` takes: the keyword arguments of its
    ``__init__`` that have a default and are not components (e.g. a stored ``default_num_inference_steps``), as
    Diffusers passes them back on load. Other values are ignored; the class's constructor checks those it takes (a
    folder controls them)."""
    parameters = inspect.signature(pipeline_class.__init__).parameters
    optional = set(getattr(pipeline_class, "_optional_components", None) or ())
    taken = {name for name, p in parameters.items() if p.default is not inspect.Parameter.empty
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in optional}
    return {key: value for key, value in model_index.items()
            if key in taken and not key.startswith("_") and not is_component_entry(value)}


def component_entries(model_index: dict) -> dict[str, tuple[str | None, str | None]]:
    """``{component name: (library, class)}`` for the components recorded in ``model_index.json``.

    Every reader of a folder's components goes through here, so names are checked (:func:`check_component_name`)
    before any component file is opened. Keys starting with ``_`` are metadata. A list value is a component entry
    and must be ``[library, class]`` (strings) or ``[null, null]`` (absent); other values are pipeline config
    values and are not components.
    """
    entries = {}
    for key, value in model_index.items():
        if isinstance(key, str) and key.startswith("_"):
            continue
        check_component_name(key)
        if not is_component_entry(value):
            continue
        if len(value) != 2 or not all(part is None or (isinstance(part, str) and part) for part in value):
            raise PipelineLoadError(
                f"{MODEL_INDEX} entry {key!r} must be [\"library\", \"ClassName\"] or [null, null] (absent), got "
                f"{describe(value)}."
            )
        entries[key] = (value[0], value[1])
    return entries


def component_configs(folder: Path, model_index: dict) -> dict[str, dict | None]:
    """``{component name: its saved config}`` for the components of ``model_index.json``: the ``config.json`` of the
    component's folder (models; ``{}`` for components without one, such as schedulers and tokenizers), or ``None``
    for a component recorded as absent (``[null, null]``). A ``config.json`` that is not a JSON object, or that leads
    outside the folder, is a :class:`PipelineLoadError` naming it."""
    configs, root = {}, folder_root(folder)
    for name, (library, class_name) in component_entries(model_index).items():
        if library is None or class_name is None:
            configs[name] = None
            continue
        path = Path(folder) / name / "config.json"
        configs[name] = read_json_object(path, f"Component {name!r}:", root) if path.is_file() else {}
    return configs
