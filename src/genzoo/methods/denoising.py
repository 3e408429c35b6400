"""What DDPM and flow matching share: one regression on the scheduler's probability path, with a UNet or an MLP
denoiser, optionally conditioned on class labels or text.

The two methods differ only in the scheduler that defines the path and the pipeline that samples it: the loss is
``|| model(x_t, t) - training_target ||^2`` with ``t``, ``x_t`` and the target all from the scheduler
(``sample_timesteps`` / ``add_noise`` / ``training_target``). :mod:`.ddpm` and :mod:`.flow_matching` hold each.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from .. import registry
from ..conditioning import drop_labels, null_label_id, set_id2label
from ..config import option
from ..models import MLPDenoiser
from ..schedulers.kinds import registered_schedulers
from .base import Method, MethodConfig, randn_like

logger = logging.getLogger("genzoo.methods")

EMPTY_PROMPT = ""  # the "no text" of classifier-free guidance, as in Stable Diffusion
MODEL, TEXT, LATENT = "model", "text conditioning", "latent space"


@dataclass
class DenoisingConfig(MethodConfig):
    """The denoiser's options, shared by DDPM and flow matching."""

    block_out_channels: list[int] = option([32, 64], "images: UNet2DModel widths per resolution level", group=MODEL)
    layers_per_block: int = option(1, "images: ResNet blocks per level", minimum=1, group=MODEL)
    attention: bool = option(False, "images: self-attention at the lowest resolution (slower on CPU)", group=MODEL)
    hidden_dim: int = option(128, "vectors: MLP width", minimum=1, group=MODEL)
    num_layers: int = option(3, "vectors: residual MLP blocks", minimum=1, group=MODEL)
    train_text_encoder: bool = option(False, "train the text encoder with the UNet (default: keep it frozen)",
                                      group=TEXT)
    text_hidden_size: int = option(64, "CLIPTextModel width", minimum=1, group=TEXT)
    text_num_layers: int = option(2, "CLIPTextModel layers", minimum=1, group=TEXT)
    max_prompt_length: int | None = option(None, "tokens per prompt, BOS and EOS included (longer ones are cut; "
                                           "default: the longest training caption's, said in the log)", minimum=3,
                                           group=TEXT)
    vae: str | None = option(None, "images: train in the latent space of this trained genzoo VAE (a folder or Hub "
                             "id of `genzoo train --method vae`), kept frozen; the pipeline decodes with it",
                             metavar="PATH_OR_REPO_ID", group=LATENT)


def scheduler_choices(model_kind: str):
    """Choices of a ``scheduler`` option: the registered schedulers (genzoo's and plugins') that declare (or inherit)
    ``model_kind``, the kind of model output the method's pipeline samples -- evaluated when the parser is built."""
    return lambda: list(registered_schedulers(model_kind))


