"""GAN sampling: one generator call, z ~ N(0, I) (and a class label, for a conditional generator) -> sample."""

from __future__ import annotations

import torch

from .base import GenzooPipeline, sampling_mode


class GANPipeline(GenzooPipeline):
    """Samples from a GAN generator (``DCGANGenerator`` for images,
    ``MLPGenerator`` for vectors, or any model with ``latent_shape`` and ``model(z).sample``).

    A class-conditional generator (``num_class_embeds`` and ``id2label`` in its config, see
    ``genzoo.conditioning``) is called as ``model(z, class_labels).sample``.

    Args:
        generator (torch.nn.Module): the GAN's generator.

    Examples:
        The zoo's GAN of the digits; a sample is one pass of the generator:

        ```python
        import torch
        import genzoo

        pipe = genzoo.GANPipeline.from_pretrained("pipelines/gan-digits")
        images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images  # one generator pass
        print(len(images), images[0].size)  # 16 (8, 8)

        # the same noise gives the same images: z ~ N(0, I) in the generator's latent_shape
        z = torch.randn(16, *pipe.generator.latent_shape, generator=torch.Generator().manual_seed(0))
        same = pipe(batch_size=16, latents=z, output_type="np").images
        assert (same == pipe(batch_size=16, generator=torch.Generator().manual_seed(0), output_type="np").images).all()
        ```
    """

    model_cpu_offload_seq = "generator"
    labelled_component = "generator"
    main_component = "generator"

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
        *,
        class_labels=None,
        guidance_scale: float | None = None,
    ):
        """Draw ``batch_size`` samples.

        Args:
            batch_size: number of samples. A list of ``n`` class labels gives ``n`` samples when ``batch_size`` is 1,
                or ``batch_size / n`` each when it is a multiple of ``n``.
            class_labels (int | str | list | torch.Tensor | None): class-conditional generators: ids or names from
                ``id2label`` (``7``, ``"7"``), one for all samples or one per sample; ``None`` cycles through the
                classes. Unconditional ones take none.
            generator: a ``torch.Generator`` or one per sample, for reproducible latents.
            num_inference_steps: ignored; a GAN samples in one call (accepted so every genzoo pipeline takes it).
            latents: the generator inputs ``z`` of shape ``(batch_size, *generator.latent_shape)``; drawn if ``None``.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` for images; ``"np"`` or ``"pt"`` for vectors.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
            guidance_scale: must be ``None`` (or 1): a GAN has no classifier-free guidance.
        Returns:
            (ImagePipelineOutput | VectorPipelineOutput | tuple): an ``ImagePipelineOutput`` (``images``: a list of
                PIL images, or an array or tensor) for images, a ``VectorPipelineOutput`` (``samples``) for vectors;
                with ``return_dict=False`` the tuple ``(samples,)``.

        Raises:
            ValueError: one line naming any argument that is not allowed, checked before anything is drawn.
        """
        self._check_arguments(batch_size, num_inference_steps, guidance_scale, output_type, latents, generator)
        self._check_no_guidance(guidance_scale)
        labels, batch_size = self._label_ids(class_labels, batch_size)
        z = self._noise(tuple(self.generator.latent_shape), generator, latents, batch_size)
        samples = self.generator(z, **labels).sample
        return self._output(samples, output_type, return_dict)
