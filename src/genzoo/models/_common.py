"""Small helpers shared by the model families in :mod:`genzoo.models`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.utils import BaseOutput
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..checks import check_positive_int


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


# ------------------------------------------------------------------ class labels (conditional GANs and VAEs)
def class_embedding(num_class_embeds: int | None, dim: int) -> nn.Embedding | None:
    """An ``nn.Embedding(num_class_embeds, dim)``, or ``None`` for an unconditional model (``num_class_embeds=None``).

    Raises:
        ValueError: if ``num_class_embeds`` is neither ``None`` nor a positive integer.
    """
    if num_class_embeds is None:
        return None
    return nn.Embedding(check_positive_int("num_class_embeds", num_class_embeds), dim)


def check_class_labels(model, class_labels, batch_size: int, device: torch.device) -> torch.Tensor | None:
    """``class_labels`` checked against ``model.config.num_class_embeds``, as a ``(batch_size,)`` int64 tensor.

    Args:
        model: a model whose config has ``num_class_embeds`` (``None`` when it is unconditional).
        class_labels: ``None``, one id (an int or a 0-d / ``(1,)`` tensor) for the whole batch, or ``(batch_size,)``
            ids (a tensor or a list of ints).
        batch_size: the batch size of the model's other input.
        device: where the labels go.

    Returns:
        The labels, or ``None`` for an unconditional model.

    Raises:
        ValueError: labels missing for a conditional model, given to an unconditional one, of the wrong shape, or out
            of range ``0 .. num_class_embeds - 1``.
        TypeError: labels that are not integers (e.g. ``decode(z, False)`` from before ``class_labels`` existed).
    """
    name, num_classes = type(model).__name__, model.config.num_class_embeds
    if isinstance(class_labels, bool):
        raise TypeError(
            f"`class_labels` must be integer class ids, got {class_labels!r} (it is the second argument now: pass "
            "flags such as `return_dict` by keyword)."
        )
    if num_classes is None:
        if class_labels is not None:
            raise ValueError(
                f"`class_labels` were given but this {name} is unconditional (num_class_embeds=None); "
                "call it without them."
            )
        return None
    if class_labels is None:
        raise ValueError(
            f"This {name} is class-conditional (num_class_embeds={num_classes}): pass `class_labels` of shape "
            f"({batch_size},) with ids 0 .. {num_classes - 1}."
        )
    labels = torch.as_tensor(class_labels, device=device)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`class_labels` must be integer class ids, got a tensor of dtype {labels.dtype}.")
    if labels.ndim > 1 or labels.numel() not in (1, batch_size):
        raise ValueError(
            f"`class_labels` must have shape ({batch_size},) or hold one label for the batch, "
            f"got shape {tuple(labels.shape)}."
        )
    labels = labels.long().reshape(-1).expand(batch_size)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        raise ValueError(
            f"`class_labels` must be ids 0 .. {num_classes - 1} for this {name} (num_class_embeds={num_classes}), "
            f"got {sorted(set(bad.tolist()))}."
        )
    return labels


def generator_class_embedding(num_class_embeds, class_embed_dim, latent_dim) -> nn.Embedding | None:
    """The class embedding of a conditional generator (``class_embed_dim`` wide, default ``latent_dim``), or ``None``.

    Raises:
        ValueError: for a bad size, or ``class_embed_dim`` without ``num_class_embeds``.
    """
    if num_class_embeds is None:
        if class_embed_dim is not None:
            raise ValueError(f"`class_embed_dim={class_embed_dim}` needs `num_class_embeds` (the number of classes).")
        return None
    dim = latent_dim if class_embed_dim is None else check_positive_int("class_embed_dim", class_embed_dim)
    return class_embedding(num_class_embeds, dim)


def concat_class_embedding(model, z: torch.Tensor, class_labels) -> torch.Tensor:
    """``z`` ``(B, latent_dim)``, with the embedding of ``class_labels`` appended for a conditional generator."""
    labels = check_class_labels(model, class_labels, z.shape[0], z.device)
    if labels is None:
        return z
    return torch.cat([z, model.class_embedding(labels).to(z.dtype)], dim=1)


def projection_discriminator_embedding(num_class_embeds, dim: int, spectral_norm: bool) -> nn.Module | None:
    """The class embedding of a projection discriminator (Glorot-initialised, as in Miyato & Koyama's code,
    spectral-normalised along with the other layers), or ``None``."""
    embedding = class_embedding(num_class_embeds, dim)
    if embedding is None:
        return None
    nn.init.xavier_uniform_(embedding.weight)
    return maybe_spectral_norm(embedding, spectral_norm)


def projection_logits(model, features: torch.Tensor, logits: torch.Tensor, class_labels) -> torch.Tensor:
    """``(B,)`` logits ``psi(phi(x))``, plus ``<embed(y), phi(x)>`` for a class-conditional discriminator (the
    projection discriminator of Miyato & Koyama 2018); ``features`` is ``phi(x)``, ``(B, dim)``."""
    labels = check_class_labels(model, class_labels, features.shape[0], features.device)
    if labels is None:
        return logits
    return logits + (model.class_embedding(labels).to(features.dtype) * features).sum(dim=1)


def vae_forward(vae, sample, class_labels, sample_posterior: bool, return_dict: bool, generator):
    """``forward`` of genzoo's VAEs, as ``AutoencoderKL``'s: encode (with the labels of a conditional VAE), take the
    posterior mode or a draw from it (``sample_posterior``, with ``generator``), decode."""
    posterior = vae.encode(sample, class_labels).latent_dist
    z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
    dec = vae.decode(z, class_labels).sample
    return DecoderOutput(sample=dec) if return_dict else (dec,)
