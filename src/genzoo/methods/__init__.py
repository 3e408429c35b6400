"""Training methods: one module per family, each registered in the ``genzoo.methods`` entry-point group."""

from .base import Method, MethodConfig, RunContext, randn_like, teacher_option
from .ddpm import DDPMConfig, DDPMMethod
from .denoising import DenoisingConfig, DenoisingMethod
from .dmd import DMDConfig, DMDMethod
from .flow_matching import FlowMatchingConfig, FlowMatchingMethod, FlowPathConfig
from .gan import GANConfig, GANMethod
from .meanflow import MeanFlowConfig, MeanFlowMethod
from .rectified_flow import RectifiedFlowConfig, RectifiedFlowMethod
from .vae import VAEConfig, VAEMethod

__all__ = [
    "DDPMConfig",
    "DDPMMethod",
    "DenoisingConfig",
    "DenoisingMethod",
    "DMDConfig",
    "DMDMethod",
    "FlowMatchingConfig",
    "FlowMatchingMethod",
    "FlowPathConfig",
    "GANConfig",
    "GANMethod",
    "MeanFlowConfig",
    "MeanFlowMethod",
    "Method",
    "MethodConfig",
    "RectifiedFlowConfig",
    "RectifiedFlowMethod",
    "RunContext",
    "VAEConfig",
    "VAEMethod",
    "randn_like",
    "teacher_option",
]
