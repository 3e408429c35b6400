"""Flow matching (Lipman et al. 2022; Liu et al. 2022) with the Euler method, as a Diffusers-style scheduler.

The textbook convention, used throughout genzoo:

- time ``t in [0, 1]``; ``x_0 ~ N(0, I)`` is the noise and ``x_1`` the data;
- the straight path ``x_t = (1 - t) * x_0 + t * x_1``;
- the model learns the velocity ``v(x_t, t) ~ x_1 - x_0``;
- sampling integrates ``dx/dt = v(x, t)`` from ``t = 0`` to ``t = 1``.

``diffusers.FlowMatchEulerDiscreteScheduler`` runs the same path backwards (``sigma = 1 - t``, and its
model predicts ``x_0 - x_1 = -v``); :func:`genzoo.schedulers.diffusers_flow_match_adapter` converts.

What the model is fed as its time input is ``scheduler.timesteps``: ``t * num_train_timesteps`` when
``scale_timesteps=True`` (the default, the scale ``UNet2DModel``'s sinusoidal embedding and Diffusers'
flow schedulers use) or ``t`` itself when ``False``. ``add_noise``, ``training_target`` and ``step`` take
timesteps in those same model units, so training and sampling code never converts by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ..checks import check_positive_int
from .paths import AffinePath, check_choice, check_same_shape, expand_to

TIME_SAMPLINGS = ("uniform", "logit_normal")
FLOW_PREDICTION_TYPES = ("velocity", "sample")


@dataclass
class FlowMatchSchedulerOutput(BaseOutput):
    """``prev_sample`` is the state at the next grid time (the next model input);
    ``pred_original_sample`` is the data estimate ``x_t + (1 - t) * v`` at the current time."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


def shift_time(t: torch.Tensor | np.ndarray, shift: float):
    """The SD3 time shift, written in flow time: with ``sigma = 1 - t`` it is
    ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``, i.e. ``t' = t / (t + shift * (1 - t))``.

    ``shift > 1`` spends more of the grid (and of training) near the noise end ``t = 0``.
    It fixes 0 and 1 and is applied exactly once wherever genzoo uses it.
    """
    if shift == 1.0:
        return t
    return t / (t + shift * (1 - t))


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors in float32 for the ODE arithmetic; float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def straight_path(t: torch.Tensor) -> AffinePath:
    """The flow-matching path at flow time ``t``: ``alpha = t``, ``sigma = 1 - t`` and their derivatives 1, -1."""
    one = torch.ones_like(t)
    return AffinePath(alpha=t, sigma=1 - t, d_alpha=one, d_sigma=-one)


