"""Models for genzoo, all ``diffusers.ModelMixin`` + ``ConfigMixin`` (``save_pretrained`` / ``from_pretrained``).

* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` -- convolutional GAN for images.
* :class:`MLPGenerator` / :class:`MLPDiscriminator` -- GAN for vector data.

The GAN and VAE models are class-conditional with ``num_class_embeds`` (see :mod:`genzoo.conditioning`).
* :class:`MLPDenoiser` -- time-conditioned MLP with ``UNet2DModel``'s call signature (DDPM, flow matching).
* :class:`MLPVAE` -- VAE for vector data with ``AutoencoderKL``'s interface.
* :class:`ConditionalAutoencoderKL` -- ``AutoencoderKL`` conditioned on class labels (a conditional VAE for images).
* :func:`vae_latent_shape` -- per-sample latent shape of an ``AutoencoderKL`` or an ``MLPVAE``.
* :func:`denoiser_sample_shape` -- per-sample data shape of a ``UNet2DModel`` or an ``MLPDenoiser``.
"""

from __future__ import annotations

from ._common import GeneratorOutput
from .conditional_vae import ConditionalAutoencoderKL
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp_denoiser import MLPDenoiser
from .mlp_gan import MLPDiscriminator, MLPGenerator
from .mlp_vae import MLPVAE, DiagonalGaussianDistributionND

__all__ = [
    "ConditionalAutoencoderKL",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiagonalGaussianDistributionND",
    "GeneratorOutput",
    "MLPDenoiser",
    "MLPDiscriminator",
    "MLPGenerator",
    "MLPVAE",
    "denoiser_sample_shape",
    "takes_time_interval",
    "vae_latent_shape",
]


def takes_time_interval(model) -> bool:
    """Whether a denoiser takes a second time through ``class_labels`` (``class_embed_type="timestep"``, as
    ``UNet2DModel`` and :class:`MLPDenoiser` both spell it): a flow map's interval ``r - t``."""
    config = getattr(model, "config", None)
    return config is not None and config.get("class_embed_type") == "timestep"


def vae_latent_shape(vae) -> tuple[int, ...]:
    """Per-sample latent shape of a VAE (what ``vae.encode(x).latent_dist.sample()`` has after the batch dim).

    * Models with a ``latent_shape`` property (:class:`MLPVAE`): that, e.g. ``(latent_dim,)``.
    * ``AutoencoderKL``-style configs (``latent_channels`` + ``block_out_channels``, as in ``AutoencoderKL`` and
      :class:`ConditionalAutoencoderKL`): ``(latent_channels, H // f, W // f)`` with
      ``f = 2 ** (len(block_out_channels) - 1)`` (Diffusers' ``vae_scale_factor``) and ``sample_size`` an int or an
      ``(H, W)`` pair.

    Raises:
        TypeError: for any other object.
    """
    shape = getattr(type(vae), "latent_shape", None)
    if shape is not None:
        return tuple(vae.latent_shape)
    config = getattr(vae, "config", None)
    if config is not None and "latent_channels" in config and "block_out_channels" in config:
        factor = 2 ** (len(config["block_out_channels"]) - 1)
        size = config["sample_size"]
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (config["latent_channels"], height // factor, width // factor)
    raise TypeError(
        f"Cannot infer the latent shape of {type(vae).__name__}: expected an MLPVAE-like model with a "
        "`latent_shape` property or an AutoencoderKL-like config with `latent_channels` and `block_out_channels`."
    )


def denoiser_sample_shape(model) -> tuple[int, ...]:
    """Per-sample shape of the data a denoiser works on.

    * Models with a ``sample_shape`` property (:class:`MLPDenoiser`, plugin denoisers): that, e.g. ``(2,)``.
    * ``UNet2DModel``-style configs (``in_channels`` + ``sample_size``, an int or an ``(H, W)`` pair):
      ``(in_channels, H, W)``.

    Raises:
        TypeError: for any other model.
    """
    if getattr(type(model), "sample_shape", None) is not None:
        return tuple(model.sample_shape)
    config = getattr(model, "config", None)
    if config is not None and "in_channels" in config and "sample_size" in config:
        size = config["sample_size"]
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (config["in_channels"], height, width)
    raise TypeError(
        f"Cannot infer the sample shape of {type(model).__name__}: give it a `sample_shape` property (like "
        "MLPDenoiser) or a UNet2DModel-like config with `in_channels` and `sample_size`."
    )
