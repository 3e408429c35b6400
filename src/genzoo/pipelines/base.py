"""What every genzoo pipeline shares: Hub-aware ``from_pretrained``, a ``save_pretrained`` that plain Diffusers can
load back, the starting noise, and turning samples into "pil" / "np" / "pt" outputs for images and vectors."""

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

from ..conditioning import class_label_ids, conditioning_of, model_id2label
from ..hub import push_folder
from ..model_index import PipelineLoadError, pipeline_class_name, read_model_index
from . import loading

IMAGE_OUTPUT_TYPES = ("pil", "np", "pt")
VECTOR_OUTPUT_TYPES = ("np", "pt")


@dataclass
class VectorPipelineOutput(BaseOutput):
    """Samples of vector data (2-D points, feature vectors): ``samples`` has shape ``(batch_size, dim)``,
    a ``numpy.ndarray`` for ``output_type="np"`` or a ``torch.Tensor`` for ``"pt"``."""

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
    """Base class of genzoo's pipelines (and of plugin pipelines that want the same loading and saving)."""

    #: The component whose config holds a class-conditional model's label names (see :mod:`genzoo.conditioning`);
    #: ``None``: the pipeline takes no class labels.
    labelled_component: str | None = None

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
        up in genzoo's registry. ``trust_remote_code`` is accepted for symmetry with Diffusers and has no effect
        here. Components passed as keyword arguments (e.g. ``scheduler=...``) replace the saved ones.
        """
        del trust_remote_code  # genzoo never runs repository code; the argument is accepted for Diffusers parity
        folder = loading.resolve_pretrained_path(
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
        loaded = loading.load_components(
            folder, model_index, allow_pickle=allow_pickle, torch_dtype=torch_dtype, skip=set(components)
        )
        pipe = pipeline_class(**loaded, **components)
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs):
        """Diffusers' folder layout, safetensors only, plus the files that let plain
        ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` load it (see :mod:`.loading`)."""
        if not safe_serialization:
            raise ValueError("genzoo saves weights as safetensors only; safe_serialization=False is not supported.")
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id) to upload; save_pretrained(push_to_hub=True) is not supported.")
        super().save_pretrained(save_directory, safe_serialization=True, **kwargs)
        loading.write_remote_code_files(Path(save_directory), self)

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
        plus ``README.md``. ``revision`` names a branch (created if needed). See :func:`genzoo.hub.push_folder`.
        """
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return push_folder(folder, repo_id, token=token, private=private, commit_message=commit_message,
                               revision=revision, create_pr=create_pr, license=license)

    # ------------------------------------------------------------------ class labels
    @property
    def conditioning(self) -> str:
        """``"text"``, ``"class"`` or ``"none"``: what this pipeline's model is conditioned on, decided from the
        components' configs by :func:`genzoo.conditioning.conditioning_of`, as for a saved folder
        (:func:`genzoo.hub.conditioning_of_folder`)."""
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
        """Ids of label names (Diffusers' ``DiTPipeline.get_label_ids``); unknown names raise ``ValueError``."""
        labels = [label] if isinstance(label, str) else list(label)
        return self._label_ids(labels, len(labels))[0]["class_labels"].tolist()

    def _label_ids(self, class_labels, batch_size: int) -> tuple[dict, int]:
        """``({"class_labels": ids on the pipeline's device}, batch_size)`` for a class-conditional model, ``({},
        batch_size)`` for an unconditional one (which refuses labels); see :func:`genzoo.conditioning.class_label_ids`
        for what ``class_labels`` may be and how it sets the batch size."""
        owner = f"this {type(self).__name__}'s {self.labelled_component}"
        ids, batch_size = class_label_ids(class_labels, batch_size, self.id2label, owner=owner)
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
    def _noise(self, shape, generator, latents, batch_size):
        """Starting noise of ``(batch_size, *shape)`` from ``generator`` (one, or a list of one per sample), or the
        caller's ``latents`` checked for shape."""
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
        """Images (4-D) become "pil"/"np"/"pt" in [0, 1]; vectors (2-D) become "np"/"pt" as they are."""
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
