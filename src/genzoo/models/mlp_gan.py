"""MLP generator and discriminator for low-dimensional vector data (e.g. 2-D toy distributions), unconditional or
class-conditional (a conditional generator and a projection discriminator).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ._common import (
    GeneratorOutput,
    check_latent,
    check_positive_int,
    concat_class_embedding,
    generator_class_embedding,
    maybe_spectral_norm,
    projection_discriminator_embedding,
    projection_logits,
)

__all__ = ["MLPGenerator", "MLPDiscriminator"]


class MLPGenerator(ModelMixin, ConfigMixin):
    """MLP generator: latent ``z`` ``(B, latent_dim)`` -> sample ``(B, sample_size)``.

    ``num_layers`` hidden ``Linear + ReLU`` layers of width ``hidden_dim``, then a linear output (no
    squashing: vector data is not assumed to be bounded). With ``num_class_embeds`` it is a conditional GAN generator
    (Mirza & Osindero 2014): an embedding of the class label is concatenated to ``z``.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        latent_dim (`int`, defaults to 8): Size of the latent vector.
        hidden_dim (`int`, defaults to 128): Hidden width.
        num_layers (`int`, defaults to 3): Number of hidden layers.
        num_class_embeds (`int`, *optional*): Number of classes ``K``; ``class_labels`` is then required.
        class_embed_dim (`int`, *optional*): Size of the class embedding (default: ``latent_dim``).
    """

    #: What it models: (B, D) vectors (genzoo.hub.data_kind reads it; Diffusers' models are "image").
    data_kind = "vector"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        latent_dim: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 3,
        num_class_embeds: int | None = None,
        class_embed_dim: int | None = None,
    ):
        super().__init__()
        for name, value in [("sample_size", sample_size), ("latent_dim", latent_dim),
                            ("hidden_dim", hidden_dim), ("num_layers", num_layers)]:
            check_positive_int(name, value)
        self.class_embedding = generator_class_embedding(num_class_embeds, class_embed_dim, latent_dim)
        layers: list[nn.Module] = []
        w_prev = latent_dim + (self.class_embedding.embedding_dim if self.class_embedding is not None else 0)
        for _ in range(num_layers):
            layers += [nn.Linear(w_prev, hidden_dim), nn.ReLU(inplace=True)]
            w_prev = hidden_dim
        layers.append(nn.Linear(w_prev, sample_size))
        self.net = nn.Sequential(*layers)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_dim,)``: draw ``z`` as ``randn(B, *model.latent_shape)``."""
        return (self.config.latent_dim,)

    def forward(
        self, z: torch.Tensor, class_labels: torch.Tensor | None = None, return_dict: bool = True
    ) -> GeneratorOutput | tuple[torch.Tensor]:
        """Generate samples.

        Args:
            z (`torch.Tensor`): ``(B, latent_dim)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.
            return_dict (`bool`): return a ``GeneratorOutput`` (default) or a 1-tuple.

        Returns:
            ``GeneratorOutput(sample=...)`` with ``sample`` of shape ``(B, sample_size)``; or ``(sample,)``.
        """
        z = concat_class_embedding(self, check_latent(z, self.config.latent_dim), class_labels)
        sample = self.net(z)
        if not return_dict:
            return (sample,)
        return GeneratorOutput(sample=sample)


class MLPDiscriminator(ModelMixin, ConfigMixin):
    """MLP discriminator: ``(B, sample_size)`` -> raw logits ``(B,)`` (no sigmoid).

    ``num_layers`` hidden ``Linear + LeakyReLU(0.2)`` layers, then ``Linear(hidden_dim, 1)``. With
    ``num_class_embeds`` it is a projection discriminator (Miyato & Koyama 2018): the logit of ``(x, y)`` is
    ``psi(phi(x)) + <embed(y), phi(x)>``, ``phi(x)`` the last hidden features and ``psi`` the output layer.

    Args:
        sample_size (`int`, defaults to 2): Data dimension ``D``.
        hidden_dim (`int`, defaults to 128): Hidden width.
        num_layers (`int`, defaults to 3): Number of hidden layers.
        spectral_norm (`bool`, defaults to `False`): wrap every linear layer (and the class embedding) with
            ``torch.nn.utils.parametrizations.spectral_norm``.
        num_class_embeds (`int`, *optional*): Number of classes ``K``; ``class_labels`` is then required.
    """

    #: What it models: (B, D) vectors (genzoo.hub.data_kind reads it; Diffusers' models are "image").
    data_kind = "vector"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        spectral_norm: bool = False,
        num_class_embeds: int | None = None,
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
        self.class_embedding = projection_discriminator_embedding(num_class_embeds, hidden_dim, spectral_norm)

    def forward(self, sample: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score samples (with their labels, for a class-conditional discriminator).

        Args:
            sample (`torch.Tensor`): ``(B, sample_size)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.

        Returns:
            `torch.Tensor`: raw logits of shape ``(B,)``.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.sample_size:
            raise ValueError(f"Expected samples of shape (B, {self.config.sample_size}), got {tuple(sample.shape)}.")
        features = self.net[:-1](sample)
        return projection_logits(self, features, self.net[-1](features).squeeze(1), class_labels)
