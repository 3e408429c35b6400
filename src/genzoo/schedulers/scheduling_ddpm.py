"""DDPM (Ho et al. 2020) as a Diffusers-compatible scheduler that owns both sides of its path.

Training side: ``sample_timesteps`` -> ``add_noise`` -> ``training_target``.
Sampling side: ``set_timesteps`` -> repeated ``step`` (ancestral sampling, one model call per step).

The options, their names and their numbers are those of ``diffusers.DDPMScheduler`` (the tests
check agreement step by step), except where Diffusers is wrong -- see ``variance_type`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import math
import numbers

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar, rescale_zero_terminal_snr
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_bool, check_int, check_number, check_str_choice, describe, is_real
from .checks import (
    MAX_TIMESTEPS,
    as_number_array,
    as_timestep_tensor,
    check_batch_timesteps,
    check_device,
    check_generator,
    check_step_inputs,
    check_tensor,
    check_training_inputs,
    finish_step,
    finite_flags,
    move_to_device,
)
from .paths import AffinePath, expand_to

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
DDPM_PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")


def _integers(grid: np.ndarray) -> list:
    """Integer-valued floats as ints for messages (those beyond int64 as they are)."""
    return [int(v) if abs(v) < 2**63 else v for v in grid.tolist()]


@dataclass
class DDPMSchedulerOutput(BaseOutput):
    """``prev_sample`` is x_{t-1}, the next model input; ``pred_original_sample`` is the model's estimate of x_0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


@dataclass
class DDPMPosterior:
    """The Gaussian posterior ``q(x_{t'} | x_t, x_0)`` of a step from ``t`` to an earlier ``t'`` of the chain (eqs. 6-7
    of Ho et al.): mean ``coef_x0 * x_0 + coef_xt * x_t``, variance ``variance`` (beta~, clamped to >= 1e-20 for
    its logarithm), and the step's own ``beta = 1 - alpha_bar_t / alpha_bar_t'`` (the other fixed variance)."""

    coef_x0: torch.Tensor
    coef_xt: torch.Tensor
    variance: torch.Tensor
    beta: torch.Tensor


def ddpm_posterior(alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor) -> DDPMPosterior:
    """The posterior of the step between cumulative alphas ``alpha_bar_t`` and ``alpha_bar_prev`` (1 after the last
    step): the one home of this math, used by :meth:`DDPMScheduler.step` (one step, in float32, Diffusers'
    arithmetic to the bit) and by the DDPM method's variational bound (every step of the chain at once).

    Args:
        alpha_bar_t: ``alpha_bar`` at the current timestep(s).
        alpha_bar_prev: ``alpha_bar`` at the timestep(s) the step goes to, of the same shape.

    Returns:
        The :class:`DDPMPosterior`, elementwise.
    """
    beta_prod_t = 1 - alpha_bar_t
    beta_prod_t_prev = 1 - alpha_bar_prev
    current_alpha_t = alpha_bar_t / alpha_bar_prev
    current_beta_t = 1 - current_alpha_t  # the effective beta of this (possibly skipping) step
    return DDPMPosterior(
        coef_x0=(alpha_bar_prev**0.5 * current_beta_t) / beta_prod_t,
        coef_xt=current_alpha_t**0.5 * beta_prod_t_prev / beta_prod_t,
        variance=torch.clamp(beta_prod_t_prev / beta_prod_t * current_beta_t, min=1e-20),
        beta=current_beta_t,
    )


