"""MLP VAE for vector data with the same interface as ``diffusers.AutoencoderKL``.

``encode(x).latent_dist`` is a ``DiagonalGaussianDistribution`` (a subclass of Diffusers' own, see
:class:`DiagonalGaussianDistributionND`), ``decode(z).sample`` is the reconstruction, and
``forward(sample, sample_posterior=False, return_dict=True, generator=None)`` matches ``AutoencoderKL``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn

from ._common import check_latent, check_positive_int

__all__ = ["MLPVAE", "DiagonalGaussianDistributionND"]


class DiagonalGaussianDistributionND(DiagonalGaussianDistribution):
    """Diffusers' ``DiagonalGaussianDistribution`` whose ``kl``/``nll`` reduce over *all* non-batch dims.

    The parent hard-codes ``dim=[1, 2, 3]``, so on ``(B, latent_dim)`` posteriors ``kl()`` raises
    ``IndexError: Dimension out of range``. Everything else (``sample(generator)`` via ``randn_tensor``,
    ``mode()``, ``mean``/``std``/``var``/``logvar``, the ``[-30, 20]`` logvar clamp) is inherited unchanged,
    and ``isinstance(d, DiagonalGaussianDistribution)`` still holds. For 4-D parameters the results equal the
    parent's. In deterministic mode ``kl``/``nll`` return zeros of shape ``(B,)`` (the parent returns a
    CPU ``tensor([0.])``).

    Args:
        parameters (`torch.Tensor`): ``cat([mean, logvar], dim=1)``, any rank >= 2.
        deterministic (`bool`): zero variance.
    """

    def _reduce_dims(self) -> list[int]:
        return list(range(1, self.mean.ndim))

    def _zeros(self) -> torch.Tensor:
        return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL(self || other), or KL(self || N(0, I)) when ``other`` is None; shape ``(B,)``."""
        if self.deterministic:
            return self._zeros()
        if other is None:
            terms = torch.pow(self.mean, 2) + self.var - 1.0 - self.logvar
        else:
            terms = (torch.pow(self.mean - other.mean, 2) / other.var + self.var / other.var
                     - 1.0 - self.logvar + other.logvar)
        return 0.5 * torch.sum(terms, dim=self._reduce_dims())

    def nll(self, sample: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
        """Gaussian negative log-likelihood of ``sample``, summed over ``dims`` (default: all non-batch dims)."""
        if self.deterministic:
            return self._zeros()
        dims = self._reduce_dims() if dims is None else dims
        logtwopi = np.log(2.0 * np.pi)
        return 0.5 * torch.sum(logtwopi + self.logvar + torch.pow(sample - self.mean, 2) / self.var, dim=dims)


def _mlp(d_in: int, hidden_dim: int, num_layers: int, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_layers):
        layers += [nn.Linear(d_in, hidden_dim), nn.SiLU()]
        d_in = hidden_dim
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class MLPVAE(ModelMixin, ConfigMixin):
    """Gaussian VAE with MLP encoder/decoder: ``(B, D)`` <-> latent ``(B, latent_dim)``.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        latent_dim (`int`, defaults to 8): Latent size.
        hidden_dim (`int`, defaults to 128): Hidden width of encoder and decoder.
        num_layers (`int`, defaults to 2): Hidden layers in each of encoder and decoder.
        scaling_factor (`float`, defaults to 1.0): Stored only, like ``AutoencoderKL.config.scaling_factor``,
            so latent-diffusion code that multiplies/divides by it works unchanged.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        latent_dim: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 2,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("num_layers", num_layers)]:
            check_positive_int(name, value)
        self.encoder = _mlp(sample_size, hidden_dim, num_layers, 2 * latent_dim)
        self.decoder = _mlp(latent_dim, hidden_dim, num_layers, sample_size)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_dim,)``."""
        return (self.config.latent_dim,)

    @property
    def latent_channels(self) -> int:
        """Latent size under ``AutoencoderKL``'s name (there it is ``config.latent_channels``)."""
        return self.config.latent_dim

    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistributionND]:
        """Encode ``x`` ``(B, D)`` into a diagonal Gaussian posterior over ``(B, latent_dim)``.

        Returns:
            ``AutoencoderKLOutput(latent_dist=...)`` or ``(latent_dist,)`` when ``return_dict=False``.
        """
        if x.ndim != 2 or x.shape[1] != self.config.sample_size:
            raise ValueError(f"Expected samples of shape (B, {self.config.sample_size}), got {tuple(x.shape)}.")
        posterior = DiagonalGaussianDistributionND(self.encoder(x))
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(
        self, z: torch.Tensor, return_dict: bool = True, generator: torch.Generator | None = None
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode latents ``z`` ``(B, latent_dim)`` into ``(B, D)``.

        ``generator`` is accepted (and unused) for signature parity with ``AutoencoderKL.decode``.

        Returns:
            ``DecoderOutput(sample=...)`` or ``(sample,)`` when ``return_dict=False``.
        """
        dec = self.decoder(check_latent(z, self.config.latent_dim))
        if not return_dict:
            return (dec,)
        return DecoderOutput(sample=dec)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Reconstruct ``sample`` ``(B, D)``: encode, take the posterior mode (or a sample), decode.

        Returns:
            ``DecoderOutput(sample=...)`` of shape ``(B, D)``, or ``(sample,)`` when ``return_dict=False``.
        """
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        dec = self.decode(z).sample
        if not return_dict:
            return (dec,)
        return DecoderOutput(sample=dec)
