"""Flow matching (Lipman et al. 2022; Liu et al. 2022) with the Euler method, as a Diffusers-style scheduler.

The textbook convention, used throughout genzoo:

- time ``t in [0, 1]``; ``x_0 ~ N(0, I)`` is the noise and ``x_1`` the data;
- the straight path ``x_t = (1 - t) * x_0 + t * x_1`` (or any registered
  :class:`~genzoo.schedulers.paths.ProbabilityPath` ``x_t = alpha_t * x_1 + sigma_t * x_0``, named by the ``path``
  option);
- the model learns the velocity ``v(x_t, t) ~ x_1 - x_0`` (on another path: ``d_alpha_t * x_1 + d_sigma_t * x_0``);
- sampling integrates ``dx/dt = v(x, t)`` from ``t = 0`` to ``t = 1``.

The path and the solver are apart: the path object gives ``add_noise``, ``training_target`` and the conversions of a
model output to a velocity and a data estimate; the solver (Euler here, Heun and the flow map's jump in their modules)
only integrates the velocity, so every solver works on every path.

``diffusers.FlowMatchEulerDiscreteScheduler`` runs the same path backwards (``sigma = 1 - t``, and its
model predicts ``x_0 - x_1 = -v``); :mod:`genzoo.schedulers.diffusers_interop` converts (and
:func:`genzoo.schedulers.diffusers_scheduler` builds Diffusers' solvers in flow mode for a genzoo model).

What the model is fed as its time input is ``scheduler.timesteps``: ``t * num_train_timesteps`` when
``scale_timesteps=True`` (the default, the scale ``UNet2DModel``'s sinusoidal embedding and Diffusers'
flow schedulers use) or ``t`` itself when ``False``. ``add_noise``, ``training_target`` and ``step`` take
timesteps in those same model units, so training and sampling code never converts by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ..checks import check_bool, check_int, check_number, check_str_choice, describe, is_real
from .checks import (
    MAX_TIMESTEPS,
    as_number_array,
    as_timestep_tensor,
    check_batch_timesteps,
    check_device,
    check_step_inputs,
    check_tensor,
    check_training_inputs,
    finish_step,
    finite_flags,
    move_to_device,
)
from .paths import DEFAULT_PATH, AffinePath, expand_to, get_path

TIME_SAMPLINGS = ("uniform", "logit_normal")
FLOW_PREDICTION_TYPES = ("velocity", "sample")


@dataclass
class FlowMatchSchedulerOutput(BaseOutput):
    """``prev_sample`` is the state at the next grid time (the next model input);
    ``pred_original_sample`` is the data estimate at the current time (``x_t + (1 - t) * v`` on the straight path)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


