"""Training methods: one module per family, each registered in the ``genzoo.methods`` entry-point group."""

from .base import Method, MethodConfig, RunContext, randn_like, teacher_option
from .ddpm import DDPMConfig, DDPMMethod
from .denoising import DenoisingConfig, DenoisingMethod
from .flow_matching import FlowMatchingConfig, FlowMatchingMethod
from .gan import GANConfig, GANMethod
from .vae import VAEConfig, VAEMethod

__all__ = [
    "DDPMConfig",
    "DDPMMethod",
    "DenoisingConfig",
    "DenoisingMethod",
    "FlowMatchingConfig",
    "FlowMatchingMethod",
    "GANConfig",
    "GANMethod",
    "Method",
    "MethodConfig",
    "RunContext",
    "VAEConfig",
    "VAEMethod",
    "randn_like",
    "teacher_option",
]
