"""A GAN loss on real data for the models that sample in one call or a few: the seed's first answer (a learned loss)
sharpening the fifth.

A regression loss (MeanFlow's identity, a distillation's teacher pairs) pulls every sample towards an average: where
the data are ambiguous, or where the one-step map carries the Gaussian's tails out, nothing pushes a sample back onto
the data. A discriminator does: it learns to tell the training data from the model's samples, and the model's loss
adds ``--gan_weight`` times the generator loss on its samples (DMD2, Yin et al. 2024, which trains such a critic
beside its fake denoiser). ``--gan_weight 0`` (the default) trains no discriminator.

:class:`AdversarialConfig` holds the options (the GAN method's discriminator options, a smaller default size, and
``--gan_weight``); :class:`AdversarialLoss` is the mixin a method with a differentiable few-call sampler
(:meth:`AdversarialLoss.generated`) puts before its base class: with the GAN loss on, a ``discriminator`` model and
optimiser, one discriminator update (non-saturating or hinge, R1 optional) before each update of the model
(:meth:`AdversarialLoss.critic_step`), and the generator term in the model's loss
(:meth:`AdversarialLoss.with_gan_term`). Distribution matching (``--method dmd``) uses the same pieces in its fake
phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import RecipeError, option
from .gan import GAN, DiscriminatorConfig, build_discriminator, discriminator_loss, generator_loss, gradient_norm_penalty

DISCRIMINATOR = "discriminator"


@dataclass
class AdversarialConfig(DiscriminatorConfig):
    """The options of a GAN loss added to another method's loss."""

    gan_weight: float = option(0.0, "weight of a GAN loss on real data added to the model's loss: a discriminator "
                               "scores its samples against the training data (DMD2); 0: none", minimum=0.0,
                               group=GAN)
    # a critic beside another model: smaller than the GAN method's own by default
    base_channels: int = option(32, "images: DCGAN width at full resolution", minimum=1, group=GAN)
    max_channels: int = option(128, "images: DCGAN width cap", minimum=1, group=GAN)

    def check(self):
        super().check()
        if self.gan_loss == "wgan_gp":
            raise RecipeError("--gan_loss wgan_gp is --method gan's own: its critic needs a gradient penalty that the "
                              "critic beside another method's loss (--gan_weight) does not take; use non_saturating "
                              "or hinge.")
        if self.gan_weight == 0 and self.r1_gamma > 0:
            raise RecipeError(f"--r1_gamma {self.r1_gamma} needs the GAN loss: set --gan_weight > 0 (0 trains no "
                              "discriminator).")


def critic_loss(config: AdversarialConfig, discriminator, real, fake, labels=None):
    """The discriminator's loss on real data and (detached) generated samples, with R1 on the real ones when
    ``--r1_gamma`` > 0: ``(loss, terms)``."""
    d_real, d_fake = discriminator(real, labels).float(), discriminator(fake.detach(), labels).float()
    loss = discriminator_loss(config.gan_loss, d_real, d_fake)
    terms = {"loss_d": loss.detach(), "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
    if config.r1_gamma > 0:
        r1 = gradient_norm_penalty(discriminator, real, target_norm=None, class_labels=labels)
        loss = loss + 0.5 * config.r1_gamma * r1
        terms["r1"] = r1.detach()
    return loss, terms


def adversarial_term(config: AdversarialConfig, discriminator, fake, labels=None):
    """``gan_weight`` times the generator loss of samples ``fake`` (with gradients): ``(weighted loss, terms)``."""
    loss_g = generator_loss(config.gan_loss, discriminator(fake, labels).float())
    return config.gan_weight * loss_g, {"loss_g": loss_g.detach()}


class AdversarialLoss:
    """Mixin for a ``Method`` whose model samples in a few differentiable calls (put it before the base class): with
    ``--gan_weight`` > 0 a ``discriminator`` model and optimiser group, updated first at every step. Its ``Config``
    includes :class:`AdversarialConfig`; it implements :meth:`generated`, and its ``loss`` returns
    :meth:`critic_step` for the ``discriminator`` phase and passes its own loss through :meth:`with_gan_term`."""

    def generated(self, models, batch, generator) -> torch.Tensor:
        """Samples of the model being trained (as many as the batch holds), through the calls it samples with,
        differentiable in its weights."""
        raise NotImplementedError

    @property
    def adversarial(self) -> bool:
        return self.config.gan_weight > 0

    def check_data(self) -> None:
        if self.adversarial and getattr(self.config, "vae", None) is not None:
            raise ValueError(f"--gan_weight {self.config.gan_weight} with --vae: the GAN loss on latents is not "
                             "supported yet; use --gan_weight 0 with a latent model.")
        super().check_data()

    def build_models(self):
        models = super().build_models()
        if self.adversarial:
            models[DISCRIMINATOR] = build_discriminator(self.config, self.data.kind, self.data.sample_shape)
        return models

    def optimizer_groups(self):
        groups = super().optimizer_groups()
        return {DISCRIMINATOR: [DISCRIMINATOR], **groups} if self.adversarial else groups

    def critic_step(self, models, batch, generator):
        """The loss of the ``discriminator`` phase: real data against the model's samples (drawn without
        gradients)."""
        with torch.no_grad():
            fake = self.generated(models, batch, generator)
        return critic_loss(self.config, models[DISCRIMINATOR], batch["sample"], fake)

    def with_gan_term(self, models, batch, generator, loss, terms):
        """The model's ``(loss, terms)`` with the generator term added when the GAN loss is on."""
        if not self.adversarial:
            return loss, terms
        term, more = adversarial_term(self.config, models[DISCRIMINATOR], self.generated(models, batch, generator))
        return loss + term, {**terms, **more, "loss": (loss + term).detach()}

    def describe(self):
        facts = super().describe()
        if self.adversarial:
            facts.update(gan_weight=self.config.gan_weight, gan_loss=self.config.gan_loss,
                         r1_gamma=self.config.r1_gamma)
        return facts
