"""genzoo: GANs, VAEs, DDPM and flow matching in Hugging Face Diffusers conventions."""

__version__ = "0.1.0.dev0"

from . import registry
from .models import (
    ConditionalAutoencoderKL,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDenoiser,
    MLPDiscriminator,
    MLPGenerator,
    MLPVAE,
)
from .pipelines import (
    DDPMPipeline,
    FlowMapPipeline,
    FlowMatchingPipeline,
    GANPipeline,
    GenzooPipeline,
    PipelineLoadError,
    VAEPipeline,
    VectorPipelineOutput,
    load_pipeline,
)
from .schedulers import DDPMScheduler, FlowMapEulerScheduler, FlowMatchEulerScheduler, FlowMatchHeunScheduler

__all__ = [
    "ConditionalAutoencoderKL",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DDPMPipeline",
    "DDPMScheduler",
    "FlowMapEulerScheduler",
    "FlowMapPipeline",
    "FlowMatchEulerScheduler",
    "FlowMatchHeunScheduler",
    "FlowMatchingPipeline",
    "GANPipeline",
    "GenzooPipeline",
    "MLPDenoiser",
    "MLPDiscriminator",
    "MLPGenerator",
    "MLPVAE",
    "PipelineLoadError",
    "VAEPipeline",
    "VectorPipelineOutput",
    "__version__",
    "load_pipeline",
    "registry",
]
