"""Training methods: one module per family, each registered in the ``genzoo.methods`` entry-point group."""

from .base import Method, randn_like
from .denoising import DDPMMethod, DenoisingMethod, FlowMatchingMethod
from .gan import GANMethod
from .vae import VAEMethod

__all__ = ["DDPMMethod", "DenoisingMethod", "FlowMatchingMethod", "GANMethod", "Method", "VAEMethod", "randn_like"]
