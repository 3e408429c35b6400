"""What a training method is to genzoo's trainer.

A method is a class registered in the ``genzoo.methods`` entry-point group (genzoo's four are registered the same way
in its ``setup.cfg``). It knows its models, its losses and its pipeline; the trainer (:mod:`genzoo.training`) knows
Accelerate, data, optimisers, EMA, checkpoints and logging, and never a method by name.

The contract, in the order the trainer uses it:

1. ``add_arguments(parser)`` (class method): the method's own command-line / recipe options.
2. ``__init__(args, data)``: ``args`` is the parsed namespace, ``data`` a :class:`genzoo.data.TrainingData`.
3. ``build_models()`` -> ``{name: nn.Module}``: every model the method trains.
4. ``optimizer_groups()`` -> ``{group: [model names]}``: one optimiser (and learning-rate schedule) per group.
5. ``phases(step)`` -> the groups to update at this step, in order (default: every group, every step).
6. ``loss(phase, models, batch, step, generator)`` -> ``(loss, terms)``: the scalar to minimise for ``phase`` and the
   named terms to log (tensors). ``models`` holds every model as a plain module: the phase's own are trainable, the
   others have ``requires_grad`` off, so gradients never leak into a model of another group. The trainer runs
   ``loss`` as the ``forward`` of the distributed-wrapped phase, so any method of a model (``vae.encode``, a
   gradient penalty) is synchronised across processes. All randomness comes from ``generator`` (a
   ``torch.Generator`` the trainer checkpoints), so resuming is exact.
7. ``ema_models()`` -> the models that keep an exponential moving average (used for samples and the saved pipeline).
8. ``make_pipeline(models)`` -> a :class:`genzoo.GenzooPipeline` of the (EMA) models, ready for ``save_pretrained``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class Method:
    """Base class of training methods; see the module docstring for the contract."""

    #: Registered name (the entry-point name), e.g. "flow-matching".
    name: str = ""
    #: Names of the models ``build_models`` returns.
    model_names: tuple[str, ...] = ()
    #: What the method can be conditioned on (``--conditioning``): "none", "class" and/or "text".
    conditionings: tuple[str, ...] = ("none",)
    #: Defaults this method prefers for trainer options (``learning_rate``, ``use_ema``, ...); a recipe or the
    #: command line overrides them.
    trainer_defaults: dict = {}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the method's own options (use ``parser.add_argument_group(cls.name)``)."""

    def __init__(self, args: argparse.Namespace, data):
        self.args = args
        self.data = data

    def build_models(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, list[str]]:
        """Default: one optimiser over every model."""
        return {"model": list(self.model_names)}

    def optimizer_kwargs(self, group: str) -> dict:
        """Extra ``torch.optim.AdamW`` arguments for one group (default: none beyond the trainer's)."""
        return {}

    def phases(self, step: int) -> list[str]:
        return list(self.optimizer_groups())

    def loss(self, phase: str, models: dict[str, nn.Module], batch: dict, step: int, generator: torch.Generator):
        raise NotImplementedError

    def ema_models(self) -> list[str]:
        return []

    def make_pipeline(self, models: dict[str, nn.Module]):
        raise NotImplementedError

    def check_data(self) -> None:
        """Raise a ``ValueError`` naming what is wrong if the method cannot train on ``self.data``."""

    # ------------------------------------------------------------------ conditioning (genzoo.conditioning)
    @property
    def conditioning(self) -> str:
        """``--conditioning``: "none", "class" or "text"."""
        return getattr(self.args, "conditioning", None) or "none"

    @property
    def id2label(self) -> dict[int, str] | None:
        """The label names of a class-conditional run (stored in the models' configs), else ``None``."""
        return self.data.id2label if self.conditioning == "class" else None

    def check_conditioning(self) -> None:
        """Raise a ``ValueError`` if ``--conditioning`` is not one this method supports or the data lacks it."""
        wanted = self.conditioning
        if wanted not in self.conditionings:
            raise ValueError(
                f"--conditioning {wanted!r} is not supported by method {self.name!r}; it supports "
                f"{', '.join(self.conditionings)}."
            )
        if wanted == "class" and not self.data.id2label:
            raise ValueError(
                f"--conditioning class needs class labels, and {self.data.name} has none; name the label column "
                "with --label_column."
            )
        if wanted == "text" and not getattr(self.data, "captions", None):
            raise ValueError(
                f"--conditioning text needs captions, and {self.data.name} has none; name the caption column "
                "with --caption_column."
            )

    def sample_kwargs(self, num: int) -> dict:
        """Extra pipeline arguments for the trainer's sample grids: class-conditional pipelines already cycle through
        the classes by default; a text-conditional run shows the first ``num`` training captions."""
        captions = getattr(self.data, "captions", None)
        if self.conditioning == "text" and captions:
            return {"prompt": [captions[i % len(captions)] for i in range(num)]}
        return {}

    def describe(self) -> dict:
        """Extra facts for ``metrics.json`` and model cards (the trainer adds parameter counts itself)."""
        return {}


def bool_arg(text) -> bool:
    """argparse type for on/off options: true/false, yes/no, on/off, 1/0 (and YAML booleans from a recipe)."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``torch.randn_like`` drawn from ``generator`` (on the generator's device, then moved)."""
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=x.device, dtype=x.dtype
    )
