"""Adapter between genzoo's flow-matching convention and ``diffusers.FlowMatchEulerDiscreteScheduler``.

The two describe the same straight path with time running in opposite directions:

==========================  =============================  =====================================
                            genzoo                         Diffusers
==========================  =============================  =====================================
time                        ``t``: 0 = noise, 1 = data      ``sigma = 1 - t``: 1 = noise, 0 = data
model time input            ``t * T`` (or ``t``)           ``sigma * T``
model output                ``v = x_data - x_noise``       ``-v = x_noise - x_data``
==========================  =============================  =====================================

:class:`DiffusersFlowMatchAdapter` builds a Diffusers scheduler on exactly genzoo's grid (with ``shift=1`` and
explicit ``sigmas``, so the shift is applied once, by genzoo) and converts time inputs and model outputs, so
either model can be sampled by either scheduler.
"""

from __future__ import annotations

import functools
import inspect
import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ..checks import describe
from .paths import AffinePath, as_timestep_tensor, check_tensor
from .scheduling_flow_match import FlowMatchEulerScheduler


def _checked_time(name: str, value, scale: float) -> torch.Tensor:
    """A time input (number, list or tensor) as a float tensor, checked finite and in ``[0, scale]`` (with the
    tolerance of a float32 grid)."""
    t = as_timestep_tensor(name, value)
    t = t.float()
    low, high = torch.stack([t.min().float(), t.max().float()]).tolist()
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 * scale or high > (1 + 1e-3) * scale:
        raise ValueError(f"{name} must be finite and in [0, {scale:g}], got {describe(value)}.")
    return t


class DiffusersFlowMatchAdapter:
    """Conversions between a genzoo flow-matching scheduler and Diffusers' ``FlowMatchEulerDiscreteScheduler``.

    The two describe the same straight path with time running in opposite directions: genzoo's time ``t`` (0 =
    noise, 1 = data; the model is fed ``t * T`` or ``t``) is Diffusers' ``sigma = 1 - t`` (fed ``sigma * T``), and
    genzoo's velocity ``v = x_data - x_noise`` is Diffusers' ``-v``.

    Args:
        scheduler: the genzoo flow-matching scheduler (or a subclass) whose grid and time units to convert.

    Raises:
        ValueError: if ``scheduler`` is not a ``FlowMatchEulerScheduler``.
    """

    def __init__(self, scheduler: FlowMatchEulerScheduler):
        if not isinstance(scheduler, FlowMatchEulerScheduler):
            raise ValueError(
                "DiffusersFlowMatchAdapter needs a genzoo FlowMatchEulerScheduler (or a subclass), got "
                f"{describe(scheduler)} (type {type(scheduler).__name__})."
            )
        self.scheduler = scheduler
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    def make_diffusers_scheduler(self, num_inference_steps: int, device=None) -> FlowMatchEulerDiscreteScheduler:
        """A Diffusers scheduler whose grid is genzoo's ``set_timesteps(num_inference_steps)`` grid, reversed in time.

        Args:
            num_inference_steps: the number of steps of the grid.
            device (str | torch.device | None): where the schedulers' timesteps go.

        Returns:
            A ``FlowMatchEulerDiscreteScheduler`` with ``shift=1`` and genzoo's grid as explicit ``sigmas``.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        diffusers_scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=1.0)
        sigmas = (1.0 - self.scheduler.times[:-1]).tolist()
        diffusers_scheduler.set_timesteps(sigmas=sigmas, device=device)
        return diffusers_scheduler

    def genzoo_timestep(self, diffusers_timestep) -> torch.Tensor:
        """Diffusers' time input ``sigma * T`` -> genzoo's time input (``t * T`` or ``t``).

        Args:
            diffusers_timestep (float | torch.Tensor): Diffusers' time input, finite and in [0, T].

        Returns:
            genzoo's time input, a float tensor.
        """
        T = self.num_train_timesteps
        sigma = _checked_time("diffusers_timestep", diffusers_timestep, T) / T
        return (1.0 - sigma) * self.scheduler.time_scale

    def diffusers_timestep(self, genzoo_timestep) -> torch.Tensor:
        """genzoo's time input -> Diffusers' ``sigma * T``.

        Args:
            genzoo_timestep (float | torch.Tensor): genzoo's time input, finite and in range.

        Returns:
            Diffusers' time input, a float tensor.
        """
        t = _checked_time("genzoo_timestep", genzoo_timestep, self.scheduler.time_scale) / self.scheduler.time_scale
        return (1.0 - t) * self.num_train_timesteps

    @staticmethod
    def convert_output(model_output: torch.Tensor) -> torch.Tensor:
        """A velocity in one convention -> the other (``v_diffusers = -v``; the map is its own inverse).

        Args:
            model_output: a velocity in either convention.

        Returns:
            The velocity in the other convention.
        """
        return -check_tensor("model_output", model_output)

    def wrap_genzoo_model(self, model_fn):
        """``model_fn(x, genzoo_timestep) -> v`` as ``f(x, diffusers_timestep) -> -v`` for Diffusers' scheduler.

        Args:
            model_fn (Callable): a genzoo velocity model, ``model_fn(x, genzoo_timestep) -> v``.

        Returns:
            (Callable): the same model in Diffusers' convention.
        """

        def diffusers_model(sample, timestep):
            return self.convert_output(model_fn(sample, self.genzoo_timestep(timestep)))

        return diffusers_model

    def wrap_diffusers_model(self, model_fn):
        """``model_fn(x, diffusers_timestep) -> -v`` as ``f(x, genzoo_timestep) -> v`` for genzoo's schedulers.

        Args:
            model_fn (Callable): a model in Diffusers' convention, ``model_fn(x, diffusers_timestep) -> -v``.

        Returns:
            (Callable): the same model in genzoo's convention.
        """

        def genzoo_model(sample, timestep):
            return self.convert_output(model_fn(sample, self.diffusers_timestep(timestep)))

        return genzoo_model


# ---------------------------------------------------------------------------------------------------------------
# Diffusers' schedulers placed on genzoo pipelines (``pipe.scheduler = SomeScheduler.from_config(...)``)
# ---------------------------------------------------------------------------------------------------------------

#: genzoo's flow-matching scheduler classes, by the ``_class_name`` their configs record.
GENZOO_FLOW_CLASS_NAMES = ("FlowMatchEulerScheduler", "FlowMatchHeunScheduler", "FlowMapEulerScheduler")
#: Diffusers' multistep schedulers with a flow mode (``use_flow_sigmas``) that genzoo's tests sample with.
FLOW_MODE_EXAMPLES = "DPMSolverMultistepScheduler or UniPCMultistepScheduler"


def is_diffusers_scheduler(scheduler) -> bool:
    """Whether ``scheduler`` is one of Diffusers' own classes (not genzoo's, not a plugin's)."""
    return type(scheduler).__module__.startswith("diffusers.")


