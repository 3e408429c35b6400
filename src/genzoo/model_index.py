"""Reading a saved pipeline folder's ``model_index.json`` and its components' configs, without loading any weights.

This module sits below both :mod:`genzoo.pipelines` (which loads folders) and :mod:`genzoo.hub` (which describes
them in model cards), and imports neither.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_INDEX = "model_index.json"


class PipelineLoadError(OSError):
    """A pipeline folder or repo could not be found, read or trusted; the message says which and why."""


def read_model_index(folder: Path) -> dict:
    path = Path(folder) / MODEL_INDEX
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineLoadError(f"{path} is not valid JSON: {exc}") from None


def pipeline_class_name(model_index: dict) -> str:
    """The pipeline class named by ``_class_name`` (a string, or Diffusers' ``[module, class]`` list form)."""
    name = model_index.get("_class_name")
    if isinstance(name, (list, tuple)):
        name = name[1]
    if not isinstance(name, str) or not name:
        raise PipelineLoadError(f"{MODEL_INDEX} has no usable _class_name: {model_index.get('_class_name')!r}")
    return name


def component_entries(model_index: dict) -> dict[str, tuple[str | None, str | None]]:
    """``{component name: (library, class)}`` for the components recorded in ``model_index.json``."""
    return {
        key: tuple(value)
        for key, value in model_index.items()
        if not key.startswith("_") and isinstance(value, (list, tuple)) and len(value) == 2
    }


def component_configs(folder: Path, model_index: dict) -> dict[str, dict | None]:
    """``{component name: its saved config}`` for the components of ``model_index.json``: the ``config.json`` of the
    component's folder (models; ``{}`` for components without one, such as schedulers and tokenizers), or ``None``
    for a component recorded as absent (``[null, null]``)."""
    configs = {}
    for name, (library, class_name) in component_entries(model_index).items():
        if library is None or class_name is None:
            configs[name] = None
            continue
        path = Path(folder) / name / "config.json"
        configs[name] = json.loads(path.read_text()) if path.is_file() else {}
    return configs
