"""The exponential moving averages of a run's models (Diffusers' ``EMAModel``): made for the models the method names,
stepped after each update of their optimiser group, swapped into the models for sample grids and the saved pipeline,
handed to a method's loss as frozen modules where it reads them, and saved into checkpoints as data (safetensors and
JSON, for any model class)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from .errors import TrainingError

#: The files of one model's EMA in a checkpoint, in its folder ``<name>_ema``.
EMA_FILES = ("shadow_params.safetensors", "ema_state.json")


def save_ema(ema: EMAModel, folder) -> None:
    """An ``EMAModel``'s full state (shadow weights as safetensors, counters as JSON), for any model class -- also
    ``transformers`` models, which ``EMAModel.save_pretrained`` cannot rebuild."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    os.makedirs(folder, exist_ok=True)
    save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)},
              os.path.join(folder, "shadow_params.safetensors"))
    Path(folder, "ema_state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_ema(ema: EMAModel, folder) -> None:
    """What :func:`save_ema` wrote, into ``ema``."""
    tensors = load_file(os.path.join(folder, "shadow_params.safetensors"))
    state = json.loads(Path(folder, "ema_state.json").read_text())
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    ema.load_state_dict(state)


class ModelEMAs:
    """The EMA copies of a run's models.

    ``averages``: one ``EMAModel`` per model the method's ``ema_models()`` names (with ``--use_ema``); empty without.
    ``modules``: for a method that reads the EMA weights in its loss (``ema_in_loss``), a frozen copy of each such
    model carrying them, as ``<name>_ema`` (the names the loss sees); kept in step with the averages.

    Args:
        models (dict[str, torch.nn.Module]): the run's models by name (the plain modules, not Accelerate's wrappers).
    """

    def __init__(self, models: dict[str, torch.nn.Module]):
        self.models = models
        self.averages: dict[str, EMAModel] = {}
        self.modules: dict[str, torch.nn.Module] = {}

    @classmethod
    def for_run(cls, method, models: dict[str, torch.nn.Module], config, device) -> ModelEMAs:
        """The EMAs ``config`` (a ``TrainerConfig``: ``--use_ema`` and the decay options) asks for, of the models
        ``method`` names, on ``device``; a :class:`~genzoo.training.errors.TrainingError` for a method that reads
        EMA weights in its loss when there are none."""
        emas = cls(models)
        if config.use_ema:
            for name in method.ema_models():
                ema = EMAModel(models[name].parameters(), decay=config.ema_max_decay, use_ema_warmup=True,
                               inv_gamma=config.ema_inv_gamma, power=config.ema_power)
                ema.to(device)
                emas.averages[name] = ema
        if method.ema_in_loss:
            if not emas.averages:
                raise TrainingError(
                    f"Method {config.method!r} reads the EMA copies of its models in its loss, so it needs "
                    "--use_ema true (and a method whose ema_models() names them)."
                )
            for name in emas.averages:
                emas.modules[f"{name}_ema"] = copy.deepcopy(models[name]).requires_grad_(False).eval()
            emas.sync()
        return emas

    def step(self, names) -> None:
        """After an optimiser update of the models ``names``: step their averages and their frozen copies."""
        updated = [name for name in names if name in self.averages]
        for name in updated:
            self.averages[name].step(self.models[name].parameters())
        self.sync(updated)

    def sync(self, names=None) -> None:
        """Copy the EMA weights (and the live model's buffers) into the frozen EMA modules the loss reads."""
        for name in names if names is not None else list(self.averages):
            module = self.modules.get(f"{name}_ema")
            if module is None:
                continue
            self.averages[name].copy_to(module.parameters())
            for target, source in zip(module.buffers(), self.models[name].buffers()):
                target.copy_(source)

    @contextlib.contextmanager
    def swapped_in(self):
        """Swap the EMA weights into the models (for samples and the saved pipeline), then swap them back."""
        for name, ema in self.averages.items():
            params = list(self.models[name].parameters())
            ema.store(params)
            ema.copy_to(params)
        try:
            yield
        finally:
            for name, ema in self.averages.items():
                ema.restore(list(self.models[name].parameters()))

    def shadow_params(self, name: str) -> list[torch.Tensor]:
        """The EMA weights of model ``name`` (none if it has no EMA)."""
        ema = self.averages.get(name)
        return [] if ema is None else list(ema.shadow_params)

    def files(self) -> list[str]:
        """The files the EMAs add to a checkpoint, relative to it."""
        return [f"{name}_ema/{file}" for name in self.averages for file in EMA_FILES]

    def save(self, folder) -> None:
        """Each average into ``<folder>/<name>_ema`` (:func:`save_ema`)."""
        for name, ema in self.averages.items():
            save_ema(ema, os.path.join(folder, f"{name}_ema"))

    def load(self, folder, device) -> None:
        """Each average from ``<folder>/<name>_ema``, onto ``device``. The frozen modules are synced by the caller
        once the models' own weights and buffers are loaded too (:meth:`sync`)."""
        for name, ema in self.averages.items():
            load_ema(ema, os.path.join(folder, f"{name}_ema"))
            ema.to(device)
