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
    through the registry. Takes the keyword arguments of :meth:`GenzooPipeline.from_pretrained`."""
    return GenzooPipeline.from_pretrained(pretrained_model_name_or_path, **kwargs)


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
    "load_pipeline",
]
