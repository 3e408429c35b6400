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
    """

    default_num_inference_steps = 1000
    model_kind = "diffusion"
