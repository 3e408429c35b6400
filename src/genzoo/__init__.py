"""genzoo: GANs, VAEs, DDPM and flow matching in Hugging Face Diffusers conventions."""

__version__ = "0.1.0.dev0"

from .schedulers import DDPMScheduler, FlowMatchEulerScheduler, FlowMatchHeunScheduler

__all__ = ["DDPMScheduler", "FlowMatchEulerScheduler", "FlowMatchHeunScheduler", "__version__"]
