"""Importance-weighted bound on a VAE's negative log-likelihood (Burda, Grosse & Salakhutdinov 2015, "IWAE")."""

from __future__ import annotations

import math

import torch

from ..checks import check_positive_int

__all__ = ["iwae_nll"]

RECON_LOSSES = ("mse", "bce")


def _log_likelihood(x: torch.Tensor, x_hat: torch.Tensor, recon_loss: str) -> torch.Tensor:
    """``log p(x | z)`` per sample (float64), the decoder likelihood that genzoo's VAE training loss implies."""
    x, x_hat = x.double().flatten(1), x_hat.double().flatten(1)
    if recon_loss == "mse":  # Gaussian with variance 1/2: -(x - x_hat)^2 - 0.5 log(pi) per dimension
        return -(x - x_hat).pow(2).sum(dim=1) - 0.5 * x.shape[1] * math.log(math.pi)
    probs = ((x_hat + 1) / 2).clamp(1e-6, 1 - 1e-6)  # the clamp of VAEMethod.loss
    target = (x + 1) / 2
    return (target * probs.log() + (1 - target) * (1 - probs).log()).sum(dim=1)


def iwae_nll(
    vae,
    x: torch.Tensor,
    k: int = 64,
    generator: torch.Generator | None = None,
    recon_loss: str = "mse",
    batch_size: int = 4096,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample importance-weighted upper bound on ``-log p(x)``, in nats (Burda et al. 2015).

    Definition, with ``q(z|x)`` the encoder's diagonal Gaussian (``vae.encode(x).latent_dist``), ``p(z) = N(0, I)``
    and ``z_1 .. z_k ~ q(z|x)`` independent:

        iwae_nll_k(x) = -log( (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x) )
                      = -(logsumexp_i log w_i - log k),   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x).

    Its expectation over the draws is an upper bound on ``-log p(x)`` that is non-increasing in ``k`` and tends to
    ``-log p(x)`` as ``k -> inf``; ``k = 1`` is the single-sample negative ELBO, ``recon + log q - log p`` with the
    *sampled* KL (in expectation ``-(E_q log p(x|z) - KL(q || p))``). Each returned value is one random draw of the
    bound: a single value can fall below ``-log p(x)``, and variance shrinks with ``k``.

    The decoder likelihood ``p(x|z)`` is the one genzoo's VAE training loss (``genzoo.methods.vae``) implies:

    - ``recon_loss="mse"`` (sum of squared errors): a Gaussian with mean ``x_hat = vae.decode(z).sample`` and
      variance 1/2 per dimension, ``log p(x|z) = -||x - x_hat||^2 - (D/2) log(pi)``;
    - ``recon_loss="bce"``: Bernoulli on ``(x + 1) / 2`` with means ``(x_hat + 1) / 2`` clamped to
      ``[1e-6, 1 - 1e-6]``, ``log p(x|z) = sum y log p + (1 - y) log(1 - p)``. For non-binary ``y`` (grey pixels)
      this is the continuous cross-entropy, not a normalised likelihood.

    Caveats: for continuous data under ``"mse"`` the result is a negative log-*density*: it depends on the data's
    scale (``D log c`` for data scaled by ``c``) and can be negative. Numbers are comparable only between models with
    the same decoder likelihood on the same, identically preprocessed data -- not between ``mse`` and ``bce``, and
    not with a flow's exact likelihood unless the decoder likelihood is the model actually being sampled (a VAE's
    samples are usually the decoder *means*, which this density does not describe).

    Randomness: all noise is drawn up front as one ``torch.randn((k, *latent_shape_of_the_batch), generator=...)`` on
    the generator's device (CPU when ``generator`` is None), so the result is reproducible given the seed and does
    not depend on ``batch_size``; with ``k = 1`` the draw equals ``latent_dist.sample(generator)`` with the same
    seed, so it reproduces the training loss's ``z``. ``z_i = mean + std * eps_i`` and ``log q`` is evaluated from
    ``eps_i`` directly (``-|eps|^2/2 - sum log std - (d/2) log 2 pi``). Log-weights are float64; ``logsumexp`` keeps
    large-``k`` sums stable.

    Works for ``genzoo.MLPVAE`` (``x`` of shape ``(B, D)``) and ``diffusers.AutoencoderKL`` (``(B, C, H, W)``): sums
    run over all non-batch dimensions of the data and of the latent. ``AutoencoderKL.config.scaling_factor`` is not
    applied (genzoo trains VAEs on unscaled posterior samples).

    Args:
        vae (torch.nn.Module): a model with ``encode(x).latent_dist`` (``mean``, ``logvar``, ``std``) and
            ``decode(z).sample``.
        x: data batch ``(B, ...)`` in the units the VAE was trained on (``[-1, 1]`` for images).
        k: importance samples per data point (``k = 1``: the ELBO).
        generator: ``torch.Generator`` for the latent draws.
        recon_loss: ``"mse"`` or ``"bce"``, as used in training.
        batch_size: maximum number of latents decoded per ``decode`` call (and data points per ``encode`` call).
        class_labels: ``(B,)`` labels of ``x`` for a class-conditional VAE, which then bounds ``-log p(x | y)``.

    Returns:
        ``(B,)`` float64 tensor on ``x``'s device, in nats. No autograd graph is kept.
    """
    if recon_loss not in RECON_LOSSES:
        raise ValueError(f"Unknown recon_loss={recon_loss!r}; allowed: {', '.join(repr(r) for r in RECON_LOSSES)}.")
    for name, value in (("k", k), ("batch_size", batch_size)):
        check_positive_int(name, value)
    x = torch.as_tensor(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}.")
    batch = x.shape[0]

    with torch.no_grad():
        means, logvars = [], []
        for start in range(0, batch, batch_size):
            labels = {} if class_labels is None else {"class_labels": class_labels[start:start + batch_size]}
            posterior = vae.encode(x[start:start + batch_size], **labels).latent_dist
            means.append(posterior.mean)
            logvars.append(posterior.logvar)  # Diffusers clamps it to [-30, 20]; std = exp(logvar / 2)
        mean, logvar = torch.cat(means), torch.cat(logvars)
        std = torch.exp(0.5 * logvar)
        draw_device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn((k, *mean.shape), generator=generator, device=draw_device, dtype=mean.dtype)
        eps = eps.to(mean.device)

        latent_dim = mean[0].numel()
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        sum_logvar = logvar.double().flatten(1).sum(dim=1)  # (B,)

        log_w = torch.empty(k, batch, dtype=torch.float64, device=mean.device)
        flat_eps = eps.reshape(k * batch, *mean.shape[1:])
        for start in range(0, k * batch, batch_size):
            stop = min(start + batch_size, k * batch)
            idx = torch.arange(start, stop, device=mean.device)
            j, b = idx // batch, idx % batch  # draw index, data index
            e = flat_eps[start:stop]
            z = mean[b] + std[b] * e
            labels = {} if class_labels is None else {"class_labels": class_labels[b.to(class_labels.device)]}
            x_hat = vae.decode(z, **labels).sample
            log_px = _log_likelihood(x[b.to(x.device)].to(x_hat.device), x_hat, recon_loss).to(mean.device)
            log_pz = -0.5 * z.double().flatten(1).pow(2).sum(dim=1) - latent_dim * half_log_2pi
            log_qz = -0.5 * e.double().flatten(1).pow(2).sum(dim=1) - 0.5 * sum_logvar[b] - latent_dim * half_log_2pi
            log_w[j, b] = log_px + log_pz - log_qz

        nll = -(torch.logsumexp(log_w, dim=0) - math.log(k))
    return nll.to(x.device)
