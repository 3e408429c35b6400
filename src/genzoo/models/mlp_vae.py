"""MLP VAE for vector data with the same interface as ``diffusers.AutoencoderKL``.

``encode(x).latent_dist`` is a ``DiagonalGaussianDistribution`` (a subclass of Diffusers' own, see
:class:`DiagonalGaussianDistributionND`), ``decode(z).sample`` is the reconstruction, and
``forward(sample, sample_posterior=False, return_dict=True, generator=None)`` matches ``AutoencoderKL``. With
``num_class_embeds`` it is a conditional VAE (Sohn et al. 2015): every call also takes ``class_labels``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn

from ._common import check_class_labels, check_latent, check_positive_int, vae_forward

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

    With ``num_class_embeds = K`` it is a conditional VAE (Sohn et al. 2015): the one-hot label is concatenated to
    the encoder's input ``x`` and to the decoder's input ``z``, so ``q(z|x, y)`` and ``p(x|z, y)``; sampling a class
    is decoding ``z ~ N(0, I)`` with its label.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        latent_dim (`int`, defaults to 8): Latent size.
        hidden_dim (`int`, defaults to 128): Hidden width of encoder and decoder.
        num_layers (`int`, defaults to 2): Hidden layers in each of encoder and decoder.
        scaling_factor (`float`, defaults to 1.0): Stored only, like ``AutoencoderKL.config.scaling_factor``,
            so latent-diffusion code that multiplies/divides by it works unchanged.
        num_class_embeds (`int`, *optional*): Number of classes ``K``; ``class_labels`` is then required by
            ``encode``, ``decode`` and ``forward``.
    """

    #: What it models: (B, D) vectors (genzoo.hub.data_kind reads it; Diffusers' models are "image").
    data_kind = "vector"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        latent_dim: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 2,
        scaling_factor: float = 1.0,
        num_class_embeds: int | None = None,
    ):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("num_layers", num_layers)]:
            check_positive_int(name, value)
        num_classes = 0 if num_class_embeds is None else check_positive_int("num_class_embeds", num_class_embeds)
        self.encoder = _mlp(sample_size + num_classes, hidden_dim, num_layers, 2 * latent_dim)
        self.decoder = _mlp(latent_dim + num_classes, hidden_dim, num_layers, sample_size)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_dim,)``."""
        return (self.config.latent_dim,)

    @property
    def latent_channels(self) -> int:
        """Latent size under ``AutoencoderKL``'s name (there it is ``config.latent_channels``)."""
        return self.config.latent_dim

    def _with_one_hot(self, h: torch.Tensor, class_labels) -> torch.Tensor:
        """``h`` ``(B, n)``, with the one-hot ``class_labels`` appended for a conditional VAE."""
        labels = check_class_labels(self, class_labels, h.shape[0], h.device)
        if labels is None:
            return h
        return torch.cat([h, F.one_hot(labels, self.config.num_class_embeds).to(h.dtype)], dim=1)

    def encode(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistributionND]:
        """Encode ``x`` ``(B, D)`` into a diagonal Gaussian posterior over ``(B, latent_dim)``.

        Args:
            x (`torch.Tensor`): ``(B, D)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.
            return_dict (`bool`): return an ``AutoencoderKLOutput`` (default) or a 1-tuple.

        Returns:
            ``AutoencoderKLOutput(latent_dist=...)`` or ``(latent_dist,)`` when ``return_dict=False``.
        """
        if x.ndim != 2 or x.shape[1] != self.config.sample_size:
            raise ValueError(f"Expected samples of shape (B, {self.config.sample_size}), got {tuple(x.shape)}.")
        posterior = DiagonalGaussianDistributionND(self.encoder(self._with_one_hot(x, class_labels)))
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(
        self,
        z: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode latents ``z`` ``(B, latent_dim)`` into ``(B, D)``.

        Args:
            z (`torch.Tensor`): ``(B, latent_dim)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.
            return_dict (`bool`): return a ``DecoderOutput`` (default) or a 1-tuple.
            generator: accepted (and unused) for signature parity with ``AutoencoderKL.decode``.

        Returns:
            ``DecoderOutput(sample=...)`` or ``(sample,)`` when ``return_dict=False``.
        """
        dec = self.decoder(self._with_one_hot(check_latent(z, self.config.latent_dim), class_labels))
        if not return_dict:
            return (dec,)
        return DecoderOutput(sample=dec)

    def forward(
        self,
        sample: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Reconstruct ``sample`` ``(B, D)``: encode, take the posterior mode (or a sample), decode.

        Args:
            sample (`torch.Tensor`): ``(B, D)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids, used by encoder and decoder; required iff
                ``num_class_embeds``.
            sample_posterior (`bool`): decode a draw from ``q(z|x)`` (with ``generator``) instead of its mode.
            return_dict (`bool`): return a ``DecoderOutput`` (default) or a 1-tuple.
            generator (`torch.Generator`, *optional*): for ``sample_posterior``.

        Returns:
            ``DecoderOutput(sample=...)`` of shape ``(B, D)``, or ``(sample,)`` when ``return_dict=False``.
        """
        return vae_forward(self, sample, class_labels, sample_posterior, return_dict, generator)
