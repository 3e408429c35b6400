"""Training in a latent space: a denoiser trained in the latent space of a frozen, trained genzoo VAE (``--vae``), as
Stable Diffusion and DiT train in the space of their autoencoder.

The VAE is a genzoo ``VAEPipeline`` holding a Diffusers ``AutoencoderKL`` (trained with ``genzoo train --method vae``),
given as a folder or a Hub id. Training encodes each image to its posterior ``N(mean, std^2)``, draws
``z = mean + std * eps`` from the trainer's generator (so resuming stays exact), and trains on
``(z - shift_factor) * scaling_factor``, with both factors *measured* on the training data before the first step:
``shift_factor`` the mean and ``1 / scaling_factor`` the standard deviation of the latents (Stable Diffusion's recipe,
with SD3's shift), so the denoiser sees data of unit scale, whatever the VAE's KL weight made of its latent scale.
They are written into the VAE's config (``scaling_factor``, ``shift_factor``, Diffusers' names), which the pipeline
saves with it and uses to decode (:func:`genzoo.latents.decode_latents`).

When the data has no random augmentation (no random flips or crops: every built-in image set), the posteriors of
the whole data set are encoded once, before the first step, and reused every epoch; otherwise each batch is encoded
as it comes.
"""

from __future__ import annotations

import time

import torch
from diffusers import AutoencoderKL

from ..pipelines import VAEPipeline, load_frozen_pipeline

#: Images encoded per call when the posteriors are cached.
ENCODE_BATCH = 256
#: Latents the scale is measured on (all of them for smaller data sets).
MEASURE_SAMPLES = 10_000


def load_latent_vae(source: str, device, sample_shape: tuple[int, ...]):
    """The ``AutoencoderKL`` of the genzoo VAE pipeline at ``source`` (a folder or Hub id), frozen on ``device``;
    ``ValueError`` naming ``--vae`` when it is not an unconditional image VAE for ``sample_shape`` images."""
    pipe = load_frozen_pipeline(source, device, "--vae")
    if not isinstance(pipe, VAEPipeline) or not isinstance(pipe.vae, AutoencoderKL):
        what = type(pipe.vae).__name__ if isinstance(pipe, VAEPipeline) else type(pipe).__name__
        raise ValueError(
            f"--vae {source}: it holds a {what}; --vae takes a VAE pipeline of images (an AutoencoderKL, what "
            "`genzoo train --method vae` makes on image data)."
        )
    vae = pipe.vae
    if vae.config.get("_id2label"):
        raise ValueError(f"--vae {source}: a class-conditional VAE needs labels to encode and decode; train the "
                         "latent model on an unconditional VAE (--conditioning none).")
    channels = vae.config.in_channels
    if len(sample_shape) != 3 or sample_shape[0] != channels:
        raise ValueError(
            f"--vae {source}: its AutoencoderKL encodes {channels}-channel images and the data holds "
            f"{'x'.join(map(str, sample_shape))} samples; train the VAE on the same data."
        )
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if sample_shape[1] % factor or sample_shape[2] % factor:
        raise ValueError(
            f"--vae {source}: its AutoencoderKL halves the resolution {len(vae.config.block_out_channels) - 1} "
            f"times, so it needs a resolution divisible by {factor}; the data is {sample_shape[1]}x{sample_shape[2]}."
        )
    return vae


def latent_shape(vae, sample_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The latent shape of ``sample_shape`` images: ``(latent_channels, H / f, W / f)``."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return (vae.config.latent_channels, sample_shape[1] // factor, sample_shape[2] // factor)


class LatentEncoder:
    """Turns training batches of images into scaled latents for a frozen ``vae``; see the module docstring."""

    def __init__(self, vae, dataset, sample_shape: tuple[int, ...], device="cpu"):
        self.vae = vae
        self.dataset = dataset
        self.shape = latent_shape(vae, sample_shape)
        self.device = torch.device(device)
        self.mean = self.std = None  # the cached posteriors, (N, *shape) each, when caching pays

    def _posterior(self, begin: int, end: int):
        images = torch.stack([self.dataset[i]["sample"] for i in range(begin, end)])
        dist = self.vae.encode(images.to(self.device, self.vae.dtype)).latent_dist
        # contiguous: the posterior's halves are views of one tensor, and a batch of them is not in the default layout
        return dist.mean.float().cpu().contiguous(), dist.std.float().cpu().contiguous()

    @torch.no_grad()
    def prepare(self, cache: bool, seed: int) -> dict:
        """Encode the whole data set once if ``cache`` (augmentation-free data), else its first
        :data:`MEASURE_SAMPLES` images; measure the shift and scale on latents drawn from their posteriors with
        ``seed``, write them into the VAE's config, and return the facts for ``metrics.json``."""
        start = time.perf_counter()
        count = len(self.dataset) if cache else min(len(self.dataset), MEASURE_SAMPLES)
        parts = [self._posterior(b, min(count, b + ENCODE_BATCH)) for b in range(0, count, ENCODE_BATCH)]
        mean, std = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if cache:
            self.mean, self.std = mean, std
        mean, std = mean[:MEASURE_SAMPLES], std[:MEASURE_SAMPLES]
        z = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
        shift, scale = float(z.mean()), float(1.0 / z.std())
        self.vae.register_to_config(scaling_factor=scale, shift_factor=shift)
        return {"latent_shape": list(self.shape), "latent_scaling_factor": scale, "latent_shift_factor": shift,
                "latent_cache": bool(cache), "latent_encode_seconds": round(time.perf_counter() - start, 2)}

    @torch.no_grad()
    def latents(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of a training batch: ``(mean + std * eps - shift) * scale``, ``eps`` from ``generator``."""
        images = batch["sample"]
        if self.mean is not None:
            index = batch["index"].cpu()
            mean, std = self.mean[index], self.std[index]
        else:
            dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
            mean, std = dist.mean.float(), dist.std.float()
        eps = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
        z = mean.to(images.device) + std.to(images.device) * eps.to(images.device)
        config = self.vae.config
        return ((z - config.shift_factor) * config.scaling_factor).to(images.dtype).contiguous()
