"""DDPM sampling: ancestral denoising from pure noise, one model call per step."""

from .pipeline_denoising import DenoisingPipeline


class DDPMPipeline(DenoisingPipeline):
    """A noise-prediction model (``unet``) with ``genzoo.DDPMScheduler`` (1000 steps by default, as trained).

    Swap in ``diffusers.DDIMScheduler.from_config(pipe.scheduler.config)`` for good samples in 20-50 steps
    (``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` the same way, for 10-20). Sampling,
    conditioning and guidance are those of ``DenoisingPipeline``.

    Args:
        unet (torch.nn.Module): the model: ``UNet2DModel``, ``UNet2DConditionModel`` or ``MLPDenoiser``.
        scheduler (diffusers.SchedulerMixin): the sampler.
        tokenizer (transformers.PreTrainedTokenizerBase | None): text-conditional models: the prompts' tokenizer.
        text_encoder (transformers.CLIPTextModel | None): text-conditional models: the prompts' encoder.
        vae (diffusers.AutoencoderKL | None): latent models: the frozen autoencoder the latents decode with.

    Examples:
        Sample the zoo's DDPM model of the 8x8 digits, then swap in Diffusers' DDIM for fewer steps:

        ```python
        import torch
        import genzoo

        pipe = genzoo.DDPMPipeline.from_pretrained("pipelines/ddpm-digits")  # a zoo folder, or a Hub id
        pipe.set_progress_bar_config(disable=True)
        images = pipe(batch_size=4, num_inference_steps=50, generator=torch.Generator().manual_seed(0)).images
        print(len(images), images[0].size)  # 4 (8, 8): PIL images, 8x8 digits

        # any compatible scheduler: Diffusers' DDIM from the saved configuration
        from diffusers import DDIMScheduler

        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        digits = pipe(batch_size=4, num_inference_steps=20, output_type="np",
                      generator=torch.Generator().manual_seed(0))
        print(digits.images.shape)  # (4, 8, 8, 1), in [0, 1]
        ```
    """

    default_num_inference_steps = 1000
    model_kind = "diffusion"
