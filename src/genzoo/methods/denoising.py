"""DDPM and flow matching: one regression on the scheduler's probability path, with a UNet or an MLP denoiser.

The two methods differ only in the scheduler that defines the path and the pipeline that samples it, so they
share this file: the loss is ``|| model(x_t, t) - training_target ||^2`` with ``t``, ``x_t`` and the target all
from the scheduler (``sample_timesteps`` / ``add_noise`` / ``training_target``).
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.training_utils import compute_snr

from ..conditioning import drop_labels, null_label_id, set_id2label
from ..models import MLPDenoiser
from ..pipelines import DDPMPipeline, FlowMatchingPipeline
from ..schedulers import DDPMScheduler, FlowMatchEulerScheduler, FlowMatchHeunScheduler
from .base import Method, bool_arg, randn_like

EMPTY_PROMPT = ""  # the "no text" of classifier-free guidance, as in Stable Diffusion


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
    group.add_argument("--train_text_encoder", type=bool_arg, nargs="?", const=True, default=False,
                       help="--conditioning text: train the text encoder with the UNet (default: keep it frozen)")
    group.add_argument("--text_hidden_size", type=int, default=64, help="--conditioning text: CLIPTextModel width")
    group.add_argument("--text_num_layers", type=int, default=2, help="--conditioning text: CLIPTextModel layers")
    group.add_argument("--max_prompt_length", type=int, default=16,
                       help="--conditioning text: tokens per prompt, BOS and EOS included (longer ones are cut)")


class DenoisingMethod(Method):
    """Shared by :class:`DDPMMethod` and :class:`FlowMatchingMethod`.

    Conditioning (``--conditioning``): class labels go into the UNet's / MLP's class embedding, which has one extra
    learned *null* label; text goes through a ``CLIPTextModel`` into a ``UNet2DConditionModel``'s cross-attention.
    With probability ``--cond_dropout`` a training example gets the null label or the empty prompt, so one model
    learns both the conditional and the unconditional prediction that classifier-free guidance mixes.
    """

    model_names = ("unet",)
    conditionings = ("none", "class", "text")
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": True}
    tokenizer = None
    text_encoder = None  # the frozen text encoder (a trained one is in the models the trainer owns)

    def make_scheduler(self):
        raise NotImplementedError

    def check_conditioning(self) -> None:
        if self.conditioning == "text" and self.data.kind != "image":
            raise ValueError(
                f"--conditioning text needs image data (a UNet2DConditionModel); {self.data.name} holds vectors. "
                "Use --conditioning class or none."
            )
        super().check_conditioning()

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
        # K classes + the learned null label of classifier-free guidance
        num_class_embeds = null_label_id(self.id2label) + 1 if self.id2label else None
        if self.conditioning == "text":
            return self._build_text_models()
        if self.data.kind == "image":
            channels = list(args.block_out_channels)
            down = ["DownBlock2D"] * len(channels)
            up = ["UpBlock2D"] * len(channels)
            if args.attention:
                down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
            unet = UNet2DModel(
                **self._unet_shape(),
                down_block_types=tuple(down),
                up_block_types=tuple(up),
                num_class_embeds=num_class_embeds,
            )
        else:
            unet = MLPDenoiser(sample_size=shape[0], hidden_dim=args.hidden_dim, num_layers=args.num_layers,
                               num_class_embeds=num_class_embeds)
        if self.id2label:
            set_id2label(unet, self.id2label)
        return {"unet": unet}

    def _unet_shape(self) -> dict:
        args, shape = self.args, self.data.sample_shape
        channels = list(args.block_out_channels)
        return dict(
            sample_size=shape[1] if shape[1] == shape[2] else tuple(shape[1:]),
            in_channels=shape[0],
            out_channels=shape[0],
            block_out_channels=tuple(channels),
            layers_per_block=args.layers_per_block,
            norm_num_groups=min(8, min(channels)),
        )

    def _build_text_models(self):
        """A word-level tokenizer built from the training captions, a small ``CLIPTextModel`` and a
        ``UNet2DConditionModel`` that cross-attends to its hidden states at every level but the lowest."""
        from ..text import build_caption_tokenizer, build_text_encoder

        args = self.args
        self.tokenizer = build_caption_tokenizer(self.data.captions, model_max_length=args.max_prompt_length)
        text_encoder = build_text_encoder(
            self.tokenizer, hidden_size=args.text_hidden_size, num_hidden_layers=args.text_num_layers,
            num_attention_heads=max(1, args.text_hidden_size // 16), intermediate_size=2 * args.text_hidden_size,
        )
        levels = len(args.block_out_channels)
        unet = UNet2DConditionModel(
            **self._unet_shape(),
            down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
            cross_attention_dim=args.text_hidden_size,
            attention_head_dim=8,
        )
        if args.train_text_encoder:
            return {"unet": unet, "text_encoder": text_encoder}
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        return {"unet": unet}

    def optimizer_groups(self):
        trained = ["unet"] + (["text_encoder"] if self.conditioning == "text" and self.args.train_text_encoder else [])
        return {"model": trained}

    def conditions(self, models, batch, generator, device) -> dict:
        """The model's conditioning keyword arguments for a training batch, with ``--cond_dropout`` applied."""
        if self.conditioning == "class":
            labels = batch["label"].to(device)
            return {"class_labels": drop_labels(labels, self.args.cond_dropout, null_label_id(self.id2label), generator)}
        if self.conditioning == "text":
            from ..text import encode_prompts

            captions = list(batch["caption"])
            drop = torch.rand(len(captions), generator=generator, device=generator.device) < self.args.cond_dropout
            captions = [EMPTY_PROMPT if d else c for c, d in zip(captions, drop.tolist())]
            trained = models.get("text_encoder")
            with contextlib.nullcontext() if trained is not None else torch.no_grad():
                encoder = trained if trained is not None else self.text_encoder.to(device)
                return {"encoder_hidden_states": encode_prompts(self.tokenizer, encoder, captions)}
        return {}

    def loss(self, phase, models, batch, step, generator):
        scheduler = self.training_scheduler
        x = batch["sample"]
        cond = self.conditions(models, batch, generator, x.device)
        noise = randn_like(x, generator)
        timesteps = scheduler.sample_timesteps(x.shape[0], generator=generator, device=x.device)
        noisy = scheduler.add_noise(x, noise, timesteps)
        target = scheduler.training_target(x, noise, timesteps)
        prediction = models["unet"](noisy, timesteps, **cond).sample
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
        return self.optimizer_groups()["model"]

    def pipeline_kwargs(self, models) -> dict:
        """The pipeline's text components (empty unless ``--conditioning text``)."""
        if self.conditioning != "text":
            return {}
        return {"tokenizer": self.tokenizer, "text_encoder": models.get("text_encoder", self.text_encoder)}

    def describe(self):
        facts = {"scheduler": type(self.training_scheduler).__name__, "conditioning": self.conditioning}
        if self.conditioning != "none":
            facts["cond_dropout"] = self.args.cond_dropout
        if self.conditioning == "text":
            facts["text_encoder"] = "trained" if self.args.train_text_encoder else "frozen (random init)"
        return facts


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
        return DDPMPipeline(unet=models["unet"], scheduler=self.make_scheduler(), **self.pipeline_kwargs(models))


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
        return FlowMatchingPipeline(unet=models["unet"], scheduler=self.make_scheduler(), **self.pipeline_kwargs(models))
