"""The latent space of a genzoo latent pipeline: how its scaled latents become images.

A latent pipeline samples in the space of a frozen ``AutoencoderKL`` (its ``vae``), on latents scaled to unit size:
``(z - shift_factor) * scaling_factor``, with both factors in the VAE's config (Diffusers' names; measured on the
training data by :class:`genzoo.methods.latents.LatentEncoder`). Decoding undoes the scaling:
``x = vae.decode(latents / scaling_factor + shift_factor)``. This module sits below the pipelines and imports
nothing of genzoo: the pipelines decode with it, the training side (:mod:`genzoo.methods.latents`) encodes.
"""

from __future__ import annotations

import torch


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] from scaled latents: ``vae.decode(latents / scaling_factor + shift_factor)``."""
    config = vae.config
    z = latents / config.scaling_factor
    if config.get("shift_factor") is not None:
        z = z + config.shift_factor
    return vae.decode(z.to(vae.dtype)).sample
