"""The floors of genzoo's layout (docs/architecture.md): data flows one way (data -> method, via the trainer ->
pipeline), so the lower floors never import the upper ones, at module level or inside a function. Bottom up: the
foundation (registry, checks, files, ..., the latent decoding in ``genzoo.latents``), schedulers and models,
pipelines, data and metrics, methods, the trainer, and on top the CLI, the demo and the test kit. Read from the source
with ``ast``: nothing is imported."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

SOURCE = Path(importlib.util.find_spec("genzoo").submodule_search_locations[0])  # found, not imported

#: The floors, bottom up (docs/architecture.md): a module imports from its own floor and the ones below, never above.
TOP = ("genzoo.cli", "genzoo.demo", "genzoo.testing")
ABOVE_TRAINING = TOP
ABOVE_METHODS = ("genzoo.training", *ABOVE_TRAINING)
ABOVE_DATA = ("genzoo.methods", "genzoo.hub", *ABOVE_METHODS)
ABOVE_PIPELINES = ("genzoo.data", "genzoo.metrics", *ABOVE_DATA)
ABOVE_MODELS = ("genzoo.pipelines", *ABOVE_PIPELINES)
ABOVE_FOUNDATION = ("genzoo.schedulers", "genzoo.models", *ABOVE_MODELS)
FOUNDATION = ("genzoo.registry", "genzoo.checks", "genzoo.config", "genzoo.files", "genzoo.secrets",
              "genzoo.model_index", "genzoo.latents", "genzoo.project", "genzoo.lazy")
#: Imports that go up on purpose, each with its reason: (importing module, imported package) -> why.
EXCEPTIONS = {
    ("genzoo.pipelines.base", "genzoo.hub"): "Diffusers puts push_to_hub on the pipeline; genzoo.hub writes the card",
}
#: (the modules a rule covers: a package or a module of genzoo, the packages they must not import)
FLOORS = [
    *[(module, ABOVE_FOUNDATION) for module in FOUNDATION],
    ("genzoo.schedulers", ("genzoo.models", *ABOVE_MODELS)),
    ("genzoo.models", ABOVE_MODELS),
    ("genzoo.pipelines", ABOVE_PIPELINES),
    ("genzoo.data", ABOVE_DATA),  # a data set scores its samples with genzoo.metrics: one floor
    ("genzoo.metrics", ABOVE_DATA),
    ("genzoo.methods", ABOVE_METHODS),
    ("genzoo.training", ABOVE_TRAINING),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source`` (the code of ``module``), wherever it is: at
    module level, in a function, under ``if TYPE_CHECKING``. ``from X import y`` counts as ``X`` and ``X.y`` (``y``
    may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def breaks(imported: str, forbidden: tuple[str, ...]) -> bool:
    return any(imported == name or imported.startswith(name + ".") for name in forbidden)


def covered(name: str, rule: str) -> bool:
    return name == rule or name.startswith(rule + ".")


def test_the_scanner_sees_relative_absolute_and_function_level_imports():
    source = (
        "from .. import training\n"
        "from ..methods.base import Method\n"
        "def f():\n"
        "    import genzoo.training.trainer\n"
        "    from . import loading\n"
    )
    found = [name for _, name in imported_modules(source, "genzoo.pipelines.base")]
    assert "genzoo.training" in found and "genzoo.methods.base" in found
    assert "genzoo.training.trainer" in found and "genzoo.pipelines.loading" in found
    assert [name for _, name in imported_modules("from .memory import x\n", "genzoo.pipelines", is_package=True)] == [
        "genzoo.pipelines.memory", "genzoo.pipelines.memory.x"]
    assert breaks("genzoo.methods.latents", ("genzoo.methods",)) and not breaks("genzoo.methodsx", ("genzoo.methods",))


@pytest.mark.parametrize("rule, forbidden", FLOORS, ids=[rule for rule, _ in FLOORS])
def test_lower_layers_never_import_upper_ones(rule, forbidden):
    files = [p for p in sorted(SOURCE.rglob("*.py")) if covered(module_name(p), rule)]
    assert files, f"no module of {rule} found under {SOURCE}"
    bad = []
    for path in files:
        name = module_name(path)
        for line, imported in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            excepted = any(name == module and breaks(imported, (package,)) for module, package in EXCEPTIONS)
            if breaks(imported, forbidden) and not excepted:
                bad.append(f"{path.relative_to(SOURCE.parent)}:{line} imports {imported}")
    assert not bad, f"{rule} must not import {', '.join(forbidden)}:\n" + "\n".join(sorted(set(bad)))
