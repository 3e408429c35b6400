"""genzoo's schedulers: each owns the training side and the sampling side of its probability path.

The path and the solver are apart: :mod:`.paths` holds the path math (:class:`AffinePath`, and the flow-time paths
:class:`ProbabilityPath` -- ``straight``, ``cosine``, plugins' -- that every flow solver takes through its ``path``
option); :mod:`.checks` the validation of arguments and the end every ``step`` shares; :mod:`.kinds` finds the
registered schedulers by what they declare (``model_kind``, ``solver_name``, ``solver_label``).
"""

from .diffusers_interop import DiffusersFlowMatchAdapter, diffusers_scheduler
from .paths import PREDICTION_TYPES, AffinePath, CosinePath, ProbabilityPath, StraightPath
from .scheduling_ddpm import DDPMScheduler, DDPMSchedulerOutput
from .scheduling_flow_map import FlowMapEulerScheduler
from .scheduling_flow_match import FlowMatchEulerScheduler, FlowMatchSchedulerOutput, shift_time
from .scheduling_flow_match_heun import FlowMatchHeunScheduler

__all__ = [
    "AffinePath",
    "CosinePath",
    "DDPMScheduler",
    "DDPMSchedulerOutput",
    "DiffusersFlowMatchAdapter",
    "FlowMapEulerScheduler",
    "FlowMatchEulerScheduler",
    "FlowMatchHeunScheduler",
    "FlowMatchSchedulerOutput",
    "PREDICTION_TYPES",
    "ProbabilityPath",
    "StraightPath",
    "diffusers_scheduler",
    "shift_time",
]
