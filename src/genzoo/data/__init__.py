"""Training data for genzoo's trainer: the registered data sets (built-in: scikit-learn's digits, the colour shapes,
six 2-D toys; plugins' through the ``genzoo.datasets`` entry points, see :mod:`.sets`) and user data through
`datasets` (a folder of images, a ``save_to_disk`` folder, a Hub dataset). See docs/data.md.

    parser = argparse.ArgumentParser()
    add_data_arguments(parser)                       # --dataset, --resolution, --center_crop, --random_flip, ...
    data = load_training_data(parser.parse_args())   # TrainingData: .dataset, .kind, .sample_shape, .num_classes,
                                                     # .captions (with --caption_column / --conditioning text), ...
    dataset_names("vector")                          # the registered 2-D sets: 8gaussians, checkerboard, ...
"""

from .builtin import digit_captions, digits_dataset, toy_dataset, toy_points
from .loading import add_data_arguments, load_training_data
from .sets import DataSet, PointDataSet, dataset_names, get_dataset, registered_datasets
from .training_data import DataError, ImageDataset, TrainingData, VectorDataset, augmentation_seed

__all__ = [
    "DataError",
    "DataSet",
    "ImageDataset",
    "PointDataSet",
    "TrainingData",
    "VectorDataset",
    "add_data_arguments",
    "augmentation_seed",
    "dataset_names",
    "digit_captions",
    "digits_dataset",
    "get_dataset",
    "load_training_data",
    "registered_datasets",
    "toy_dataset",
    "toy_points",
]