def is_diffusers_flow_class(scheduler_or_class) -> bool:
    """Diffusers' flow-only schedulers: ``FlowMatchEulerDiscreteScheduler``, its siblings (``FlowMatch*``) and any
    class that lists it among its ``_compatibles``. They always run the flow ``sigma`` from 1 to 0."""
    cls = scheduler_or_class if isinstance(scheduler_or_class, type) else type(scheduler_or_class)
    if "FlowMatchEulerDiscreteScheduler" in (getattr(cls, "_compatibles", None) or []):
        return True
    return any(c.__module__.startswith("diffusers.") and c.__name__.startswith("FlowMatch") for c in cls.__mro__)


def has_flow_mode(scheduler_or_class) -> bool:
    """Diffusers' schedulers that can be switched to flow matching with ``use_flow_sigmas=True`` (DPM-Solver,
    UniPC, DEIS, SA-Solver, ...)."""
    cls = scheduler_or_class if isinstance(scheduler_or_class, type) else type(scheduler_or_class)
    return "use_flow_sigmas" in inspect.signature(cls.__init__).parameters


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


def _flow_settings(config) -> tuple[float, str]:
    """``(shift, model prediction)`` of a flow-matching model from its scheduler's config: a genzoo config, or one
    a Diffusers scheduler built from it (which keeps genzoo's keys) or by :func:`diffusers_scheduler`."""
    if config.get("use_flow_sigmas") and "flow_shift" in config:
        shift = config["flow_shift"]
    else:
        shift = config.get("shift", 1.0)
    prediction = "sample" if config.get("prediction_type") == "sample" else "velocity"
    return float(shift), prediction


def _is_flow_config(config) -> bool:
    return (
        config.get("_class_name") in GENZOO_FLOW_CLASS_NAMES
        or "scale_timesteps" in config
        or (bool(config.get("use_flow_sigmas")) and config.get("prediction_type") in ("flow_prediction", "sample"))
        or config.get("_class_name", "").startswith("FlowMatch")
    )


