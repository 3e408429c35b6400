"""GAN (Goodfellow et al. 2014): a generator and a discriminator trained against each other.

Two optimiser groups, ``discriminator`` and ``generator``; ``--d_steps`` discriminator updates per generator update.
Losses on the discriminator's raw logits: ``non_saturating`` (the standard practical form of the minimax game),
``hinge`` (Lim & Ye 2017, SAGAN/BigGAN) and ``wgan_gp`` (Gulrajani et al. 2017), with an optional R1 penalty on
real data (Mescheder et al. 2018).

With ``--conditioning class`` the generator is conditional (Mirza & Osindero 2014) and the discriminator a projection
discriminator (Miyato & Koyama 2018). Fakes are drawn for the labels of the real batch, so the labels the generator
learns from follow the data's, and the discriminator scores (sample, label) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..conditioning import set_id2label
from ..config import option
from ..models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ..pipelines import GANPipeline
from .base import Method, MethodConfig, randn_like

GAN_LOSSES = ("non_saturating", "hinge", "wgan_gp")
GAN = "gan"


@dataclass
class DiscriminatorConfig(MethodConfig):
    """A discriminator's options, shared by every method that trains one (the GAN, distribution matching's GAN
    loss): its loss, R1 penalty and size."""

    group_title: ClassVar[str] = GAN

    # in the "gan" section of --help whichever method's options they are
    gan_loss: str = option("non_saturating", "the adversarial loss", choices=GAN_LOSSES, group=GAN)
    r1_gamma: float = option(0.0, "weight gamma of the R1 penalty gamma/2*|grad D(x)|^2 on real data", minimum=0.0,
                             group=GAN)
    base_channels: int = option(64, "images: DCGAN width at full resolution", minimum=1, group=GAN)
    max_channels: int = option(256, "images: DCGAN width cap", minimum=1, group=GAN)
    spectral_norm: bool = option(False, "spectral normalisation in the discriminator", group=GAN)
    gan_hidden_dim: int = option(128, "vectors: MLP width", minimum=1, group=GAN)
    gan_num_layers: int = option(3, "vectors: MLP hidden layers", minimum=1, group=GAN)


@dataclass
class GANConfig(DiscriminatorConfig):
    d_steps: int = option(1, "discriminator updates per generator update", minimum=1)
    gp_weight: float = option(10.0, "wgan_gp: weight of the gradient penalty", minimum=0.0)
    latent_dim: int = option(64, "size of z", minimum=1)


def build_discriminator(config: DiscriminatorConfig, kind: str, shape, num_class_embeds: int | None = None):
    """The discriminator of ``config`` for data of ``kind`` ("image": a DCGAN one, "vector": an MLP) and per-sample
    ``shape``; a projection discriminator over ``num_class_embeds`` classes when given."""
    classes = dict(num_class_embeds=num_class_embeds) if num_class_embeds else {}
    if kind == "image":
        # WGAN-GP penalises each example's gradient, so its critic must score examples independently of the
        # batch: no batch normalisation (Gulrajani et al. 2017, sec. 4). Otherwise the DCGAN default.
        norm = "none" if config.gan_loss == "wgan_gp" else None
        return DCGANDiscriminator(sample_size=shape[1], in_channels=shape[0], spectral_norm=config.spectral_norm,
                                  norm=norm, base_channels=config.base_channels, max_channels=config.max_channels,
                                  **classes)
    return MLPDiscriminator(sample_size=shape[0], hidden_dim=config.gan_hidden_dim, num_layers=config.gan_num_layers,
                            spectral_norm=config.spectral_norm, **classes)


def discriminator_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on its raw logits for real and generated samples: ``non_saturating`` (the binary
    cross-entropy of the minimax game) or ``hinge``; WGAN's critic loss is ``d_fake - d_real`` (with its penalty)."""
    if kind == "non_saturating":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    if kind == "wgan_gp":
        return d_fake.mean() - d_real.mean()
    raise ValueError(f"gan_loss {kind!r}: allowed {', '.join(GAN_LOSSES)}.")


