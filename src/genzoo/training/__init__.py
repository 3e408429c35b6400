"""The one Accelerate trainer for every method (see :mod:`genzoo.methods.base` for what a method provides)."""

from .arguments import RecipeError, build_parser, load_recipe, parse_args
from .trainer import Trainer, TrainingError, TrainResult, list_checkpoints, main, train

__all__ = [
    "RecipeError",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "build_parser",
    "list_checkpoints",
    "load_recipe",
    "main",
    "parse_args",
    "train",
]
