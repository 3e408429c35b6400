"""VAE sampling: decode z ~ N(0, I) (with a class label, for a conditional VAE); plus encoding, reconstruction and
latent interpolation."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from ..models import vae_latent_shape
from .base import GenzooPipeline, sampling_mode


class VAEPipeline(GenzooPipeline):
    """Samples, reconstructions and interpolations from a VAE with the ``AutoencoderKL`` interface
    (``diffusers.AutoencoderKL`` for images, ``MLPVAE`` for vectors).

    A class-conditional VAE (``ConditionalAutoencoderKL``, or an ``MLPVAE`` with
    ``num_class_embeds``; ``id2label`` in its config, see ``genzoo.conditioning``) takes ``class_labels`` in
    ``encode(x, class_labels)`` and ``decode(z, class_labels)``, and so does every method here.

    Data in and out of ``encode`` / ``reconstruct`` / ``interpolate`` is in the model's scale: images in [-1, 1]
    as ``(B, C, H, W)`` tensors (or PIL images, converted), vectors as ``(B, D)`` tensors.

    Args:
        vae (torch.nn.Module): the VAE (``AutoencoderKL``, ``ConditionalAutoencoderKL`` or ``MLPVAE``).

    Examples:
        The zoo's VAE of the digits: sample the prior, encode, reconstruct, interpolate:

        ```python
        import torch
        import genzoo

        pipe = genzoo.VAEPipeline.from_pretrained("pipelines/vae-digits")
        images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0)).images  # decode z ~ N(0, I)
        print(len(images), images[0].size)  # 4 (8, 8)

        # the encoder and the decoder: reconstruct, and walk the latent space from one digit to another
        codes = pipe.encode(images)  # the posterior means
        print(codes.shape, pipe.reconstruct(images).images.shape)  # torch.Size([4, 4, 4, 4]) torch.Size([4, 1, 8, 8])
        path = pipe.interpolate(images[0], images[1], steps=6).images
        print(path.shape)  # torch.Size([6, 1, 8, 8])
        ```
    """

    model_cpu_offload_seq = "vae"
    labelled_component = "vae"
    main_component = "vae"

    def __init__(self, vae):
        super().__init__()
        self.register_modules(vae=vae)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return vae_latent_shape(self.vae)

    def _data_labels(self, class_labels, batch_size: int) -> dict:
        """The labels of ``batch_size`` given data points: required by a conditional VAE (one for all, or one each)."""
        if self.id2label is not None and class_labels is None:
            raise ValueError(
                f"This {type(self).__name__}'s vae is class-conditional: pass the data's class_labels (one for all, "
                f"or one per sample; ids or names from {list(self.id2label.values())[:10]})."
            )
        labels, size = self._label_ids(class_labels, batch_size)
        if size != batch_size:
            raise ValueError(f"Got {size} class_labels for {batch_size} data points; give one for all, or one each.")
        return labels

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
        """Decode ``batch_size`` latents drawn from the prior N(0, I) (or the given ``latents``).

        Args:
            batch_size: number of samples. A list of ``n`` class labels gives ``n`` samples when ``batch_size`` is 1,
                or ``batch_size / n`` each when it is a multiple of ``n``.
            class_labels (int | str | list | torch.Tensor | None): class-conditional VAEs: ids or names from
                ``id2label`` (``7``, ``"7"``), one for all samples or one per sample; ``None`` cycles through the
                classes. Unconditional ones take none.
            generator: a ``torch.Generator`` or one per sample, for reproducible latents.
            num_inference_steps: ignored; a VAE samples in one decoder call.
            latents: the latents ``z`` of shape ``(batch_size, *latent_shape)``; drawn from N(0, I) if ``None``.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` for images; ``"np"`` or ``"pt"`` for vectors.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
            guidance_scale: must be ``None`` (or 1): a VAE has no classifier-free guidance.
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
        z = self._noise(self.latent_shape, generator, latents, batch_size)
        return self._output(self.vae.decode(z, **labels).sample, output_type, return_dict)

    def _as_tensor(self, data) -> torch.Tensor:
        """PIL images (or a list of them) -> ``(B, C, H, W)`` in [-1, 1]; tensors pass through."""
        if isinstance(data, PIL.Image.Image):
            data = [data]
        if isinstance(data, list) and data and isinstance(data[0], PIL.Image.Image):
            arrays = [np.asarray(image, dtype=np.float32) / 127.5 - 1.0 for image in data]
            arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
            data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Expected a torch.Tensor or PIL images, got {type(data).__name__}.")
        return data.to(device=self.device, dtype=self.dtype)

    def nll_bound(self, x: torch.Tensor, k: int = 64, generator: torch.Generator | None = None,
                  recon_loss: str = "mse", class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The importance-weighted bound (IWAE, ``k`` samples) on ``-log p(x)`` in nats per point of data ``x`` in the
        model's scale (given ``class_labels``, for a conditional VAE): :func:`genzoo.metrics.iwae_nll`. Declaring it
        is what gives a pipeline ``iwae_nll_nats`` in ``genzoo eval``."""
        from .vae_nll import iwae_nll

        return iwae_nll(self.vae, x.to(self.device, self.dtype), k=k, generator=generator, recon_loss=recon_loss,
                        class_labels=None if class_labels is None else class_labels.to(self.device))

    @sampling_mode
    def encode(
        self, data, generator: torch.Generator | None = None, sample_posterior: bool = False, *, class_labels=None
    ) -> torch.Tensor:
        """Latent codes of ``data``: the posterior mean, or a draw from q(z|x) if ``sample_posterior``.

        Args:
            data (torch.Tensor | PIL.Image.Image | list[PIL.Image.Image]): ``(B, C, H, W)`` images in [-1, 1] (or
                PIL images), or ``(B, D)`` vectors.
            class_labels (int | str | list | torch.Tensor | None): a conditional VAE needs the data's labels (ids or
                names, one for all or one per sample).
            generator: for ``sample_posterior``.
            sample_posterior: draw from q(z|x) instead of taking its mean.

        Returns:
            The latent codes, ``(B, *latent_shape)``.
        """
        x = self._as_tensor(data)
        posterior = self.vae.encode(x, **self._data_labels(class_labels, x.shape[0])).latent_dist
        return posterior.sample(generator=generator) if sample_posterior else posterior.mode()

    @sampling_mode
    def reconstruct(self, data, output_type: str = "pt", return_dict: bool = True, *, class_labels=None):
        """Decode the posterior mean of ``data`` (with its ``class_labels``, for a conditional VAE, in the encoder and
        the decoder).

        Args:
            data (torch.Tensor | PIL.Image.Image | list[PIL.Image.Image]): ``(B, C, H, W)`` images in [-1, 1] (or PIL
                images), or ``(B, D)`` vectors.
            output_type: as for ``__call__``.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
            class_labels (int | str | list | torch.Tensor | None): a conditional VAE needs the data's labels (ids or
                names, one for all or one per sample).

        Returns:
            (ImagePipelineOutput | VectorPipelineOutput | tuple): the reconstructions, as ``__call__`` returns
                samples.
        """
        x = self._as_tensor(data)
        labels = self._data_labels(class_labels, x.shape[0])
        z = self.encode(x, class_labels=class_labels)
        return self._output(self.vae.decode(z, **labels).sample, output_type, return_dict)

    @sampling_mode
    def interpolate(
        self, a, b, steps: int = 8, output_type: str = "pt", return_dict: bool = True, *, class_labels=None
    ):
        """Decode ``steps`` evenly spaced points on the straight line between the codes of ``a`` and ``b``
        (one sample each). Because the prior fills the latent space, every point decodes to a plausible sample.

        Args:
            a (torch.Tensor | PIL.Image.Image): one data point, as for ``encode`` (a batch of one).
            b (torch.Tensor | PIL.Image.Image): the other end.
            steps: the number of points, the two ends included (>= 2).
            output_type: as for ``__call__``.
            return_dict: return an ``ImagePipelineOutput`` / ``VectorPipelineOutput`` (else a tuple).
            class_labels (int | str | None): a conditional VAE takes one label (an id or a name) for both ends and
                every point.

        Returns:
            (ImagePipelineOutput | VectorPipelineOutput | tuple): the ``steps`` decoded points, as ``__call__``
                returns samples.

        Raises:
            ValueError: for ``steps`` below 2, more than one label, or more than one sample at an end.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2 (the two end points included), got {steps!r}.")
        several = isinstance(class_labels, torch.Tensor) and class_labels.numel() > 1
        if isinstance(class_labels, (list, tuple)) or several:
            raise ValueError(f"interpolate takes one class label for both ends, got {class_labels!r}.")
        za, zb = self.encode(a, class_labels=class_labels), self.encode(b, class_labels=class_labels)
        if za.shape[0] != 1 or zb.shape[0] != 1:
            raise ValueError(f"interpolate takes one sample at each end, got batches of {za.shape[0]} and {zb.shape[0]}.")
        weights = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype).reshape(-1, *([1] * (za.ndim - 1)))
        z = (1 - weights) * za + weights * zb
        labels, _ = self._label_ids(class_labels, steps)
        return self._output(self.vae.decode(z, **labels).sample, output_type, return_dict)