def diffusers_scheduler(scheduler_class, source, **kwargs):
    """``scheduler_class`` (one of Diffusers' schedulers) built for the model of ``source`` -- a genzoo pipeline, a
    scheduler or a scheduler config -- the way ``scheduler_class.from_config(source.config)`` cannot always do.

    For a flow-matching model (genzoo's ``FlowMatchEulerScheduler`` / ``FlowMatchHeunScheduler`` config):

    * a multistep scheduler with a flow mode (``DPMSolverMultistepScheduler``, ``UniPCMultistepScheduler``, ...)
      gets ``use_flow_sigmas=True``, ``flow_shift=<genzoo shift>`` and ``prediction_type="flow_prediction"``
      (``"sample"`` for a model that predicts the data);
    * ``FlowMatchEulerDiscreteScheduler`` and its ``FlowMatch*`` siblings: ``from_config`` as it is (it takes
      ``shift``); they need a velocity model;
    * any other class (``DDIMScheduler``, ...) has no flow mode: ``ValueError``.

    For a DDPM model it is ``scheduler_class.from_config(config)``; a flow scheduler is refused. A pipeline's
    ``model_kind`` decides which (so the helper also mends a pipeline whose scheduler was swapped by plain
    ``from_config`` and refused); a bare config is recognised by its keys. genzoo's own keys (``scale_timesteps``,
    ...) stay in the new config, which is how a genzoo pipeline knows the model's time units after the swap.

    Args:
        scheduler_class (type): one of Diffusers' scheduler classes, e.g. ``DPMSolverMultistepScheduler``.
        source (GenzooPipeline | diffusers.SchedulerMixin | dict): a genzoo pipeline, a scheduler or a scheduler
            config.
        **kwargs (Any): config overrides, as in ``from_config``.

    Returns:
        (diffusers.SchedulerMixin): an instance of ``scheduler_class``, ready to be set as ``pipe.scheduler``.

    Raises:
        ValueError: if ``scheduler_class`` cannot sample this model (no flow mode, a flow scheduler for a DDPM
            model, a velocity-only scheduler for a model that predicts the data).
    """
    if not isinstance(scheduler_class, type) or not hasattr(scheduler_class, "from_config"):
        raise ValueError(f"scheduler_class must be a scheduler class, got {describe(scheduler_class)}.")
    scheduler = getattr(source, "scheduler", source)
    config = getattr(scheduler, "config", scheduler)
    if not hasattr(config, "get"):
        raise ValueError(f"source must be a genzoo pipeline, a scheduler or its config, got {describe(source)}.")
    name = scheduler_class.__name__
    # A pipeline says what its model is; that survives a scheduler swapped in by plain ``from_config`` (whose config
    # keeps only genzoo's non-default keys). A bare config is recognised by its keys.
    model_kind = getattr(source, "model_kind", None)
    if not (model_kind == "flow" or (model_kind is None and _is_flow_config(config))):
        if is_diffusers_flow_class(scheduler_class):
            raise ValueError(f"{name} is a flow-matching scheduler; this model's scheduler is not ({config.get('_class_name')}).")
        return scheduler_class.from_config(config, **kwargs)
    shift, prediction = _flow_settings(config)
    if is_diffusers_flow_class(scheduler_class):
        if prediction != "velocity":
            raise ValueError(f"{name} needs a velocity model; this flow-matching model predicts the {prediction}: use {FLOW_MODE_EXAMPLES}.")
        return scheduler_class.from_config(config, **{"shift": shift, **kwargs})
    if not has_flow_mode(scheduler_class):
        raise ValueError(f"{name} has no flow-matching mode: use FlowMatchEulerDiscreteScheduler or {FLOW_MODE_EXAMPLES}.")
    flow = {"use_flow_sigmas": True, "flow_shift": shift,
            "prediction_type": "flow_prediction" if prediction == "velocity" else "sample"}
    return scheduler_class.from_config(config, **{**flow, **kwargs})


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
    """A Diffusers flow scheduler on a genzoo flow-matching model (see the table at the top of this module): the
    model is fed genzoo's time ``(1 - sigma) * time_scale`` (from the scheduler's float ``sigmas`` where they line up
    with its timesteps, since DPM-Solver and UniPC round their timesteps to integers), and its velocity ``v`` is handed
    over as ``-v`` (or, for an x1-predicting model, as ``-v = (x - x1) / sigma`` for the flow-only classes)."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        config = scheduler.config
        self.num_train_timesteps = float(config.get("num_train_timesteps", 1000))
        self.time_scale = self.num_train_timesteps if config.get("scale_timesteps", True) else 1.0
        _, self.prediction = _flow_settings(config)
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
