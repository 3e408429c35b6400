"""The plugin registry: every pipeline, scheduler, model, training method and data set is found through Python
entry points, genzoo's own included.

A package adds components by declaring entry points in its metadata, exactly as genzoo does in its ``setup.cfg``:

    [options.entry_points]
    genzoo.pipelines =
        MyPipeline = my_package:MyPipeline
    genzoo.schedulers =
        MyScheduler = my_package.schedulers:MyScheduler
    genzoo.models =
        MyModel = my_package.models:MyModel
    genzoo.methods =
        my-method = my_package.methods:MyMethod
    genzoo.paths =
        my-path = my_package.paths:MyPath
    genzoo.datasets =
        my-data = my_package.data:MY_DATA

For pipelines, schedulers and models the entry-point name is the name genzoo writes into ``model_index.json`` and looks
classes up by, so use the class name; a method's is its ``--method`` name, a probability path's its ``--path`` name (a
:class:`genzoo.schedulers.paths.ProbabilityPath` subclass), a data set's its ``--dataset`` name (it names an
instance of :class:`genzoo.data.DataSet`, not a class). A plugin whose import fails is reported (``genzoo list --check`` shows it with its error) and skipped; it never stops
the others from loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

#: kind -> entry-point group
GROUPS = {
    "pipeline": "genzoo.pipelines",
    "scheduler": "genzoo.schedulers",
    "model": "genzoo.models",
    "method": "genzoo.methods",
    "path": "genzoo.paths",
    "dataset": "genzoo.datasets",
}


@dataclass
class RegistryEntry:
    """One registered name: where it comes from and, once loaded, the object or the error.

    Args:
        name: the registered name (a class name, or a method's ``--method`` name).
        kind: ``pipeline``, ``scheduler``, ``model`` or ``method``.
        target: the entry point's ``module:attribute``, as declared.
        package: the distribution that declares it.
        version: that distribution's version.
        _loaded: the loaded object (filled in by ``load``).
        error: why loading failed, if it did.
    """

    name: str
    kind: str
    target: str  # "module:attribute", as declared
    package: str
    version: str
    _loaded: object = field(default=None, repr=False)
    error: str | None = None

    def load(self):
        """Import the target (once).

        Returns:
            (type): the registered object (a class).

        Raises:
            ImportError: naming the plugin, its package and the error, if the import fails.
        """
        if self._loaded is None and self.error is None:
            try:
                self._loaded = _load_target(self.target)
            except Exception as exc:  # a broken plugin must not take the others down
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error is not None:
            raise ImportError(
                f"genzoo plugin {self.kind} {self.name!r} from package {self.package} {self.version} "
                f"({self.target}) failed to load: {self.error}"
            )
        return self._loaded

    @property
    def qualified_name(self) -> str:
        return self.target.replace(":", ".")


def _load_target(target: str):
    import importlib

    module_name, _, attribute = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


_cache: dict[str, list[RegistryEntry]] | None = None


def refresh() -> None:
    """Forget what was discovered, so packages installed (or put on ``sys.path``) since are found."""
    global _cache
    _cache = None


def _discover() -> dict[str, list[RegistryEntry]]:
    global _cache
    if _cache is None:
        found: dict[str, list[RegistryEntry]] = {kind: [] for kind in GROUPS}
        seen = set()
        for kind, group in GROUPS.items():
            for ep in metadata.entry_points(group=group):
                dist = getattr(ep, "dist", None)
                package = dist.metadata["Name"] if dist is not None else "?"
                version = dist.version if dist is not None else "?"
                key = (kind, ep.name, ep.value)
                if key in seen:  # the same distribution seen twice on sys.path
                    continue
                seen.add(key)
                found[kind].append(RegistryEntry(ep.name, kind, ep.value, package, version))
        for entries in found.values():
            entries.sort(key=lambda e: e.name)
        _cache = found
    return _cache


def entries(kind: str | None = None) -> list[RegistryEntry]:
    """Every registered entry of one kind, or of all kinds.

    Args:
        kind: ``pipeline``, ``scheduler``, ``model``, ``method``, or ``None`` for all.

    Returns:
        The entries, sorted by name within each kind.

    Raises:
        ValueError: for an unknown kind.
    """
    discovered = _discover()
    if kind is None:
        return [e for k in GROUPS for e in discovered[k]]
    _check_kind(kind)
    return list(discovered[kind])


def names(kind: str) -> list[str]:
    """Registered names of one kind, sorted.

    Args:
        kind: ``pipeline``, ``scheduler``, ``model`` or ``method``.

    Returns:
        The names.
    """
    return [e.name for e in entries(kind)]


def get(kind: str, name: str):
    """The registered object ``name`` of ``kind``.

    Args:
        kind: ``pipeline``, ``scheduler``, ``model`` or ``method``.
        name: the registered name, e.g. ``"DDPMPipeline"`` or ``"flow-matching"``.

    Returns:
        (type): the loaded object (a class; for a data set, a ``genzoo.data.DataSet`` instance).

    Raises:
        KeyError: for an unknown name (listing the known ones) or a name two packages register.
        ImportError: if the plugin fails to import.
    """
    matches = [e for e in entries(kind) if e.name == name]
    if not matches:
        known = ", ".join(names(kind)) or "none"
        raise KeyError(
            f"No genzoo {kind} named {name!r} is registered; known {kind}s: {known}. "
            f"Install the package that provides it (it must declare a {GROUPS[kind]!r} entry point)."
        )
    if len({e.target for e in matches}) > 1:
        owners = ", ".join(f"{e.package} ({e.target})" for e in matches)
        raise KeyError(f"The {kind} name {name!r} is registered by more than one package: {owners}.")
    return matches[0].load()


def subclass_names(kind: str, base: type) -> list[str]:
    """Registered names of ``kind`` whose class is ``base`` or a subclass of it (plugins' included; entries that fail
    to load are left out), e.g. every flow-matching scheduler a flow-matching method can train with.

    Args:
        kind: ``pipeline``, ``scheduler``, ``model`` or ``method``.
        base (type): the base class.

    Returns:
        The names, sorted.
    """
    found = []
    for entry in entries(kind):
        try:
            obj = entry.load()
        except ImportError:
            continue
        if isinstance(obj, type) and issubclass(obj, base):
            found.append(entry.name)
    return found


def find_component_class(name: str):
    """A pipeline, scheduler or model class by its registered name (the names genzoo writes in model_index.json).

    Args:
        name: the registered name.

    Returns:
        (type): the class.

    Raises:
        KeyError: if no pipeline, scheduler or model has that name.
    """
    for kind in ("pipeline", "scheduler", "model"):
        if any(e.name == name for e in entries(kind)):
            return get(kind, name)
    raise KeyError(
        f"No genzoo pipeline, scheduler or model named {name!r} is registered. Known: "
        f"{', '.join(sorted(set(names('pipeline') + names('scheduler') + names('model'))))}."
    )


def registered_name(cls) -> str | None:
    """The registered name of a class (genzoo's or a plugin's), or ``None`` if the class is not registered.

    Args:
        cls (type): a pipeline, scheduler or model class.

    Returns:
        The registered name, or ``None``.
    """
    target = f"{cls.__module__}.{cls.__qualname__}"
    for kind in ("pipeline", "scheduler", "model"):
        for entry in entries(kind):
            if entry.error is not None:
                continue
            if entry.name == cls.__name__ or entry.qualified_name == target:
                try:
                    if entry.load() is cls:
                        return entry.name
                except ImportError:
                    continue
    return None


def _check_kind(kind: str) -> None:
    if kind not in GROUPS:
        raise ValueError(f"Unknown registry kind {kind!r}; allowed: {', '.join(GROUPS)}.")
