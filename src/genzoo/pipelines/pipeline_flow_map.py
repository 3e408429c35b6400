"""One-step and few-step sampling with a flow map: jump from noise (t = 0) towards the data (t = 1) in as few model
calls as asked, one by default."""

from ..models import takes_time_interval
from .pipeline_denoising import DenoisingPipeline


class FlowMapPipeline(DenoisingPipeline):
    """A model of the average velocity (``unet``) with ``genzoo.FlowMapEulerScheduler``; one step by default.

    Two kinds of model sample the same way, ``x_r = x_t + (r - t) * u``:

    * a *flow map* ``u(x_t, t, r)`` (MeanFlow, ``genzoo.methods.meanflow``): its config has
      ``class_embed_type="timestep"``, and the pipeline feeds it the interval ``r - t`` (model units) as its second
      time through ``class_labels``, as MeanFlow embeds ``(t, r - t)``. Any number of steps is valid;
    * a *distilled* one-time model ``u(x_t, t)`` (rectified flow's distillation, ``--distill_steps K``): it was
      trained for the K-step grid only, so sample it with ``num_inference_steps=K`` (1 by default).

    Diffusers' solvers integrate an instantaneous velocity and cannot feed a second time, so they are refused here.
    Sampling, conditioning and guidance are those of ``DenoisingPipeline``.

    Args:
        unet (torch.nn.Module): the model: ``UNet2DModel``, ``UNet2DConditionModel`` or ``MLPDenoiser``.
        scheduler (diffusers.SchedulerMixin): ``FlowMapEulerScheduler``.
        tokenizer (transformers.PreTrainedTokenizerBase | None): text-conditional models: the prompts' tokenizer.
        text_encoder (transformers.CLIPTextModel | None): text-conditional models: the prompts' encoder.
        vae (diffusers.AutoencoderKL | None): latent models: the frozen autoencoder the latents decode with.
        default_num_inference_steps (int | None): the steps it samples in by default (``None``: 1); a K-step
            student stores its K (see ``DenoisingPipeline``).
        default_guidance_scale (float | None): the default guidance of a conditional model (``None``: the class's);
            a student with the teacher's guidance baked in stores 1.

    Examples:
        The zoo's MeanFlow model of the digits samples in one model call (or a few):

        ```python
        import torch
        import genzoo

        pipe = genzoo.FlowMapPipeline.from_pretrained("pipelines/meanflow-digits")
        pipe.set_progress_bar_config(disable=True)
        calls = []
        pipe.unet.register_forward_hook(lambda module, args, output: calls.append(1))
        images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), output_type="pt").images
        print(images.shape, len(calls))  # torch.Size([4, 1, 8, 8]) 1: one model call for the batch
        two = pipe(batch_size=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images  # or a few
        ```
    """

    default_num_inference_steps = 1
    model_kind = "flow-map"

    def __init__(self, unet, scheduler, tokenizer=None, text_encoder=None, vae=None,
                 default_num_inference_steps: int | None = None, default_guidance_scale: float | None = None):
        super().__init__(unet=unet, scheduler=scheduler, tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                         default_num_inference_steps=default_num_inference_steps,
                         default_guidance_scale=default_guidance_scale)
        embedding = getattr(unet, "class_embedding", None)
        if takes_time_interval(unet) and hasattr(embedding, "linear_1") and not hasattr(embedding, "_genzoo_cast"):
            # UNet2DModel feeds its "timestep" class embedding the float32 output of its sinusoidal projection
            # without casting it (it casts the main timestep's): in bfloat16/float16 the first Linear would refuse it.
            embedding.register_forward_pre_hook(_cast_to_weights)
            embedding._genzoo_cast = True

    def _time_inputs(self, index: int, timestep) -> dict:
        if not takes_time_interval(self.unet):
            return {}
        r_timesteps = getattr(self.scheduler, "r_timesteps", None)
        if r_timesteps is None:
            raise ValueError(
                f"{type(self.unet).__name__} is a flow map (it takes the end time of each jump), and "
                f"{type(self.scheduler).__name__} has no r_timesteps to give it: use genzoo.FlowMapEulerScheduler."
            )
        return {"class_labels": (r_timesteps[index] - timestep).reshape(1)}


def _cast_to_weights(module, args):
    return (args[0].to(module.linear_1.weight.dtype), *args[1:])
