"""Rectified flow (Liu et al. 2022, "Flow straight and fast"): reflow and distillation from a teacher pipeline.

SKELETON: being written.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import teacher_option
from .flow_matching import FlowMatchingConfig, FlowMatchingMethod


@dataclass
class RectifiedFlowConfig(FlowMatchingConfig):
    teacher: str | None = teacher_option()


class RectifiedFlowMethod(FlowMatchingMethod):
    name = "rectified-flow"
    Config = RectifiedFlowConfig
