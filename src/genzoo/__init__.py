"""genzoo: GANs, VAEs, DDPM and flow matching in Hugging Face Diffusers conventions.

``import genzoo`` is light: the names below are imported from their modules (and with them torch and Diffusers) the
first time they are used, as Diffusers' own top level does, so the command line (``genzoo --help``, ``genzoo list``)
answers without loading the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import registry
from .lazy import lazy_attributes

__version__ = "0.1.0.dev0"

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    **dict.fromkeys(("ConditionalAutoencoderKL", "DCGANDiscriminator", "DCGANGenerator", "MLPDenoiser",
                     "MLPDiscriminator", "MLPGenerator", "MLPVAE"), ".models"),
    **dict.fromkeys(("DDPMPipeline", "FlowMapPipeline", "FlowMatchingPipeline", "GANPipeline", "GenzooPipeline",
                     "PipelineLoadError", "VAEPipeline", "VectorPipelineOutput", "load_pipeline"), ".pipelines"),
    **dict.fromkeys(("DDPMScheduler", "FlowMapEulerScheduler", "FlowMatchEulerScheduler", "FlowMatchHeunScheduler"),
                    ".schedulers"),
}

if TYPE_CHECKING:  # what type checkers and the API reference see; at run time __getattr__ imports them
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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, submodules=True)

__all__ = sorted([*_LAZY, "__version__", "registry"])