def generator_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's logits for its samples: ``softplus(-D)`` (non-saturating), else
    ``-D`` (hinge and WGAN)."""
    return F.softplus(-d_fake).mean() if kind == "non_saturating" else -d_fake.mean()


def gradient_norm_penalty(discriminator, inputs: torch.Tensor, target_norm: float | None, class_labels=None):
    """Mean over the batch of ``(||grad_x D(x)|| - target)^2``, or of ``||grad_x D(x)||^2`` when ``target_norm`` is None
    (``D(x, y)`` for a class-conditional discriminator, ``class_labels`` the ``y``)."""
    inputs = inputs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(inputs, class_labels).sum(), inputs, create_graph=True)
    squared = grad.float().pow(2).flatten(1).sum(dim=1)
    if target_norm is None:
        return squared.mean()
    return (squared.add(1e-12).sqrt() - target_norm).pow(2).mean()


class GANMethod(Method):
    """GAN: a generator and a discriminator trained against each other (``--method gan``).

    Two optimiser groups, ``discriminator`` and ``generator``, with ``--d_steps`` discriminator updates per generator
    update; the loss is ``--gan_loss`` (``non_saturating``, ``hinge`` or ``wgan_gp``), with an optional R1 penalty.
    A DCGAN for images, an MLP GAN for vectors; conditional on class labels with ``--conditioning class`` (a
    projection discriminator). Saves a ``GANPipeline``.

    Args:
        config (GANConfig): the method's options (``--method gan``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "gan"
    Config = GANConfig
    model_names = ("generator", "discriminator")
    conditionings = ("none", "class")
    trainer_defaults = {"learning_rate": 2e-4, "adam_beta1": 0.5, "use_ema": True, "lr_scheduler": "constant",
                        "lr_warmup_steps": 0}
    smoke_test_options = {"base_channels": 8, "max_channels": 16, "latent_dim": 8, "gan_hidden_dim": 16}
    scale_up = ("`--base_channels 128 --max_channels 512 --spectral_norm --gan_loss hinge` on larger images, "
                "`--gan_hidden_dim 256 --gan_num_layers 4` for vectors.")

    def check_data(self):
        if self.data.kind == "image":
            size = self.data.sample_shape[1]
            if self.data.sample_shape[1] != self.data.sample_shape[2] or size < 8 or size & (size - 1):
                raise ValueError(
                    f"The DCGAN models need square images whose side is a power of two >= 8; got "
                    f"{self.data.sample_shape[1]}x{self.data.sample_shape[2]}. Use --resolution 8, 16, 32, ..."
                )

    def build_models(self):
        a, shape = self.config, self.data.sample_shape
        classes = dict(num_class_embeds=len(self.id2label)) if self.id2label else {}
        if self.data.kind == "image":
            generator = DCGANGenerator(sample_size=shape[1], out_channels=shape[0], latent_dim=a.latent_dim,
                                       base_channels=a.base_channels, max_channels=a.max_channels, **classes)
        else:
            generator = MLPGenerator(sample_size=shape[0], latent_dim=a.latent_dim, hidden_dim=a.gan_hidden_dim,
                                     num_layers=a.gan_num_layers, **classes)
        discriminator = build_discriminator(a, self.data.kind, shape, classes.get("num_class_embeds"))
        models = {"generator": generator, "discriminator": discriminator}
        if self.id2label:
            for model in models.values():
                set_id2label(model, self.id2label)
        return models

    def optimizer_groups(self):
        return {"discriminator": ["discriminator"], "generator": ["generator"]}

    def phases(self, step):
        if (step + 1) % self.config.d_steps == 0:
            return ["discriminator", "generator"]
        return ["discriminator"]

    def ema_models(self):
        return ["generator"]

    def _fake(self, generator_model, batch_size, like, generator, class_labels=None):
        z = randn_like(like.new_empty((batch_size, *self.latent_shape)), generator)
        return generator_model(z, class_labels).sample

    @property
    def latent_shape(self):
        return (self.config.latent_dim,)

    def loss(self, phase, models, batch, step, generator):
        real = batch["sample"]
        labels = batch["label"].to(real.device) if self.conditioning == "class" else None  # fakes get the same
        G, D = models["generator"], models["discriminator"]
        kind = self.config.gan_loss
        if phase == "discriminator":
            with torch.no_grad():
                fake = self._fake(G, real.shape[0], real, generator, labels)
            d_real, d_fake = D(real, labels).float(), D(fake, labels).float()
            loss = discriminator_loss(kind, d_real, d_fake)
            if kind == "wgan_gp":  # plus the penalty on random interpolates
                alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator).to(real)
                mixed = alpha * real.detach() + (1 - alpha) * fake.detach()
                loss = loss + self.config.gp_weight * gradient_norm_penalty(D, mixed, target_norm=1.0, class_labels=labels)
            terms = {"loss_d": loss, "d_real": d_real.mean(), "d_fake": d_fake.mean()}
            if self.config.r1_gamma > 0:
                r1 = gradient_norm_penalty(D, real, target_norm=None, class_labels=labels)
                loss = loss + 0.5 * self.config.r1_gamma * r1
                terms["r1"] = r1
            return loss, terms
        fake = self._fake(G, real.shape[0], real, generator, labels)
        d_fake = D(fake, labels).float()
        loss = generator_loss(kind, d_fake)
        return loss, {"loss_g": loss}

    def make_pipeline(self, models):
        return GANPipeline(generator=models["generator"])

    def describe(self):
        return {"conditioning": self.conditioning}
