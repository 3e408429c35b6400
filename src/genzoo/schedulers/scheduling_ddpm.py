"""DDPM (Ho et al. 2020) as a Diffusers-compatible scheduler that owns both sides of its path.

Training side: ``sample_timesteps`` -> ``add_noise`` -> ``training_target``.
Sampling side: ``set_timesteps`` -> repeated ``step`` (ancestral sampling, one model call per step).

The options, their names and their numbers are those of ``diffusers.DDPMScheduler`` (the tests
check agreement step by step), except where Diffusers is wrong -- see ``variance_type`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar, rescale_zero_terminal_snr
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_positive_int
from .paths import AffinePath, check_choice, check_same_shape, expand_to

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
DDPM_PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")


@dataclass
class DDPMSchedulerOutput(BaseOutput):
    """``prev_sample`` is x_{t-1}, the next model input; ``pred_original_sample`` is the model's estimate of x_0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class DDPMScheduler(SchedulerMixin, ConfigMixin):
    """Denoising diffusion probabilistic model scheduler.

    Forward (training) process, closed form: ``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps``.
    Reverse (sampling) process: from x_t, estimate x_0 from the model output, then draw x_{t'} from the
    Gaussian posterior q(x_{t'} | x_t, x_0) for the previous grid point t'.

    Args mirror ``diffusers.DDPMScheduler`` (same names, same defaults, same meaning):
        num_train_timesteps: length of the training chain, T.
        beta_start, beta_end, beta_schedule: the noise schedule; one of ``linear``, ``scaled_linear``,
            ``squaredcos_cap_v2`` (cosine, Nichol & Dhariwal), ``sigmoid``.
        trained_betas: explicit betas, overriding the schedule.
        variance_type: the reverse-step variance (see :meth:`_get_variance`). ``fixed_small`` is the posterior
            variance beta~_t, ``fixed_large`` is beta_t; the ``_log`` variants are the same variances (Diffusers
            computes them in log space). ``learned`` takes the model's second half of channels as the variance
            itself (Diffusers' convention), ``learned_range`` as an interpolation coefficient v in [-1, 1] between
            log beta~_t and log beta_t (Improved DDPM). Unlike Diffusers (whose ``fixed_large_log`` takes the square
            root of a logarithm and returns NaN), ``fixed_large_log`` here steps with the standard deviation
            ``sqrt(beta_t)``, exactly as ``fixed_large``.
        clip_sample, clip_sample_range: clamp the x_0 estimate to [-range, range].
        prediction_type: ``epsilon``, ``sample`` (x_0) or ``v_prediction``.
        thresholding, dynamic_thresholding_ratio, sample_max_value: Imagen's dynamic thresholding of x_0.
        timestep_spacing, steps_offset: how ``set_timesteps`` places a shorter sampling grid.
        rescale_betas_zero_snr: rescale the schedule to zero terminal SNR (Lin et al. 2023). At zero SNR an
            epsilon prediction carries no information about x_0, so this requires ``v_prediction`` or ``sample``.

    Sampling: ``step`` works right after construction, on the whole chain (t -> t - 1), and after
    ``set_timesteps`` on the chosen grid (see :meth:`previous_timestep` for timesteps off the grid).
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

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
        check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        check_choice("prediction_type", prediction_type, DDPM_PREDICTION_TYPES)
        check_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
        check_positive_int("num_train_timesteps", num_train_timesteps)
        if rescale_betas_zero_snr and prediction_type == "epsilon":
            raise ValueError(
                "rescale_betas_zero_snr=True with prediction_type='epsilon': the last timestep is pure noise, where "
                "an 'epsilon' prediction cannot recover x_0 (Diffusers divides by zero there). Allowed with "
                "zero-terminal-SNR schedules: prediction_type='v_prediction' or 'sample'."
            )

        if trained_betas is not None:
            betas = torch.tensor(trained_betas, dtype=torch.float32)
            if betas.ndim != 1 or len(betas) != num_train_timesteps:
                raise ValueError(
                    f"trained_betas must be a 1-D list of num_train_timesteps={num_train_timesteps} values, "
                    f"got shape {tuple(betas.shape)}: one beta per training timestep (Diffusers accepts any length "
                    "and then indexes past the end)."
                )
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = betas_for_alpha_bar(num_train_timesteps)
        else:  # sigmoid
            betas = torch.sigmoid(torch.linspace(-6, 6, num_train_timesteps)) * (beta_end - beta_start) + beta_start
        if rescale_betas_zero_snr:
            betas = rescale_zero_terminal_snr(betas)

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

    # ------------------------------------------------------------------ training side
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Uniform training timesteps in ``[0, num_train_timesteps)``, shape ``(batch_size,)``, int64.

        Drawn on the generator's device and then moved, so a seeded CPU generator gives the same timesteps
        whatever ``device`` is.
        """
        draw_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(0, self.config.num_train_timesteps, (batch_size,), generator=generator, device=draw_device)
        return t.to(device) if device is not None else t

    def path(self, timesteps: torch.Tensor, like: torch.Tensor) -> AffinePath:
        """The path coefficients ``alpha = sqrt(alpha_bar_t)``, ``sigma = sqrt(1 - alpha_bar_t)`` at ``timesteps``."""
        timesteps = torch.as_tensor(timesteps, device=self.alphas_cumprod.device).long()
        if timesteps.numel() and (timesteps.min() < 0 or timesteps.max() >= self.config.num_train_timesteps):
            raise ValueError(
                f"timesteps must lie in [0, {self.config.num_train_timesteps - 1}], got values from "
                f"{int(timesteps.min())} to {int(timesteps.max())}."
            )
        alpha_bar = expand_to(self.alphas_cumprod[timesteps], like)
        return AffinePath(alpha=alpha_bar**0.5, sigma=(1 - alpha_bar) ** 0.5)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * noise`` (the closed-form forward process)."""
        return self.path(timesteps, original_samples).sample(original_samples, noise)

    def training_target(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The regression target for this scheduler's ``prediction_type``: noise, x_0 or v."""
        return self.path(timesteps, original_samples).target(original_samples, noise, self.config.prediction_type)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Diffusers' v target ``sqrt(alpha_bar_t) * noise - sqrt(1 - alpha_bar_t) * x_0``."""
        return self.path(timesteps, sample).target(sample, noise, "v_prediction")

    # ------------------------------------------------------------------ sampling side
    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM feeds the model x_t as it is; present for interchangeability with other schedulers."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Choose the sampling grid: ``num_inference_steps`` placed by ``timestep_spacing``, or explicit ``timesteps``
        (integers in ``[0, num_train_timesteps)``, strictly decreasing)."""
        T = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to set_timesteps.")
        if timesteps is not None:
            grid = np.asarray(list(timesteps), dtype=np.float64)
            if grid.ndim != 1 or len(grid) == 0 or np.any(grid != np.round(grid)):
                raise ValueError(f"timesteps must be a non-empty list of integers, got {list(timesteps)!r}.")
            if np.any(np.diff(grid) >= 0):
                raise ValueError(f"timesteps must be strictly decreasing, got {grid.astype(np.int64).tolist()}.")
            if grid[0] >= T or grid[-1] < 0:
                raise ValueError(f"timesteps must lie in [0, {T - 1}], got {grid.astype(np.int64).tolist()}.")
            grid = grid.astype(np.int64)
            self.custom_timesteps = True
            self.num_inference_steps = len(grid)
        else:
            n = check_positive_int("num_inference_steps", num_inference_steps)
            if n > T:
                raise ValueError(f"num_inference_steps must be at most num_train_timesteps={T}, got {n!r}.")
            spacing = self.config.timestep_spacing
            if spacing == "linspace":
                grid = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
            elif spacing == "leading":
                grid = (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64)
                grid += self.config.steps_offset
            else:  # trailing
                grid = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
            if grid.max() >= T or grid.min() < 0:
                raise ValueError(
                    f"steps_offset={self.config.steps_offset} pushes the grid outside [0, {T - 1}] for "
                    f"num_inference_steps={n}; lower steps_offset or num_inference_steps."
                )
            self.custom_timesteps = False
            self.num_inference_steps = int(n)
        self.timesteps = torch.from_numpy(grid).to(device)

    def _timestep_value(self, timestep: int | torch.Tensor) -> int:
        """``timestep`` as a Python int, checked to be one integer in ``[0, num_train_timesteps - 1]``."""
        T = self.config.num_train_timesteps
        value = torch.as_tensor(timestep)
        if value.numel() != 1:
            raise ValueError(f"step takes one timestep for the whole batch, got {value.tolist()!r}.")
        value = value.item()
        if isinstance(value, float) and not value.is_integer():
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
        alpha_prod_t: torch.Tensor,
        alpha_prod_t_prev: torch.Tensor,
        predicted_variance: torch.Tensor | None,
        variance_type: str,
    ) -> torch.Tensor:
        """The variance (sigma^2) of the reverse step between two cumulative alphas; see :meth:`_get_variance`."""
        current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
        # The posterior variance beta~_t of q(x_{t'} | x_t, x_0), eq. (7) of Ho et al.; clamped for its logarithm.
        posterior = torch.clamp((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t, min=1e-20)
        if variance_type in ("fixed_small", "fixed_small_log"):
            return posterior
        if variance_type in ("fixed_large", "fixed_large_log"):
            return current_beta_t
        if predicted_variance is None:
            raise ValueError(f"variance_type={variance_type!r} needs the model's predicted_variance, got None.")
        if variance_type == "learned":
            return predicted_variance
        # learned_range: interpolate between the two fixed choices in log space (Improved DDPM).
        frac = (predicted_variance + 1) / 2
        return torch.exp(frac * torch.log(current_beta_t) + (1 - frac) * torch.log(posterior))

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
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        t = self._timestep_value(t)
        prev_t = int(self.previous_timestep(t))
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        return self._variance(self.alphas_cumprod[t], alpha_prod_t_prev, predicted_variance, variance_type)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DDPMSchedulerOutput | tuple:
        """One ancestral step x_t -> x_{t'} with t' = ``previous_timestep(t)`` (the next grid point; t - 1 before
        ``set_timesteps``), adding ``sqrt(_get_variance(t)) * noise`` for t > 0; the x_0 estimate is returned too."""
        learned = self.config.variance_type in ("learned", "learned_range")
        check_same_shape(model_output, sample, allowed_channels=[2 * sample.shape[1]] if learned else None)
        t = self._timestep_value(timestep)
        prev_t = int(self.previous_timestep(t))

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
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t  # the effective beta of this (possibly skipping) step

        path = AffinePath(alpha=alpha_prod_t**0.5, sigma=beta_prod_t**0.5)
        pred_original_sample = path.data_from(model_output, sample, self.config.prediction_type)
        if self.config.thresholding:
            pred_original_sample = self._threshold_sample(pred_original_sample)
        elif self.config.clip_sample:
            r = self.config.clip_sample_range
            pred_original_sample = pred_original_sample.clamp(-r, r)

        # Mean of the posterior q(x_{t'} | x_t, x_0), eq. (7) of Ho et al.
        pred_original_sample_coeff = (alpha_prod_t_prev**0.5 * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t**0.5 * beta_prod_t_prev / beta_prod_t
        prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample

        if t > 0:
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)
            variance = self._variance(alpha_prod_t, alpha_prod_t_prev, predicted_variance, self.config.variance_type)
            prev_sample = prev_sample + variance**0.5 * noise

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

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
