"""The one Accelerate trainer for every method (see :mod:`genzoo.methods.base` for what a method provides)."""

from .arguments import RecipeError, TrainerConfig, build_parser, load_recipe, parse_args
from .checkpoints import list_checkpoints
from .errors import TrainingError
from .options_doc import options_markdown
from .trainer import Trainer, TrainResult, main, train

__all__ = [
    "RecipeError",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "TrainingError",
    "build_parser",
    "list_checkpoints",
    "load_recipe",
    "main",
    "options_markdown",
    "parse_args",
    "train",
]
