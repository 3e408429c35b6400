"""Flow-matching sampling: integrate the learned velocity field from noise (t = 0) to data (t = 1)."""

from .pipeline_denoising import DenoisingPipeline


class FlowMatchingPipeline(DenoisingPipeline):
    """A velocity model (``unet``) with :class:`genzoo.FlowMatchEulerScheduler` or
    :class:`genzoo.FlowMatchHeunScheduler` (the ODE solver; 50 steps by default).

    Diffusers' flow schedulers work too: ``FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)``, and
    ``genzoo.schedulers.diffusers_scheduler(DPMSolverMultistepScheduler, pipe)`` (or ``UniPCMultistepScheduler``), which sets
    their flow mode; the pipeline converts times and velocities to Diffusers' convention.
    """

    default_num_inference_steps = 50
    model_kind = "flow"
