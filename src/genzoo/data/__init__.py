"""Training data for genzoo's trainer: the built-in sets (scikit-learn's digits, six 2-D toys) and user data through
`datasets` (a folder of images, a ``save_to_disk`` folder, a Hub dataset). See docs/data.md.

    parser = argparse.ArgumentParser()
    add_data_arguments(parser)                       # --dataset, --resolution, --center_crop, --random_flip, ...
    data = load_training_data(parser.parse_args())   # TrainingData: .dataset, .kind, .sample_shape, .num_classes,
                                                     # .captions (with --caption_column / --conditioning text), ...
"""

from .builtin import BUILTIN_DATASETS, TOY_DATASETS, digit_captions, digits_dataset, toy_dataset, toy_points
from .loading import add_data_arguments, load_training_data
from .training_data import DataError, ImageDataset, TrainingData, VectorDataset, augmentation_seed

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "ImageDataset",
    "TOY_DATASETS",
    "TrainingData",
    "VectorDataset",
    "add_data_arguments",
    "augmentation_seed",
    "digit_captions",
    "digits_dataset",
    "load_training_data",
    "toy_dataset",
    "toy_points",
]