def shift_time(t: torch.Tensor | np.ndarray, shift: float):
    """The SD3 time shift, written in flow time: with ``sigma = 1 - t`` it is
    ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``, i.e. ``t' = t / (t + shift * (1 - t))``.

    ``shift > 1`` spends more of the grid (and of training) near the noise end ``t = 0``.
    It fixes 0 and 1 and is applied exactly once wherever genzoo uses it. ``shift`` must be a finite number > 0;
    tensors are computed in float64 and returned in their dtype, so any such shift gives times in [0, 1]
    (in float32, ``shift * (1 - t)`` could overflow, or ``0 * inf`` give NaN).
    """
    shift = check_number("shift", shift, 0, rule="a positive number")
    if shift == 1.0:
        return t
    if isinstance(t, torch.Tensor) and t.dtype != torch.float64:
        wide = t.double() if t.device.type != "mps" else t  # MPS has no float64
        return (wide / (wide + shift * (1 - wide))).to(t.dtype)
    return t / (t + shift * (1 - t))


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors in float32 for the ODE arithmetic; float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class FlowMatchEulerScheduler(SchedulerMixin, ConfigMixin):
    r"""Euler integration of a flow-matching velocity field, plus the training side of its probability path.

    Args:
        num_train_timesteps: the scale between flow time and the model's time input (see ``scale_timesteps``).
        scale_timesteps: feed the model ``t * num_train_timesteps`` (``True``) or ``t`` in [0, 1] (``False``).
        shift: SD3 time shift applied once to the sampling grid and to training times (1.0 = none).
        time_sampling: training-time distribution before the shift: ``uniform`` on [0, 1] or ``logit_normal``
            (``sigmoid(N(logit_mean, logit_std))``, SD3's choice).
        logit_mean: mean of the normal whose sigmoid is the logit-normal training time.
        logit_std: standard deviation of that normal.
        prediction_type: ``velocity`` (the model predicts ``x_1 - x_0``) or ``sample`` (it predicts ``x_1``).
        path: the probability path, a registered name (``genzoo.paths`` entry points): ``straight`` (the default,
            ``x_t = (1 - t) x_0 + t x_1``) or ``cosine`` (``x_t = cos(pi t / 2) x_0 + sin(pi t / 2) x_1``), or a
            plugin's. Training and sampling both go through it; Diffusers' flow schedulers know only the straight
            one.

    Raises:
        ValueError: one line naming the argument, its value and what is allowed (``from_config`` and
            ``from_pretrained`` go through the same checks): ``num_train_timesteps`` an integer in [1, 1000000];
            ``scale_timesteps`` ``True``/``False``; ``shift`` a finite number > 0 (whose grid must stay strictly
            increasing in float64); ``logit_mean`` finite; ``logit_std`` finite and > 0; ``path`` a registered
            path; the strings one of their choices. ``set_timesteps``, ``step``, ``add_noise`` and ``training_target`` check their arguments;
            ``step`` refuses a model output or sample holding NaN/inf (one ``isfinite`` reduction, read with the
            outputs' in one synchronisation).

    Examples:
        The training side, $x_t = t\,x_1 + (1 - t)\,x_0$ with the target $x_1 - x_0$, and the sampling loop, by hand
        (what ``FlowMatchingPipeline`` runs):

        ```python
        import torch
        import genzoo

        scheduler = genzoo.FlowMatchEulerScheduler()  # noise at t = 0, data at t = 1, target x_1 - x_0

        # training side: a point on the straight path and its velocity
        data, noise = torch.randn(4, 2), torch.randn(4, 2)
        timesteps = scheduler.sample_timesteps(4, generator=torch.Generator().manual_seed(0))  # t * 1000
        t = (timesteps / scheduler.config.num_train_timesteps).unsqueeze(1)
        assert torch.allclose(scheduler.add_noise(data, noise, timesteps), t * data + (1 - t) * noise, atol=1e-6)
        assert torch.allclose(scheduler.training_target(data, noise, timesteps), data - noise)

        # sampling side: Euler steps of the zoo's moons flow from t = 0 to t = 1
        unet = genzoo.FlowMatchingPipeline.from_pretrained("pipelines/flow-matching-moons").unet
        scheduler.set_timesteps(8)
        x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample
        print(len(scheduler.timesteps), x.shape)  # 8 torch.Size([500, 2])
        ```
    """

    _compatibles: list[str] = []
    order = 1
    #: What the model this scheduler steps predicts: a velocity (the ``model_kind`` of the pipelines it serves).
    model_kind = "flow"
    #: The trainer's ``--solver`` shorthand for this solver (declared by each solver class itself).
    solver_name = "euler"
    #: How a menu of samplers (the demo's) shows it.
    solver_label = "Euler (genzoo)"

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
        path: str = DEFAULT_PATH,
    ):
        #: The :class:`~genzoo.schedulers.paths.ProbabilityPath` named by ``path``.
        self.probability_path = get_path(path)
        check_str_choice("time_sampling", time_sampling, TIME_SAMPLINGS)
        check_str_choice("prediction_type", prediction_type, FLOW_PREDICTION_TYPES)
        check_number("shift", shift, 0, rule="a positive number")
        check_number("logit_mean", logit_mean)
        check_number("logit_std", logit_std, 0, rule="positive")
        check_bool("scale_timesteps", scale_timesteps)
        check_int("num_train_timesteps", num_train_timesteps, maximum=MAX_TIMESTEPS,
                  reason="the grid of that many steps is held in memory")
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
        """Model time input -> flow time t in [0, 1] (a float tensor); checked finite and in range.

        Args:
            timesteps (float | torch.Tensor): times in model units (``scheduler.timesteps``' units).

        Returns:
            Flow times in [0, 1], a float tensor.
        """
        return self._flow_time(timesteps)

    def _flow_time(self, timesteps, like: torch.Tensor | None = None, finite: dict | None = None) -> torch.Tensor:
        """:meth:`to_flow_time`, also checking that there is one time or one per sample of ``like`` and that the
        tensors in ``finite`` (name -> tensor) hold no NaN/inf: one synchronisation for all of it."""
        t = as_timestep_tensor("timesteps", timesteps)
        if like is not None:
            check_batch_timesteps(t, like)
            t = t.to(like.device)
        t = (t.double() if t.dtype == torch.float64 else t.float()) / self.time_scale
        finite = finite or {}
        low, high, *finite_ok = torch.stack(
            [t.min().float(), t.max().float(), *(f.float() for f in finite_flags(*finite.values()))]
        ).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"timesteps contain NaN or inf, got {describe(timesteps)}.")
        if low < 0 or high > 1:
            raise ValueError(
                f"timesteps must lie in [0, {self.time_scale:g}] (flow time in [0, 1] times the scale), got values "
                f"from {low * self.time_scale:g} to {high * self.time_scale:g}."
            )
        for name, ok in zip(finite, finite_ok):
            if not ok:
                raise ValueError(f"{name} contains NaN or inf.")
        return t

    # ------------------------------------------------------------------ training side
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Training times in model units, shape ``(batch_size,)``, float32: drawn by ``time_sampling`` on the
        generator's device, then shifted by ``shift``.

        Args:
            batch_size: how many times to draw.
            generator: the source of randomness (default: torch's global one).
            device (str | torch.device | None): where the times go (default: the generator's device).

        Returns:
            The times, a float32 tensor of shape ``(batch_size,)``.
        """
        check_int("batch_size", batch_size, minimum=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be None or a torch.Generator, got {describe(generator)}.")
        device = check_device(device)
        draw_device = generator.device if generator is not None else torch.device("cpu")
        if self.config.time_sampling == "uniform":
            t = torch.rand((batch_size,), generator=generator, device=draw_device)
        else:
            z = torch.randn((batch_size,), generator=generator, device=draw_device)
            # float64 where there is one: logit_std * z must not overflow float32 (then inf - inf would give NaN)
            wide = z.double() if z.device.type != "mps" else z
            t = torch.sigmoid(self.config.logit_mean + self.config.logit_std * wide).float()
        t = shift_time(t, self.config.shift) * self.time_scale
        return move_to_device(t, device) if device is not None else t

    def path(self, timesteps, like: torch.Tensor) -> AffinePath:
        """The path's ``alpha``, ``sigma``, ``d_alpha``, ``d_sigma`` at ``timesteps`` (model units); on the straight
        path ``t``, ``1 - t``, 1 and -1.

        Args:
            timesteps (float | torch.Tensor): times in model units, one or one per sample of ``like``.
            like: a batch of samples; the coefficients broadcast against it.

        Returns:
            The ``AffinePath`` of ``x_t = alpha_t * x_1 + sigma_t * x_0``.
        """
        check_tensor("like", like)
        return self.probability_path.at(expand_to(self._flow_time(timesteps, like), like))

    def _checked_path(self, original_samples, noise, timesteps) -> AffinePath:
        check_training_inputs(original_samples, noise)
        t = self._flow_time(timesteps, original_samples, dict(original_samples=original_samples, noise=noise))
        return self.probability_path.at(expand_to(t, original_samples))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """``x_t = alpha_t * original_samples + sigma_t * noise`` (the data is x_1, the noise x_0): on the straight
        path ``(1 - t) * noise + t * original_samples``.

        Args:
            original_samples: the data x_1, a finite floating-point tensor, batch first.
            noise: the noise x_0, of the same shape.
            timesteps (float | torch.Tensor): times in model units, one or one per sample.

        Returns:
            The samples x_t on the path.
        """
        return self._checked_path(original_samples, noise, timesteps).sample(original_samples, noise)

    def training_target(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """The velocity ``d_alpha_t * x_1 + d_sigma_t * x_0`` (``x_1 - x_0`` on the straight path) for
        ``prediction_type='velocity'``, ``x_1`` for ``'sample'``.

        Args:
            original_samples: the data x_1, as for ``add_noise``.
            noise: the noise x_0 ``add_noise`` was given.
            timesteps (float | torch.Tensor): the times ``add_noise`` was given.

        Returns:
            The target the model's output is regressed on.
        """
        path = self._checked_path(original_samples, noise, timesteps)
        return path.target(original_samples, noise, self.config.prediction_type)

    # ------------------------------------------------------------------ sampling side
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """Flow matching feeds the model x_t as it is; present for interchangeability.

        Args:
            sample: the model input.
            timestep (float | torch.Tensor | None): the current time (unused).

        Returns:
            ``sample`` unchanged.
        """
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

        Args:
            num_inference_steps: the number of steps N (give this or ``timesteps``).
            device: where ``self.times`` and ``self.timesteps`` go.
            timesteps: explicit flow times in [0, 1], strictly increasing.

        Raises:
            ValueError: if both or neither of ``num_inference_steps`` and ``timesteps`` are given, or the grid is
                not allowed.
        """
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to set_timesteps.")
        device = check_device(device)
        if timesteps is not None:
            grid = as_number_array("timesteps", timesteps, "a non-empty list of flow times in [0, 1]")
            if grid.ndim != 1 or len(grid) == 0:
                raise ValueError(
                    f"timesteps must be a non-empty list of flow times in [0, 1], got {describe(timesteps)}."
                )
            if not np.isfinite(grid).all() or np.any(grid < 0) or np.any(grid > 1):
                raise ValueError(f"timesteps must lie in [0, 1] (flow time), got {grid.tolist()}.")
            if np.any(np.diff(grid) <= 0):
                raise ValueError(f"timesteps must be strictly increasing (noise at 0 to data at 1), got {grid.tolist()}.")
            if grid[-1] != 1.0:
                grid = np.append(grid, 1.0)
            if len(grid) < 2:
                raise ValueError("timesteps=[1.0] leaves nothing to integrate; give at least one time below 1.")
        else:
            n = check_int("num_inference_steps", num_inference_steps, maximum=MAX_TIMESTEPS,
                          reason="the grid is held in memory")
            grid = shift_time(np.linspace(0.0, 1.0, n + 1), self.config.shift)
            repeats = np.flatnonzero(np.diff(grid) <= 0)
            if len(repeats):
                k = int(repeats[0])
                raise ValueError(
                    f"shift={self.config.shift!r} with num_inference_steps={n} gives a grid that is not strictly "
                    f"increasing in float64 (t_{k} = {float(grid[k])!r}, t_{k + 1} = {float(grid[k + 1])!r}); "
                    "use a shift closer to 1."
                )
        self.times = move_to_device(torch.from_numpy(grid).to(dtype=torch.float32), device)
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
        check_step_inputs(model_output, sample)
        value = self._timestep_float(timestep)
        if self._step_index is None or self._step_index >= len(self.timesteps):
            distance = (self.timesteps.float().cpu() - value).abs()
            index = int(torch.argmin(distance))
            if float(distance[index]) > 1e-3 * self.time_scale:
                raise ValueError(
                    f"timestep {value:g} is not on the grid set by set_timesteps: {self.timesteps.tolist()}."
                )
            return self._run_start_index(index)
        return self._step_index

    def _timestep_float(self, timestep) -> float:
        """The time input of a ``step`` call as a float (the mean of a per-sample tensor), checked finite and in
        ``[0, time_scale]``."""
        if isinstance(timestep, torch.Tensor):
            if timestep.numel() == 0 or timestep.dtype == torch.bool or timestep.is_complex():
                raise ValueError(
                    f"timestep must be a number or a non-empty real tensor, got a tensor of dtype {timestep.dtype} "
                    f"and shape {tuple(timestep.shape)}."
                )
            value = float((timestep if timestep.is_floating_point() else timestep.float()).mean())
        elif is_real(timestep):
            try:
                value = float(timestep)
            except OverflowError:
                value = math.inf
        else:
            raise ValueError(
                f"timestep must be a number or a tensor, got {describe(timestep)} (type {type(timestep).__name__})."
            )
        scale = self.time_scale
        if not math.isfinite(value) or not -1e-3 * scale <= value <= (1 + 1e-3) * scale:
            raise ValueError(
                f"timestep must be a finite number in [0, {scale:g}] (model units), got {describe(timestep)}."
            )
        return value

    def _run_start_index(self, index: int) -> int:
        """The index a run that starts at grid entry ``index`` begins at (Euler: that one)."""
        return index

    def _velocity(self, model_output: torch.Tensor, sample: torch.Tensor, t: float) -> torch.Tensor:
        """The velocity at flow time ``t`` implied by the model output (itself, for ``velocity`` models). ``t`` is a
        Python float (float64): a grid time just below 1 would round to 1 in float32 and make ``sigma_t``, which the
        conversion divides by, zero."""
        return self.probability_path.velocity(model_output, sample, t, self.config.prediction_type)

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

        Args:
            model_output: the model's output at ``timestep``, of the shape of ``sample``.
            timestep: the current time in model units (finite; on the grid for the first call of a run).
            sample: the current x_t, a floating-point tensor on the model output's device.
            generator: accepted for interchangeability; the ODE step draws no noise.
            return_dict: return a ``FlowMatchSchedulerOutput`` rather than a tuple.

        Returns:
            ``FlowMatchSchedulerOutput(prev_sample, pred_original_sample)``, or the tuple of the two.

        Raises:
            ValueError: a model output or sample holding NaN/inf (naming the timestep), a non-finite result (from
                inputs too large for the dtype), a first timestep off the grid; a refused call leaves the
                scheduler's position unchanged.
        """
        i = self._begin_step(timestep, model_output, sample)
        x, out = upcast(sample), upcast(model_output)
        t, t_next = self._grid[i], self._grid[i + 1]
        v = self._velocity(out, x, t)
        prev_sample = torch.add(x, v, alpha=t_next - t)
        pred_original_sample = self.probability_path.data_estimate(v, x, t)
        result = finish_step(FlowMatchSchedulerOutput, type(self).__name__, timestep, model_output, sample,
                             prev_sample, pred_original_sample, return_dict, dtype=sample.dtype)
        self._step_index = i + 1
        return result

    def __len__(self) -> int:
        return self.config.num_train_timesteps
