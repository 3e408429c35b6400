"""DCGAN generator and discriminator (Radford et al., 2016) as Diffusers models.

Both networks are resolution-agnostic within powers of two: the generator goes 1x1 -> 4x4 with a
transposed convolution and then doubles the resolution with ``ConvTranspose2d(k=4, s=2, p=1)`` until it
reaches ``sample_size``; the discriminator mirrors that with ``Conv2d(k=4, s=2, p=1)`` down to 4x4 and
a final valid 4x4 convolution to one logit.

Class-conditional variants (``num_class_embeds``): the generator is a conditional GAN generator (Mirza & Osindero
2014), an embedding of the label concatenated to ``z``; the discriminator is a projection discriminator (Miyato &
Koyama 2018), whose logit adds ``<embed(y), phi(x)>`` with ``phi(x)`` the last 4x4 features summed over space.

Channel widths: the feature map next to the image has ``base_channels`` channels and every step toward
the 4x4 end doubles it, capped at ``max_channels``.
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
    projection_discriminator_embedding,
    maybe_spectral_norm,
    projection_logits,
)

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "dcgan_num_resamples"]


def dcgan_num_resamples(sample_size) -> int:
    """Number of stride-2 steps between 4x4 and ``sample_size`` (``log2(sample_size) - 2``).

    Raises:
        ValueError: if ``sample_size`` is not a power of two >= 8 (the message names the value).
    """
    if (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, int)
        or sample_size < 8
        or sample_size & (sample_size - 1) != 0
    ):
        raise ValueError(
            f"DCGAN `sample_size` must be a power of two >= 8 (8, 16, 32, 64, ...), got {sample_size!r}."
        )
    return sample_size.bit_length() - 3  # 8 -> 1, 16 -> 2, ...


def _widths(num_resamples: int, base_channels: int, max_channels: int) -> list[int]:
    """Hidden widths ordered from the 4x4 end to the image end: ``[.., 4*base, 2*base, base]`` capped."""
    return [min(base_channels * 2 ** i, max_channels) for i in reversed(range(num_resamples))]


class DCGANGenerator(ModelMixin, ConfigMixin):
    """DCGAN generator: latent ``z`` -> image in ``[-1, 1]``.

    Architecture: ``ConvTranspose2d(latent_dim, w0, 4, 1, 0)`` (1x1 -> 4x4), then ``log2(sample_size) - 2``
    ``ConvTranspose2d(k=4, s=2, p=1)`` layers, BatchNorm + ReLU after every hidden layer, ``tanh`` at the end.
    With ``num_class_embeds``, an embedding of the class label is concatenated to ``z`` (conditional GAN).

    Args:
        sample_size (`int`, defaults to 32): Output height and width; a power of two >= 8.
        out_channels (`int`, defaults to 1): Image channels.
        latent_dim (`int`, defaults to 64): Size of the latent vector.
        base_channels (`int`, defaults to 32): Width of the last hidden feature map (next to the image).
        max_channels (`int`, defaults to 256): Cap on hidden widths, which double toward the 4x4 end.
        num_class_embeds (`int`, *optional*): Number of classes ``K``; ``class_labels`` is then required.
        class_embed_dim (`int`, *optional*): Size of the class embedding (default: ``latent_dim``).
    """

    #: What it models: (B, C, H, W) images (genzoo.hub.data_kind reads it).
    data_kind = "image"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        out_channels: int = 1,
        latent_dim: int = 64,
        base_channels: int = 32,
        max_channels: int = 256,
        num_class_embeds: int | None = None,
        class_embed_dim: int | None = None,
    ):
        super().__init__()
        n_up = dcgan_num_resamples(sample_size)
        for name, value in [("out_channels", out_channels), ("latent_dim", latent_dim),
                            ("base_channels", base_channels), ("max_channels", max_channels)]:
            check_positive_int(name, value)
        widths = _widths(n_up, base_channels, max_channels)
        self.class_embedding = generator_class_embedding(num_class_embeds, class_embed_dim, latent_dim)
        z_dim = latent_dim + (self.class_embedding.embedding_dim if self.class_embedding is not None else 0)

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], kernel_size=4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(w_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape ``(latent_dim,)``: draw ``z`` as ``randn(B, *model.latent_shape)``."""
        return (self.config.latent_dim,)

    def forward(
        self, z: torch.Tensor, class_labels: torch.Tensor | None = None, return_dict: bool = True
    ) -> GeneratorOutput | tuple[torch.Tensor]:
        """Generate images.

        Args:
            z (`torch.Tensor`): ``(B, latent_dim)`` or ``(B, latent_dim, 1, 1)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.
            return_dict (`bool`): return a ``GeneratorOutput`` (default) or a 1-tuple.

        Returns:
            ``GeneratorOutput(sample=...)`` with ``sample`` of shape ``(B, out_channels, sample_size, sample_size)``
            in ``[-1, 1]``; or ``(sample,)`` when ``return_dict=False``.
        """
        z = concat_class_embedding(self, check_latent(z, self.config.latent_dim, allow_4d=True), class_labels)
        sample = self.net(z[:, :, None, None])
        if not return_dict:
            return (sample,)
        return GeneratorOutput(sample=sample)


