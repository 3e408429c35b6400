"""Flow maps: models that jump from one time to another in one call, as a Diffusers-style scheduler.

A flow-matching model predicts the *instantaneous* velocity ``v(x_t, t)``; integrating it takes many small steps. A
*flow map* predicts the *average* velocity over an interval,

    u(x_t, t, r) = 1 / (r - t) * integral_t^r v(x_s, s) ds,     so that     x_r = x_t + (r - t) * u(x_t, t, r)

exactly, for any ``r >= t`` (genzoo's flow time: noise at 0, data at 1). One call with ``t = 0, r = 1`` is a one-step
sampler; more calls over a grid refine it. MeanFlow (Geng et al. 2025, :mod:`genzoo.methods.meanflow`) trains such a
model; a model distilled at ``t = 0`` (rectified flow's distillation, :mod:`genzoo.methods.rectified_flow`) is the
special case that only knows ``r = 1``, and this same step samples it.

:class:`FlowMapEulerScheduler` is :class:`FlowMatchEulerScheduler` (the same path, configuration and training side)
whose ``step`` follows the signature of Diffusers' ``FlowMapEulerDiscreteScheduler.step(..., r_timestep=...)``: it
jumps from ``timestep`` to ``r_timestep`` (default: the next time on the grid). ``r_timesteps`` holds the end of each
step of the grid, in model units, which a pipeline feeds the model as its second time.
"""

from __future__ import annotations

import torch

from .checks import check_step_inputs, finish_step
from .scheduling_flow_match import FlowMatchEulerScheduler, FlowMatchSchedulerOutput, upcast


class FlowMapEulerScheduler(FlowMatchEulerScheduler):
    """One jump per step along a flow map's average velocity: ``x_r = x_t + (r - t) * u(x_t, t, r)``.

    Configured like ``FlowMatchEulerScheduler`` (whose arguments it takes): with ``prediction_type='velocity'``
    the model's output is the average velocity over ``[t, r]``; with ``'sample'`` it is the data ``x_1``, whose
    velocity at ``t`` on the path (``(x_1 - x_t) / (1 - t)`` on the straight one) is then used for the jump (exact
    for one jump to the data on the straight path). On a grid
    ``t_0 < ... < t_N = 1`` from ``set_timesteps``, ``timesteps[k]`` is the model's first time input and
    ``r_timesteps[k]`` its second (both in model units); ``step`` called in a loop over ``timesteps`` walks the grid
    exactly as the Euler scheduler does (the arithmetic of a step is the same: only what the model was trained to
    predict differs).

    Examples:
        The grid and the jumps, with a constant average velocity:

        ```python
        import torch
        import genzoo

        # a flow map u(x_t, t, r) is the average velocity over [t, r]: one step jumps x_r = x_t + (r - t) u
        scheduler = genzoo.FlowMapEulerScheduler()
        scheduler.set_timesteps(2)
        print(scheduler.timesteps, scheduler.r_timesteps)  # tensor([  0., 500.]) tensor([ 500., 1000.]): t and r
        x = torch.zeros(1, 2)
        for t, r in zip(scheduler.timesteps, scheduler.r_timesteps):
            x = scheduler.step(torch.ones(1, 2), t, x, r_timestep=r).prev_sample
        assert torch.allclose(x, torch.ones(1, 2))  # two jumps of half the interval at velocity 1
        ```
    """

    model_kind = "flow-map"
    solver_name = None  # no --solver shorthand: a flow map is not an ODE solver of a velocity model
    solver_label = "Euler (genzoo)"

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None) -> None:
        super().set_timesteps(num_inference_steps=num_inference_steps, device=device, timesteps=timesteps)
        self.r_timesteps = self.times[1:] * self.time_scale

    def grid(self, num_inference_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``set_timesteps(num_inference_steps)``, then ``(timesteps, times)`` on the CPU: the model's time inputs
        (float32) and the flow times ``t_0 = 0 < ... < t_K = 1`` (float64) of that grid -- what a method training a
        few-step model feeds it, so that training sees the calls sampling makes."""
        self.set_timesteps(num_inference_steps)
        return self.timesteps.float().cpu(), self.times.double().cpu()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        r_timestep: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchSchedulerOutput | tuple:
        """Jump from ``timestep`` to ``r_timestep`` (model units): ``x_r = x_t + (r - t) * model_output``.

        Without ``r_timestep`` this is the next step of the grid, located and advanced as in
        ``FlowMatchEulerScheduler.step``. With one, the jump is a pure function of the two times (any-step
        sampling; ``r_timestep`` must lie in ``[timestep, num_train_timesteps]`` and the grid position is left as
        it was). ``pred_original_sample`` is the path's data estimate from ``u`` taken as the velocity at ``t``
        (its ``data_estimate``): on the straight path ``x_t + (1 - t) u``, the jump to ``r = 1`` if the model's
        average velocity held to the end (exact for a one-step jump).

        Args:
            model_output: the model's average velocity over ``[t, r]`` (or its data estimate, for
                ``prediction_type='sample'``), of the shape of ``sample``.
            timestep: the current time t, in model units.
            sample: the current x_t.
            r_timestep: the time r to jump to, in model units (default: the next time on the grid).
            generator: accepted for interchangeability; the step draws no noise.
            return_dict: return a ``FlowMatchSchedulerOutput`` rather than a tuple.

        Returns:
            ``FlowMatchSchedulerOutput(prev_sample, pred_original_sample)``, or the tuple of the two.

        Raises:
            ValueError: ``r_timestep`` before ``timestep``, and the checks of ``FlowMatchEulerScheduler.step``.
        """
        if r_timestep is None:
            i = self._begin_step(timestep, model_output, sample)
            t, r = self._grid[i], self._grid[i + 1]
        else:
            check_step_inputs(model_output, sample)
            t = self._timestep_float(timestep) / self.time_scale
            r = self._timestep_float(r_timestep) / self.time_scale
            if r < t:
                raise ValueError(
                    f"r_timestep {r * self.time_scale:g} is before timestep {t * self.time_scale:g}; a flow map jumps "
                    "forward in flow time (towards the data at num_train_timesteps)."
                )
            i = None
        x = upcast(sample)
        u = self._velocity(upcast(model_output), x, t)
        prev_sample = torch.add(x, u, alpha=r - t)
        pred_original_sample = self.probability_path.data_estimate(u, x, t)
        result = finish_step(FlowMatchSchedulerOutput, type(self).__name__, timestep, model_output, sample,
                             prev_sample, pred_original_sample, return_dict, dtype=sample.dtype)
        if i is not None:
            self._step_index = i + 1
        return result
