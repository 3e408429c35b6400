"""DDPM (Ho et al. 2020): regress the noise (or x_0, or v) at a uniformly drawn timestep of the diffusion chain.

Every option of the :class:`~genzoo.DDPMScheduler` a user would tune is an option of the method, and the saved
pipeline's scheduler carries them. With ``--variance_type learned_range`` the denoiser also predicts the reverse
step's variance, trained by Improved DDPM's hybrid loss (Nichol & Dhariwal 2021)::

    L = L_simple + vlb_weight * T * L_t,

where ``L_t`` is the step-``t`` term of the variational bound in bits per dimension: the KL divergence between the
true posterior ``q(x_{t-1} | x_t, x_0)`` and the model's ``p(x_{t-1} | x_t)`` for ``t > 0`` and the negative
log-likelihood of ``x_0`` for ``t = 0``. The mean's gradient is stopped in ``L_t``, so the bound trains only the
variance and ``L_simple`` only the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers.training_utils import compute_snr

from ..config import RecipeError, option
from ..pipelines import DDPMPipeline
from ..schedulers.paths import AffinePath, expand_to
from ..schedulers.scheduling_ddpm import (
    BETA_SCHEDULES,
    DDPM_PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    VARIANCE_TYPES,
    ddpm_posterior,
)
from .denoising import DenoisingConfig, DenoisingMethod, scheduler_choices

#: Variance types the method trains. "learned" (the network outputs the variance itself, Diffusers' convention for
#: some converted checkpoints) is sampled by the scheduler but not trained: nothing would keep that output positive.
TRAINABLE_VARIANCE_TYPES = tuple(v for v in VARIANCE_TYPES if v != "learned")
LEARNED_VARIANCE = "learned_range"
SCHEDULE = "ddpm: noise schedule and sampler"


@dataclass
class DDPMConfig(DenoisingConfig):
    group_title: ClassVar[str] = "ddpm"

    num_train_timesteps: int = option(1000, "length T of the diffusion chain", minimum=1, group=SCHEDULE)
    beta_start: float = option(0.0001, "first beta of the linear, scaled_linear and sigmoid schedules", above=0.0,
                               below=1.0, group=SCHEDULE)
    beta_end: float = option(0.02, "last beta of those schedules", above=0.0, below=1.0, group=SCHEDULE)
    beta_schedule: str = option("linear", "the noise schedule (squaredcos_cap_v2 is Improved DDPM's cosine)",
                                choices=BETA_SCHEDULES, group=SCHEDULE)
    variance_type: str = option(
        "fixed_small", "the reverse step's variance: fixed_small (the posterior's), fixed_large (beta_t), their _log "
        "forms, or learned_range (the denoiser predicts it; Improved DDPM's hybrid loss)",
        choices=TRAINABLE_VARIANCE_TYPES, group=SCHEDULE)
    prediction_type: str = option("epsilon", "what the denoiser predicts: the noise, x_0 (sample) or v",
                                  choices=DDPM_PREDICTION_TYPES, group=SCHEDULE)
    timestep_spacing: str = option("leading", "how the saved sampler places a grid shorter than T",
                                   choices=TIMESTEP_SPACINGS, group=SCHEDULE)
    clip_sample: bool | None = option(None, "clamp the sampler's x_0 estimates to the data's range: [-1, 1] for "
                                      "images, [-R, R] for vector data with R the training data's largest |x| "
                                      "rounded up (default: yes; off only if set false)", group=SCHEDULE)
    rescale_betas_zero_snr: bool = option(False, "rescale the schedule to zero terminal SNR (Lin et al. 2023; needs "
                                          "prediction_type v_prediction or sample)", group=SCHEDULE)
    snr_gamma: float | None = option(None, "min-SNR loss weighting with this gamma (Hang et al. 2023; 5.0 is typical)",
                                     above=0.0, group=SCHEDULE)
    vlb_weight: float = option(0.001, "learned_range: weight lambda of the variational bound in the hybrid loss",
                               minimum=0.0, group=SCHEDULE)
    scheduler: str | None = option(None, "the saved pipeline's sampler, a registered DDPM scheduler (default "
                                   "DDPMScheduler)", choices=scheduler_choices(DDPMPipeline.model_kind),
                                   group=SCHEDULE)

    def check(self):
        if self.rescale_betas_zero_snr and self.prediction_type == "epsilon":
            raise RecipeError(
                "--rescale_betas_zero_snr makes the last timestep pure noise, where an epsilon prediction says "
                "nothing about x_0; use --prediction_type v_prediction or sample with it."
            )


class DDPMMethod(DenoisingMethod):
    """DDPM (Ho et al. 2020): regress the noise (or x_0, or v) at a uniformly drawn timestep (``--method ddpm``).

    Saves a ``DDPMPipeline`` with the ``DDPMScheduler`` it trained with.

    Args:
        config (DDPMConfig): the method's options (``--method ddpm``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "ddpm"
    Config = DDPMConfig
    default_scheduler = "DDPMScheduler"
    pipeline_class = DDPMPipeline
    smoke_test_options = {**DenoisingMethod.smoke_test_options, "num_train_timesteps": 50}

    def scheduler_kwargs(self):
        c = self.config
        # The bound is saved in the scheduler's config, so Diffusers' samplers built with from_config get it too:
        # deterministic DDIM on a briefly trained vector model throws tail samples far off without it (docs/few-step.md).
        clip = c.clip_sample is not False
        return dict(
            num_train_timesteps=c.num_train_timesteps, beta_start=c.beta_start, beta_end=c.beta_end,
            beta_schedule=c.beta_schedule, variance_type=c.variance_type, prediction_type=c.prediction_type,
            timestep_spacing=c.timestep_spacing, clip_sample=clip, clip_sample_range=self.data_range(),
            rescale_betas_zero_snr=c.rescale_betas_zero_snr,
        )

    def data_range(self) -> float:
        """The ``clip_sample_range``: 1 for images (in [-1, 1]); for vector data, the training data's largest
        absolute coordinate rounded up to a whole number (4 for moons, whose points reach 3.75), at least 1."""
        vectors = getattr(self.data.dataset, "vectors", None)
        if self.data.kind == "image" or vectors is None or vectors.numel() == 0:
            return 1.0
        return float(max(1, math.ceil(float(vectors.abs().max()))))

    @property
    def learns_variance(self) -> bool:
        return self.config.variance_type == LEARNED_VARIANCE

    @property
    def output_channels_factor(self) -> int:
        return 2 if self.learns_variance else 1

    def loss_weights(self, timesteps):
        gamma = self.config.snr_gamma
        if gamma is None:
            return None
        snr = compute_snr(self.training_scheduler, timesteps)
        clipped = torch.clamp(snr, max=gamma)
        if self.config.prediction_type == "epsilon":
            return clipped / snr
        if self.config.prediction_type == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    def loss(self, phase, models, batch, step, generator):
        x, noise, timesteps, noisy, output = self.denoise(models, batch, generator)
        channels = x.shape[1]
        mse = self.regression_loss(output[:, :channels], x, noise, timesteps)
        if not self.learns_variance:
            return mse, {"loss": mse}
        vlb = self.vlb_term(output, x, noisy, timesteps).mean()
        loss = mse + self.config.vlb_weight * self.config.num_train_timesteps * vlb
        return loss, {"loss": loss, "mse": mse, "vlb_bits_per_dim": vlb}

    def vlb_term(self, output, x, noisy, timesteps) -> torch.Tensor:
        """``L_t`` of the variational bound for each example, in bits per dimension, with the predicted mean's
        gradient stopped: the KL from the true posterior to the model's reverse step for ``t > 0``, the Gaussian
        negative log-likelihood of ``x_0`` for ``t = 0``."""
        table = self._posterior_table(x.device)
        channels = x.shape[1]
        x, noisy = x.float(), noisy.float()
        prediction, fraction = output[:, :channels].detach().float(), (output[:, channels:].float() + 1) / 2

        def at(name):
            return expand_to(table[name][timesteps], x)

        path = AffinePath(alpha=at("alpha_bar").sqrt(), sigma=(1 - at("alpha_bar")).sqrt())
        x0_estimate = path.data_from(prediction, noisy, self.config.prediction_type)
        model_mean = at("coef_x0") * x0_estimate + at("coef_xt") * noisy
        model_log_var = fraction * at("log_beta") + (1 - fraction) * at("posterior_log_var")
        true_mean = at("coef_x0") * x + at("coef_xt") * noisy
        kl = 0.5 * (-1 + model_log_var - at("posterior_log_var") + torch.exp(at("posterior_log_var") - model_log_var)
                    + (true_mean - model_mean).pow(2) * torch.exp(-model_log_var))
        nll = 0.5 * (math.log(2 * math.pi) + model_log_var + (x - model_mean).pow(2) * torch.exp(-model_log_var))
        first = expand_to((timesteps == 0).float(), x).bool()
        per_entry = torch.where(first, nll, kl)
        return per_entry.flatten(1).mean(dim=1) / math.log(2)

    def _posterior_table(self, device) -> dict:
        """Per-timestep coefficients of the posterior ``q(x_{t-1} | x_t, x_0)``
        (:func:`~genzoo.schedulers.scheduling_ddpm.ddpm_posterior`, the math ``DDPMScheduler.step`` samples with, in
        float64 over the whole chain): its mean ``coef_x0 * x_0 + coef_xt * x_t``, its log-variance (at ``t = 0``,
        where it is 0, the value at ``t = 1``, as Improved DDPM does) and ``log beta_t``, the other end of the learned
        range."""
        if getattr(self, "_table_device", None) != device:
            alpha_bar = self.training_scheduler.alphas_cumprod.double()
            alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
            posterior = ddpm_posterior(alpha_bar, alpha_bar_prev)
            if len(alpha_bar) > 1:
                posterior_var = torch.cat([posterior.variance[1:2], posterior.variance[1:]])
            else:  # a one-step chain has no t = 1
                posterior_var = posterior.beta.clone()
            table = {
                "alpha_bar": alpha_bar,
                "coef_x0": posterior.coef_x0,
                "coef_xt": posterior.coef_xt,
                "posterior_log_var": posterior_var.clamp(min=1e-20).log(),
                "log_beta": posterior.beta.clamp(min=1e-20).log(),
            }
            self._table = {name: value.float().to(device) for name, value in table.items()}
            self._table_device = device
        return self._table

    def describe(self):
        facts = super().describe()
        if self.learns_variance:
            facts["variance"] = f"learned_range, hybrid loss with vlb_weight {self.config.vlb_weight}"
        return facts
