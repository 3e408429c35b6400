"""What a training method is to genzoo's trainer.

A method is a class registered in the ``genzoo.methods`` entry-point group (genzoo's four are registered the same way
in its ``setup.cfg``). It knows its options, models, losses and pipeline; the trainer (``genzoo.training``) knows
Accelerate, data, optimisers, EMA, checkpoints, teachers and logging, and never a method by name. A method never
reads the command line: it gets its own typed options.

The contract, in the order the trainer uses it:

1. ``Config``: a dataclass subclass of ``MethodConfig`` declaring the method's options with
   ``genzoo.config.option`` (type, default, help, choices, range). The command line, recipes and ``--help`` are
   generated from it; a value that is not allowed is refused before anything runs.
2. ``__init__(config, data, context)``: ``config`` is the method's ``Config``, ``data`` a
   ``genzoo.data.TrainingData``, ``context`` a ``RunContext`` (output folder, process index, ...).
3. ``check_conditioning()`` and ``check_data()``: raise a ``ValueError`` naming what is wrong before training.
4. A frozen *teacher*: a method whose ``Config`` has a ``teacher`` option (declare it with ``teacher_option``)
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
11. ``make_pipeline(models)`` -> a ``genzoo.GenzooPipeline`` of the (EMA) models, ready for ``save_pretrained``.
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
    condition. Subclass it (as a ``@dataclass``) for a method's own options.

    Args:
        conditioning: ``none``, ``class`` (the data's labels) or ``text`` (captions).
        cond_dropout: the probability of training on the null label or the empty prompt, for classifier-free
            guidance (methods that have it: DDPM, flow matching).

    Raises:
        RecipeError: for a value that is not allowed.
    """

    group_title: ClassVar[str] = "method"

    conditioning: str = option(
        "none", "none: unconditional; class: on the data's labels (--label_column); text: on captions "
        "(--caption_column; DDPM and flow matching on images)", choices=CONDITIONINGS, group="conditioning")
    cond_dropout: float = option(
        0.1, "methods with classifier-free guidance (DDPM, flow matching): probability of training on the null label "
        "or the empty prompt", minimum=0.0, below=1.0, group="conditioning")


def teacher_option(help: str = "a trained pipeline (folder or Hub id) the method learns from, loaded frozen"):
    """The ``teacher`` option of a method that learns from another model (declare ``teacher: str | None =
    teacher_option()`` in its ``Config``).

    Args:
        help: the option's ``--help`` text.

    Returns:
        (dataclasses.Field): a dataclass field (``genzoo.config.option``), default ``None``, metavar
            ``PATH_OR_REPO_ID``.
    """
    return option(None, help, metavar="PATH_OR_REPO_ID")


@dataclass
class RunContext:
    """What a method may know about the run it is part of (the trainer fills it in).

    Args:
        output_dir: the run's output folder.
        seed: the run's ``--seed``.
        process_index: this process's index among the run's processes.
        num_processes: how many processes train together.
        device: the device this process trains on.
    """

    output_dir: Path | None = None
    seed: int = 0
    process_index: int = 0
    num_processes: int = 1
    device: torch.device = torch.device("cpu")


class Method:
    """Base class of training methods; see the module docstring for the contract.

    Args:
        config: the method's options, an instance of its ``Config``.
        data (genzoo.data.TrainingData): the training data.
        context: what the method may know about the run.

    Raises:
        TypeError: if ``config`` is not an instance of the method's ``Config``.
    """

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
    #: A method that cannot train without a ``--teacher`` names the registered method whose tiny run makes one for
    #: the shared checks (``genzoo.testing``) and the quick benchmark; ``None``: it needs no teacher.
    teacher_method: str | None = None

    def __init__(self, config: MethodConfig, data, context: RunContext | None = None):
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}.")
        self.config = config
        self.data = data
        self.context = context or RunContext()
        self.teacher = None

    @classmethod
    def from_options(cls, options, data, context: RunContext | None = None) -> Method:
        """The method with its ``Config`` taken from a recipe mapping or a parsed namespace (other keys ignored).

        Args:
            options (Mapping | argparse.Namespace): a recipe or a parsed command line.
            data (genzoo.data.TrainingData): the training data.
            context: what the method may know about the run.

        Returns:
            The method.

        Raises:
            RecipeError: for an option value that is not allowed.
        """
        return cls(cls.Config.from_mapping(options), data, context)

    def build_models(self) -> dict[str, nn.Module]:
        """Every model the method trains, by name (the names of ``model_names``).

        Returns:
            ``{name: module}``.
        """
        raise NotImplementedError

    def prepare_training(self) -> None:
        """Work a training run needs before its first step, after ``build_models`` (default: none)."""

    def optimizer_groups(self) -> dict[str, list[str]]:
        """Default: one optimiser over every model."""
        return {"model": list(self.model_names)}

    def optimizer_kwargs(self, group: str) -> dict:
        """Extra ``torch.optim.AdamW`` arguments for one group (default: none beyond the trainer's).

        Args:
            group: a group of ``optimizer_groups``.

        Returns:
            Keyword arguments for ``AdamW``.
        """
        return {}

    def phases(self, step: int) -> list[str]:
        """The optimiser groups to update at ``step``, in order (default: every group, every step).

        Args:
            step: the optimiser step about to be taken.

        Returns:
            Group names of ``optimizer_groups``.
        """
        return list(self.optimizer_groups())

    def loss(self, phase: str, models: dict[str, nn.Module], batch: dict, step: int, generator: torch.Generator):
        """The loss to minimise for ``phase`` on one batch.

        Args:
            phase: the optimiser group being updated.
            models: every model as a plain module (the phase's own trainable, the others frozen); with
                ``ema_in_loss``, also ``"<name>_ema"`` copies holding the EMA weights.
            batch: one batch of the training data (``"sample"``, and ``"label"`` or ``"caption"`` when
                conditioned).
            step: the optimiser step.
            generator: the source of all randomness (checkpointed by the trainer, so resuming is exact).

        Returns:
            (tuple[torch.Tensor, dict[str, torch.Tensor]]): ``(loss, terms)``, the scalar to minimise and the
                named terms to log.
        """
        raise NotImplementedError

    def ema_models(self) -> list[str]:
        """The models that keep an exponential moving average with ``--use_ema`` (default: none).

        Returns:
            Model names of ``build_models``.
        """
        return []

    def make_pipeline(self, models: dict[str, nn.Module]):
        """The pipeline of the trained (EMA) models, ready for ``save_pretrained``.

        Args:
            models: the models of ``build_models``, with EMA weights where kept.

        Returns:
            (GenzooPipeline): the pipeline.
        """
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
        """Restore what ``state_dict`` returned.

        Args:
            state: the method's state from a checkpoint.
        """

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
        the classes by default; a text-conditional run shows the first ``num`` training captions.

        Args:
            num: the number of samples in the grid.

        Returns:
            Keyword arguments for the pipeline's ``__call__``.
        """
        captions = getattr(self.data, "captions", None)
        if self.conditioning == "text" and captions:
            return {"prompt": [captions[i % len(captions)] for i in range(num)]}
        return {}

    def describe(self) -> dict:
        """Extra facts for ``metrics.json`` and model cards (the trainer adds parameter counts itself)."""
        return {}


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``torch.randn_like`` drawn from ``generator`` (on the generator's device, then moved).

    Args:
        x: the tensor whose shape, dtype and device the noise takes.
        generator: the source of randomness.

    Returns:
        Standard normal noise like ``x``.
    """
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=x.device, dtype=x.dtype
    )