class DenoisingMethod(Method):
    """Shared by :class:`~genzoo.methods.DDPMMethod` and :class:`~genzoo.methods.FlowMatchingMethod`.

    Conditioning (``--conditioning``): class labels go into the UNet's / MLP's class embedding, which has one extra
    learned *null* label; text goes through a ``CLIPTextModel`` into a ``UNet2DConditionModel``'s cross-attention.
    With probability ``--cond_dropout`` a training example gets the null label or the empty prompt, so one model
    learns both the conditional and the unconditional prediction that classifier-free guidance mixes.

    Subclasses set ``Config``, ``default_scheduler`` (a registered name), ``pipeline_class`` and
    ``scheduler_kwargs()`` (the scheduler options their ``Config`` holds).
    """

    Config = DenoisingConfig
    model_names = ("unet",)
    conditionings = ("none", "class", "text")
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": True}
    smoke_test_options = {"block_out_channels": [8, 16], "hidden_dim": 16, "num_layers": 1}
    scale_up = ("`--block_out_channels 64,128,256 --layers_per_block 2 --attention` on larger images (`--resolution 32` "
                "or more), `--hidden_dim 256 --num_layers 6` for vectors; more steps.")
    default_scheduler: ClassVar[str] = ""
    pipeline_class: ClassVar[type] = None
    tokenizer = None
    text_encoder = None  # the frozen text encoder (a trained one is in the models the trainer owns)
    latent_vae = None  # the frozen AutoencoderKL of --vae, once build_models has loaded it
    latent_encoder = None  # its LatentEncoder, once prepare_training has measured the latents' scale

    # ------------------------------------------------------------------ scheduler
    def scheduler_name(self) -> str:
        return self.config.scheduler or self.default_scheduler

    def scheduler_kwargs(self) -> dict:
        """The scheduler options the method's ``Config`` sets (``None`` values: the scheduler's own default)."""
        return {}

    def make_scheduler(self):
        """A new scheduler of the chosen registered class, configured by the method's options."""
        kwargs = {key: value for key, value in self.scheduler_kwargs().items() if value is not None}
        return registry.get("scheduler", self.scheduler_name())(**kwargs)

    @property
    def training_scheduler(self):
        if not hasattr(self, "_scheduler"):
            self._scheduler = self.make_scheduler()
        return self._scheduler

    # ------------------------------------------------------------------ checks and models
    def check_conditioning(self) -> None:
        if self.conditioning == "text" and self.data.kind != "image":
            raise ValueError(
                f"--conditioning text needs image data (a UNet2DConditionModel); {self.data.name} holds vectors. "
                "Use --conditioning class or none."
            )
        super().check_conditioning()

    def check_data(self) -> None:
        if self.config.vae is not None and self.data.kind != "image":
            raise ValueError(f"--vae {self.config.vae}: latent models are for images, and {self.data.name} holds "
                             "vectors; leave --vae unset.")
        if self.data.kind == "image":
            channels = self.config.block_out_channels
            factor = 2 ** (len(channels) - 1)
            height, width = self.model_sample_shape[1:]
            if height % factor or width % factor:
                where = " latent" if self.config.vae is not None else ""
                raise ValueError(
                    f"A UNet with block_out_channels={channels} halves the resolution {len(channels) - 1} times, "
                    f"so it needs a{where} resolution divisible by {factor}; got {height}x{width}. Change "
                    "--resolution or --block_out_channels."
                )

    @property
    def model_sample_shape(self) -> tuple[int, ...]:
        """The shape of what the denoiser generates: the data's, or with ``--vae`` its latents'."""
        if self.config.vae is None:
            return tuple(self.data.sample_shape)
        from .latents import latent_shape, load_latent_vae

        if self.latent_vae is None:
            self.latent_vae = load_latent_vae(self.config.vae, self.context.device, tuple(self.data.sample_shape))
        return latent_shape(self.latent_vae, self.data.sample_shape)

    @property
    def output_channels_factor(self) -> int:
        """How many outputs the model makes per data channel (2 when it also predicts a variance)."""
        return 1

    def build_models(self):
        config, shape = self.config, self.model_sample_shape
        # K classes + the learned null label of classifier-free guidance
        num_class_embeds = null_label_id(self.id2label) + 1 if self.id2label else None
        if self.conditioning == "text":
            return self._build_text_models()
        if self.data.kind == "image":
            down = ["DownBlock2D"] * len(config.block_out_channels)
            up = ["UpBlock2D"] * len(config.block_out_channels)
            if config.attention:
                down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
            unet = UNet2DModel(**self._unet_shape(), down_block_types=tuple(down), up_block_types=tuple(up),
                               num_class_embeds=num_class_embeds, **self.model_options())
        else:
            out = shape[0] * self.output_channels_factor
            unet = MLPDenoiser(sample_size=shape[0], hidden_dim=config.hidden_dim, num_layers=config.num_layers,
                               num_class_embeds=num_class_embeds, out_channels=None if out == shape[0] else out,
                               **self.model_options())
        if self.id2label:
            set_id2label(unet, self.id2label)
        return {"unet": unet}

    def model_options(self) -> dict:
        """Extra constructor arguments of the denoiser (``UNet2DModel`` or ``MLPDenoiser``), e.g. a flow map's
        ``class_embed_type="timestep"``; none by default."""
        return {}

    def _unet_shape(self) -> dict:
        shape, channels = self.model_sample_shape, list(self.config.block_out_channels)
        return dict(
            sample_size=shape[1] if shape[1] == shape[2] else tuple(shape[1:]),
            in_channels=shape[0],
            out_channels=shape[0] * self.output_channels_factor,
            block_out_channels=tuple(channels),
            layers_per_block=self.config.layers_per_block,
            norm_num_groups=min(8, min(channels)),
        )

    def _build_text_models(self):
        """A word-level tokenizer built from the training captions, a small ``CLIPTextModel`` and a
        ``UNet2DConditionModel`` that cross-attends to its hidden states at every level but the lowest."""
        from ..text import build_caption_tokenizer, build_text_encoder, caption_length

        config = self.config
        length = config.max_prompt_length
        if length is None:  # from the data: the longest caption, so no training caption is cut
            length = caption_length(self.data.captions)
            logger.info("--max_prompt_length not given: %d tokens, the longest of the %d training captions (BOS and "
                        "EOS included)", length, len(self.data.captions))
        self.tokenizer = build_caption_tokenizer(self.data.captions, model_max_length=length)
        text_encoder = build_text_encoder(
            self.tokenizer, hidden_size=config.text_hidden_size, num_hidden_layers=config.text_num_layers,
            num_attention_heads=max(1, config.text_hidden_size // 16), intermediate_size=2 * config.text_hidden_size,
        )
        levels = len(config.block_out_channels)
        unet = UNet2DConditionModel(
            **self._unet_shape(),
            down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
            cross_attention_dim=config.text_hidden_size,
            attention_head_dim=8,
        )
        if config.train_text_encoder:
            return {"unet": unet, "text_encoder": text_encoder}
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        return {"unet": unet}

    def optimizer_groups(self):
        trained = ["unet"] + (["text_encoder"] if self.conditioning == "text" and self.config.train_text_encoder else [])
        return {"model": trained}

    def ema_models(self):
        return self.optimizer_groups()["model"]

    def prepare_training(self) -> None:
        """With ``--vae``: encode the data (once, if it has no random augmentation) and measure the latents' scale
        (:class:`genzoo.methods.latents.LatentEncoder`)."""
        if self.config.vae is None:
            return
        from .latents import LatentEncoder

        cache = getattr(self.data.dataset, "augmentation_free", lambda: False)()
        self.latent_encoder = LatentEncoder(self.latent_vae, self.data.dataset, self.data.sample_shape,
                                            self.context.device)
        self.latent_facts = self.latent_encoder.prepare(cache=cache, seed=self.context.seed)

    # ------------------------------------------------------------------ loss
    def conditions(self, models, batch, generator, device) -> dict:
        """The model's conditioning keyword arguments for a training batch, with ``--cond_dropout`` applied."""
        if self.conditioning == "class":
            labels = batch["label"].to(device)
            return {"class_labels": drop_labels(labels, self.config.cond_dropout, null_label_id(self.id2label),
                                                generator)}
        if self.conditioning == "text":
            from ..text import encode_prompts

            captions = list(batch["caption"])
            drop = torch.rand(len(captions), generator=generator, device=generator.device) < self.config.cond_dropout
            captions = [EMPTY_PROMPT if d else c for c, d in zip(captions, drop.tolist())]
            trained = models.get("text_encoder")
            with contextlib.nullcontext() if trained is not None else torch.no_grad():
                encoder = trained if trained is not None else self.text_encoder.to(device)
                return {"encoder_hidden_states": encode_prompts(self.tokenizer, encoder, captions)}
        return {}

    def denoise(self, models, batch, generator):
        """One draw of the training regression: ``(x, noise, timesteps, x_t, output)``, where ``output`` is the
        model's full output at ``x_t`` (for a learned variance, twice the channels of ``x``)."""
        x, noise, cond = self.training_pair(models, batch, generator)
        timesteps = self.training_timesteps(x.shape[0], generator, x.device)
        noisy = self.training_scheduler.add_noise(x, noise, timesteps)
        return x, noise, timesteps, noisy, models["unet"](noisy, timesteps, **cond).sample

    def training_pair(self, models, batch, generator):
        """``(x, noise, cond)``: the data the regression is trained on, the noise paired with each example
        (:meth:`couple`) and the model's conditioning keyword arguments (:meth:`conditions`)."""
        x = batch["sample"]
        cond = self.conditions(models, batch, generator, x.device)
        if self.latent_encoder is not None:
            x = self.latent_encoder.latents(batch, generator)
        return x, self.couple(randn_like(x, generator), x, batch), cond

    def training_timesteps(self, batch_size: int, generator, device) -> torch.Tensor:
        """The training times of one batch, in model units: the scheduler's ``sample_timesteps``."""
        return self.training_scheduler.sample_timesteps(batch_size, generator=generator, device=device)

    def couple(self, noise, x, batch):
        """Which noise each example is paired with: ``noise`` as drawn (independent coupling). Flow matching's
        ``--coupling ot`` re-orders it; whatever a method does here must draw no randomness."""
        return noise

    def regression_loss(self, prediction, x, noise, timesteps) -> torch.Tensor:
        """Mean over the batch of ``|| prediction - training_target ||^2`` (mean over each example's entries),
        weighted by :meth:`loss_weights`."""
        target = self.training_scheduler.training_target(x, noise, timesteps)
        per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        weights = self.loss_weights(timesteps)
        return per_sample.mean() if weights is None else (weights * per_sample).mean()

    def loss(self, phase, models, batch, step, generator):
        x, noise, timesteps, _, output = self.denoise(models, batch, generator)
        loss = self.regression_loss(output, x, noise, timesteps)
        return loss, {"loss": loss}

    def loss_weights(self, timesteps):
        """Per-example weights of the regression (``None``: all 1)."""
        return None

    # ------------------------------------------------------------------ pipeline and facts
    def pipeline_kwargs(self, models) -> dict:
        """The pipeline's frozen ``vae`` (with ``--vae``) and text components (with ``--conditioning text``)."""
        kwargs = {"vae": self.latent_vae} if self.config.vae is not None else {}
        if self.conditioning == "text":
            kwargs.update(tokenizer=self.tokenizer, text_encoder=models.get("text_encoder", self.text_encoder))
        return kwargs

    def make_pipeline(self, models):
        return self.pipeline_class(unet=models["unet"], scheduler=self.make_scheduler(), **self.pipeline_kwargs(models))

    def describe(self):
        facts = {"scheduler": type(self.training_scheduler).__name__, "conditioning": self.conditioning}
        if self.conditioning != "none":
            facts["cond_dropout"] = self.config.cond_dropout
        if self.conditioning == "text":
            facts["text_encoder"] = "trained" if self.config.train_text_encoder else "frozen (random init)"
        if self.config.vae is not None:
            facts.update(vae=self.config.vae, **getattr(self, "latent_facts", {}))
        return facts
