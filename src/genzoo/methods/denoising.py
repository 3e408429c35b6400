"""DDPM and flow matching: one regression on the scheduler's probability path, with a UNet or an MLP denoiser.

The two methods differ only in the scheduler that defines the path and the pipeline that samples it, so they
share this file: the loss is ``|| model(x_t, t) - training_target ||^2`` with ``t``, ``x_t`` and the target all
from the scheduler (``sample_timesteps`` / ``add_noise`` / ``training_target``).
"""

from __future__ import annotations

import argparse

import torch
from diffusers import UNet2DModel
from diffusers.training_utils import compute_snr

from ..models import MLPDenoiser
from ..pipelines import DDPMPipeline, FlowMatchingPipeline
from ..schedulers import DDPMScheduler, FlowMatchEulerScheduler, FlowMatchHeunScheduler
from .base import Method, randn_like


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").strip("[]()").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,64, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers such as 32,64, got {text!r}")
    return values


def add_denoiser_arguments(group) -> None:
    group.add_argument("--block_out_channels", type=int_list, default=[32, 64],
                       help="images: UNet2DModel widths per resolution level, e.g. 32,64 (default)")
    group.add_argument("--layers_per_block", type=int, default=1, help="images: ResNet blocks per level (default 1)")
    group.add_argument("--attention", action="store_true",
                       help="images: self-attention at the lowest resolution (slower on CPU)")
    group.add_argument("--hidden_dim", type=int, default=128, help="vectors: MLP width (default 128)")
    group.add_argument("--num_layers", type=int, default=3, help="vectors: residual MLP blocks (default 3)")


class DenoisingMethod(Method):
    """Shared by :class:`DDPMMethod` and :class:`FlowMatchingMethod`."""

    model_names = ("unet",)
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": True}

    def make_scheduler(self):
        raise NotImplementedError

    def check_data(self) -> None:
        if self.data.kind == "image":
            levels = len(self.args.block_out_channels)
            factor = 2 ** (levels - 1)
            height, width = self.data.sample_shape[1:]
            if height % factor or width % factor:
                raise ValueError(
                    f"A UNet with block_out_channels={self.args.block_out_channels} halves the resolution "
                    f"{levels - 1} times, so it needs a resolution divisible by {factor}; got {height}x{width}. "
                    "Change --resolution or --block_out_channels."
                )

    def build_models(self):
        args, shape = self.args, self.data.sample_shape
        if self.data.kind == "image":
            channels = list(args.block_out_channels)
            down = ["DownBlock2D"] * len(channels)
            up = ["UpBlock2D"] * len(channels)
            if args.attention:
                down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
            unet = UNet2DModel(
                sample_size=shape[1] if shape[1] == shape[2] else tuple(shape[1:]),
                in_channels=shape[0],
                out_channels=shape[0],
                block_out_channels=tuple(channels),
                layers_per_block=args.layers_per_block,
                down_block_types=tuple(down),
                up_block_types=tuple(up),
                norm_num_groups=min(8, min(channels)),
                num_class_embeds=None,
            )
        else:
            unet = MLPDenoiser(sample_size=shape[0], hidden_dim=args.hidden_dim, num_layers=args.num_layers)
        return {"unet": unet}

    def loss(self, phase, models, batch, step, generator):
        scheduler = self.training_scheduler
        x = batch["sample"]
        noise = randn_like(x, generator)
        timesteps = scheduler.sample_timesteps(x.shape[0], generator=generator, device=x.device)
        noisy = scheduler.add_noise(x, noise, timesteps)
        target = scheduler.training_target(x, noise, timesteps)
        prediction = models["unet"](noisy, timesteps).sample
        per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        weights = self.loss_weights(timesteps)
        loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
        return loss, {"loss": loss}

    def loss_weights(self, timesteps):
        return None

    @property
    def training_scheduler(self):
        if not hasattr(self, "_scheduler"):
            self._scheduler = self.make_scheduler()
        return self._scheduler

    def ema_models(self):
        return ["unet"]

    def describe(self):
        return {"scheduler": type(self.training_scheduler).__name__}


class DDPMMethod(DenoisingMethod):
    """DDPM (Ho et al. 2020): regress the noise (or x_0, or v) at a uniformly drawn timestep."""

    name = "ddpm"

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("ddpm")
        add_denoiser_arguments(group)
        group.add_argument("--num_train_timesteps", type=int, default=1000)
        group.add_argument("--beta_schedule", default="linear",
                           help="linear (default), scaled_linear, squaredcos_cap_v2 or sigmoid")
        group.add_argument("--prediction_type", default="epsilon", help="epsilon (default), v_prediction or sample")
        group.add_argument("--snr_gamma", type=float, default=None,
                           help="min-SNR loss weighting with this gamma (Hang et al. 2023; 5.0 is typical)")

    def make_scheduler(self):
        return DDPMScheduler(
            num_train_timesteps=self.args.num_train_timesteps,
            beta_schedule=self.args.beta_schedule,
            prediction_type=self.args.prediction_type,
            clip_sample=self.data.kind == "image",  # x_0 estimates of images live in [-1, 1]; points do not
        )

    def loss_weights(self, timesteps):
        gamma = self.args.snr_gamma
        if gamma is None:
            return None
        snr = compute_snr(self.training_scheduler, timesteps)
        clipped = torch.clamp(snr, max=gamma)
        if self.args.prediction_type == "epsilon":
            return clipped / snr
        if self.args.prediction_type == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    def make_pipeline(self, models):
        return DDPMPipeline(unet=models["unet"], scheduler=self.make_scheduler())


class FlowMatchingMethod(DenoisingMethod):
    """Flow matching (Lipman et al. 2022): regress the straight-line velocity x_1 - x_0 at t from ``time_sampling``."""

    name = "flow-matching"

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("flow-matching")
        add_denoiser_arguments(group)
        group.add_argument("--time_sampling", default="uniform", help="uniform (default) or logit_normal")
        group.add_argument("--logit_mean", type=float, default=0.0)
        group.add_argument("--logit_std", type=float, default=1.0)
        group.add_argument("--shift", type=float, default=1.0, help="SD3 time shift for training and sampling")
        group.add_argument("--solver", choices=["euler", "heun"], default="euler",
                           help="the ODE solver of the saved pipeline (default euler)")

    def make_scheduler(self):
        cls = FlowMatchHeunScheduler if self.args.solver == "heun" else FlowMatchEulerScheduler
        return cls(
            time_sampling=self.args.time_sampling,
            logit_mean=self.args.logit_mean,
            logit_std=self.args.logit_std,
            shift=self.args.shift,
        )

    def make_pipeline(self, models):
        return FlowMatchingPipeline(unet=models["unet"], scheduler=self.make_scheduler())
