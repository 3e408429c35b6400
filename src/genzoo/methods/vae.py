"""VAE (Kingma & Welling 2013): maximise the ELBO, i.e. minimise reconstruction + beta * KL(q(z|x) || N(0, I)).

The encoder's Gaussian is sampled with the reparameterisation trick, z = mu + sigma * eps, with eps drawn from the
trainer's generator (``latent_dist.sample(generator)``), so gradients reach mu and sigma and resuming is exact.

With ``--conditioning class`` it is a conditional VAE (Sohn et al. 2015): the label goes into the encoder and the
decoder (:class:`~genzoo.models.ConditionalAutoencoderKL` for images, :class:`~genzoo.models.MLPVAE` with
``num_class_embeds`` for vectors), and sampling a class decodes the prior with its label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..conditioning import set_id2label
from ..config import option
from ..models import MLPVAE, ConditionalAutoencoderKL
from ..pipelines import VAEPipeline
from .base import Method, MethodConfig

RECON_LOSSES = ("mse", "bce")


@dataclass
class VAEConfig(MethodConfig):
    group_title: ClassVar[str] = "vae"

    recon_loss: str = option("mse", "mse: sum of squared errors (Gaussian decoder); bce: Bernoulli on pixels mapped "
                             "to [0, 1] (plus the distance of outputs past [-1, 1], so none is stuck there)",
                             choices=RECON_LOSSES)
    beta: float = option(1.0, "weight of the KL term (beta-VAE)", minimum=0.0)
    kl_warmup_steps: int = option(0, "ramp beta up linearly over this many steps", minimum=0)
    latent_channels: int = option(4, "images: AutoencoderKL latent channels", minimum=1)
    vae_block_out_channels: list[int] = option([32, 64], "images: AutoencoderKL widths per level")
    vae_layers_per_block: int = option(1, "images: ResNet blocks per level", minimum=1)
    latent_dim: int = option(2, "vectors: size of z", minimum=1)
    vae_hidden_dim: int = option(128, "vectors: MLP width", minimum=1)
    vae_num_layers: int = option(2, "vectors: MLP hidden layers", minimum=1)


class VAEMethod(Method):
    """VAE: minimise reconstruction + beta * KL(q(z|x) || N(0, I)) (``--method vae``).

    An ``AutoencoderKL`` for images (a ``ConditionalAutoencoderKL`` with ``--conditioning class``), an ``MLPVAE``
    for vectors; ``--beta`` weighs the KL term, warmed up over ``--kl_warmup_steps``. Saves a ``VAEPipeline``.

    Args:
        config (VAEConfig): the method's options (``--method vae``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "vae"
    Config = VAEConfig
    model_names = ("vae",)
    conditionings = ("none", "class")
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": False}
    smoke_test_options = {"vae_block_out_channels": [8, 16], "latent_channels": 2, "vae_hidden_dim": 16}
    scale_up = ("`--vae_block_out_channels 64,128,256 --vae_layers_per_block 2 --latent_channels 8` on larger images, "
                "`--vae_hidden_dim 256 --vae_num_layers 3` for vectors.")

    def check_data(self):
        if self.config.recon_loss == "bce" and self.data.kind != "image":
            raise ValueError("--recon_loss bce needs image data in [-1, 1]; use mse for vector data.")
        if self.data.kind == "image":
            factor = 2 ** (len(self.config.vae_block_out_channels) - 1)
            if self.data.sample_shape[1] % factor or self.data.sample_shape[2] % factor:
                raise ValueError(
                    f"An AutoencoderKL with {len(self.config.vae_block_out_channels)} levels needs a resolution divisible "
                    f"by {factor}; got {self.data.sample_shape[1]}x{self.data.sample_shape[2]}."
                )

    def build_models(self):
        a, shape = self.config, self.data.sample_shape
        classes = dict(num_class_embeds=len(self.id2label)) if self.id2label else {}
        if self.data.kind == "image":
            levels = len(a.vae_block_out_channels)
            vae_class = ConditionalAutoencoderKL if self.id2label else AutoencoderKL
            vae = vae_class(
                in_channels=shape[0],
                out_channels=shape[0],
                sample_size=shape[1],
                latent_channels=a.latent_channels,
                block_out_channels=tuple(a.vae_block_out_channels),
                layers_per_block=a.vae_layers_per_block,
                down_block_types=("DownEncoderBlock2D",) * levels,
                up_block_types=("UpDecoderBlock2D",) * levels,
                norm_num_groups=min(8, min(a.vae_block_out_channels)),
                **classes,
            )
        else:
            vae = MLPVAE(sample_size=shape[0], latent_dim=a.latent_dim, hidden_dim=a.vae_hidden_dim,
                         num_layers=a.vae_num_layers, **classes)
        if self.id2label:
            set_id2label(vae, self.id2label)
        return {"vae": vae}

    def ema_models(self):
        return ["vae"]

    def beta_at(self, step: int) -> float:
        if self.config.kl_warmup_steps > 0:
            return self.config.beta * min(1.0, (step + 1) / self.config.kl_warmup_steps)
        return self.config.beta

    def loss(self, phase, models, batch, step, generator):
        vae = models["vae"]
        x = batch["sample"]
        # a conditional VAE sees the label in the encoder and the decoder; AutoencoderKL takes no class_labels
        labels = {"class_labels": batch["label"].to(x.device)} if self.conditioning == "class" else {}
        posterior = vae.encode(x, **labels).latent_dist
        z = posterior.sample(generator=generator)  # z = mu + sigma * eps: the reparameterisation trick
        x_hat = vae.decode(z, **labels).sample.float()
        if self.config.recon_loss == "mse":
            recon = (x_hat - x.float()).pow(2).flatten(1).sum(dim=1)
        else:
            # Bernoulli means: the decoder's pixels mapped to [0, 1] and clamped, as the pipeline shows them. The
            # clamp gives a pixel pushed past the range no gradient however wrong it is, so the distance past the
            # range is added (zero inside it): such a pixel is pulled back at a steady rate.
            probs = ((x_hat + 1) / 2).clamp(1e-6, 1 - 1e-6)
            recon = F.binary_cross_entropy(probs, ((x.float() + 1) / 2), reduction="none").flatten(1).sum(dim=1)
            recon = recon + (x_hat - x_hat.clamp(-1, 1)).abs().flatten(1).sum(dim=1)
        kl = posterior.kl().float()
        beta = self.beta_at(step)
        loss = (recon + beta * kl).mean()
        return loss, {"loss": loss, "recon": recon.mean(), "kl": kl.mean(), "beta": torch.tensor(beta)}

    def make_pipeline(self, models):
        return VAEPipeline(vae=models["vae"])

    def describe(self):
        return {"conditioning": self.conditioning}
