"""Flow matching with Heun's method (explicit trapezoidal rule): second order, 2*N - 1 model calls for N steps."""

from __future__ import annotations

import torch

from .checks import finish_step
from .scheduling_flow_match import FlowMatchEulerScheduler, FlowMatchSchedulerOutput, upcast


class FlowMatchHeunScheduler(FlowMatchEulerScheduler):
    """Same path, configuration and training side as ``FlowMatchEulerScheduler``; sampling uses Heun's method.

    Over each interval ``[t_k, t_{k+1}]`` but the last:

    1. predictor (model at ``t_k``):      ``x~ = x_k + h * v(x_k, t_k)``
    2. corrector (model at ``t_{k+1}``):   ``x_{k+1} = x_k + h/2 * (v(x_k, t_k) + v(x~, t_{k+1}))``

    The last interval is a plain Euler step, as in ``diffusers.FlowMatchHeunDiscreteScheduler``; one
    first-order step adds an O(h^2) error once, so the method stays second order overall.
    ``scheduler.timesteps`` therefore holds ``[t_0, t_1, t_1, t_2, t_2, ..., t_{N-1}]`` (2N - 1 entries) and a
    plain ``for t in scheduler.timesteps`` loop drives it, exactly like the Euler scheduler.

    Examples:
        On an exact velocity field, Heun lands where it must:

        ```python
        import torch
        import genzoo

        # all data at the point 2: from noise x_0 the velocity is 2 - x_0 all the way, and every solver must land on 2;
        # Heun takes 2N - 1 calls for N steps, driven by the same loop as Euler
        scheduler = genzoo.FlowMatchHeunScheduler()
        scheduler.set_timesteps(4)
        print(len(scheduler.timesteps))  # 7
        x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
        x = x0.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(2.0 - x0, t, x).prev_sample
        assert torch.allclose(x, torch.full((3, 2), 2.0), atol=1e-5)
        ```
    """

    order = 2
    solver_name = "heun"
    solver_label = "Heun (genzoo)"

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None) -> None:
        super().set_timesteps(num_inference_steps=num_inference_steps, device=device, timesteps=timesteps)
        self._predictor_state = None  # (x_k, v_k) while a corrector call is pending

    def _call_times(self) -> torch.Tensor:
        # call 2k evaluates at t_k (predictor), call 2k+1 at t_{k+1} (corrector); the last interval has no corrector.
        return torch.cat([self.times[:1], self.times[1:-1].repeat_interleave(2)])

    def _run_start_index(self, index: int) -> int:
        # Each t_k (k >= 1) appears twice, as the corrector of [t_{k-1}, t_k] (odd index, found first) and the
        # predictor of [t_k, t_{k+1}]; a run that starts at t_k (e.g. from a partly noised image) starts with the
        # predictor, as in Diffusers' FlowMatchHeunDiscreteScheduler.
        return index + 1 if index % 2 == 1 else index

    @property
    def state_in_first_order(self) -> bool:
        """``True`` when the next ``step`` call is a predictor (Diffusers' name for it)."""
        return getattr(self, "_predictor_state", None) is None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchSchedulerOutput | tuple:
        """A predictor call returns the Euler guess ``x~`` (the next model input); the corrector call that
        follows returns ``x_{k+1}``.

        Args:
            model_output: the model's output at ``timestep``, of the shape of ``sample``.
            timestep: the current time in model units (the next entry of ``timesteps``).
            sample: the current model input.
            generator: accepted for interchangeability; the ODE step draws no noise.
            return_dict: return a ``FlowMatchSchedulerOutput`` rather than a tuple.

        Returns:
            ``FlowMatchSchedulerOutput(prev_sample, pred_original_sample)``, or the tuple of the two.

        Raises:
            ValueError: as ``FlowMatchEulerScheduler.step``; a refused call leaves the scheduler's position and
                pending predictor unchanged.
        """
        fresh = self._step_index is None or self._step_index >= len(self.timesteps)
        i = self._begin_step(timestep, model_output, sample)
        x, out = upcast(sample), upcast(model_output)
        k = (i + 1) // 2  # the interval [t_k, t_{k+1}] this call belongs to
        if i % 2 == 0:  # predictor at t_k
            t, t_next = self._grid[k], self._grid[k + 1]
            v = self._velocity(out, x, t)
            prev_sample = torch.add(x, v, alpha=t_next - t)
            pred_original_sample = self.probability_path.data_estimate(v, x, t)
            is_last = i == len(self.timesteps) - 1
            state = None if is_last else (x, v)
        else:  # corrector at t_{k}, closing interval [t_{k-1}, t_k]
            if fresh or self._predictor_state is None:
                raise ValueError("FlowMatchHeunScheduler.step: corrector call without a predictor; restart with set_timesteps.")
            x_start, v_start = self._predictor_state
            if x.shape != x_start.shape or x.device != x_start.device:
                raise ValueError(
                    f"FlowMatchHeunScheduler.step: the corrector's sample has shape {tuple(x.shape)} on {x.device} but "
                    f"the predictor's had {tuple(x_start.shape)} on {x_start.device}; they must match."
                )
            t_prev, t = self._grid[k - 1], self._grid[k]
            v = self._velocity(out, x, t)
            prev_sample = torch.add(x_start, v_start + v, alpha=0.5 * (t - t_prev))
            pred_original_sample = self.probability_path.data_estimate(v, x, t)
            state = None
        result = finish_step(FlowMatchSchedulerOutput, type(self).__name__, timestep, model_output, sample,
                             prev_sample, pred_original_sample, return_dict, dtype=sample.dtype)
        self._predictor_state = state
        self._step_index = i + 1
        return result
