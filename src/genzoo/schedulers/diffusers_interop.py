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

import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ..checks import describe
from .paths import as_timestep_tensor, check_tensor
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
    """Conversions between a genzoo flow-matching scheduler and Diffusers' ``FlowMatchEulerDiscreteScheduler``."""

    def __init__(self, scheduler: FlowMatchEulerScheduler):
        if not isinstance(scheduler, FlowMatchEulerScheduler):
            raise ValueError(
                "DiffusersFlowMatchAdapter needs a genzoo FlowMatchEulerScheduler (or a subclass), got "
                f"{describe(scheduler)} (type {type(scheduler).__name__})."
            )
        self.scheduler = scheduler
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    def make_diffusers_scheduler(self, num_inference_steps: int, device=None) -> FlowMatchEulerDiscreteScheduler:
        """A Diffusers scheduler whose grid is genzoo's ``set_timesteps(num_inference_steps)`` grid, reversed in time."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        diffusers_scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=1.0)
        sigmas = (1.0 - self.scheduler.times[:-1]).tolist()
        diffusers_scheduler.set_timesteps(sigmas=sigmas, device=device)
        return diffusers_scheduler

    def genzoo_timestep(self, diffusers_timestep) -> torch.Tensor:
        """Diffusers' time input ``sigma * T`` -> genzoo's time input (``t * T`` or ``t``); checked finite and in
        [0, T]."""
        T = self.num_train_timesteps
        sigma = _checked_time("diffusers_timestep", diffusers_timestep, T) / T
        return (1.0 - sigma) * self.scheduler.time_scale

    def diffusers_timestep(self, genzoo_timestep) -> torch.Tensor:
        """genzoo's time input -> Diffusers' ``sigma * T``; checked finite and in range."""
        t = _checked_time("genzoo_timestep", genzoo_timestep, self.scheduler.time_scale) / self.scheduler.time_scale
        return (1.0 - t) * self.num_train_timesteps

    @staticmethod
    def convert_output(model_output: torch.Tensor) -> torch.Tensor:
        """A velocity in one convention -> the other (``v_diffusers = -v``; the map is its own inverse)."""
        return -check_tensor("model_output", model_output)

    def wrap_genzoo_model(self, model_fn):
        """``model_fn(x, genzoo_timestep) -> v`` as ``f(x, diffusers_timestep) -> -v`` for Diffusers' scheduler."""

        def diffusers_model(sample, timestep):
            return self.convert_output(model_fn(sample, self.genzoo_timestep(timestep)))

        return diffusers_model

    def wrap_diffusers_model(self, model_fn):
        """``model_fn(x, diffusers_timestep) -> -v`` as ``f(x, genzoo_timestep) -> v`` for genzoo's schedulers."""

        def genzoo_model(sample, timestep):
            return self.convert_output(model_fn(sample, self.diffusers_timestep(timestep)))

        return genzoo_model