class FlowMatchEulerScheduler(SchedulerMixin, ConfigMixin):
    """Euler integration of a flow-matching velocity field, plus the training side of its straight path.

    Args:
        num_train_timesteps: the scale between flow time and the model's time input (see ``scale_timesteps``).
        scale_timesteps: feed the model ``t * num_train_timesteps`` (``True``) or ``t`` in [0, 1] (``False``).
        shift: SD3 time shift applied once to the sampling grid and to training times (1.0 = none).
        time_sampling: training-time distribution before the shift: ``uniform`` on [0, 1] or ``logit_normal``
            (``sigmoid(N(logit_mean, logit_std))``, SD3's choice).
        logit_mean, logit_std: parameters of the logit-normal distribution.
        prediction_type: ``velocity`` (the model predicts ``x_1 - x_0``) or ``sample`` (it predicts ``x_1``).
    """

    _compatibles: list[str] = []
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        scale_timesteps: bool = True,
        shift: float = 1.0,
        time_sampling: str = "uniform",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        prediction_type: str = "velocity",
    ):
        check_choice("time_sampling", time_sampling, TIME_SAMPLINGS)
        check_choice("prediction_type", prediction_type, FLOW_PREDICTION_TYPES)
        if not shift > 0:
            raise ValueError(f"shift must be a positive number, got {shift!r}.")
        if logit_std <= 0:
            raise ValueError(f"logit_std must be positive, got {logit_std!r}.")
        check_positive_int("num_train_timesteps", num_train_timesteps)
        self.init_noise_sigma = 1.0
        # set_timesteps fills `times` (the integration grid in flow time, from t_0 up to 1.0), `timesteps` (what
        # the model is fed at each `step` call) and `num_inference_steps`. Like Diffusers'
        # FlowMatchEulerDiscreteScheduler the scheduler is usable right away: on the grid of
        # set_timesteps(num_train_timesteps) until the sampling code chooses its own.
        self.set_timesteps(int(num_train_timesteps))

    # ------------------------------------------------------------------ units
    @property
    def time_scale(self) -> float:
        """Model time input per unit of flow time."""
        return float(self.config.num_train_timesteps) if self.config.scale_timesteps else 1.0

    def to_flow_time(self, timesteps) -> torch.Tensor:
        """Model time input -> flow time t in [0, 1] (a float tensor)."""
        t = torch.as_tensor(timesteps)
        t = (t.double() if t.dtype == torch.float64 else t.float()) / self.time_scale
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise ValueError(
                f"timesteps must lie in [0, {self.time_scale:g}] (flow time in [0, 1] times the scale), got values "
                f"from {float(t.min()) * self.time_scale:g} to {float(t.max()) * self.time_scale:g}."
            )
        return t

    # ------------------------------------------------------------------ training side
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Training times in model units, shape ``(batch_size,)``, float32: drawn by ``time_sampling`` on the
        generator's device, then shifted by ``shift``."""
        draw_device = generator.device if generator is not None else torch.device("cpu")
        if self.config.time_sampling == "uniform":
            t = torch.rand((batch_size,), generator=generator, device=draw_device)
        else:
            z = torch.randn((batch_size,), generator=generator, device=draw_device)
            t = torch.sigmoid(self.config.logit_mean + self.config.logit_std * z)
        t = shift_time(t, self.config.shift) * self.time_scale
        return t.to(device) if device is not None else t

    def path(self, timesteps, like: torch.Tensor) -> AffinePath:
        """``alpha = t``, ``sigma = 1 - t``, ``d_alpha = 1``, ``d_sigma = -1`` at ``timesteps`` (model units)."""
        return straight_path(expand_to(self.to_flow_time(timesteps), like))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """``x_t = (1 - t) * noise + t * original_samples`` (the data is x_1, the noise x_0)."""
        return self.path(timesteps, original_samples).sample(original_samples, noise)

    def training_target(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """``x_1 - x_0`` for ``prediction_type='velocity'``, ``x_1`` for ``'sample'``."""
        return self.path(timesteps, original_samples).target(original_samples, noise, self.config.prediction_type)

    # ------------------------------------------------------------------ sampling side
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """Flow matching feeds the model x_t as it is; present for interchangeability."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        """Choose the integration grid (until this is called: the grid of ``set_timesteps(num_train_timesteps)``).

        ``num_inference_steps=N`` gives ``t_k = shift_time(k / N)``, k = 0..N (the shift applied once).
        ``timesteps`` gives the times, in flow time [0, 1], at which the model is evaluated, strictly increasing;
        they are used exactly as given (no shift) and the grid ends at 1.0 (appended unless already last).
        """
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to set_timesteps.")
        if timesteps is not None:
            grid = np.asarray(list(timesteps), dtype=np.float64)
            if grid.ndim != 1 or len(grid) == 0:
                raise ValueError(f"timesteps must be a non-empty list of flow times in [0, 1], got {timesteps!r}.")
            if np.any(grid < 0) or np.any(grid > 1):
                raise ValueError(f"timesteps must lie in [0, 1] (flow time), got {grid.tolist()}.")
            if np.any(np.diff(grid) <= 0):
                raise ValueError(f"timesteps must be strictly increasing (noise at 0 to data at 1), got {grid.tolist()}.")
            if grid[-1] != 1.0:
                grid = np.append(grid, 1.0)
            if len(grid) < 2:
                raise ValueError("timesteps=[1.0] leaves nothing to integrate; give at least one time below 1.")
        else:
            n = check_positive_int("num_inference_steps", num_inference_steps)
            grid = shift_time(np.linspace(0.0, 1.0, n + 1), self.config.shift)
        self.times = torch.from_numpy(grid).to(dtype=torch.float32, device=device)
        self._grid = [float(t) for t in grid]  # the same times as Python floats: step() does scalar arithmetic
        self.num_inference_steps = len(grid) - 1
        self.timesteps = self._call_times() * self.time_scale
        self._step_index = None

    def _call_times(self) -> torch.Tensor:
        """Flow time of each model call, in order (one per step for Euler)."""
        return self.times[:-1]

    @property
    def step_index(self) -> int | None:
        """Index into ``timesteps`` of the next ``step`` call (``None`` before the first)."""
        return self._step_index

    def _begin_step(self, timestep, model_output: torch.Tensor, sample: torch.Tensor) -> int:
        """Validate a ``step`` call and return its index into ``self.timesteps``.

        The first call of a run locates ``timestep`` on the grid by nearest value (never float ``==``); later calls
        advance one index each, as a sampling loop over ``scheduler.timesteps`` does.
        """
        check_same_shape(model_output, sample)
        if self._step_index is None or self._step_index >= len(self.timesteps):
            value = float(torch.as_tensor(timestep).float().mean())
            distance = (self.timesteps.float().cpu() - value).abs()
            index = int(torch.argmin(distance))
            if float(distance[index]) > 1e-3 * self.time_scale:
                raise ValueError(
                    f"timestep {value:g} is not on the grid set by set_timesteps: {self.timesteps.tolist()}."
                )
            self._step_index = self._run_start_index(index)
        return self._step_index

    def _run_start_index(self, index: int) -> int:
        """The index a run that starts at grid entry ``index`` begins at (Euler: that one)."""
        return index

    def _velocity(self, model_output: torch.Tensor, sample: torch.Tensor, t: float) -> torch.Tensor:
        """The velocity at flow time ``t`` implied by the model output (itself, for ``velocity`` models)."""
        if self.config.prediction_type == "velocity":
            return model_output
        t = torch.tensor(t, dtype=sample.dtype, device=sample.device)
        return straight_path(t).velocity_from(model_output, sample, self.config.prediction_type)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchSchedulerOutput | tuple:
        """One Euler step ``x_{k+1} = x_k + (t_{k+1} - t_k) * v(x_k, t_k)``.

        Computed in float32 (or float64 if the sample is) and returned in the sample's dtype.
        ``generator`` is accepted for interchangeability; the ODE step draws no noise.
        """
        i = self._begin_step(timestep, model_output, sample)
        x, out = upcast(sample), upcast(model_output)
        t, t_next = self._grid[i], self._grid[i + 1]
        v = self._velocity(out, x, t)
        prev_sample = torch.add(x, v, alpha=t_next - t)
        pred_original_sample = torch.add(x, v, alpha=1 - t)
        self._step_index = i + 1
        if prev_sample.dtype != sample.dtype:
            prev_sample, pred_original_sample = prev_sample.to(sample.dtype), pred_original_sample.to(sample.dtype)
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return FlowMatchSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
