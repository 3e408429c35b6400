"""The sampling loop shared by DDPM and flow matching: start from noise, call the model and the scheduler once
per entry of ``scheduler.timesteps`` -- unconditionally, on class labels, or on text prompts, with classifier-free
guidance."""

from __future__ import annotations


import torch

from ..checks import check_guidance_scale, check_int
from ..conditioning import expand_to_batch, null_label_id
from ..latents import decode_latents
from ..models import denoiser_sample_shape
from .base import IMAGE_OUTPUT_TYPES, GenzooPipeline, sampling_mode
from .drivers import scheduler_driver

#: The largest sampling defaults a saved pipeline may store (a folder is untrusted: a default is work done on load).
MAX_STORED_STEPS = 10_000
MAX_STORED_GUIDANCE = 100.0


class DenoisingPipeline(GenzooPipeline):
    """``unet`` + any compatible ``scheduler``, and for text prompts a ``tokenizer`` and ``text_encoder``.

    * Unconditional: ``UNet2DModel`` (images) or ``MLPDenoiser`` (vectors).
    * Class-conditional: the same models with ``num_class_embeds = K + 1`` and ``id2label`` (K names) in their config;
      id ``K`` is the learned null label used for guidance (see ``genzoo.conditioning``).
    * Text-conditional: ``UNet2DConditionModel`` cross-attending to the last hidden states of the ``text_encoder``
      (a ``transformers.CLIPTextModel``) for prompts tokenized by ``tokenizer``; the empty prompt is "no text".
    * Latent (any of the above, with a ``vae``): the model generates in the latent space of a frozen Diffusers
      ``AutoencoderKL``, as Stable Diffusion does; the final latents are decoded with
      ``vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor)`` (see ``genzoo.latents``),
      except with ``output_type="latent"``.

    Classifier-free guidance (Ho & Salimans 2022) mixes the two predictions as
    ``uncond + guidance_scale * (cond - uncond)``, both from one batched model call per step: ``guidance_scale=1``
    is the conditional model alone, ``0`` the unconditional one, larger values trade diversity for fidelity.

    Subclasses set ``default_num_inference_steps`` and ``model_kind``. Any scheduler with Diffusers' sampling
    interface works: genzoo's, or Diffusers' own built with ``from_config`` (e.g. ``DDIMScheduler`` for a DDPM model).
    A Diffusers flow scheduler on a flow-matching model is driven in Diffusers' convention (time ``sigma = 1 - t``,
    output ``-v``; see :mod:`genzoo.pipelines.drivers`); one that would sample the model in the wrong
    convention is a one-line ``ValueError`` (build it with ``genzoo.schedulers.diffusers_scheduler``).
    ``generator`` is passed to ``step`` only where ``step`` takes one (UniPC's does not).

    Args:
        unet (torch.nn.Module): the model: ``UNet2DModel``, ``UNet2DConditionModel`` or ``MLPDenoiser``.
        scheduler (diffusers.SchedulerMixin): the sampler, genzoo's or Diffusers'.
        tokenizer (transformers.PreTrainedTokenizerBase | None): text-conditional models: the prompts' tokenizer.
        text_encoder (transformers.CLIPTextModel | None): text-conditional models: the prompts' encoder.
        vae (diffusers.AutoencoderKL | None): latent models: the frozen autoencoder the latents decode with.
        default_num_inference_steps (int | None): the steps ``__call__`` takes when none are asked for, stored in
            ``model_index.json`` as a pipeline config value (Diffusers' place for such settings, like Stable
            Diffusion's ``requires_safety_checker``); ``None``: the class's default. A distilled few-step model sets
            the number of calls it was trained for.
        default_guidance_scale (float | None): likewise the guidance ``__call__`` uses for a conditional model when
            none is asked for; ``None``: the class's default (1 for a model with guidance baked in).

    Raises:
        ValueError: for a tokenizer without a text encoder or the other way round, or a default that is not
            allowed (one line naming it).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    labelled_component = "unet"
    main_component = "unet"
    _optional_components = ["tokenizer", "text_encoder", "vae"]
    default_num_inference_steps = 50
    #: What the model predicts, for checking a swapped-in Diffusers scheduler: ``"flow"`` (a velocity, genzoo's
    #: flow time), ``"diffusion"`` (a DDPM model) or ``None`` (no check).
    model_kind: str | None = None
    #: Guidance used when ``guidance_scale`` is not given to a conditional pipeline. 2 is where every conditional
    #: digits model of benchmarks/RESULTS.md (section 5) draws the asked-for digit >= 99.7 % of the time; higher
    #: scales cost digits-FD (bolder, less varied strokes) without gaining accuracy.
    default_guidance_scale = 2.0
    output_types = (*IMAGE_OUTPUT_TYPES, "latent")

    def __init__(self, unet, scheduler, tokenizer=None, text_encoder=None, vae=None,
                 default_num_inference_steps: int | None = None, default_guidance_scale: float | None = None):
        super().__init__()
        if (tokenizer is None) != (text_encoder is None):
            raise ValueError("A text-conditional pipeline needs both a tokenizer and a text_encoder (got only one).")
        self.register_modules(unet=unet, scheduler=scheduler, tokenizer=tokenizer, text_encoder=text_encoder, vae=vae)
        self._store_sampling_defaults(default_num_inference_steps, default_guidance_scale)

    def _store_sampling_defaults(self, steps, guidance) -> None:
        """Check the stored defaults (a saved folder controls them) and keep those given, in the config too."""
        if steps is not None:
            steps = check_int("default_num_inference_steps", steps, maximum=MAX_STORED_STEPS)
            self.register_to_config(default_num_inference_steps=int(steps))
            self.default_num_inference_steps = int(steps)
        if guidance is not None:
            guidance = check_guidance_scale("default_guidance_scale", guidance, maximum=MAX_STORED_GUIDANCE)
            self.register_to_config(default_guidance_scale=guidance)
            self.default_guidance_scale = guidance

    @property
    def vae_scale_factor(self) -> int:
        """How many times smaller than the images the latents are on each side (Diffusers' name); 1 without a VAE."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """The text encoder's last hidden states for ``prompt``, what the UNet cross-attends to.

        Prompts longer than the tokenizer's ``model_max_length`` are truncated with a warning.

        Args:
            prompt: a prompt or a list of prompts.

        Returns:
            The hidden states, ``(B, max_length, hidden)``, in the pipeline's dtype.

        Raises:
            ValueError: for a pipeline without a text encoder.
        """
        from ..text import encode_prompts

        if self.text_encoder is None:
            raise ValueError(f"{type(self).__name__} has no text encoder: its model takes no prompt.")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return encode_prompts(self.tokenizer, self.text_encoder, prompts, device=self.device).to(self.dtype)

    def _conditions(self, batch_size, class_labels, prompt, negative_prompt):
        """``(cond, uncond, batch_size)``: the model's extra keyword arguments for the asked-for samples and for
        guidance's unconditional pass (``None`` for an unconditional model)."""
        if self.text_encoder is not None:
            if class_labels is not None:
                raise ValueError(f"{type(self).__name__} is conditioned on text: pass prompt=..., not class_labels.")
            prompts, batch_size = expand_to_batch("" if prompt is None else prompt, batch_size, "prompts")
            negative = "" if negative_prompt is None else negative_prompt
            negatives, _ = expand_to_batch(negative, batch_size, "negative prompts")
            cond = {"encoder_hidden_states": self.encode_prompt(prompts)}
            return cond, {"encoder_hidden_states": self.encode_prompt(negatives)}, batch_size
        if prompt is not None or negative_prompt is not None:
            raise ValueError(
                f"{type(self).__name__} has no text encoder, so it takes no prompt"
                + (" (it is class-conditional: pass class_labels=...)." if self.id2label else ".")
            )
        labels, batch_size = self._label_ids(class_labels, batch_size)
        if not labels:
            return {}, None, batch_size
        null = torch.full_like(labels["class_labels"], null_label_id(self.id2label))
        return labels, {"class_labels": null}, batch_size

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
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float | None = None,
    ):
        """Draw ``batch_size`` samples.

        Args:
            batch_size: number of samples. A list of ``n`` class labels or prompts gives ``n`` samples when
                ``batch_size`` is 1, or ``batch_size / n`` each when it is a multiple of ``n``.
            generator: a ``torch.Generator`` or one per sample; seeds the starting noise and any noise the
                scheduler adds (DDPM's ancestral steps), so the same seed gives the same samples.
            num_inference_steps: sampling steps (default: the class's ``default_num_inference_steps``).
            latents: the starting noise, ``(batch_size, *sample shape)`` (a latent model's: its latent shape);
                drawn if ``None``.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` for images; ``"np"`` or ``"pt"`` for vectors; ``"latent"``:
                the final state of the sampling loop as a tensor, unconverted (images in the model's [-1, 1]; a
                latent model's scaled latents, not decoded).
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
            class_labels (int | str | list | torch.Tensor | None): class-conditional models: ids or names from
                ``id2label`` (``7``, ``"7"``), one for all samples or one per sample; ``None`` cycles through the
                classes.
            prompt: text-conditional models: a prompt or one per sample (``None``: the empty prompt).
            negative_prompt: what guidance steers away from (default: the empty prompt, i.e. plain guidance).
            guidance_scale: classifier-free guidance weight for conditional models (default
                ``default_guidance_scale``); 1 disables it (one model pass per step instead of a doubled batch).
        Returns:
            (ImagePipelineOutput | VectorPipelineOutput | tuple): an ``ImagePipelineOutput`` (``images``: a list of
                PIL images, or an array or tensor) for images, a ``VectorPipelineOutput`` (``samples``) for vectors;
                with ``return_dict=False`` the tuple ``(samples,)``.

        Raises:
            ValueError: one line naming any argument that is not allowed, checked before anything is drawn.
        """
        self._check_arguments(batch_size, num_inference_steps, guidance_scale, output_type, latents, generator)
        cond, uncond, batch_size = self._conditions(batch_size, class_labels, prompt, negative_prompt)
        if guidance_scale is None:
            guidance_scale = 1.0 if uncond is None else self.default_guidance_scale
        if uncond is None and guidance_scale != 1.0:
            raise ValueError(
                f"guidance_scale={guidance_scale} needs a class- or text-conditional model; this "
                f"{type(self.unet).__name__} is unconditional (use guidance_scale=None or 1)."
            )
        guided = guidance_scale != 1.0
        if guided:  # one model call per step on [unconditional; conditional]
            cond = {key: torch.cat([uncond[key], value]) for key, value in cond.items()}

        steps = self.default_num_inference_steps if num_inference_steps is None else num_inference_steps
        sample = self._noise(denoiser_sample_shape(self.unet), generator, latents, batch_size,
                             model_batch=2 * batch_size if guided else batch_size)
        driver = scheduler_driver(self.scheduler, self.model_kind, type(self).__name__)
        sample = sample * driver.init_noise_sigma
        self.scheduler.set_timesteps(steps, device=self.device)
        driver.begin()
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = driver.scale_model_input(sample, t)
            if guided:
                model_input = torch.cat([model_input, model_input])
            model_output = self.unet(model_input, driver.model_timestep(i, t), **cond, **self._time_inputs(i, t)).sample
            if guided:
                model_output = guide(model_output, guidance_scale, sample.shape[1])
            model_output = driver.scheduler_output(model_output, sample, i)
            sample = driver.step(model_output, t, sample, generator=generator)
        if self.vae is not None and output_type != "latent":
            sample = decode_latents(self.vae, sample)
        return self._output(sample, output_type, return_dict)

    def _time_inputs(self, index: int, timestep) -> dict:
        """Extra time inputs of the model at step ``index`` (a flow map's second time; none here)."""
        return {}


def guide(model_output: torch.Tensor, guidance_scale: float, channels: int) -> torch.Tensor:
    """Classifier-free guidance on a ``[unconditional; conditional]`` batch of predictions. Only the first
    ``channels`` channels are guided; extra ones (a learned variance) are taken from the conditional half."""
    uncond, cond = model_output.chunk(2)
    guided = uncond[:, :channels] + guidance_scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([guided, cond[:, channels:]], dim=1) if cond.shape[1] > channels else guided
