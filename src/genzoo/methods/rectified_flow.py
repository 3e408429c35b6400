"""Rectified flow (Liu et al. 2022, "Flow straight and fast"): reflow and distillation from a teacher pipeline.

Flow matching with independent noise learns a velocity field whose ODE paths curve (the straight lines between
random noise-data pairs cross), so sampling it takes many steps. Rectified flow straightens it by training on the
teacher's *own* coupling:

* **Without** ``--teacher`` this is the first rectified flow, which *is* flow matching on the data (independent or
  ``--coupling ot``): it trains exactly like ``--method flow-matching``.
* **Reflow** (``--teacher PATH_OR_REPO_ID``): ``--num_pairs`` pairs ``(x0, x1)`` are made once, ``x0 ~ N(0, I)`` and
  ``x1`` the teacher's deterministic ODE sample from it (its own scheduler, ``--teacher_steps`` steps). Each training
  step draws a batch of pairs and regresses the straight line between them,

      x_t = (1 - t) x0 + t x1,        target  v = x1 - x0,

  at ``t`` from ``--time_sampling`` (the flow-matching loss, with the teacher's pairs in place of independent noise
  and data). The new flow's paths are straighter than the teacher's (the k-rectified flow of the paper, k = the
  teacher's + 1), so fewer steps sample it; the saved pipeline is a :class:`~genzoo.FlowMatchingPipeline`.
* **Distillation** (``--teacher ... --distill_steps K``): the same regression, but only at the times of the K-step
  sampling grid ``t in {0, 1/K, ..., (K-1)/K}`` (the saved scheduler's grid, in model units; ``--shift`` moves it as
  it moves sampling). The saved :class:`~genzoo.FlowMapPipeline` with :class:`~genzoo.FlowMapEulerScheduler` samples
  in K jumps ``x_{k+1} = x_k + (1/K) v(x_k, t_k)``; with K = 1 its one step is ``x1 = x0 + v(x0, 0)``. Sample it
  with ``num_inference_steps=K`` (a FlowMapPipeline takes 1 by default).

The batches of the training data only set the batch size when there is a teacher (and the data's sample shape must
be the teacher's); the pairs are drawn with the trainer's checkpointed generator, so resuming is exact.

The pairs are cached (:mod:`genzoo.teacher_pairs`): by default in ``<cache>/teacher_pairs/<key>`` (``<cache>`` =
``$GENZOO_CACHE``, ``$XDG_CACHE_HOME/genzoo`` or ``~/.cache/genzoo``), or in ``--pairs_dir``; the key hashes the
teacher's saved files and scheduler configuration, ``--teacher_steps``, ``--num_pairs`` and ``--seed``. A resumed
run, or a second run from the same teacher (a distillation after a reflow), loads them instead of sampling the
teacher again; ``metrics.json`` says which (``pairs_source``) and how long generating took.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import RecipeError, option
from ..pipelines import FlowMapPipeline
from ..schedulers import FlowMapEulerScheduler
from ..teacher_pairs import TeacherPairs, teacher_pairs
from .adversarial import DISCRIMINATOR, AdversarialConfig, AdversarialLoss
from .base import randn_like, teacher_option
from .flow_matching import FlowMatchingConfig, FlowMatchingMethod

RF = "rectified flow"
#: Options that only mean something with a teacher.
TEACHER_OPTIONS = ("num_pairs", "teacher_steps", "pairs_dir", "distill_steps", "gan_weight")


@dataclass
class RectifiedFlowConfig(FlowMatchingConfig, AdversarialConfig):
    group_title: ClassVar[str] = RF

    teacher: str | None = teacher_option(
        "reflow or distil this trained flow pipeline (flow matching, flow map or an earlier rectified flow; folder or "
        "Hub id), loaded frozen; without one: the first rectified flow, i.e. flow matching on the data")
    num_pairs: int = option(10000, "with --teacher: how many (noise, teacher sample) pairs to make and train on",
                            minimum=1, group=RF)
    teacher_steps: int | None = option(None, "with --teacher: sampling steps of the teacher's own scheduler (default: "
                                       "its pipeline's default_num_inference_steps)", minimum=1, group=RF)
    pairs_dir: str | None = option(None, "with --teacher: the folder the pairs are cached in (default: "
                                   "<cache>/teacher_pairs/<key>, <cache> = $GENZOO_CACHE, $XDG_CACHE_HOME/genzoo or "
                                   "~/.cache/genzoo)", metavar="DIR", group=RF)
    distill_steps: int | None = option(None, "with --teacher: distil onto the K-step grid and save a FlowMapPipeline "
                                       "that samples in K steps (default: reflow, saving a FlowMatchingPipeline)",
                                       minimum=1, metavar="K", group=RF)

    def check(self):
        super().check()
        if self.teacher is None:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name in TEACHER_OPTIONS:
                if getattr(self, name) != defaults[name]:
                    raise RecipeError(
                        f"--{name} {getattr(self, name)} needs --teacher: without a teacher rectified-flow is the first "
                        "rectified flow (flow matching on the data), which has no teacher pairs."
                    )
            return
        if self.coupling != "independent":
            raise RecipeError(
                f"--coupling {self.coupling} with --teacher: the teacher's sampler pairs each noise with its sample "
                "(the coupling rectified flow straightens); leave --coupling independent."
            )
        if self.conditioning != "none":
            raise RecipeError(
                f"--conditioning {self.conditioning} with --teacher: rectified flow from a teacher is unconditional "
                "(its pairs of noise and samples carry no label or caption); use --conditioning none."
            )
        if self.gan_weight > 0 and self.distill_steps is None:
            raise RecipeError(
                f"--gan_weight {self.gan_weight} with a reflow: the GAN loss scores the samples of a model that draws "
                "them in a few calls; add --distill_steps K (1-4), or use --gan_weight 0."
            )
        if self.distill_steps is not None:
            conflicts = {
                "prediction_type": self.prediction_type not in (None, "velocity"),
                "scheduler": self.scheduler not in (None, FlowMapEulerScheduler.__name__),
                "solver": self.solver is not None,
                "time_sampling": self.time_sampling != "uniform",
                "path": self.path not in (None, "straight"),
            }
            for name, conflict in conflicts.items():
                if conflict:
                    raise RecipeError(
                        f"--{name} {getattr(self, name)} with --distill_steps: the distilled model predicts the "
                        "velocity of the straight line between each pair at the times of the K-step grid and is saved "
                        "with FlowMapEulerScheduler; leave --prediction_type, --scheduler, --solver, --time_sampling "
                        "and --path at their defaults."
                    )


class RectifiedFlowMethod(AdversarialLoss, FlowMatchingMethod):
    """Rectified flow (Liu et al. 2022): flow matching on the data without a teacher; with one (``--teacher``),
    reflow (a straighter flow-matching model) or, with ``--distill_steps`` K, a K-step flow map
    (``--method rectified-flow``).

    Saves a ``FlowMatchingPipeline`` (a ``FlowMapPipeline`` when distilling); the teacher's pairs of noise and
    samples are made once and cached (see the few-step guide). A distillation with ``--gan_weight`` > 0 also trains
    a discriminator on its K-step samples against the data (:mod:`genzoo.methods.adversarial`).

    Args:
        config (RectifiedFlowConfig): the method's options (``--method rectified-flow``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "rectified-flow"
    Config = RectifiedFlowConfig
    #: The teacher's pairs, once ``prepare_training`` has made or loaded them (``None`` without a teacher).
    pairs: TeacherPairs | None = None

    def __init__(self, config, data, context=None):
        super().__init__(config, data, context)
        if config.distill_steps is not None:
            self.pipeline_class = FlowMapPipeline

    def check_data(self) -> None:
        super().check_data()
        if self.config.vae is not None and self.config.teacher is not None:
            raise ValueError(
                "--vae with --teacher: rectified flow takes its teacher's pairs in the teacher's own sample space, "
                "and a reflow or distillation of a latent model is not supported yet; train the latent model with "
                "--method flow-matching or meanflow, or drop --vae."
            )

    @property
    def distill_steps(self) -> int | None:
        return self.config.distill_steps

    def scheduler_name(self) -> str:
        return FlowMapEulerScheduler.__name__ if self.distill_steps else super().scheduler_name()

    # ------------------------------------------------------------------ pairs
    def prepare_training(self):
        """With a teacher: make or load its pairs (the trainer calls this after ``build_models``, so the models'
        initialisation never depends on how the pairs came), then let the teacher go."""
        super().prepare_training()
        if self.config.teacher is None:
            return
        if self.teacher is None:
            raise ValueError(
                f"--teacher {self.config.teacher}: the teacher pipeline is not loaded (the trainer loads it into "
                "method.teacher before build_models)."
            )
        c, context = self.config, self.context
        self.pairs = teacher_pairs(
            self.teacher, c.teacher, sample_shape=self.data.sample_shape, num_pairs=c.num_pairs,
            teacher_steps=c.teacher_steps, seed=context.seed, pairs_dir=c.pairs_dir,
            process_index=context.process_index, num_processes=context.num_processes, device=context.device,
        )
        self.teacher = None  # the pairs are all training needs from it: free its memory

    # ------------------------------------------------------------------ loss
    def training_pair(self, models, batch, generator):
        """Without a teacher, flow matching's pair. With one, a batch of the teacher's pairs: the data batch sets only
        the batch size."""
        if self.pairs is None:
            return super().training_pair(models, batch, generator)
        like = batch["sample"]
        index = torch.randint(self.pairs.num_pairs, (like.shape[0],), generator=generator, device=generator.device)
        noise, x = self.pairs.take(index, like)
        return x, noise, {}

    def training_timesteps(self, batch_size, generator, device):
        """Reflow: from ``--time_sampling``; distillation: uniformly from the times of the K-step grid."""
        if not (self.pairs is not None and self.distill_steps):
            return super().training_timesteps(batch_size, generator, device)
        grid = self.distill_grid
        return grid[torch.randint(len(grid), (batch_size,), generator=generator, device=generator.device).cpu()].to(device)

    @property
    def distill_grid(self) -> torch.Tensor:
        """The model times of the saved scheduler's ``distill_steps``-step sampling grid (CPU, float32)."""
        return self._distill_schedule[0]

    @property
    def _distill_schedule(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(timesteps, times)``: the saved scheduler's K model time inputs and its flow times ``t_0 .. t_K``
        (CPU)."""
        if not hasattr(self, "_schedule"):
            self._schedule = self.make_scheduler().grid(self.distill_steps)
        return self._schedule

    def loss(self, phase, models, batch, step, generator):
        if phase == DISCRIMINATOR:
            return self.critic_step(models, batch, generator)
        loss, terms = super().loss(phase, models, batch, step, generator)
        return self.with_gan_term(models, batch, generator, loss, terms)

    def generated(self, models, batch, generator):
        """K-step samples of the distilled model, ``x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k)`` from noise as the
        saved pipeline draws them (with gradients through every call)."""
        timesteps, times = self._distill_schedule
        x = randn_like(batch["sample"], generator)
        for k, t in enumerate(timesteps):
            x = x + float(times[k + 1] - times[k]) * models["unet"](x, t.to(x.device).expand(x.shape[0])).sample
        return x

    # ------------------------------------------------------------------ facts
    def describe(self):
        facts = super().describe()
        if self.config.teacher is None:
            return {**facts, "rectified_flow": "1-rectified flow (flow matching on the data)"}
        facts.update(rectified_flow="distillation" if self.distill_steps else "reflow", coupling="teacher",
                     teacher=self.config.teacher)
        if self.distill_steps:
            facts["distill_steps"] = self.distill_steps
        if self.pairs is not None:
            meta = self.pairs.metadata
            facts.update(num_pairs=self.pairs.num_pairs, teacher_steps=meta.get("teacher_steps"),
                         pairs_source=self.pairs.source, pair_generation_seconds=meta.get("generation_seconds"),
                         pairs_dir=str(self.pairs.folder))
        return facts
