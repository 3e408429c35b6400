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

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from .scheduling_flow_match import FlowMatchEulerScheduler


class DiffusersFlowMatchAdapter:
    """Conversions between a genzoo flow-matching scheduler and Diffusers' ``FlowMatchEulerDiscreteScheduler``."""

    def __init__(self, scheduler: FlowMatchEulerScheduler):
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
        """Diffusers' time input ``sigma * T`` -> genzoo's time input (``t * T`` or ``t``)."""
        sigma = torch.as_tensor(diffusers_timestep).float() / self.num_train_timesteps
        return (1.0 - sigma) * self.scheduler.time_scale

    def diffusers_timestep(self, genzoo_timestep) -> torch.Tensor:
        """genzoo's time input -> Diffusers' ``sigma * T``."""
        t = torch.as_tensor(genzoo_timestep).float() / self.scheduler.time_scale
        return (1.0 - t) * self.num_train_timesteps

    @staticmethod
    def convert_output(model_output: torch.Tensor) -> torch.Tensor:
        """A velocity in one convention -> the other (``v_diffusers = -v``; the map is its own inverse)."""
        return -model_output

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