class DCGANDiscriminator(ModelMixin, ConfigMixin):
    """DCGAN discriminator: image -> one raw logit per sample (no sigmoid).

    Architecture: ``log2(sample_size) - 2`` ``Conv2d(k=4, s=2, p=1)`` layers down to 4x4 with LeakyReLU(0.2)
    (normalisation on every one but the first, as in DCGAN), then ``Conv2d(w, 1, 4)`` -> ``(B,)``. With
    ``num_class_embeds`` it is a projection discriminator: the logit of ``(x, y)`` adds ``<embed(y), phi(x)>``, where
    ``phi(x)`` is the final 4x4 feature map summed over space (``w`` features).

    Args:
        sample_size (`int`, defaults to 32): Input height and width; a power of two >= 8.
        in_channels (`int`, defaults to 1): Image channels.
        base_channels (`int`, defaults to 32): Width of the first feature map (next to the image).
        max_channels (`int`, defaults to 256): Cap on widths, which double toward the 4x4 end.
        norm (`str` or `None`, defaults to `None`): ``"batch"`` or ``"none"``. ``None`` picks ``"none"`` when
            ``spectral_norm`` is on and ``"batch"`` otherwise; ``"batch"`` together with spectral norm is an error.
        spectral_norm (`bool`, defaults to `False`): wrap every convolution (including the final one) with
            ``torch.nn.utils.parametrizations.spectral_norm``, and the class embedding too.
        num_class_embeds (`int`, *optional*): Number of classes ``K``; ``class_labels`` is then required.
    """

    #: What it models: (B, C, H, W) images (genzoo.hub.data_kind reads it).
    data_kind = "image"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 1,
        base_channels: int = 32,
        max_channels: int = 256,
        norm: str | None = None,
        spectral_norm: bool = False,
        num_class_embeds: int | None = None,
    ):
        super().__init__()
        n_down = dcgan_num_resamples(sample_size)
        for name, value in [("in_channels", in_channels), ("base_channels", base_channels),
                            ("max_channels", max_channels)]:
            check_positive_int(name, value)
        if norm is None:
            norm = "none" if spectral_norm else "batch"
        if norm not in ("batch", "none"):
            raise ValueError(f"`norm` must be 'batch', 'none' or None, got {norm!r}.")
        if norm == "batch" and spectral_norm:
            raise ValueError("`norm='batch'` cannot be combined with `spectral_norm=True`; use norm='none' or None.")

        widths = list(reversed(_widths(n_down, base_channels, max_channels)))  # image end -> 4x4 end
        layers: list[nn.Module] = []
        w_prev = in_channels
        for i, w in enumerate(widths):
            use_bn = norm == "batch" and i > 0
            layers.append(maybe_spectral_norm(
                nn.Conv2d(w_prev, w, kernel_size=4, stride=2, padding=1, bias=not use_bn), spectral_norm))
            if use_bn:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            w_prev = w
        layers.append(maybe_spectral_norm(nn.Conv2d(w_prev, 1, kernel_size=4, stride=1, padding=0), spectral_norm))
        self.net = nn.Sequential(*layers)
        self.class_embedding = projection_discriminator_embedding(num_class_embeds, w_prev, spectral_norm)

    def forward(self, sample: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score images (with their labels, for a class-conditional discriminator).

        Args:
            sample (`torch.Tensor`): ``(B, in_channels, sample_size, sample_size)``.
            class_labels (`torch.Tensor`, *optional*): ``(B,)`` class ids; required iff ``num_class_embeds``.

        Returns:
            `torch.Tensor`: raw logits of shape ``(B,)``.
        """
        c, s = self.config.in_channels, self.config.sample_size
        if sample.ndim != 4 or tuple(sample.shape[1:]) != (c, s, s):
            raise ValueError(f"Expected images of shape (B, {c}, {s}, {s}), got {tuple(sample.shape)}.")
        features = self.net[:-1](sample)  # (B, w, 4, 4)
        logits = self.net[-1](features).reshape(sample.shape[0])
        return projection_logits(self, features.sum(dim=(2, 3)), logits, class_labels)
