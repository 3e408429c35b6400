"""What a training method is to genzoo's trainer.

A method is a class registered in the ``genzoo.methods`` entry-point group (genzoo's four are registered the same way
in its ``setup.cfg``). It knows its options, models, losses and pipeline; the trainer (:mod:`genzoo.training`) knows
Accelerate, data, optimisers, EMA, checkpoints, teachers and logging, and never a method by name. A method never
reads the command line: it gets its own typed options.

The contract, in the order the trainer uses it:

1. ``Config``: a dataclass subclass of :class:`MethodConfig` declaring the method's options with
   :func:`genzoo.config.option` (type, default, help, choices, range). The command line, recipes and ``--help`` are
   generated from it; a value that is not allowed is refused before anything runs.
2. ``__init__(config, data, context)``: ``config`` is the method's ``Config``, ``data`` a
   :class:`genzoo.data.TrainingData`, ``context`` a :class:`RunContext` (output folder, process index, ...).
3. ``check_conditioning()`` and ``check_data()``: raise a ``ValueError`` naming what is wrong before training.
4. A frozen *teacher*: a method whose ``Config`` has a ``teacher`` option (declare it with :func:`teacher_option`)
   gets, when it is set, ``self.teacher``: that pipeline (a folder or Hub id) loaded by the trainer before
   ``build_models``, on the training device, in eval mode, with ``requires_grad`` off.
5. ``build_models()`` -> ``{name: nn.Module}``: every model the method trains.
   ``prepare_training()``: called once after ``build_models`` in a training run (not when a pipeline is only
   built), for work training needs first, e.g. rectified flow's pairs of noise and teacher samples.
6. ``optimizer_groups()`` -> ``{group: [model names]}``: one optimiser (and learning-rate schedule) per group;
   ``optimizer_kwargs(group)`` adds ``AdamW`` arguments.
7. ``phases(step)`` -> the groups to update at this step, in order (default: every group, every step).
8. ``loss(phase, models, batch, step, generator)`` -> ``(loss, terms)``: the scalar to minimise for ``phase`` and the
   named terms to log (tensors). ``models`` holds every model as a plain module: the phase's own are trainable, the
   others have ``requires_grad`` off, so gradients never leak into a model of another group. With
   ``ema_in_loss = True`` it also holds ``"<name>_ema"``: a frozen copy of each EMA model carrying the current EMA
   weights (the "target network" of consistency training and self-distillation). The trainer runs ``loss`` as the
   ``forward`` of the distributed-wrapped phase, so any method of a model (``vae.encode``, a gradient penalty) is
   synchronised across processes. All randomness comes from ``generator`` (a ``torch.Generator`` the trainer
   checkpoints), so resuming is exact.
9. ``ema_models()`` -> the models that keep an exponential moving average (used for samples and the saved pipeline).
10. ``state_dict()`` / ``load_state_dict(state)``: state of the method's own (running statistics, a buffer, a
    counter) that a checkpoint must hold for resuming to be exact: tensors and JSON values, saved per process as
    safetensors and JSON, never pickled.
11. ``make_pipeline(models)`` -> a :class:`genzoo.GenzooPipeline` of the (EMA) models, ready for ``save_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..conditioning import CONDITIONINGS
from ..config import Options, option


@dataclass
class MethodConfig(Options):
    """The options every method has: what it is conditioned on, and how often guidance training drops the
    condition. Subclass it (as a ``@dataclass``) for a method's own options."""

    group_title: ClassVar[str] = "method"

    conditioning: str = option(
        "none", "none: unconditional; class: on the data's labels (--label_column); text: on captions "
        "(--caption_column; DDPM and flow matching on images)", choices=CONDITIONINGS, group="conditioning")
    cond_dropout: float = option(
        0.1, "methods with classifier-free guidance (DDPM, flow matching): probability of training on the null label "
        "or the empty prompt", minimum=0.0, below=1.0, group="conditioning")


def teacher_option(help: str = "a trained pipeline (folder or Hub id) the method learns from, loaded frozen"):
    """The ``teacher`` option of a method that learns from another model (declare ``teacher: str | None =
    teacher_option()`` in its ``Config``)."""
    return option(None, help, metavar="PATH_OR_REPO_ID")


@dataclass
class RunContext:
    """What a method may know about the run it is part of (the trainer fills it in)."""

    output_dir: Path | None = None
    seed: int = 0
    process_index: int = 0
    num_processes: int = 1
    device: torch.device = torch.device("cpu")


class Method:
    """Base class of training methods; see the module docstring for the contract."""

    #: Registered name (the entry-point name), e.g. "flow-matching".
    name: str = ""
    #: The method's typed options (a dataclass subclass of MethodConfig).
    Config: type[MethodConfig] = MethodConfig
    #: Names of the models ``build_models`` returns.
    model_names: tuple[str, ...] = ()
    #: What the method can be conditioned on (``--conditioning``): "none", "class" and/or "text".
    conditionings: tuple[str, ...] = ("none",)
    #: The kinds of data it trains on: "image" and/or "vector".
    data_kinds: tuple[str, ...] = ("image", "vector")
    #: Defaults this method prefers for trainer options (``learning_rate``, ``use_ema``, ...); a recipe or the
    #: command line overrides them.
    trainer_defaults: dict = {}
    #: Options for a tiny, fast run (a few seconds on a CPU): the shared tests and the quick benchmark train every
    #: registered method with them.
    smoke_test_options: dict = {}
    #: How to make the method's models bigger than its defaults, for model cards (markdown).
    scale_up: str = ""
    #: Pass the EMA copies into ``loss`` as ``models["<name>_ema"]`` (needs ``--use_ema``).
    ema_in_loss: bool = False

    def __init__(self, config: MethodConfig, data, context: RunContext | None = None):
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}.")
        self.config = config
        self.data = data
        self.context = context or RunContext()
        self.teacher = None

    @classmethod
    def from_options(cls, options, data, context: RunContext | None = None) -> Method:
        """The method with its ``Config`` taken from a recipe mapping or a parsed namespace (other keys ignored)."""
        return cls(cls.Config.from_mapping(options), data, context)

    def build_models(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def prepare_training(self) -> None:
        """Work a training run needs before its first step, after ``build_models`` (default: none)."""

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

    def teacher_source(self) -> str | None:
        """The folder or Hub id of the teacher to load (the ``teacher`` option, if the method has one)."""
        return getattr(self.config, "teacher", None)

    def state_dict(self) -> dict:
        """The method's own state for checkpoints: tensors and JSON values (default: none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    # ------------------------------------------------------------------ conditioning (genzoo.conditioning)
    @property
    def conditioning(self) -> str:
        """``--conditioning``: "none", "class" or "text"."""
        return self.config.conditioning

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
        if self.data.kind not in self.data_kinds:
            raise ValueError(
                f"Method {self.name!r} trains on {' or '.join(self.data_kinds)} data; {self.data.name} holds "
                f"{self.data.kind} data."
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


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``torch.randn_like`` drawn from ``generator`` (on the generator's device, then moved)."""
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=x.device, dtype=x.dtype
    )
