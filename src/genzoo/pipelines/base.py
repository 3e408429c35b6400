"""What every genzoo pipeline shares: Hub-aware ``from_pretrained``, a ``save_pretrained`` that plain Diffusers can
load back (and that replaces a saved pipeline atomically), the checks of ``__call__``'s arguments (and of the memory a
sampling request needs, estimated by :mod:`genzoo.pipelines.memory`), the starting noise, and turning samples into
"pil" / "np" / "pt" outputs for images and vectors (refusing non-finite samples)."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_guidance_scale, check_positive_int
from ..conditioning import class_label_ids, conditioning_of, model_id2label
from ..hub import push_folder
from ..model_index import PipelineLoadError, one_line, pipeline_class_name, pipeline_config_values, read_model_index
from .loading import commit_pipeline, load_components, write_remote_code_files
from .memory import check_sampling_memory
from .resolve import resolve_pretrained_path
from .untrusted import check_recorded_components

IMAGE_OUTPUT_TYPES = ("pil", "np", "pt")
VECTOR_OUTPUT_TYPES = ("np", "pt")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of ``__call__`` of the wrong type (e.g. ``class_labels=2.5``): a ``TypeError`` as it always was,
    and a ``ValueError`` like every other argument error of a pipeline call, so ``except ValueError`` catches all."""


@dataclass
class VectorPipelineOutput(BaseOutput):
    """What a pipeline returns for vector data (2-D points, feature vectors); images come as Diffusers'
    ``ImagePipelineOutput``.

    Args:
        samples: shape ``(batch_size, dim)``, a ``numpy.ndarray`` for ``output_type="np"`` or a ``torch.Tensor``
            for ``"pt"``.
    """

    samples: np.ndarray | torch.Tensor


def sampling_mode(call):
    """Run a sampling method with every module in eval mode (batch norm on running statistics, no dropout), so a
    sample depends on its own seed and not on the rest of the batch, then restore the modes the caller had (a
    trainer may be sampling from the very modules it trains)."""

    @functools.wraps(call)
    def wrapper(self, *args, **kwargs):
        modules = [m for m in self.components.values() if isinstance(m, torch.nn.Module)]
        modes = [[sub.training for sub in m.modules()] for m in modules]
        for m in modules:
            m.eval()
        try:
            with torch.no_grad():
                return call(self, *args, **kwargs)
        finally:
            for m, mode in zip(modules, modes):
                for sub, training in zip(m.modules(), mode):
                    sub.training = training

    return wrapper