class DDPMScheduler(SchedulerMixin, ConfigMixin):
    r"""Denoising diffusion probabilistic model scheduler.

    Forward (training) process, closed form: ``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps``.
    Reverse (sampling) process: from x_t, estimate x_0 from the model output, then draw x_{t'} from the
    Gaussian posterior q(x_{t'} | x_t, x_0) for the previous grid point t'.

    For sampling, ``step`` works right after construction, on the whole chain (t -> t - 1), and after
    ``set_timesteps`` on the chosen grid (see ``previous_timestep`` for timesteps off the grid).

    Checks (every one a one-line ``ValueError`` naming the argument, its value and what is allowed; configs loaded
    with ``from_config``/``from_pretrained`` go through them too): ``num_train_timesteps`` an integer in
    [1, 1000000]; ``beta_start``, ``beta_end`` finite numbers in (0, 1) with ``beta_start <= beta_end`` for the
    schedules that use them (``linear``, ``scaled_linear``, ``sigmoid``; Diffusers assumes it without checking);
    ``trained_betas`` one finite number in (0, 1) per timestep; the flags ``True``/``False``;
    ``dynamic_thresholding_ratio`` in (0, 1]; ``clip_sample_range`` and ``sample_max_value`` > 0; ``steps_offset``
    a non-negative integer (below ``num_train_timesteps`` for ``leading`` spacing); the strings one of their
    choices. The resulting schedule must be usable in float32: ``0 < alpha_bar_t < 1`` and strictly decreasing
    (the last one 0 exactly with ``rescale_betas_zero_snr``), since ``step`` divides by ``alpha_bar_t`` and
    ``1 - alpha_bar_t`` -- a schedule that underflows (too many timesteps or betas near 1) or has a beta below
    about 6e-8 is refused, where Diffusers would return NaN. ``set_timesteps``, ``step``, ``add_noise`` and
    ``training_target`` check their arguments the same way; ``step`` refuses a model output or sample holding
    NaN/inf (one ``isfinite`` reduction, read with the outputs' in one synchronisation).

    The arguments mirror ``diffusers.DDPMScheduler`` (same names, same defaults, same meaning).

    Args:
        num_train_timesteps: length of the training chain, T.
        beta_start: the first beta of the ``linear``, ``scaled_linear`` and ``sigmoid`` schedules.
        beta_end: the last beta of those schedules.
        beta_schedule: the noise schedule; one of ``linear``, ``scaled_linear``, ``squaredcos_cap_v2`` (cosine,
            Nichol & Dhariwal), ``sigmoid``.
        trained_betas: explicit betas, one per training timestep, overriding the schedule.
        variance_type: the reverse-step variance (see ``_get_variance``). ``fixed_small`` is the posterior
            variance beta~_t, ``fixed_large`` is beta_t; the ``_log`` variants are the same variances (Diffusers
            computes them in log space). ``learned`` takes the model's second half of channels as the variance
            itself (Diffusers' convention), ``learned_range`` as an interpolation coefficient v in [-1, 1] between
            log beta~_t and log beta_t (Improved DDPM). Unlike Diffusers (whose ``fixed_large_log`` takes the square
            root of a logarithm and returns NaN), ``fixed_large_log`` here steps with the standard deviation
            ``sqrt(beta_t)``, exactly as ``fixed_large``.
        clip_sample: clamp the x_0 estimate to [-``clip_sample_range``, ``clip_sample_range``].
        prediction_type: what the model predicts: ``epsilon``, ``sample`` (x_0) or ``v_prediction``.
        thresholding: Imagen's dynamic thresholding of the x_0 estimate.
        dynamic_thresholding_ratio: the quantile of |x_0| that dynamic thresholding clamps to.
        clip_sample_range: the bound of ``clip_sample``.
        sample_max_value: the largest threshold of dynamic thresholding.
        timestep_spacing: how ``set_timesteps`` places a shorter sampling grid: ``leading``, ``linspace`` or
            ``trailing``.
        steps_offset: added to every timestep of a ``leading`` grid.
        rescale_betas_zero_snr: rescale the schedule to zero terminal SNR (Lin et al. 2023). At zero SNR an
            epsilon prediction carries no information about x_0, so this requires ``v_prediction`` or ``sample``.

    Raises:
        ValueError: for any argument that is not allowed (the checks above).

    Examples:
        The training side, $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$ with the target
        $\epsilon$, and the sampling loop, by hand (what ``DDPMPipeline`` runs):

        ```python
        import torch
        import genzoo

        scheduler = genzoo.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")

        # training side: noise a batch at random timesteps; the model learns to predict the noise
        data, noise = torch.randn(4, 2), torch.randn(4, 2)
        t = scheduler.sample_timesteps(4, generator=torch.Generator().manual_seed(0))
        noisy = scheduler.add_noise(data, noise, t)
        alpha_bar = scheduler.alphas_cumprod[t].unsqueeze(1)
        assert torch.allclose(noisy, alpha_bar.sqrt() * data + (1 - alpha_bar).sqrt() * noise)
        assert torch.equal(scheduler.training_target(data, noise, t), noise)  # prediction_type="epsilon"

        # sampling side: the loop of diffusers.DDPMPipeline, here with the zoo's trained moons denoiser
        unet = genzoo.DDPMPipeline.from_pretrained("pipelines/ddpm-moons").unet
        scheduler.set_timesteps(50)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(500, 2, generator=generator)  # x_T ~ N(0, I)
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
        print(x.shape)  # torch.Size([500, 2])
        ```
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1
    #: What the model this scheduler steps predicts: noise, x_0 or v of a diffusion (the pipelines' ``model_kind``).
    model_kind = "diffusion"
    #: How a menu of samplers (the demo's) shows it.
    solver_label = "DDPM (genzoo)"

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        check_str_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
        check_str_choice("variance_type", variance_type, VARIANCE_TYPES)
        check_str_choice("prediction_type", prediction_type, DDPM_PREDICTION_TYPES)
        check_str_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
        T = check_int("num_train_timesteps", num_train_timesteps, maximum=MAX_TIMESTEPS,
                      reason="each timestep's coefficients are held in memory")
        beta_start = check_number("beta_start", beta_start, 0, 1)
        beta_end = check_number("beta_end", beta_end, 0, 1)
        for name, flag in (("clip_sample", clip_sample), ("thresholding", thresholding),
                           ("rescale_betas_zero_snr", rescale_betas_zero_snr)):
            check_bool(name, flag)
        check_number("dynamic_thresholding_ratio", dynamic_thresholding_ratio, 0, 1, high_open=False)
        check_number("clip_sample_range", clip_sample_range, 0)
        check_number("sample_max_value", sample_max_value, 0)
        check_int("steps_offset", steps_offset, minimum=0)
        if timestep_spacing == "leading" and steps_offset >= T:
            raise ValueError(
                f"steps_offset must be below num_train_timesteps={T} with timestep_spacing='leading' (it is added "
                f"to every sampling timestep), got {steps_offset!r}."
            )
        uses_betas = trained_betas is None and beta_schedule != "squaredcos_cap_v2"
        if uses_betas and beta_start > beta_end:
            raise ValueError(
                f"beta_start={beta_start!r} is larger than beta_end={beta_end!r}: the {beta_schedule!r} schedule "
                "would add less noise as t grows; beta_start <= beta_end is required (Diffusers assumes it)."
            )
        if rescale_betas_zero_snr and prediction_type == "epsilon":
            raise ValueError(
                "rescale_betas_zero_snr=True with prediction_type='epsilon': the last timestep is pure noise, where "
                "an 'epsilon' prediction cannot recover x_0 (Diffusers divides by zero there). Allowed with "
                "zero-terminal-SNR schedules: prediction_type='v_prediction' or 'sample'."
            )
        if rescale_betas_zero_snr and T < 2:
            raise ValueError(
                f"rescale_betas_zero_snr=True needs num_train_timesteps >= 2 (it keeps the first alpha_bar and sets "
                f"the last to 0), got {T}."
            )

        if trained_betas is not None:
            values = as_number_array("trained_betas", trained_betas, "a 1-D list of numbers")
            if values.ndim != 1 or len(values) != T:
                raise ValueError(
                    f"trained_betas must be a 1-D list of num_train_timesteps={T} values, "
                    f"got shape {tuple(values.shape)}: one beta per training timestep (Diffusers accepts any length "
                    "and then indexes past the end)."
                )
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0) & (values < 1)))
            if len(bad):
                raise ValueError(
                    f"trained_betas must be finite numbers in (0, 1), got {float(values[bad[0]])!r} "
                    f"at index {int(bad[0])}."
                )
            betas = torch.tensor(values, dtype=torch.float32)
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = betas_for_alpha_bar(T)
        else:  # sigmoid
            betas = torch.sigmoid(torch.linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start
        if trained_betas is not None:
            source = "trained_betas"
        elif beta_schedule == "squaredcos_cap_v2":
            source = f"beta_schedule='squaredcos_cap_v2' with num_train_timesteps={T}"
        else:
            source = (f"beta_schedule={beta_schedule!r} with beta_start={beta_start!r}, beta_end={beta_end!r}, "
                      f"num_train_timesteps={T}")
        self._check_schedule(betas, source, zero_terminal_snr=False)
        if rescale_betas_zero_snr:  # finite once the schedule itself is (alpha_bar strictly decreasing, > 0)
            betas = rescale_zero_terminal_snr(betas)
            self._check_schedule(betas, source + " and rescale_betas_zero_snr=True", zero_terminal_snr=True)

        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)
        self.init_noise_sigma = 1.0
        self.variance_type = variance_type  # Diffusers keeps this as an attribute too

        # Until set_timesteps is called the sampling grid is the whole training chain T-1, ..., 0, so step()
        # works right away and steps t -> t - 1 (Diffusers' behaviour).
        self.num_inference_steps: int | None = None
        self.custom_timesteps = False
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    @staticmethod
    def _check_schedule(betas: torch.Tensor, source: str, zero_terminal_snr: bool) -> None:
        """The float32 schedule must keep ``step`` finite: ``0 < alpha_bar_t < 1`` and strictly decreasing, except the
        last ``alpha_bar`` of a zero-terminal-SNR schedule, which is 0 by design (and never divided by: that
        schedule requires ``v_prediction`` or ``sample``)."""
        if not bool(torch.isfinite(betas).all()):
            raise ValueError(f"{source} gives non-finite betas; check the schedule's arguments.")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        positive = alphas_cumprod[:-1] if zero_terminal_snr else alphas_cumprod
        gone = torch.nonzero(positive <= 0).flatten()
        if len(gone):
            raise ValueError(
                f"{source}: alpha_bar_t (the signal left at step t) underflows to 0 in float32 from t={int(gone[0])} "
                "on, and step divides by it; use fewer timesteps or smaller betas."
            )
        steps = torch.cat([alphas_cumprod[:1] - 1, alphas_cumprod.diff()])
        flat = torch.nonzero(steps >= 0).flatten()
        if len(flat):
            t = int(flat[0])
            raise ValueError(
                f"{source}: beta_t={float(betas[t]):.3g} at t={t} is too small for float32 (alpha_bar does not "
                "decrease there), and step divides by zero; betas must be at least about 6e-08."
            )

    # ------------------------------------------------------------------ training side
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Uniform training timesteps in ``[0, num_train_timesteps)``, shape ``(batch_size,)``, int64.

        Drawn on the generator's device and then moved, so a seeded CPU generator gives the same timesteps
        whatever ``device`` is.

        Args:
            batch_size: how many timesteps to draw.
            generator: the source of randomness (default: torch's global one).
            device (str | torch.device | None): where the timesteps go (default: the generator's device).

        Returns:
            The timesteps, an int64 tensor of shape ``(batch_size,)``.
        """
        check_int("batch_size", batch_size, minimum=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be None or a torch.Generator, got {describe(generator)}.")
        device = check_device(device)
        draw_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(0, self.config.num_train_timesteps, (batch_size,), generator=generator, device=draw_device)
        return move_to_device(t, device) if device is not None else t

    def _timestep_indices(self, timesteps, like: torch.Tensor, finite: dict | None = None) -> torch.Tensor:
        """``timesteps`` checked (integers in ``[0, num_train_timesteps)``, one or one per sample of ``like``) as int64
        indices on the schedule's device, and the tensors in ``finite`` (name -> tensor) checked for NaN/inf: one
        synchronisation."""
        finite = finite or {}
        T = self.config.num_train_timesteps
        t = as_timestep_tensor("timesteps", timesteps)
        check_batch_timesteps(t, like)
        t = t.to(like.device)
        if t.is_floating_point():
            integral = (t == t.round()).all()
        else:
            integral = torch.ones((), dtype=torch.bool, device=t.device)
        stats = [t.min(), t.max(), integral, *finite_flags(*finite.values())]
        low, high, integral, *finite_ok = torch.stack([s.to(torch.float32) for s in stats]).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"timesteps contain NaN or inf, got {describe(timesteps)}.")
        if not integral:
            raise ValueError(f"DDPM timesteps are integers, got {describe(timesteps)}.")
        if low < 0 or high > T - 1:
            raise ValueError(
                f"timesteps must lie in [0, {T - 1}], got values from {low:.10g} to {high:.10g}."
            )
        for name, ok in zip(finite, finite_ok):
            if not ok:
                raise ValueError(f"{name} contains NaN or inf.")
        return t.long().to(self.alphas_cumprod.device)

    def path(self, timesteps: torch.Tensor, like: torch.Tensor) -> AffinePath:
        """The path coefficients ``alpha = sqrt(alpha_bar_t)``, ``sigma = sqrt(1 - alpha_bar_t)`` at ``timesteps``.

        Args:
            timesteps: integers in ``[0, num_train_timesteps)``, one or one per sample of ``like``.
            like: a batch of samples; the coefficients broadcast against it.

        Returns:
            The ``AffinePath`` of ``x_t = alpha * x_0 + sigma * noise``.
        """
        check_tensor("like", like)
        return self._path(self._timestep_indices(timesteps, like), like)

    def _path(self, indices: torch.Tensor, like: torch.Tensor) -> AffinePath:
        alpha_bar = expand_to(self.alphas_cumprod[indices], like)
        return AffinePath(alpha=alpha_bar**0.5, sigma=(1 - alpha_bar) ** 0.5)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * noise`` (the closed-form forward process).

        Args:
            original_samples: the clean data x_0, a finite floating-point tensor, batch first.
            noise: Gaussian noise of the same shape.
            timesteps: integers in ``[0, num_train_timesteps)``, one or one per sample.

        Returns:
            The noisy samples x_t.
        """
        check_training_inputs(original_samples, noise)
        finite = dict(original_samples=original_samples, noise=noise)
        indices = self._timestep_indices(timesteps, original_samples, finite)
        return self._path(indices, original_samples).sample(original_samples, noise)

    def training_target(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The regression target for this scheduler's ``prediction_type``: noise, x_0 or v.

        Args:
            original_samples: the clean data x_0, as for ``add_noise``.
            noise: the noise ``add_noise`` was given.
            timesteps: the timesteps ``add_noise`` was given.

        Returns:
            The target the model's output is regressed on.
        """
        check_training_inputs(original_samples, noise)
        finite = dict(original_samples=original_samples, noise=noise)
        indices = self._timestep_indices(timesteps, original_samples, finite)
        return self._path(indices, original_samples).target(original_samples, noise, self.config.prediction_type)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Diffusers' v target ``sqrt(alpha_bar_t) * noise - sqrt(1 - alpha_bar_t) * x_0``.

        Args:
            sample: the clean data x_0.
            noise: the noise of the same shape.
            timesteps: integers in ``[0, num_train_timesteps)``, one or one per sample.

        Returns:
            The velocity v.
        """
        check_training_inputs(sample, noise)
        indices = self._timestep_indices(timesteps, sample, dict(sample=sample, noise=noise))
        return self._path(indices, sample).target(sample, noise, "v_prediction")

    # ------------------------------------------------------------------ sampling side
    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM feeds the model x_t as it is; present for interchangeability with other schedulers.

        Args:
            sample: the model input.
            timestep: the current timestep (unused).

        Returns:
            ``sample`` unchanged.
        """
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Choose the sampling grid: ``num_inference_steps`` placed by ``timestep_spacing``, or explicit ``timesteps``.

        Args:
            num_inference_steps: the number of sampling steps (give this or ``timesteps``).
            device: where ``self.timesteps`` goes.
            timesteps: an explicit grid: integers in ``[0, num_train_timesteps)``, strictly decreasing.

        Raises:
            ValueError: if both or neither of ``num_inference_steps`` and ``timesteps`` are given, or either is not
                allowed.
        """
        T = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to set_timesteps.")
        device = check_device(device)
        if timesteps is not None:
            grid = as_number_array("timesteps", timesteps, "a non-empty list of integers")
            if grid.ndim != 1 or len(grid) == 0 or not np.isfinite(grid).all() or np.any(grid != np.round(grid)):
                raise ValueError(f"timesteps must be a non-empty list of integers, got {describe(timesteps)}.")
            if np.any(np.diff(grid) >= 0):
                raise ValueError(f"timesteps must be strictly decreasing, got {_integers(grid)}.")
            if grid[0] >= T or grid[-1] < 0:
                raise ValueError(f"timesteps must lie in [0, {T - 1}], got {_integers(grid)}.")
            grid = grid.astype(np.int64)
            custom = True
        else:
            n = check_int("num_inference_steps", num_inference_steps)
            if n > T:
                raise ValueError(f"num_inference_steps must be at most num_train_timesteps={T}, got {n!r}.")
            spacing = self.config.timestep_spacing
            if spacing == "linspace":
                grid = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
            elif spacing == "leading":
                grid = (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64)
                grid += self.config.steps_offset
            else:  # trailing. Diffusers' np.arange can give n + 1 points (the last one -1); the first n are its grid.
                grid = np.round(np.arange(T, 0, -T / n))[:n].astype(np.int64) - 1
            if grid.max() >= T or grid.min() < 0:
                raise ValueError(
                    f"steps_offset={self.config.steps_offset} pushes the grid outside [0, {T - 1}] for "
                    f"num_inference_steps={n}; lower steps_offset or num_inference_steps."
                )
            custom = False
        timesteps_tensor = move_to_device(torch.from_numpy(grid), device)
        self.custom_timesteps = custom
        self.num_inference_steps = len(grid)
        self.timesteps = timesteps_tensor

    def _timestep_value(self, timestep: int | torch.Tensor) -> int:
        """``timestep`` as a Python int, checked to be one integer in ``[0, num_train_timesteps - 1]`` (a Python or
        numpy number, or a one-element tensor)."""
        T = self.config.num_train_timesteps
        if isinstance(timestep, torch.Tensor):
            if timestep.numel() != 1:
                raise ValueError(f"step takes one timestep for the whole batch, got {describe(timestep.tolist())}.")
            if timestep.dtype == torch.bool or timestep.is_complex():
                raise ValueError(
                    f"timestep must be an integer in [0, {T - 1}], got a tensor of dtype {timestep.dtype}."
                )
            value = timestep.item()
        elif is_real(timestep):
            value = timestep
        elif isinstance(timestep, (list, tuple, np.ndarray)):
            values = as_number_array("timestep", timestep, f"an integer in [0, {T - 1}]")
            if values.size != 1:
                raise ValueError(f"step takes one timestep for the whole batch, got {describe(timestep)}.")
            value = values.item()
        else:
            raise ValueError(
                f"timestep must be an integer in [0, {T - 1}], got {describe(timestep)} "
                f"(type {type(timestep).__name__})."
            )
        if not isinstance(value, numbers.Integral):
            value = float(value)
            if not value.is_integer():
                raise ValueError(f"DDPM timesteps are integers, got timestep {value!r}.")
        if not 0 <= value <= T - 1:
            raise ValueError(f"timestep {value!r} is outside the training chain [0, {T - 1}].")
        return int(value)

    def previous_timestep(self, timestep: int | torch.Tensor) -> torch.Tensor:
        """The timestep ``step`` moves to from ``timestep`` (``-1``: the end of sampling, where alpha_bar = 1).

        - Before ``set_timesteps`` the grid is the whole chain: ``timestep - 1``.
        - On the grid: the next grid point (``-1`` after the last one).
        - Off the grid of ``set_timesteps(num_inference_steps=n)``: ``timestep - num_train_timesteps // n``
          (Diffusers' older rule; ``-1`` if that is below 0).
        - Off a custom grid (``set_timesteps(timesteps=[...])``): a ``ValueError``, there is no rule to follow.

        Args:
            timestep: one integer in ``[0, num_train_timesteps)``.

        Returns:
            The previous timestep, a 0-d tensor.
        """
        value = self._timestep_value(timestep)
        matches = (self.timesteps.cpu() == value).nonzero(as_tuple=True)[0]
        if len(matches):
            index = int(matches[0])
            return self.timesteps[index + 1].cpu() if index + 1 < len(self.timesteps) else torch.tensor(-1)
        if self.custom_timesteps:
            raise ValueError(
                f"timestep {value} is not on the custom sampling grid set by set_timesteps(timesteps=...): "
                f"{self.timesteps.tolist()}; a custom grid has no rule for the step after an off-grid timestep."
            )
        # Off the grid of set_timesteps(n). (Before set_timesteps every valid timestep is on the grid.)
        return torch.tensor(max(value - self.config.num_train_timesteps // self.num_inference_steps, -1))

    def _variance(
        self,
        posterior: DDPMPosterior,
        predicted_variance: torch.Tensor | None,
        variance_type: str,
    ) -> torch.Tensor:
        """The variance (sigma^2) of the reverse step with this posterior; see :meth:`_get_variance`."""
        current_beta_t = posterior.beta
        if variance_type in ("fixed_small", "fixed_small_log"):
            return posterior.variance
        if variance_type in ("fixed_large", "fixed_large_log"):
            return current_beta_t
        if predicted_variance is None:
            raise ValueError(f"variance_type={variance_type!r} needs the model's predicted_variance, got None.")
        if variance_type == "learned":
            variance = predicted_variance
        else:  # learned_range: interpolate between the two fixed choices in log space (Improved DDPM).
            frac = (predicted_variance + 1) / 2
            variance = torch.exp(frac * torch.log(current_beta_t) + (1 - frac) * torch.log(posterior.variance))
        # A negative variance (learned) or an exponent that overflows (learned_range far outside [-1, 1]) would make
        # the step NaN or inf from a finite model output; Diffusers returns that, genzoo says so.
        low, high, ok = torch.stack(
            [variance.min().float(), variance.max().float(), (torch.isfinite(variance) & (variance >= 0)).all().float()]
        ).tolist()
        if not ok:
            wanted = "variances >= 0" if variance_type == "learned" else "coefficients in [-1, 1]"
            raise ValueError(
                f"variance_type={variance_type!r}: the model's predicted variance gives step variances from {low:.3g} "
                f"to {high:.3g}, not all finite and >= 0; the second half of the model output must hold {wanted}."
            )
        return variance

    def _get_variance(
        self,
        t: int | torch.Tensor,
        predicted_variance: torch.Tensor | None = None,
        variance_type: str | None = None,
    ) -> torch.Tensor:
        """The variance sigma_t^2 of the reverse step from ``t`` (to ``previous_timestep(t)``), for every
        ``variance_type`` (default: the configured one); ``step`` adds ``sqrt(variance) * noise``.

        Always a variance, never its square root or logarithm: ``fixed_small`` and ``fixed_small_log`` give the
        posterior variance beta~_t (clamped to >= 1e-20), ``fixed_large`` and ``fixed_large_log`` the step's beta_t,
        ``learned`` ``predicted_variance`` itself and ``learned_range``
        ``exp(frac * log beta_t + (1 - frac) * log beta~_t)`` with ``frac = (predicted_variance + 1) / 2``.
        Diffusers' method of the same name agrees for ``fixed_small``, ``fixed_large`` and ``learned`` and returns
        the standard deviation for ``fixed_small_log`` and the log-variance for ``fixed_large_log`` and
        ``learned_range``.
        """
        variance_type = self.config.variance_type if variance_type is None else variance_type
        check_str_choice("variance_type", variance_type, VARIANCE_TYPES)
        if predicted_variance is not None:
            check_tensor("predicted_variance", predicted_variance)
        t = self._timestep_value(t)
        prev_t = int(self.previous_timestep(t))
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        return self._variance(ddpm_posterior(self.alphas_cumprod[t], alpha_prod_t_prev), predicted_variance,
                              variance_type)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DDPMSchedulerOutput | tuple:
        """One ancestral step x_t -> x_{t'} with t' = ``previous_timestep(t)`` (the next grid point; t - 1 before
        ``set_timesteps``), adding ``sqrt(_get_variance(t)) * noise`` for t > 0; the x_0 estimate is returned too.

        Args:
            model_output: the model's prediction at ``timestep``, of the shape of ``sample`` (a learned variance
                doubles dim 1).
            timestep: one integer in ``[0, num_train_timesteps)``.
            sample: the current x_t, a floating-point tensor, batch first, on the model output's device.
            generator: a generator, or one per sample, for the step's noise.
            return_dict: return a ``DDPMSchedulerOutput`` rather than a tuple.

        Returns:
            ``DDPMSchedulerOutput(prev_sample, pred_original_sample)``, or the tuple of the two.

        Raises:
            ValueError: a model output or sample holding NaN/inf (naming the timestep), and a non-finite result
                (overflow of inputs far too large for the dtype).
        """
        learned = self.config.variance_type in ("learned", "learned_range")
        check_step_inputs(model_output, sample, min_ndim=1, learned_variance=learned)
        check_generator(generator, sample.shape[0])
        t = self._timestep_value(timestep)
        prev_t = int(self.previous_timestep(t))

        full_model_output = model_output
        predicted_variance = None
        if learned:
            if model_output.shape[1] != 2 * sample.shape[1]:
                raise ValueError(
                    f"variance_type={self.config.variance_type!r} needs a model output with twice the channels of "
                    f"the sample ({2 * sample.shape[1]}), got {model_output.shape[1]}."
                )
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)

        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        posterior = ddpm_posterior(alpha_prod_t, alpha_prod_t_prev)

        path = AffinePath(alpha=alpha_prod_t**0.5, sigma=(1 - alpha_prod_t) ** 0.5)
        pred_original_sample = path.data_from(model_output, sample, self.config.prediction_type)
        if self.config.thresholding:
            pred_original_sample = self._threshold_sample(pred_original_sample)
        elif self.config.clip_sample:
            r = self.config.clip_sample_range
            pred_original_sample = pred_original_sample.clamp(-r, r)

        # Mean of the posterior q(x_{t'} | x_t, x_0), eq. (7) of Ho et al.
        prev_sample = posterior.coef_x0 * pred_original_sample + posterior.coef_xt * sample

        if t > 0:
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)
            variance = self._variance(posterior, predicted_variance, self.config.variance_type)
            prev_sample = prev_sample + variance**0.5 * noise

        return finish_step(DDPMSchedulerOutput, type(self).__name__, t, full_model_output, sample, prev_sample,
                           pred_original_sample, return_dict)

    def _threshold_sample(self, sample: torch.Tensor) -> torch.Tensor:
        """Dynamic thresholding (Imagen): clamp each sample to its ``dynamic_thresholding_ratio`` quantile of
        |x_0| (at least 1, at most ``sample_max_value``) and rescale into [-1, 1]."""
        dtype = sample.dtype
        batch_size = sample.shape[0]
        flat = sample.float().reshape(batch_size, -1)  # quantile needs float32/64
        s = torch.quantile(flat.abs(), self.config.dynamic_thresholding_ratio, dim=1)
        s = torch.clamp(s, min=1, max=self.config.sample_max_value).unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(sample.shape).to(dtype)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
