"""Flow-matching sampling: integrate the learned velocity field from noise (t = 0) to data (t = 1)."""

from .pipeline_denoising import DenoisingPipeline


class FlowMatchingPipeline(DenoisingPipeline):
    """A velocity model (``unet``) with :class:`genzoo.FlowMatchEulerScheduler` or
    :class:`genzoo.FlowMatchHeunScheduler` (the ODE solver; 50 steps by default)."""

    default_num_inference_steps = 50
