"""MLP generator and discriminator for low-dimensional vector data (e.g. 2-D toy distributions)."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ._common import GeneratorOutput, check_latent, check_positive_int, maybe_spectral_norm

__all__ = ["MLPGenerator", "MLPDiscriminator"]


class MLPGenerator(ModelMixin, ConfigMixin):
    """MLP generator: latent ``z`` ``(B, latent_dim)`` -> sample ``(B, sample_size)``.

    ``num_layers`` hidden ``Linear + ReLU`` layers of width ``hidden_dim``, then a linear output (no
    squashing: vector data is not assumed to be bounded).

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        latent_dim (`int`, defaults to 8): Size of the latent vector.
        hidden_dim (`int`, defaults to 128): Hidden width.
        num_layers (`int`, defaults to 3): Number of hidden layers.
    """

    @register_to_config
    def __init__(self, sample_size: int = 2, latent_dim: int = 8, hidden_dim: int = 128, num_layers: int = 3):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("num_layers", num_layers)]:
            check_positive_int(name, value)
        layers: list[nn.Module] = []
        w_prev = latent_dim
        for _ in range(num_layers):
            layers += [nn.Linear(w_prev, hidden_dim), nn.ReLU(inplace=True)]
            w_prev = hidden_dim
        layers.append(nn.Linear(w_prev, sample_size))
        self.net = nn.Sequential(*layers)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_dim,)``: draw ``z`` as ``randn(B, *model.latent_shape)``."""
        return (self.config.latent_dim,)

    def forward(self, z: torch.Tensor, return_dict: bool = True) -> GeneratorOutput | tuple[torch.Tensor]:
        """Generate samples.

        Args:
            z (`torch.Tensor`): ``(B, latent_dim)``.
            return_dict (`bool`): return a :class:`GeneratorOutput` (default) or a 1-tuple.

        Returns:
            ``GeneratorOutput(sample=...)`` with ``sample`` of shape ``(B, sample_size)``; or ``(sample,)``.
        """
        sample = self.net(check_latent(z, self.config.latent_dim))
        if not return_dict:
            return (sample,)
        return GeneratorOutput(sample=sample)


class MLPDiscriminator(ModelMixin, ConfigMixin):
    """MLP discriminator: ``(B, sample_size)`` -> raw logits ``(B,)`` (no sigmoid).

    ``num_layers`` hidden ``Linear + LeakyReLU(0.2)`` layers, then ``Linear(hidden_dim, 1)``.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        hidden_dim (`int`, defaults to 128): Hidden width.
        num_layers (`int`, defaults to 3): Number of hidden layers.
        spectral_norm (`bool`, defaults to `False`): wrap every linear layer with
            ``torch.nn.utils.parametrizations.spectral_norm``.
    """

    @register_to_config
    def __init__(
        self, sample_size: int = 2, hidden_dim: int = 128, num_layers: int = 3, spectral_norm: bool = False
    ):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("hidden_dim", hidden_dim), ("num_layers", num_layers)]:
            check_positive_int(name, value)
        layers: list[nn.Module] = []
        w_prev = sample_size
        for _ in range(num_layers):
            layers += [
                maybe_spectral_norm(nn.Linear(w_prev, hidden_dim), spectral_norm),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            w_prev = hidden_dim
        layers.append(maybe_spectral_norm(nn.Linear(w_prev, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        """Score samples.

        Args:
            sample (`torch.Tensor`): ``(B, sample_size)``.

        Returns:
            `torch.Tensor`: raw logits of shape ``(B,)``.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.sample_size:
            raise ValueError(f"Expected samples of shape (B, {self.config.sample_size}), got {tuple(sample.shape)}.")
        return self.net(sample).squeeze(1)
