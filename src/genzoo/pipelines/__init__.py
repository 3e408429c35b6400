"""genzoo's pipelines: Diffusers ``DiffusionPipeline`` subclasses for the four families."""

from ..model_index import PipelineLoadError
from .base import GenzooPipeline, VectorPipelineOutput
from .pipeline_ddpm import DDPMPipeline
from .pipeline_denoising import DenoisingPipeline
from .pipeline_flow_map import FlowMapPipeline
from .pipeline_flow_matching import FlowMatchingPipeline
from .pipeline_gan import GANPipeline
from .pipeline_vae import VAEPipeline


def load_pipeline(pretrained_model_name_or_path, **kwargs):
    """Load any genzoo (or plugin) pipeline from a folder or a Hub id; the class comes from ``model_index.json``
    through the registry.

    Args:
        pretrained_model_name_or_path (str | os.PathLike): a folder written by ``save_pretrained`` (or the trainer)
            or a Hub repo id.
        **kwargs (Any): the keyword arguments of ``GenzooPipeline.from_pretrained`` (``revision``, ``token``,
            ``cache_dir``, ``local_files_only``, ``torch_dtype``, ``allow_pickle``, replacement components).

    Returns:
        (GenzooPipeline): the pipeline, of the class its ``model_index.json`` names.

    Raises:
        PipelineLoadError: a folder or repo that is not a loadable genzoo pipeline (one line saying why).
    """
    return GenzooPipeline.from_pretrained(pretrained_model_name_or_path, **kwargs)


def load_frozen_pipeline(source, device, option: str):
    """A trained pipeline (folder or Hub id) that a training run uses but does not train (a ``--teacher``, a
    ``--vae``): on ``device``, every module in eval mode with ``requires_grad`` off, no progress bars. A folder or
    repo that cannot be read is a ``ValueError`` naming ``option``."""
    import torch

    try:
        pipe = load_pipeline(source)
    except OSError as exc:
        raise ValueError(f"{option} {source}: {' '.join(str(exc).split())}") from None
    pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


__all__ = [
    "DDPMPipeline",
    "DenoisingPipeline",
    "FlowMapPipeline",
    "FlowMatchingPipeline",
    "GANPipeline",
    "GenzooPipeline",
    "PipelineLoadError",
    "VAEPipeline",
    "VectorPipelineOutput",
    "load_frozen_pipeline",
    "load_pipeline",
]
