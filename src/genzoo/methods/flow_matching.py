"""Flow matching (Lipman et al. 2022): regress the straight-line velocity x_1 - x_0 at a time drawn by
``--time_sampling``; the saved pipeline integrates it with the chosen flow-matching scheduler (an ODE solver).
``--path`` trains on another registered probability path instead (``cosine``, a plugin's): the saved scheduler's
config carries it, so sampling, evaluation and the demo use it with every genzoo solver.

``--coupling ot`` pairs each batch's noise with its data by the exact minibatch optimal-transport plan (Tong et al.
2023; :mod:`genzoo.couplings`) instead of as drawn; ``--ot_scope`` says whether the plan is solved per process or over
the batch gathered from every process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import RecipeError, option
from ..couplings import COUPLINGS, OT_SCOPES, couple
from ..pipelines import FlowMatchingPipeline
from ..schedulers.kinds import solver_shorthands
from ..schedulers.paths import path_names
from ..schedulers.scheduling_flow_match import FLOW_PREDICTION_TYPES, TIME_SAMPLINGS
from .denoising import DenoisingConfig, DenoisingMethod, scheduler_choices

PATH = "flow-matching: path and solver"


def solvers() -> dict[str, str]:
    """``--solver`` shorthands: each registered scheduler's declared ``solver_name`` -> its registered name
    (genzoo's: ``euler`` = FlowMatchEulerScheduler, ``heun`` = FlowMatchHeunScheduler; a plugin's solver too)."""
    return solver_shorthands()


@dataclass
class FlowPathConfig(DenoisingConfig):
    """The straight path's options, shared by every method trained on it (flow matching, rectified flow,
    MeanFlow): which times it is trained at and how noise is paired with data."""

    group_title: ClassVar[str] = "flow-matching"

    time_sampling: str = option("uniform", "training-time distribution: uniform, or logit_normal (SD3's)",
                                choices=TIME_SAMPLINGS, group=PATH)
    logit_mean: float = option(0.0, "logit_normal: mean of the logit of t", group=PATH)
    logit_std: float = option(1.0, "logit_normal: standard deviation of the logit of t", above=0.0, group=PATH)
    shift: float | None = option(None, "SD3 time shift for training and sampling (default: the scheduler's; 1 is "
                                 "none)", above=0.0, group=PATH)
    coupling: str = option("independent", "how noise is paired with data: independent (as drawn), or ot (exact "
                           "minibatch optimal transport, Tong et al. 2023; class-conditional: within each class)",
                           choices=COUPLINGS, group=PATH)
    ot_scope: str = option("process", "--coupling ot with several processes: process (one plan per process's "
                           "batch) or global (one plan over the batch gathered from every process)",
                           choices=OT_SCOPES, group=PATH)

    def check(self):
        super().check()
        if self.coupling == "ot" and self.conditioning == "text":
            raise RecipeError("--coupling ot pairs noise with data within each class, and captions are not classes; "
                              "use --coupling independent with --conditioning text.")


def path_scheduler_kwargs(config: FlowPathConfig) -> dict:
    """The scheduler arguments a :class:`FlowPathConfig` sets: the training-time distribution and the shift."""
    return dict(time_sampling=config.time_sampling, logit_mean=config.logit_mean, logit_std=config.logit_std,
                shift=config.shift)


@dataclass
class FlowMatchingConfig(FlowPathConfig):
    prediction_type: str | None = option(None, "what the model predicts: the velocity (default) or x_1 (sample)",
                                         choices=FLOW_PREDICTION_TYPES, group=PATH)
    path: str | None = option(None, "the probability path x_t = alpha_t x_1 + sigma_t x_0 trained on and sampled "
                              "along, a registered one: straight (x_t = (1 - t) x_0 + t x_1) or cosine (alpha_t = "
                              "sin(pi t / 2), sigma_t = cos(pi t / 2)); default: the scheduler's, straight",
                              choices=path_names, group=PATH)
    scheduler: str | None = option(None, "the saved pipeline's ODE solver, a registered flow-matching scheduler "
                                   "(default FlowMatchEulerScheduler)",
                                   choices=scheduler_choices(FlowMatchingPipeline.model_kind), group=PATH)
    solver: str | None = option(None, "shorthand for --scheduler, a solver's declared short name: euler = "
                                "FlowMatchEulerScheduler, heun = FlowMatchHeunScheduler",
                                choices=lambda: list(solvers()), group=PATH)

    def check(self):
        super().check()
        shorthands = solvers()
        if self.solver and self.scheduler and shorthands[self.solver] != self.scheduler:
            raise RecipeError(
                f"--solver {self.solver} means --scheduler {shorthands[self.solver]}, but --scheduler is "
                f"{self.scheduler}; give one of them."
            )


class FlowMatchingMethod(DenoisingMethod):
    """Flow matching (Lipman et al. 2022): regress the straight-line velocity x_1 - x_0 at t from ``time_sampling``
    (``--method flow-matching``).

    Saves a ``FlowMatchingPipeline``; ``--coupling ot`` pairs noise and data by minibatch optimal transport.

    Args:
        config (FlowMatchingConfig): the method's options (``--method flow-matching``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "flow-matching"
    Config = FlowMatchingConfig
    default_scheduler = "FlowMatchEulerScheduler"
    pipeline_class = FlowMatchingPipeline

    def scheduler_name(self) -> str:
        return self.config.scheduler or solvers().get(self.config.solver) or self.default_scheduler

    def scheduler_kwargs(self):
        return {**path_scheduler_kwargs(self.config), "prediction_type": self.config.prediction_type,
                "path": self.config.path}

    # ------------------------------------------------------------------ coupling
    def couple(self, noise, x, batch):
        """``noise`` re-ordered so that row ``i`` is the noise the OT plan pairs with ``x[i]`` (``--coupling ot``);
        class-conditional runs pair within each true class (labels before ``--cond_dropout``)."""
        if self.config.coupling == "independent":
            return noise
        labels = batch["label"] if self.conditioning == "class" else None
        return couple(noise, x, labels, scope=self.config.ot_scope, num_processes=self.context.num_processes)

    def describe(self):
        facts = {**super().describe(), "coupling": self.config.coupling}
        if self.config.coupling == "ot":
            facts["ot_scope"] = self.config.ot_scope
            facts["ot_pairing"] = "within each class" if self.conditioning == "class" else "whole batch"
        return facts
