"""The sampling loop shared by DDPM and flow matching: start from noise, call the model and the scheduler once
per entry of ``scheduler.timesteps``."""

from __future__ import annotations

import torch

from ..models import denoiser_sample_shape
from .base import GenzooPipeline, sampling_mode


class DenoisingPipeline(GenzooPipeline):
    """``unet`` (``UNet2DModel`` or :class:`~genzoo.models.MLPDenoiser`) + any compatible ``scheduler``.

    Subclasses set ``default_num_inference_steps``. Any scheduler with Diffusers' sampling interface works:
    genzoo's, or Diffusers' own built with ``from_config`` (e.g. ``DDIMScheduler`` for a DDPM model).
    """

    model_cpu_offload_seq = "unet"
    default_num_inference_steps = 50

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

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
        """Draw ``batch_size`` samples.

        Args:
            batch_size: number of samples.
            generator: a ``torch.Generator`` or one per sample; seeds the starting noise and any noise the
                scheduler adds (DDPM's ancestral steps), so the same seed gives the same samples.
            num_inference_steps: sampling steps (default: the class's ``default_num_inference_steps``).
            latents: the starting noise, ``(batch_size, *sample shape)``; drawn if ``None``.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` for images; ``"np"`` or ``"pt"`` for vectors.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
        """
        steps = self.default_num_inference_steps if num_inference_steps is None else num_inference_steps
        sample = self._noise(denoiser_sample_shape(self.unet), generator, latents, batch_size)
        sample = sample * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(self.scheduler.scale_model_input(sample, t), t).sample
            sample = self.scheduler.step(model_output, t, sample, generator=generator).prev_sample
        return self._output(sample, output_type, return_dict)
