"""An example genzoo plugin: a pipeline, a scheduler, two models and a training method, found by genzoo through the entry points in
``genzoo_example_plugin-0.1.0.dist-info/entry_points.txt`` (what ``pip install`` would write from the package's own
``setup.cfg`` or ``pyproject.toml``). The test suite puts ``tests/plugins`` on ``sys.path`` to "install" it."""

from .methods import MomentMatchingMethod
from .models import TinyMLPDenoiser, TinyMLPGenerator
from .pipelines import ExampleFlowPipeline
from .schedulers import ShiftedFlowScheduler

__version__ = "0.1.0"
__all__ = ["ExampleFlowPipeline", "MomentMatchingMethod", "ShiftedFlowScheduler", "TinyMLPDenoiser", "TinyMLPGenerator"]
