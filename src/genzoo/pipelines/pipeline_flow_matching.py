"""Flow-matching sampling: integrate the learned velocity field from noise (t = 0) to data (t = 1)."""

from .pipeline_denoising import DenoisingPipeline


class FlowMatchingPipeline(DenoisingPipeline):
    """A velocity model (``unet``) with ``genzoo.FlowMatchEulerScheduler`` or ``genzoo.FlowMatchHeunScheduler``
    (the ODE solver; 50 steps by default).

    Diffusers' flow schedulers work too: ``FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)``, and
    ``genzoo.schedulers.diffusers_scheduler(DPMSolverMultistepScheduler, pipe)`` (or ``UniPCMultistepScheduler``),
    which sets their flow mode; the pipeline converts times and velocities to Diffusers' convention. Sampling,
    conditioning and guidance are those of ``DenoisingPipeline``.

    Args:
        unet (torch.nn.Module): the model: ``UNet2DModel``, ``UNet2DConditionModel`` or ``MLPDenoiser``.
        scheduler (diffusers.SchedulerMixin): the sampler.
        tokenizer (transformers.PreTrainedTokenizerBase | None): text-conditional models: the prompts' tokenizer.
        text_encoder (transformers.CLIPTextModel | None): text-conditional models: the prompts' encoder.
        vae (diffusers.AutoencoderKL | None): latent models: the frozen autoencoder the latents decode with.

    Examples:
        Sample the zoo's flow-matching model of the two moons in ten Euler steps, then with Heun:

        ```python
        import torch
        import genzoo

        pipe = genzoo.FlowMatchingPipeline.from_pretrained("pipelines/flow-matching-moons")
        pipe.set_progress_bar_config(disable=True)
        points = pipe(batch_size=500, num_inference_steps=10, output_type="np",
                      generator=torch.Generator().manual_seed(0)).samples
        print(points.shape)  # (500, 2): 2-D points, in the data's own units

        # Heun: second order, 2N - 1 model calls for N steps
        pipe.scheduler = genzoo.FlowMatchHeunScheduler.from_config(pipe.scheduler.config)
        again = pipe(batch_size=500, num_inference_steps=5, output_type="np",
                     generator=torch.Generator().manual_seed(0))
        ```
    """

    default_num_inference_steps = 50
    model_kind = "flow"

    def exact_log_likelihood(self, x, num_steps: int = 100):
        """The exact log-density ``log p_1(x)`` in nats per point of data ``x`` (B, D) under this flow, by the
        instantaneous change of variables with ``num_steps`` RK4 steps: :func:`genzoo.metrics.flow_log_likelihood`.
        Declaring it is what gives a pipeline ``nll_nats`` in ``genzoo eval``."""
        from .likelihood import flow_log_likelihood

        return flow_log_likelihood(self.unet, self.scheduler, x.to(self.device, self.dtype), num_steps=num_steps)
