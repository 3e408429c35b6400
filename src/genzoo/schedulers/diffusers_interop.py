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
either model can be sampled by either scheduler. :func:`diffusers_scheduler` builds Diffusers' other solvers for a
genzoo model. Both know only the straight path: a genzoo scheduler on another ``path`` is refused with a
``ValueError``. (How a pipeline drives a Diffusers scheduler through its sampling loop is in
:mod:`genzoo.pipelines.drivers`.)
"""

from __future__ import annotations

import inspect
import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ..checks import describe
from .checks import as_timestep_tensor, check_tensor
from .kinds import registered_schedulers
from .paths import DEFAULT_PATH
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
        ValueError: if ``scheduler`` is not a ``FlowMatchEulerScheduler``, or is on another path than the straight one
            (Diffusers' flow schedulers know only that one).
    """

    def __init__(self, scheduler: FlowMatchEulerScheduler):
        if not isinstance(scheduler, FlowMatchEulerScheduler):
            raise ValueError(
                "DiffusersFlowMatchAdapter needs a genzoo FlowMatchEulerScheduler (or a subclass), got "
                f"{describe(scheduler)} (type {type(scheduler).__name__})."
            )
        check_straight_path(scheduler.config, "DiffusersFlowMatchAdapter")
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

#: Diffusers' multistep schedulers with a flow mode (``use_flow_sigmas``) that genzoo's tests sample with.
FLOW_MODE_EXAMPLES = "DPMSolverMultistepScheduler or UniPCMultistepScheduler"


def genzoo_flow_class_names() -> list[str]:
    """The registered schedulers of flow-matching models (``model_kind`` ``"flow"`` or ``"flow-map"``, plugins'
    included), by the ``_class_name`` their configs record."""
    return [name for kind in ("flow", "flow-map") for name in registered_schedulers(kind)]


def check_straight_path(config, what: str) -> None:
    """A ``ValueError`` naming ``what`` unless the flow-matching config is on the straight path (the only one
    Diffusers' flow schedulers know: their sigma runs the straight line ``x = sigma * noise + (1 - sigma) * data``)."""
    path = config.get("path", DEFAULT_PATH)
    if path != DEFAULT_PATH:
        raise ValueError(
            f"{what}: this flow-matching model is on the path {path!r}, and Diffusers' flow schedulers know only the "
            f"straight one ({DEFAULT_PATH!r}); sample it with genzoo's own flow schedulers (FlowMatchEulerScheduler, "
            "FlowMatchHeunScheduler), which take its path from the config."
        )


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


def flow_settings(config) -> tuple[float, str]:
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
        config.get("_class_name") in genzoo_flow_class_names()
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
            model, a velocity-only scheduler for a model that predicts the data, a flow model on another path than
            the straight one).
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
    check_straight_path(config, f"diffusers_scheduler({name}, ...)")
    shift, prediction = flow_settings(config)
    if is_diffusers_flow_class(scheduler_class):
        if prediction != "velocity":
            raise ValueError(f"{name} needs a velocity model; this flow-matching model predicts the {prediction}: use {FLOW_MODE_EXAMPLES}.")
        return scheduler_class.from_config(config, **{"shift": shift, **kwargs})
    if not has_flow_mode(scheduler_class):
        raise ValueError(f"{name} has no flow-matching mode: use FlowMatchEulerDiscreteScheduler or {FLOW_MODE_EXAMPLES}.")
    flow = {"use_flow_sigmas": True, "flow_shift": shift,
            "prediction_type": "flow_prediction" if prediction == "velocity" else "sample"}
    return scheduler_class.from_config(config, **{**flow, **kwargs})
