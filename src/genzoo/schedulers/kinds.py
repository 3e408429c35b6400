"""The registered schedulers, found by what each class declares instead of by lists of names kept in step by hand.

Every genzoo scheduler declares

- ``model_kind``: what model output it steps, the same strings the pipelines declare (``"flow"`` for a velocity,
  ``"flow-map"`` for an average velocity over an interval, ``"diffusion"`` for a noise, x_0 or v prediction);
  inherited, so a plugin's subclass of ``FlowMatchEulerScheduler`` steps flow models too;
- ``solver_name``: the trainer's ``--solver`` shorthand (``"euler"``, ``"heun"``), and ``solver_label``: how a menu
  of samplers shows it (``"Euler (genzoo)"``). These two count only where a class declares them itself: a subclass
  that changes a default is not a new solver, so it gets no shorthand and is labelled by its registered name and
  package.

A plugin scheduler declares the same (or inherits ``model_kind``) and is then offered like a built-in.
"""

from __future__ import annotations

from .. import registry


def registered_schedulers(model_kind: str | None = None) -> dict[str, type]:
    """The registered schedulers (genzoo's and plugins'; those that fail to load left out) whose ``model_kind`` is
    ``model_kind`` (``None``: all), by registered name, in the registry's (sorted) order.

    Args:
        model_kind: ``"flow"``, ``"flow-map"``, ``"diffusion"`` (a plugin's kind too), or ``None``.

    Returns:
        Registered name -> class.
    """
    return {entry.name: cls for entry, cls in _loaded() if model_kind is None or model_kind_of(cls) == model_kind}


def model_kind_of(cls) -> str | None:
    """The ``model_kind`` a scheduler class declares (or inherits); ``None`` for one that declares none."""
    return getattr(cls, "model_kind", None)


def declared(cls: type, attribute: str):
    """``cls``'s own declaration of ``attribute`` (``None`` where it only inherits one)."""
    return vars(cls).get(attribute)


def solver_shorthands() -> dict[str, str]:
    """The trainer's ``--solver`` shorthands: each declared ``solver_name`` -> its scheduler's registered name
    (``{"euler": "FlowMatchEulerScheduler", "heun": "FlowMatchHeunScheduler"}`` with genzoo alone; a name two classes
    declare goes to the first, in registry order)."""
    found: dict[str, str] = {}
    for entry, cls in _loaded():
        name = declared(cls, "solver_name")
        if name and name not in found:
            found[name] = entry.name
    return found


def sampler_labels(model_kind: str) -> dict[str, type]:
    """The registered schedulers of ``model_kind`` by display label: the class's own ``solver_label``
    (``"Euler (genzoo)"``), else ``"<registered name> (<package>)"``.

    Args:
        model_kind: what the model predicts (a pipeline's ``model_kind``).

    Returns:
        Label -> class, in the registry's order.
    """
    found: dict[str, type] = {}
    for entry, cls in _loaded():
        if model_kind_of(cls) == model_kind:
            found.setdefault(declared(cls, "solver_label") or f"{entry.name} ({entry.package})", cls)
    return found


def _loaded() -> list[tuple[registry.RegistryEntry, type]]:
    found = []
    for entry in registry.entries("scheduler"):
        try:
            cls = entry.load()
        except ImportError:
            continue  # reported by `genzoo list --check`; it never stops the others
        if isinstance(cls, type):
            found.append((entry, cls))
    return found
