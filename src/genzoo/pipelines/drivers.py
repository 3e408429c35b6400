"""How a genzoo denoising pipeline drives its scheduler through the sampling loop -- genzoo's own, a plugin's, or one
of Diffusers' solvers on a genzoo model -- and which samplers a pipeline of each ``model_kind`` can swap in.

A driver gives the loop the starting noise scale, the model's time input, the conversion of the model's output to the
scheduler's convention and ``step`` (:func:`scheduler_driver` picks one). Diffusers' flow solvers run time the other
way and take ``-v`` (:mod:`genzoo.schedulers.diffusers_interop` has the table); its DPM-Solver and UniPC lack DDPM's
``clip_sample``. A Diffusers scheduler that would sample the model in the wrong convention is refused, saying what to
use instead. :func:`solver_choices` lists the samplers of a ``model_kind`` by label, for menus such as the demo's.
"""

from __future__ import annotations

import functools
import inspect

import torch

from ..schedulers.diffusers_interop import (
    FLOW_MODE_EXAMPLES,
    check_straight_path,
    flow_settings,
    has_flow_mode,
    is_diffusers_flow_class,
)
from ..schedulers.kinds import sampler_labels
from ..schedulers.paths import DEFAULT_PATH, AffinePath


def is_diffusers_scheduler(scheduler) -> bool:
    """Whether ``scheduler`` is one of Diffusers' own classes (not genzoo's, not a plugin's)."""
    return type(scheduler).__module__.startswith("diffusers.")


def in_flow_mode(scheduler) -> bool:
    """A Diffusers scheduler set up for flow matching: a flow-only class, or a multistep one with
    ``use_flow_sigmas=True`` and ``prediction_type`` ``flow_prediction`` (or ``sample``, for an x1-predicting model)."""
    if is_diffusers_flow_class(scheduler):
        return True
    config = scheduler.config
    return bool(config.get("use_flow_sigmas")) and config.get("prediction_type") in ("flow_prediction", "sample")


@functools.cache
def _step_takes_generator(cls: type) -> bool:
    parameters = inspect.signature(cls.step).parameters
    return "generator" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def step_takes_generator(scheduler) -> bool:
    """Whether ``scheduler.step`` accepts ``generator=`` (UniPC's does not); inspected once per class."""
    return _step_takes_generator(type(scheduler))


class SchedulerDriver:
    """How a genzoo denoising loop drives its scheduler: the starting noise scale, the model's time input, the
    conversion of the model's output, and ``step``. This one drives a scheduler that speaks the model's own
    convention (genzoo's, a plugin's, or Diffusers' DDIM / DPM-Solver / UniPC on a DDPM model) and only leaves
    ``generator`` out of ``step`` where the scheduler's ``step`` takes none."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.init_noise_sigma = getattr(scheduler, "init_noise_sigma", 1.0)
        self._pass_generator = step_takes_generator(scheduler)

    def begin(self) -> None:
        """Called once after ``set_timesteps``."""

    def scale_model_input(self, sample, timestep):
        scale = getattr(self.scheduler, "scale_model_input", None)
        return sample if scale is None else scale(sample, timestep)

    def model_timestep(self, index: int, timestep):
        return timestep

    def scheduler_output(self, model_output, sample, index: int):
        return model_output

    def step(self, model_output, timestep, sample, generator=None):
        extra = {"generator": generator} if self._pass_generator else {}
        return self.scheduler.step(model_output, timestep, sample, **extra).prev_sample


class DiffusersFlowDriver(SchedulerDriver):
    """A Diffusers flow scheduler on a genzoo flow-matching model of the straight path (see the table at the top of
    :mod:`genzoo.schedulers.diffusers_interop`): the
    model is fed genzoo's time ``(1 - sigma) * time_scale`` (from the scheduler's float ``sigmas`` where they line up
    with its timesteps, since DPM-Solver and UniPC round their timesteps to integers), and its velocity ``v`` is handed
    over as ``-v`` (or, for an x1-predicting model, as ``-v = (x - x1) / sigma`` for the flow-only classes)."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        config = scheduler.config
        self.num_train_timesteps = float(config.get("num_train_timesteps", 1000))
        self.time_scale = self.num_train_timesteps if config.get("scale_timesteps", True) else 1.0
        _, self.prediction = flow_settings(config)
        if is_diffusers_flow_class(scheduler):
            self.convert = "negate" if self.prediction == "velocity" else "sample_to_flow"
        else:  # flow mode: prediction_type is flow_prediction (-v) or sample (x1, Diffusers' "x0")
            self.convert = "negate" if config.get("prediction_type") == "flow_prediction" else "none"
        self._sigmas = None

    def begin(self) -> None:
        timesteps = self.scheduler.timesteps.detach().float().cpu()
        sigmas = getattr(self.scheduler, "sigmas", None)
        self._sigmas = None
        if isinstance(sigmas, torch.Tensor) and len(sigmas) == len(timesteps) + 1:
            sigmas = sigmas.detach().double().cpu()
            if bool(((sigmas[:-1] * self.num_train_timesteps - timesteps).abs() <= 1.0 + 1e-6 * self.num_train_timesteps).all()):
                self._sigmas = sigmas.tolist()

    def _sigma(self, index: int, timestep) -> float:
        if self._sigmas is not None:
            return self._sigmas[index]
        return float(timestep) / self.num_train_timesteps

    def model_timestep(self, index: int, timestep):
        t = (1.0 - self._sigma(index, timestep)) * self.time_scale
        device = timestep.device if isinstance(timestep, torch.Tensor) else None
        return torch.tensor(t, dtype=torch.float32, device=device)

    def scheduler_output(self, model_output, sample, index: int):
        if self.convert == "negate":
            return -model_output
        if self.convert == "sample_to_flow":
            sigma = self._sigma(index, self.scheduler.timesteps[index])
            return (sample - model_output) / sigma
        return model_output


