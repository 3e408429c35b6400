"""VAE sampling: decode z ~ N(0, I); plus encoding, reconstruction and latent interpolation."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from ..models import vae_latent_shape
from .base import GenzooPipeline, sampling_mode


class VAEPipeline(GenzooPipeline):
    """Samples, reconstructions and interpolations from a VAE with the ``AutoencoderKL`` interface
    (``diffusers.AutoencoderKL`` for images, :class:`~genzoo.models.MLPVAE` for vectors).

    Data in and out of ``encode`` / ``reconstruct`` / ``interpolate`` is in the model's scale: images in [-1, 1]
    as ``(B, C, H, W)`` tensors (or PIL images, converted), vectors as ``(B, D)`` tensors.
    """

    model_cpu_offload_seq = "vae"

    def __init__(self, vae):
        super().__init__()
        self.register_modules(vae=vae)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return vae_latent_shape(self.vae)

    @sampling_mode
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Decode ``batch_size`` latents drawn from the prior N(0, I) (or the given ``latents``).

        ``num_inference_steps`` is ignored: a VAE samples in one decoder call. Other arguments as in ``GANPipeline``.
        """
        z = self._noise(self.latent_shape, generator, latents, batch_size)
        return self._output(self.vae.decode(z).sample, output_type, return_dict)

    def _as_tensor(self, data) -> torch.Tensor:
        """PIL images (or a list of them) -> ``(B, C, H, W)`` in [-1, 1]; tensors pass through."""
        if isinstance(data, PIL.Image.Image):
            data = [data]
        if isinstance(data, list) and data and isinstance(data[0], PIL.Image.Image):
            arrays = [np.asarray(image, dtype=np.float32) / 127.5 - 1.0 for image in data]
            arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
            data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Expected a torch.Tensor or PIL images, got {type(data).__name__}.")
        return data.to(device=self.device, dtype=self.dtype)

    @sampling_mode
    def encode(self, data, generator: torch.Generator | None = None, sample_posterior: bool = False) -> torch.Tensor:
        """Latent codes of ``data``: the posterior mean, or a draw from q(z|x) if ``sample_posterior``."""
        posterior = self.vae.encode(self._as_tensor(data)).latent_dist
        return posterior.sample(generator=generator) if sample_posterior else posterior.mode()

    @sampling_mode
    def reconstruct(self, data, output_type: str = "pt", return_dict: bool = True):
        """Decode the posterior mean of ``data``."""
        return self._output(self.vae.decode(self.encode(data)).sample, output_type, return_dict)

    @sampling_mode
    def interpolate(self, a, b, steps: int = 8, output_type: str = "pt", return_dict: bool = True):
        """Decode ``steps`` evenly spaced points on the straight line between the codes of ``a`` and ``b``
        (one sample each). Because the prior fills the latent space, every point decodes to a plausible sample."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2 (the two end points included), got {steps!r}.")
        za, zb = self.encode(a), self.encode(b)
        if za.shape[0] != 1 or zb.shape[0] != 1:
            raise ValueError(f"interpolate takes one sample at each end, got batches of {za.shape[0]} and {zb.shape[0]}.")
        weights = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype).reshape(-1, *([1] * (za.ndim - 1)))
        z = (1 - weights) * za + weights * zb
        return self._output(self.vae.decode(z).sample, output_type, return_dict)
