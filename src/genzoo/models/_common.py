"""Small helpers shared by the model families in :mod:`genzoo.models`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


@dataclass
class GeneratorOutput(BaseOutput):
    """Output of a GAN generator (mirrors ``UNet2DOutput`` so callers read ``.sample``).

    Args:
        sample (`torch.Tensor`):
            Generated samples: ``(B, C, H, W)`` images for :class:`DCGANGenerator`,
            ``(B, D)`` vectors for :class:`MLPGenerator`.
    """

    sample: torch.Tensor


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module``'s ``weight`` with ``torch.nn.utils.parametrizations.spectral_norm`` if ``enabled``.

    The parametrization stores ``parametrizations.weight.original`` (a parameter) and the power-iteration
    vectors ``parametrizations.weight.0._u`` / ``0._v`` (buffers); all three are plain tensors in the state dict,
    so they are written to and read from safetensors like any other weight.
    """
    return _spectral_norm(module) if enabled else module


def check_positive_int(name: str, value) -> int:
    """Return ``value`` if it is a positive ``int`` (bools rejected), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def check_latent(z: torch.Tensor, latent_dim: int, allow_4d: bool = False) -> torch.Tensor:
    """Validate a latent batch and return it as ``(B, latent_dim)``.

    Accepts ``(B, latent_dim)`` and, when ``allow_4d``, ``(B, latent_dim, 1, 1)``.
    """
    if z.ndim == 4 and allow_4d and z.shape[1] == latent_dim and z.shape[2:] == (1, 1):
        return z.flatten(1)
    if z.ndim == 2 and z.shape[1] == latent_dim:
        return z
    allowed = f"(B, {latent_dim})" + (f" or (B, {latent_dim}, 1, 1)" if allow_4d else "")
    raise ValueError(f"Expected a latent of shape {allowed}, got {tuple(z.shape)}.")