class ClippedDiffusionDriver(SchedulerDriver):
    """A Diffusers solver without ``clip_sample`` (DPM-Solver, UniPC) on a DDPM model whose config asks for it: the
    data estimate implied by the model's output is clipped to ``[-clip_sample_range, clip_sample_range]``, as
    ``DDIMScheduler`` and genzoo's ``DDPMScheduler`` do, and the output is rewritten to match. Without it a short-
    trained model's errors at high noise, amplified up to ``1 / sqrt(alpha_bar)`` into its data estimate, throw a
    deterministic solver's samples far off (docs/few-step.md). Entries whose estimate lies inside the range keep the
    model's output exactly; extra output channels (a learned variance) are passed through."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        config = scheduler.config
        self.bound = float(config.get("clip_sample_range", 1.0))
        self.prediction = config.get("prediction_type", "epsilon")

    def scheduler_output(self, model_output, sample, index: int):
        channels = sample.shape[1]
        out, extra = model_output[:, :channels], model_output[:, channels:]
        t = int(self.scheduler.timesteps[index])
        ab = self.scheduler.alphas_cumprod[t].to(device=sample.device, dtype=torch.float64)
        path = AffinePath(alpha=ab.sqrt(), sigma=(1 - ab).sqrt())
        x = sample.double()
        x0 = path.data_from(out.double(), x, self.prediction)
        clipped = x0.clamp(-self.bound, self.bound)
        new = path.target(clipped, (x - path.alpha * clipped) / path.sigma, self.prediction)
        out = torch.where(clipped == x0, out, new.to(out.dtype))
        return torch.cat([out, extra], dim=1) if extra.shape[1] else out


@functools.cache
def _clips_natively(cls: type) -> bool:
    """Whether the scheduler class has its own ``clip_sample`` (DDIM does; DPM-Solver and UniPC do not)."""
    return "clip_sample" in inspect.signature(cls.__init__).parameters


def scheduler_driver(scheduler, model_kind: str | None, pipeline_name: str = "this pipeline") -> SchedulerDriver:
    """The :class:`SchedulerDriver` for ``scheduler`` on a model of ``model_kind`` (``"flow"``, ``"diffusion"`` or
    ``None``: no check). A Diffusers scheduler that would sample the model in the wrong convention is a one-line
    ``ValueError`` saying what to do instead."""
    if model_kind is None or not is_diffusers_scheduler(scheduler):
        return SchedulerDriver(scheduler)
    name = type(scheduler).__name__
    if model_kind == "flow-map":
        raise ValueError(
            f"{name} cannot sample {pipeline_name}: a flow map jumps between two times that the model is fed, which "
            "Diffusers' solvers do not do; use genzoo.FlowMapEulerScheduler.from_config(pipe.scheduler.config)."
        )
    flow = in_flow_mode(scheduler)
    if model_kind == "flow":
        if flow:
            check_straight_path(scheduler.config, f"{name} on {pipeline_name}")
            return DiffusersFlowDriver(scheduler)
        config = scheduler.config
        if has_flow_mode(scheduler):
            raise ValueError(
                f"{name} is not set up for flow matching (use_flow_sigmas={config.get('use_flow_sigmas')!r}, "
                f"prediction_type={config.get('prediction_type')!r}), so it would sample this flow-matching model "
                f"wrongly: build it with pipe.scheduler = genzoo.schedulers.diffusers_scheduler({name}, pipe)."
            )
        raise ValueError(
            f"{name} has no flow-matching mode and cannot sample {pipeline_name}'s velocity model: use "
            f"FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config) or "
            f"genzoo.schedulers.diffusers_scheduler({FLOW_MODE_EXAMPLES.replace(' or ', ' | ')}, pipe)."
        )
    if flow and model_kind == "diffusion":
        raise ValueError(
            f"{name} is set up for flow matching, but {pipeline_name}'s model is a diffusion (DDPM) model: build the "
            f"scheduler with {name}.from_config(ddpm_scheduler.config) (use_flow_sigmas=False)."
        )
    if model_kind == "diffusion" and scheduler.config.get("clip_sample") and not _clips_natively(type(scheduler)):
        return ClippedDiffusionDriver(scheduler)
    return SchedulerDriver(scheduler)


# ---------------------------------------------------------------------------------------------- samplers to swap in
#: Diffusers' solvers that sample genzoo models, per ``model_kind``: menu label -> class name in ``diffusers``. A
#: flow model's are built in their flow mode (``genzoo.schedulers.diffusers_scheduler``); a flow map has none.
DIFFUSERS_SOLVERS = {
    "flow": {"DPM-Solver++ (Diffusers)": "DPMSolverMultistepScheduler", "UniPC (Diffusers)": "UniPCMultistepScheduler"},
    "diffusion": {"DDIM (Diffusers)": "DDIMScheduler", "DPM-Solver++ (Diffusers)": "DPMSolverMultistepScheduler",
                  "UniPC (Diffusers)": "UniPCMultistepScheduler"},
}


def solver_choices(model_kind: str | None, scheduler_config=None) -> dict[str, type]:
    """The samplers a pipeline of ``model_kind`` can swap in, by display label: every registered scheduler of that
    kind (genzoo's as ``"Euler (genzoo)"``, ``"Heun (genzoo)"``, ``"DDPM (genzoo)"``, from their declared
    ``solver_label``; a plugin's as ``"<name> (<package>)"`` unless it declares one), then Diffusers' solvers of
    :data:`DIFFUSERS_SOLVERS` -- those only where they can sample the model: a flow model on a path other than the
    straight one (its scheduler config's ``path``) gets genzoo's solvers alone.

    Args:
        model_kind (str | None): a pipeline's ``model_kind`` (``"flow"``, ``"flow-map"``, ``"diffusion"``); ``None``
            (a GAN or a VAE: one forward pass) has none.
        scheduler_config (Mapping | None): the config of the pipeline's own scheduler, whose ``path`` decides
            whether Diffusers' flow solvers fit (default: they do).

    Returns:
        Label -> scheduler class. A genzoo class is built with ``cls.from_config(pipe.scheduler.config)``, a
        Diffusers one with ``genzoo.schedulers.diffusers_scheduler(cls, pipe)``.
    """
    if model_kind is None:
        return {}
    import diffusers

    choices = dict(sampler_labels(model_kind))
    if (scheduler_config or {}).get("path", DEFAULT_PATH) != DEFAULT_PATH:
        return choices  # Diffusers' flow schedulers know only the straight path (check_straight_path)
    for label, class_name in DIFFUSERS_SOLVERS.get(model_kind, {}).items():
        choices.setdefault(label, getattr(diffusers, class_name))
    return choices
