"""DDPM sampling: ancestral denoising from pure noise, one model call per step."""

from .pipeline_denoising import DenoisingPipeline


class DDPMPipeline(DenoisingPipeline):
    """A noise-prediction model (``unet``) with :class:`genzoo.DDPMScheduler` (1000 steps by default, as trained).

    Swap in ``diffusers.DDIMScheduler.from_config(pipe.scheduler.config)`` for good samples in 20-50 steps
    (``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` the same way, for 10-20).
    """

    default_num_inference_steps = 1000
    model_kind = "diffusion"