class GenzooPipeline(DiffusionPipeline):
    """Base class of genzoo's pipelines (and of plugin pipelines that want the same loading and saving).

    A ``diffusers.DiffusionPipeline``: its constructor takes the components (models, scheduler, ...) by name, and
    ``save_pretrained`` / ``from_pretrained`` work as in Diffusers, with safetensors only and no code run on load.
    """

    #: The component whose config holds a class-conditional model's label names (see :mod:`genzoo.conditioning`);
    #: ``None``: the pipeline takes no class labels.
    labelled_component: str | None = None
    #: The component that draws the samples: its class's ``data_kind`` ("image", the default, or "vector") says what
    #: the pipeline generates (``genzoo.hub.data_kind``); ``None``: ``labelled_component``.
    main_component: str | None = None
    #: The ``output_type`` values ``__call__`` takes ("latent": the sampling loop's final state as it is, in the
    #: model's data space, where a pipeline has one).
    output_types: tuple[str, ...] = IMAGE_OUTPUT_TYPES

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        torch_dtype: torch.dtype | None = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        **components,
    ):
        """Load a pipeline from a folder written by ``save_pretrained`` or from a Hub repo id.

        Hub repos are downloaded with ``huggingface_hub.snapshot_download`` (``revision``, ``token``, ``cache_dir``,
        ``local_files_only`` and ``HF_HUB_OFFLINE`` are honoured), then loaded like a folder. Weights load from
        safetensors only unless ``allow_pickle=True``. No code from the repository is executed; classes are looked
        up in genzoo's registry.

        Args:
            pretrained_model_name_or_path: a folder written by ``save_pretrained`` or a Hub repo id.
            revision: the Hub branch, tag or commit.
            token: the Hub token (default: the logged-in user's).
            cache_dir: where Hub downloads are cached.
            local_files_only: use only the local cache, never the network.
            torch_dtype: load the weights in this dtype.
            allow_pickle: also load pickled (``.bin``) weights; by default only safetensors are read.
            trust_remote_code: accepted for symmetry with Diffusers; it has no effect (no repository code runs).
            **components (Any): components that replace the saved ones (e.g. ``scheduler=...``).

        Returns:
            (GenzooPipeline): the pipeline, of the class ``model_index.json`` names (a subclass of the class it is
                called on).

        Raises:
            PipelineLoadError: a folder or repo that is not a loadable genzoo pipeline (one line saying why).
            TypeError: a keyword argument that is neither an option above nor a component of the pipeline.
        """
        del trust_remote_code  # genzoo never runs repository code; the argument is accepted for Diffusers parity
        folder = resolve_pretrained_path(
            pretrained_model_name_or_path, revision, token, cache_dir, local_files_only, allow_pickle
        )
        model_index = read_model_index(folder)
        saved_class = pipeline_class_name(model_index)
        pipeline_class = cls
        if cls is GenzooPipeline or cls.__name__ != saved_class:
            from .. import registry

            try:
                pipeline_class = registry.get("pipeline", saved_class)
            except KeyError as exc:
                raise PipelineLoadError(f"{pretrained_model_name_or_path}: {exc.args[0]}") from None
            if not issubclass(pipeline_class, cls):
                raise PipelineLoadError(
                    f"{pretrained_model_name_or_path} holds a {saved_class}, not a {cls.__name__}; load it with "
                    f"genzoo.{saved_class}.from_pretrained or genzoo.load_pipeline."
                )
        expected, _ = pipeline_class._get_signature_keys(pipeline_class)
        unknown = sorted(set(components) - set(expected))
        if unknown:
            raise TypeError(
                f"{pipeline_class.__name__}.from_pretrained got unexpected arguments {unknown}; besides revision, "
                "token, cache_dir, local_files_only, torch_dtype, allow_pickle and trust_remote_code it takes "
                f"replacement components: {sorted(expected)}."
            )
        # Names and entries first (component_entries), before any component file is opened.
        check_recorded_components(pipeline_class, model_index, supplied=set(components))
        loaded = load_components(
            folder, model_index, allow_pickle=allow_pickle, torch_dtype=torch_dtype, skip=set(components)
        )
        try:
            pipe = pipeline_class(**loaded, **pipeline_config_values(pipeline_class, model_index), **components)
        except Exception as exc:  # the pipeline class refuses this combination of components
            raise PipelineLoadError(
                f"{pretrained_model_name_or_path}: its components do not make a {pipeline_class.__name__}: "
                f"{type(exc).__name__}: {one_line(exc)}"
            ) from exc
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs):
        """Diffusers' folder layout, safetensors only, plus the files that let plain
        ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` load it (see ``.loading``).

        The save is atomic (``genzoo.pipelines.loading.commit_pipeline``): the pipeline is written beside the folder
        and swapped in whole, so a save that fails (an error, a full disk, a kill) leaves the pipeline saved before
        it loadable and unchanged. What the folder held besides a saved pipeline (checkpoints, logs, samples, your
        files) is kept; the previous pipeline's own entries (``.loading.pipeline_entries``: its
        ``model_index.json``, ``genzoo_hub.py`` and component folders) are replaced, so no stale component of
        another pipeline class stays behind.

        Args:
            save_directory: the folder to save into (created if needed).
            safe_serialization: must be ``True``: genzoo saves safetensors only.
            **kwargs (Any): passed on to Diffusers' ``DiffusionPipeline.save_pretrained`` (``push_to_hub`` excepted: use
                ``push_to_hub``).

        Raises:
            ValueError: for ``safe_serialization=False`` or ``push_to_hub=True``.
        """
        if not safe_serialization:
            raise ValueError("genzoo saves weights as safetensors only; safe_serialization=False is not supported.")
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id) to upload; save_pretrained(push_to_hub=True) is not supported.")
        commit_pipeline(save_directory, lambda staging: self.save_into(staging, **kwargs))

    def save_into(self, folder: str | os.PathLike, **kwargs) -> None:
        """Write this pipeline's files (``model_index.json``, one folder per component, ``genzoo_hub.py``) into
        ``folder``, in place and not atomically: ``save_pretrained`` calls it on a staging folder.

        Args:
            folder: the folder to write into.
            **kwargs (Any): passed on to Diffusers' ``DiffusionPipeline.save_pretrained``.
        """
        super().save_pretrained(folder, safe_serialization=True, **kwargs)
        write_remote_code_files(Path(folder), self)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        license: str = "apache-2.0",
    ) -> str:
        """Save this pipeline and upload it to ``repo_id`` in one commit, with a model card; returns the commit URL.

        The upload is what ``save_pretrained`` writes (so plain Diffusers loads it with ``trust_remote_code=True``)
        plus ``README.md``. See ``genzoo.hub.push_folder``.

        Args:
            repo_id: the Hub repo, ``user/name`` (created if needed).
            private: create the repo private (default: the Hub's default).
            token: the Hub token (default: the logged-in user's).
            commit_message: the commit's message (default: one naming the pipeline).
            revision: the branch to push to (created if needed).
            create_pr: open a pull request instead of committing to the branch.
            license: the license in the model card's metadata.

        Returns:
            The URL of the commit.
        """
        with tempfile.TemporaryDirectory() as folder:
            self.save_into(folder)
            return push_folder(folder, repo_id, token=token, private=private, commit_message=commit_message,
                               revision=revision, create_pr=create_pr, license=license)

    # ------------------------------------------------------------------ class labels
    @property
    def conditioning(self) -> str:
        """``"text"``, ``"class"`` or ``"none"``: what this pipeline's model is conditioned on, decided from the
        components' configs by ``genzoo.conditioning.conditioning_of``, as for a saved folder
        (``genzoo.hub.conditioning_of_folder``)."""
        configs = {
            name: None if component is None else getattr(component, "config", {})
            for name, component in self.components.items()
        }
        return conditioning_of(configs, self.labelled_component)[0]

    @property
    def id2label(self) -> dict[int, str] | None:
        """Label names of a class-conditional model (``{0: "0", ...}`` for the digits), else ``None``."""
        model = getattr(self, self.labelled_component, None) if self.labelled_component else None
        return None if model is None else model_id2label(model)

    @property
    def labels(self) -> dict[str, int]:
        """Name -> id, as in Diffusers' ``DiTPipeline.labels``; empty for a model without classes."""
        return {name: key for key, name in (self.id2label or {}).items()}

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Ids of label names (Diffusers' ``DiTPipeline.get_label_ids``).

        Args:
            label: one label name or a list of them.

        Returns:
            The class ids, in order.

        Raises:
            ValueError: for a name the model does not know, or a model without classes.
        """
        labels = [label] if isinstance(label, str) else list(label)
        return self._label_ids(labels, len(labels))[0]["class_labels"].tolist()

    def _label_ids(self, class_labels, batch_size: int) -> tuple[dict, int]:
        """``({"class_labels": ids on the pipeline's device}, batch_size)`` for a class-conditional model, ``({},
        batch_size)`` for an unconditional one (which refuses labels); see :func:`genzoo.conditioning.class_label_ids`
        for what ``class_labels`` may be and how it sets the batch size."""
        owner = f"this {type(self).__name__}'s {self.labelled_component}"
        try:
            ids, batch_size = class_label_ids(class_labels, batch_size, self.id2label, owner=owner)
        except TypeError as exc:  # labels of a type that is not a label: still a TypeError, and a ValueError too
            raise ArgumentTypeError(one_line(exc)) from None
        return ({} if ids is None else {"class_labels": ids.to(self.device)}), batch_size

    def _check_no_guidance(self, guidance_scale) -> None:
        """For pipelines without classifier-free guidance (GAN, VAE): ``guidance_scale`` is accepted (``None`` or 1)
        only so that code which samples every genzoo pipeline alike can pass it."""
        if guidance_scale is not None and guidance_scale != 1.0:
            raise ValueError(
                f"guidance_scale={guidance_scale}: {type(self).__name__} has no classifier-free guidance (its model "
                "has no null label); leave guidance_scale as None."
            )

    # ------------------------------------------------------------------ helpers for __call__
    def _check_arguments(
        self, batch_size, num_inference_steps=None, guidance_scale=None, output_type="pt", latents=None, generator=None
    ) -> None:
        """The checks every ``__call__`` makes first, before anything is drawn or allocated: ``ValueError`` (one line,
        naming the argument and the value) for a ``batch_size`` or ``num_inference_steps`` that is not a positive
        integer, a ``guidance_scale`` that is not a finite number >= 0, an unknown ``output_type``, ``latents`` that
        are not a finite floating-point tensor, a ``generator`` that is not a ``torch.Generator`` (or a list of
        them), and a ``batch_size`` whose samples cannot fit in memory (:meth:`_check_sampling_memory`)."""
        check_positive_int("batch_size", batch_size)
        if num_inference_steps is not None:
            check_positive_int("num_inference_steps", num_inference_steps)
        if guidance_scale is not None:
            if isinstance(guidance_scale, torch.Tensor) and guidance_scale.numel() == 1:
                guidance_scale = guidance_scale.item()
            check_guidance_scale("guidance_scale", guidance_scale)
        if output_type not in self.output_types:
            raise ValueError(
                f"output_type={output_type!r} is not supported; use one of {self.output_types} ('pil' for images "
                "only)."
            )
        generators = generator if isinstance(generator, (list, tuple)) else [generator]
        if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
            if isinstance(generator, (list, tuple)):
                got = "a list holding " + ", ".join(sorted({type(g).__name__ for g in generators}))
            else:
                got = type(generator).__name__
            raise ValueError(f"generator must be a torch.Generator or a list of them (one per sample), got {got}.")
        if latents is not None:
            if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
                what = f"a {latents.dtype} tensor" if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise ValueError(f"latents must be a floating-point torch.Tensor, got {what}.")
            bad = int((~torch.isfinite(latents)).sum())
            if bad:
                raise ValueError(
                    f"latents hold {bad} non-finite values (NaN or inf); the starting noise must be finite."
                )
        self._check_sampling_memory(batch_size)

    def _sampling_model(self):
        """The model that draws the samples (``labelled_component``: unet, generator, vae), or ``None``."""
        name = self.labelled_component
        model = getattr(self, name, None) if name else None
        return model if isinstance(model, torch.nn.Module) else None

    def _check_sampling_memory(self, batch_size: int, noise_shape=(), model_batch: int | None = None) -> None:
        """Refuse, with the estimate in the message, a request whose sample tensors alone would not fit in memory:
        :func:`genzoo.pipelines.memory.check_sampling_memory` for this pipeline's sampling model, dtype and device,
        ``batch_size`` samples from noise of ``noise_shape`` and ``model_batch`` model inputs per step."""
        try:
            itemsize = torch.empty((), dtype=self.dtype).element_size()
        except Exception:
            itemsize = 4
        check_sampling_memory(self._sampling_model(), itemsize, self.device, batch_size, noise_shape, model_batch,
                              owner=type(self).__name__)

    def _noise(self, shape, generator, latents, batch_size, model_batch: int | None = None):
        """Starting noise of ``(batch_size, *shape)`` from ``generator`` (one, or a list of one per sample), or the
        caller's ``latents`` checked for shape; the request is first checked against the memory it needs
        (:meth:`_check_sampling_memory`, with ``model_batch`` model inputs per step)."""
        shape = tuple(shape)
        self._check_sampling_memory(batch_size, shape, model_batch)
        full = (batch_size, *shape)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"Got a list of {len(generator)} generators for batch_size={batch_size}; pass one generator, "
                "or exactly one per sample."
            )
        if latents is None:
            return randn_tensor(full, generator=generator, device=self.device, dtype=self.dtype)
        if tuple(latents.shape) != full:
            raise ValueError(f"latents must have shape {full} (batch_size, *sample shape), got {tuple(latents.shape)}.")
        return latents.to(device=self.device, dtype=self.dtype)

    def _output(self, samples: torch.Tensor, output_type: str, return_dict: bool, data_range=(-1.0, 1.0)):
        """Images (4-D) become "pil"/"np"/"pt" in [0, 1]; vectors (2-D) become "np"/"pt" as they are. Samples with
        NaN or inf (diverged weights, broken sampler settings) raise ``ValueError`` instead of being returned."""
        bad = int((~torch.isfinite(samples)).sum())
        if bad:
            raise ValueError(
                f"{type(self).__name__} produced {bad} non-finite values (NaN or inf) in {samples.shape[0]} samples of "
                f"shape {tuple(samples.shape[1:])}; the weights or the sampler settings are broken."
            )
        if output_type == "latent" and "latent" in self.output_types:  # the sampling loop's final state, unconverted
            output = ImagePipelineOutput(images=samples) if samples.ndim == 4 else VectorPipelineOutput(samples=samples)
            return output if return_dict else (samples,)
        if samples.ndim == 4:
            if output_type not in IMAGE_OUTPUT_TYPES:
                raise ValueError(f"output_type={output_type!r} is not supported for images; use one of {IMAGE_OUTPUT_TYPES}.")
            low, high = data_range
            images = ((samples.float() - low) / (high - low)).clamp(0, 1)
            if output_type == "pt":
                result = images.cpu()
            else:
                result = images.cpu().permute(0, 2, 3, 1).numpy()
                if output_type == "pil":
                    result = images_to_pil(result)
            return ImagePipelineOutput(images=result) if return_dict else (result,)
        if output_type not in VECTOR_OUTPUT_TYPES:
            raise ValueError(
                f"output_type={output_type!r} is not supported for vector data of shape {tuple(samples.shape[1:])}: "
                f"use one of {VECTOR_OUTPUT_TYPES} (PIL images exist only for image data)."
            )
        result = samples.float().cpu()
        if output_type == "np":
            result = result.numpy()
        return VectorPipelineOutput(samples=result) if return_dict else (result,)


def images_to_pil(images: np.ndarray) -> list[PIL.Image.Image]:
    """``(B, H, W, C)`` floats in [0, 1] -> PIL images (grayscale for one channel)."""
    pixels = (images * 255).round().astype("uint8")
    if pixels.shape[-1] == 1:
        return [PIL.Image.fromarray(p[..., 0]) for p in pixels]  # uint8 2-D arrays become mode "L"
    return [PIL.Image.fromarray(p) for p in pixels]
