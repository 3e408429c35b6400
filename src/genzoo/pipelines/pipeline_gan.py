"""GAN sampling: one generator call, z ~ N(0, I) -> sample."""

from __future__ import annotations

import torch

from .base import GenzooPipeline, sampling_mode


class GANPipeline(GenzooPipeline):
    """Unconditional samples from a GAN generator (:class:`~genzoo.models.DCGANGenerator` for images,
    :class:`~genzoo.models.MLPGenerator` for vectors, or any model with ``latent_shape`` and ``model(z).sample``)."""

    model_cpu_offload_seq = "generator"

    def __init__(self, generator):
        super().__init__()
        self.register_modules(generator=generator)

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
            generator: a ``torch.Generator`` or one per sample, for reproducible latents.
            num_inference_steps: ignored; a GAN samples in one call (accepted so every genzoo pipeline takes it).
            latents: the generator inputs ``z`` of shape ``(batch_size, *generator.latent_shape)``; drawn if ``None``.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` for images; ``"np"`` or ``"pt"`` for vectors.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
        """
        z = self._noise(tuple(self.generator.latent_shape), generator, latents, batch_size)
        samples = self.generator(z).sample
        return self._output(samples, output_type, return_dict)
