"""Public names imported on first use (PEP 562), as Diffusers' own top level does: ``import genzoo`` and
``import genzoo.demo`` stay light, so the command line answers without importing torch, Diffusers or Gradio."""

from __future__ import annotations

import importlib
import importlib.util
import sys


def lazy_attributes(package: str, names: dict[str, str], submodules: bool = False):
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``names`` maps each public name to the module (relative
    to ``package``) that defines it, imported the first time the name is used and then kept in the package;
    ``submodules`` also imports ``package.<name>`` on first use (``genzoo.pipelines`` after a bare ``import
    genzoo``)."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name], package), name)
        elif submodules and not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
