"""MeanFlow (Geng et al. 2025). SKELETON: being written."""

from __future__ import annotations

from dataclasses import dataclass

from .flow_matching import FlowMatchingConfig, FlowMatchingMethod


@dataclass
class MeanFlowConfig(FlowMatchingConfig):
    pass


class MeanFlowMethod(FlowMatchingMethod):
    name = "meanflow"
    Config = MeanFlowConfig
