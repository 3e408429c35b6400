"""genzoo's schedulers: each owns its probability path, training side and sampling side."""

from .diffusers_interop import DiffusersFlowMatchAdapter, diffusers_scheduler
from .paths import PREDICTION_TYPES, AffinePath
from .scheduling_ddpm import DDPMScheduler, DDPMSchedulerOutput
from .scheduling_flow_map import FlowMapEulerScheduler
from .scheduling_flow_match import FlowMatchEulerScheduler, FlowMatchSchedulerOutput, shift_time
from .scheduling_flow_match_heun import FlowMatchHeunScheduler

__all__ = [
    "AffinePath",
    "DDPMScheduler",
    "DDPMSchedulerOutput",
    "DiffusersFlowMatchAdapter",
    "FlowMapEulerScheduler",
    "FlowMatchEulerScheduler",
    "FlowMatchHeunScheduler",
    "FlowMatchSchedulerOutput",
    "PREDICTION_TYPES",
    "diffusers_scheduler",
    "shift_time",
]
