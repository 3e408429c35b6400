"""A class-conditional ``AutoencoderKL`` for images (a conditional VAE, Sohn et al. 2015).

Diffusers' ``AutoencoderKL`` takes no labels, so :class:`ConditionalAutoencoderKL` rebuilds it from Diffusers' own
``Encoder`` and ``Decoder`` (``diffusers.models.autoencoders.vae``) and the same 1x1 ``quant_conv`` /
``post_quant_conv``, with the one-hot label broadcast over the image added as ``K`` extra input channels to the
encoder (``in_channels + K``) and to the decoder (``latent_channels + K``). Its config uses ``AutoencoderKL``'s names,
so :func:`genzoo.models.vae_latent_shape` and code reading ``config.scaling_factor`` work unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder, DecoderOutput, DiagonalGaussianDistribution, Encoder
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ._common import check_class_labels, check_positive_int, vae_forward

__all__ = ["ConditionalAutoencoderKL"]


class ConditionalAutoencoderKL(ModelMixin, ConfigMixin):
    """``AutoencoderKL`` conditioned on a class label: ``q(z | x, y)`` and ``p(x | z, y)``.

    ``encode(x, class_labels).latent_dist`` is a ``DiagonalGaussianDistribution`` over
    ``(B, latent_channels, H / f, W / f)`` with ``f = 2 ** (len(block_out_channels) - 1)``, and
    ``decode(z, class_labels).sample`` the image. Sampling a class is decoding ``z ~ N(0, I)`` with its label.

    Args:
        in_channels (`int`, defaults to 3): Image channels in.
        out_channels (`int`, defaults to 3): Image channels out.
        down_block_types (`tuple[str]`, defaults to ``("DownEncoderBlock2D",)``): Encoder blocks.
        up_block_types (`tuple[str]`, defaults to ``("UpDecoderBlock2D",)``): Decoder blocks.
        block_out_channels (`tuple[int]`, defaults to ``(64,)``): Widths per level.
        layers_per_block (`int`, defaults to 1): ResNet layers per block.
        act_fn (`str`, defaults to ``"silu"``): Activation.
        latent_channels (`int`, defaults to 4): Latent channels.
        norm_num_groups (`int`, defaults to 32): Group-norm groups.
        sample_size (`int`, defaults to 32): Image side (used by ``vae_latent_shape``).
        scaling_factor (`float`, defaults to 0.18215): Stored only, as in ``AutoencoderKL``.
        mid_block_add_attention (`bool`, defaults to `True`): Attention in the encoder's and decoder's mid blocks.
        num_class_embeds (`int`): Number of classes ``K`` (required: an unconditional VAE is an ``AutoencoderKL``).
            Record the label names with ``genzoo.conditioning.set_id2label``.
    """

    #: What it models: (B, C, H, W) images (genzoo.hub.data_kind reads it).
    data_kind = "image"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        mid_block_add_attention: bool = True,
        num_class_embeds: int | None = None,
    ):
        super().__init__()
        if num_class_embeds is None:
            raise ValueError(
                "ConditionalAutoencoderKL needs `num_class_embeds` (the number of classes); use "
                "diffusers.AutoencoderKL for an unconditional VAE."
            )
        check_positive_int("num_class_embeds", num_class_embeds)
        self.encoder = Encoder(
            in_channels=in_channels + num_class_embeds,
            out_channels=latent_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            double_z=True,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.decoder = Decoder(
            in_channels=latent_channels + num_class_embeds,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)

    def _with_label_channels(self, h: torch.Tensor, class_labels) -> torch.Tensor:
        """``h`` ``(B, C, H, W)`` with ``K`` channels appended: the one-hot labels, constant over the image."""
        labels = check_class_labels(self, class_labels, h.shape[0], h.device)
        one_hot = F.one_hot(labels, self.config.num_class_embeds).to(h.dtype)
        return torch.cat([h, one_hot[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, class_labels: torch.Tensor | None = None, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Encode images with their labels into the posterior ``q(z | x, y)``.

        Args:
            x (`torch.Tensor`): ``(B, in_channels, H, W)``.
            class_labels (`torch.Tensor`): ``(B,)`` class ids (or one for the batch); required.
            return_dict (`bool`): return an ``AutoencoderKLOutput`` (default) or a 1-tuple.

        Returns:
            ``AutoencoderKLOutput(latent_dist=...)`` or ``(latent_dist,)``.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"Expected images of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}.")
        moments = self.quant_conv(self.encoder(self._with_label_channels(x, class_labels)))
        posterior = DiagonalGaussianDistribution(moments)
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    @apply_forward_hook
    def decode(
        self,
        z: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode latents with their labels: the mean of ``p(x | z, y)``.

        Args:
            z (`torch.Tensor`): ``(B, latent_channels, h, w)``.
            class_labels (`torch.Tensor`): ``(B,)`` class ids (or one for the batch); required.
            return_dict (`bool`): return a ``DecoderOutput`` (default) or a 1-tuple.
            generator: accepted (and unused) for signature parity with ``AutoencoderKL.decode``.

        Returns:
            ``DecoderOutput(sample=...)`` or ``(sample,)``.
        """
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"Expected latents of shape (B, {self.config.latent_channels}, h, w), got {tuple(z.shape)}."
            )
        dec = self.decoder(self._with_label_channels(self.post_quant_conv(z), class_labels))
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
        """Reconstruct images: encode with their labels, take the posterior mode (or a sample), decode.

        Args:
            sample (`torch.Tensor`): ``(B, in_channels, H, W)``.
            class_labels (`torch.Tensor`): ``(B,)`` class ids, used by encoder and decoder; required.
            sample_posterior (`bool`): decode a draw from ``q(z | x, y)`` (with ``generator``) instead of its mode.
            return_dict (`bool`): return a ``DecoderOutput`` (default) or a 1-tuple.
            generator (`torch.Generator`, *optional*): for ``sample_posterior``.
        """
        return vae_forward(self, sample, class_labels, sample_posterior, return_dict, generator)
