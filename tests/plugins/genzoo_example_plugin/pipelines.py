"""A plugin pipeline: flow matching with a small default number of steps."""

from genzoo.pipelines import FlowMatchingPipeline


class ExampleFlowPipeline(FlowMatchingPipeline):
    default_num_inference_steps = 8
