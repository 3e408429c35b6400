"""From command-line options to :class:`TrainingData`: resolve ``--dataset``, check the data, build the torch dataset.

``--dataset`` resolves, in this order, to
  1. a registered data set (``dataset_names()``: the built-ins and plugins' ``genzoo.datasets`` entry points),
     whose :meth:`~.sets.DataSet.rows` gives the rows,
  2. an existing local folder: one written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (its "train"
     split) is read with ``datasets.load_from_disk``, any other folder with ``load_dataset("imagefolder", ...)``,
  3. a Hub dataset id, read with ``load_dataset(id, dataset_config_name, cache_dir=..., split="train")``.
Diffusers' ``--dataset_name`` and ``--train_data_dir`` are aliases of ``--dataset``.

Every problem found before training starts is a :class:`DataError` naming the value and what to do; see docs/data.md.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from pathlib import Path

import numpy as np

from ..checks import check_positive_int
from .sets import dataset_names, get_dataset
from .training_data import (
    DataError,
    ImageDataset,
    TrainingData,
    VectorDataset,
    describe_image_value,
    is_grayscale,
    logger,
    open_image,
    resize_short_side,
)

DEFAULT_DATASET = "digits"
DEFAULT_NUM_SAMPLES = 10000
DEFAULT_VECTOR_COLUMN = "x"
VALIDATE_ALL_UP_TO = 20000  # data sets up to this many images are decoded and checked entirely at load time
VALIDATE_FIRST = 1000  # larger ones: the first this many at load time, the rest as training reads them
PROBE_IMAGES = 64  # --num_channels defaults to 1 when the first this many good images are all grayscale
CACHE_BYTES = 512 * 2**20  # decoded, resized images are kept in memory when they fit in this many bytes
MIN_RESOLUTION = 4
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the data options (an argument group "data") to the trainer's ``parser``. Names and meanings follow
    Diffusers' ``train_unconditional.py`` where it has them."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset", default=DEFAULT_DATASET,
        help=f"a registered data set ({', '.join(dataset_names())}), a local folder (of images, or written by "
        f"save_to_disk) or a Hub dataset id (default: {DEFAULT_DATASET})",
    )
    g.add_argument("--dataset_name", default=None, help="Diffusers' name for --dataset: a Hub dataset id or a path")
    g.add_argument("--train_data_dir", default=None, help="Diffusers' name for --dataset: a local folder of images")
    g.add_argument("--dataset_config_name", default=None, help="the config of a Hub dataset, if it has several")
    g.add_argument("--cache_dir", default=None, help="where `datasets` caches downloaded and prepared data")
    g.add_argument(
        "--image_column", default=None,
        help='the column holding the images (default: "image", else "img", else the first column of Image type)',
    )
    g.add_argument(
        "--label_column", default=None,
        help='the column holding class labels (default: "label" if there is one; "none" ignores labels)',
    )
    g.add_argument(
        "--caption_column", default=None,
        help='the column holding captions, one string per row (default with --conditioning text: "caption", else '
        '"text"; otherwise captions are read only when this is given; "none" ignores captions)',
    )
    g.add_argument(
        "--vector_column", default=None,
        help=f"for data without images: the column holding equal-length lists of numbers "
        f"(default: {DEFAULT_VECTOR_COLUMN})",
    )
    g.add_argument(
        "--max_train_samples", type=int, default=None, help="use only the first this many rows (no shuffling)"
    )
    g.add_argument(
        "--resolution", type=int, default=None,
        help="images are resized (short side) and cropped to resolution x resolution (default: the short side of "
        "the first image; 8 for digits; shapes are drawn at it, default 32)",
    )
    g.add_argument(
        "--center_crop", action="store_true",
        help="crop the center of each resized image (default: a random crop, seeded)",
    )
    g.add_argument("--random_flip", action="store_true", help="flip images horizontally with probability 0.5 (seeded)")
    g.add_argument(
        "--num_channels", type=int, default=None,
        help="1 (grayscale) or 3 (RGB); default: 1 when the first images are all grayscale, else 3",
    )
    g.add_argument(
        "--num_samples", type=int, default=None,
        help=f"number of points of a 2-D toy data set (default: {DEFAULT_NUM_SAMPLES}), or of shapes training images "
        "(default: 10000)",
    )
    g.add_argument(
        "--data_seed", type=int, default=None,
        help="seed of the toy points and of the random crops and flips (default: --seed, else 0)",
    )
    g.add_argument(
        "--max_bad_images_fraction", type=float, default=0.01,
        help="undecodable images are skipped up to this fraction of the data; beyond it loading fails (default 0.01)",
    )


def load_training_data(args: argparse.Namespace) -> TrainingData:
    """Build the :class:`TrainingData` the options in ``args`` describe (options ``args`` lacks take their defaults;
    ``args.seed`` seeds the data unless ``--data_seed`` is given; ``args.conditioning`` == "text" makes captions
    required). Raises :class:`DataError` for every data problem."""
    opts = _options(args)
    conditioning = getattr(args, "conditioning", None) or "none"
    seed = opts.data_seed if opts.data_seed is not None else getattr(args, "seed", None)
    seed = 0 if seed is None else seed
    _check_options(opts, seed)
    name = _dataset_name(opts)

    registered = get_dataset(name)
    if registered is not None:
        hf, source = registered.rows(opts, seed), "builtin"
    else:
        if opts.num_samples is not None:  # a recipe shared by toys and images may set it: not an error
            logger.warning(
                "--num_samples applies to the 2-D toy data sets only; ignored for %r (--max_train_samples caps rows)",
                name,
            )
        hf, source = _load_external(name, opts)

    if opts.max_train_samples is not None and opts.max_train_samples < len(hf):
        hf = hf.select(range(opts.max_train_samples))
    if len(hf) == 0:
        raise DataError(f"the data set {name!r} is empty; it needs at least one row")

    columns = hf.column_names
    image_column = _image_column(hf, opts, name)
    caption_column = _caption_column(hf, opts, name, conditioning)
    if image_column is None:
        vector_column = opts.vector_column or DEFAULT_VECTOR_COLUMN
        if vector_column not in columns:
            given = f"--vector_column {opts.vector_column!r} is not one of them" if opts.vector_column else (
                f"it has no image column (Image type, or named image / img) and no vector column {vector_column!r}"
            )
            raise DataError(
                f"the data set {name!r} has columns {_describe_columns(hf)}: {given}; name the images with "
                "--image_column or the vectors with --vector_column"
            )
        _ignore_image_options(opts, name)
        hf, labels, num_classes, id2label = _labels(hf, opts, name)
        captions = _captions(hf, caption_column, name)
        vectors = _vectors(hf, vector_column, name)
        return TrainingData(
            dataset=VectorDataset(vectors, labels, captions),
            kind="vector",
            sample_shape=(vectors.shape[1],),
            name=name,
            hf_dataset=hf,
            num_classes=num_classes,
            id2label=id2label,
            captions=captions,
            source=source,
            details={
                "vector_column": vector_column,
                "label_column": _label_column(hf, opts),
                "caption_column": caption_column,
                "seed": seed,
            },
        )
    return _image_data(hf, image_column, caption_column, opts, name, source, seed)


# --------------------------------------------------------------------------------------------------- options
def _options(args: argparse.Namespace) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    add_data_arguments(parser)
    opts = parser.parse_args([])
    for key in vars(opts):
        if hasattr(args, key):
            setattr(opts, key, getattr(args, key))
    return opts


def _check_options(opts, seed) -> None:
    if opts.resolution is not None:
        check_positive_int("--resolution", opts.resolution, error=DataError, minimum=MIN_RESOLUTION)
    if opts.num_channels is not None and opts.num_channels not in (1, 3):
        raise DataError(f"--num_channels must be 1 (grayscale) or 3 (RGB), got {opts.num_channels!r}")
    for name in ("max_train_samples", "num_samples"):
        if getattr(opts, name) is not None:
            check_positive_int(f"--{name}", getattr(opts, name), error=DataError)
    if not 0.0 <= float(opts.max_bad_images_fraction) <= 1.0:
        raise DataError(f"--max_bad_images_fraction must be between 0 and 1, got {opts.max_bad_images_fraction!r}")
    check_positive_int("the data seed (--data_seed, else --seed)", seed, error=DataError, minimum=0)


def _ignore_image_options(opts, name) -> None:
    """Image options with vector data are ignored, with a warning: a recipe shared by images and toys may set them."""
    given = [
        option
        for option, value in (
            ("--resolution", opts.resolution),
            ("--num_channels", opts.num_channels),
            ("--center_crop", opts.center_crop or None),
            ("--random_flip", opts.random_flip or None),
            ("--image_column", opts.image_column),
        )
        if value is not None
    ]
    if given:
        logger.warning("%s: image options, ignored for the vector data %r", ", ".join(given), name)


def _dataset_name(opts) -> str:
    aliases = {v for v in (opts.dataset_name, opts.train_data_dir) if v is not None}
    if opts.dataset not in (None, DEFAULT_DATASET):
        aliases.add(opts.dataset)
    if len(aliases) > 1:
        given = ", ".join(
            f"{option} {value!r}"
            for option, value in (
                ("--dataset", opts.dataset), ("--dataset_name", opts.dataset_name),
                ("--train_data_dir", opts.train_data_dir),
            )
            if value is not None
        )
        raise DataError(f"the data set is named twice, differently ({given}); give one of them")
    name = aliases.pop() if aliases else (opts.dataset or DEFAULT_DATASET)
    return os.fspath(name)


# ------------------------------------------------------------------------------------------------- resolving
def _load_external(name: str, opts):
    import datasets

    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(
                f"--dataset {name!r} is a file; give a folder of images, a folder written by save_to_disk, "
                "or a Hub dataset id"
            )
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            try:
                loaded = datasets.load_from_disk(str(path))
            except Exception as err:
                if _saved_without_rows(path):  # datasets cannot read back an empty save_to_disk folder
                    raise DataError(f"the data set saved in {name!r} is empty; it needs at least one row") from err
                raise DataError(
                    f"could not read the data set saved in {name!r} with datasets.load_from_disk: "
                    f"{type(err).__name__}: {err}"
                ) from err
            if isinstance(loaded, datasets.DatasetDict):
                if "train" not in loaded:
                    raise DataError(
                        f"the DatasetDict saved in {name!r} has no 'train' split (its splits: {', '.join(loaded)}); "
                        "save the training rows as 'train'"
                    )
                loaded = loaded["train"]
            return loaded, "disk"
        try:
            loaded = datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=opts.cache_dir, split="train")
        except FileNotFoundError as err:  # datasets' EmptyDatasetError: no image files at all
            raise DataError(
                f"the folder {name!r} holds no images (looked for image files in it and its subfolders); "
                "add images, or give a folder written by save_to_disk"
            ) from err
        return loaded, "imagefolder"

    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or not _HUB_ID.match(name):
        raise DataError(
            f"no such folder: {name!r} (looked in {os.getcwd()}); --dataset takes a built-in name "
            f"({', '.join(dataset_names())}), an existing local folder, or a Hub dataset id like 'namespace/name'"
        )
    if "/" not in name:
        close = difflib.get_close_matches(name.lower(), dataset_names(), n=1, cutoff=0.8)
        if close:
            raise DataError(
                f"unknown data set {name!r}: did you mean {close[0]!r}? The built-in data sets are "
                f"{', '.join(dataset_names())}; anything else is a local folder or a Hub dataset id"
            )
    return _load_hub(name, opts), "hub"


def _saved_without_rows(path: Path) -> bool:
    import json

    try:
        return json.loads((path / "state.json").read_text()).get("_data_files") == []
    except (OSError, ValueError):
        return False


def _load_hub(name: str, opts):
    import datasets
    from huggingface_hub import constants

    try:
        return datasets.load_dataset(name, opts.dataset_config_name, cache_dir=opts.cache_dir, split="train")
    except ConnectionError as err:
        offline = (
            "offline mode is on (HF_HUB_OFFLINE=1); unset it, or download the data set beforehand"
            if constants.HF_HUB_OFFLINE
            else "check the network connection"
        )
        raise DataError(
            f"{name!r} is not a built-in data set ({', '.join(dataset_names())}) nor a local folder, and the "
            f"Hugging Face Hub could not be reached to load it as a Hub dataset: {offline}"
        ) from err
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(
            f"{name!r} is not a built-in data set ({', '.join(dataset_names())}), a local folder, nor a Hub dataset "
            f"this account can read: {err}"
        ) from err
    except Exception as err:
        raise DataError(f"could not load the Hub dataset {name!r}: {type(err).__name__}: {err}") from err


# --------------------------------------------------------------------------------------------------- columns
def _describe_columns(hf) -> str:
    return ", ".join(f"{c} ({type(f).__name__})" for c, f in hf.features.items()) or "(none)"


def _image_column(hf, opts, name) -> str | None:
    import datasets

    if opts.image_column is not None:
        if opts.image_column not in hf.column_names:
            raise DataError(
                f"--image_column {opts.image_column!r} is not a column of {name!r}; its columns are "
                f"{_describe_columns(hf)}"
            )
        return opts.image_column
    for candidate in ("image", "img"):
        if candidate in hf.column_names:
            return candidate
    for column, feature in hf.features.items():
        if isinstance(feature, datasets.Image):
            return column
    return None


def _label_column(hf, opts) -> str | None:
    if opts.label_column is None:
        return "label" if "label" in hf.column_names else None
    if opts.label_column.strip().lower() in ("", "none"):
        return None
    return opts.label_column


def _caption_column(hf, opts, name, conditioning) -> str | None:
    """The column to read captions from, or ``None`` for no captions. Without ``--caption_column``, captions are
    read only for ``--conditioning text``: from "caption", else "text"; a data set with neither is an error."""
    given = opts.caption_column
    if given is not None and not isinstance(given, str):
        raise DataError(f"--caption_column must be a column name (a string) or none, got {given!r}")
    if given is not None and given.strip().lower() in ("", "none"):
        return None
    if given is not None:
        if given not in hf.column_names:
            raise DataError(
                f"--caption_column {given!r} is not a column of {name!r}; its columns are {_describe_columns(hf)} "
                "(use --caption_column none for no captions)"
            )
        return given
    if conditioning != "text":
        return None
    for candidate in ("caption", "text"):
        if candidate in hf.column_names:
            return candidate
    raise DataError(
        f"--conditioning text needs captions, and {name!r} has no 'caption' or 'text' column; its columns are "
        f"{_describe_columns(hf)}: pass --caption_column to name the column of captions"
    )


def _captions(hf, column, name, describe_row=None) -> list[str] | None:
    """The strings of the caption ``column`` (``None`` for none), one per row of ``hf``; a missing (None) or
    non-string caption is a :class:`DataError` naming the row (``describe_row(i)`` says where row ``i`` came from)."""
    if column is None:
        return None
    captions = hf.select_columns([column]).with_format(None)[:][column]
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            where = describe_row(i) if describe_row is not None else f"row {i}"
            if caption is None:
                raise DataError(
                    f"the caption column {column!r} of {name!r} has no caption (None) for {where}; give every row a "
                    "caption (an empty string is allowed), or drop the row"
                )
            raise DataError(
                f"the caption column {column!r} of {name!r} holds {hf.features[column]}, not strings: {where} is "
                f"{caption!r}; name the column of captions with --caption_column (or none for no captions)"
            )
    return list(captions)


def _column_array(hf, column) -> np.ndarray:
    return np.asarray(hf.select_columns([column]).with_format("numpy")[:][column])


def _labels(hf, opts, name):
    """(hf, labels array or None, num_classes, id2label); string labels are encoded as a ClassLabel (sorted)."""
    import datasets

    column = _label_column(hf, opts)
    if column is None:
        return hf, None, None, None
    if column not in hf.column_names:
        raise DataError(
            f"--label_column {column!r} is not a column of {name!r}; its columns are {_describe_columns(hf)} "
            "(use --label_column none for no labels)"
        )
    feature = hf.features[column]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        hf = hf.class_encode_column(column)
        feature = hf.features[column]
    if isinstance(feature, datasets.ClassLabel):
        num_classes, id2label = feature.num_classes, dict(enumerate(feature.names))
    elif isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        num_classes, id2label = None, None
    else:
        raise DataError(
            f"the label column {column!r} of {name!r} holds {feature}; labels must be ints, a ClassLabel or strings "
            "(use --label_column none for no labels)"
        )
    labels = _column_array(hf, column).astype(np.int64)
    if labels.min() < 0:
        raise DataError(
            f"the label column {column!r} of {name!r} has negative (missing?) labels, e.g. row "
            f"{int(np.argmax(labels < 0))}; labels must be 0 .. num_classes - 1"
        )
    if num_classes is None:
        num_classes = int(labels.max()) + 1
        id2label = {i: str(i) for i in range(num_classes)}
    return hf, labels, num_classes, id2label


def _vectors(hf, column, name) -> np.ndarray:
    try:
        vectors = _column_array(hf, column)
    except Exception as err:
        raise DataError(f"could not read column {column!r} of {name!r} as numbers: {err}") from err
    if vectors.dtype == object or vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
        raise DataError(
            f"the vector column {column!r} of {name!r} holds {hf.features[column]}; it must hold lists of numbers, "
            "all of the same length"
        )
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise DataError(
            f"the vector column {column!r} of {name!r} has {int(bad.sum())} rows with NaN or infinite values, "
            f"first row {int(np.argmax(bad))}; remove them"
        )
    return vectors.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- images
def _iter_images(values, column, stop, chunk=256):
    """(row, undecoded Image value) for rows 0 .. stop - 1, read in chunks."""
    for start in range(0, stop, chunk):
        for offset, value in enumerate(values[start : min(stop, start + chunk)][column]):
            yield start + offset, value


def _image_data(hf, image_column, caption_column, opts, name, source, seed) -> TrainingData:
    import datasets

    try:
        values = hf.cast_column(image_column, datasets.Image(decode=False))
    except Exception as err:
        raise DataError(
            f"the image column {image_column!r} of {name!r} holds {hf.features[image_column]}, not images "
            f"(image files, paths or bytes); its columns are {_describe_columns(hf)}"
        ) from err
    n = len(values)
    checked = n if n <= VALIDATE_ALL_UP_TO else VALIDATE_FIRST

    # --num_channels and --resolution defaults, from the first good images
    modes, first_size = [], None  # modes: is each image grayscale
    for _, value in _iter_images(values, image_column, checked):
        try:
            image = open_image(value)
        except Exception:
            continue
        modes.append(is_grayscale(image))
        first_size = first_size or image.size
        if len(modes) == PROBE_IMAGES:
            break
    num_channels = opts.num_channels or (1 if modes and all(modes) else 3)
    resolution = opts.resolution or (min(first_size) if first_size else MIN_RESOLUTION)

    # decode every image up to `checked` once: bad ones are dropped; good ones are kept, resized, if they fit in memory
    cache, cache_bytes, bad, good = ([] if checked == n else None), 0, [], []
    for i, value in _iter_images(values, image_column, checked):
        try:
            image = open_image(value)
            if cache is not None:
                array = resize_short_side(image, resolution, num_channels)
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError...)
            bad.append((i, value, err))
            continue
        good.append(i)
        if cache is not None:
            cache.append(array)
            cache_bytes += array.nbytes
            if cache_bytes > CACHE_BYTES:
                cache = None
    if bad:
        i, value, err = bad[0]
        first = f"first: {describe_image_value(value, i)}: {type(err).__name__}: {err}"
        if len(bad) > opts.max_bad_images_fraction * checked:
            raise DataError(
                f"{len(bad)} of {checked} images in {name!r} failed to decode, more than "
                f"--max_bad_images_fraction={opts.max_bad_images_fraction} allows; {first}. Fix or remove the bad "
                "files, or raise --max_bad_images_fraction"
            )
        keep = good + list(range(checked, n))
        if not keep:
            raise DataError(f"none of the {n} images in {name!r} could be decoded; {first}")
        logger.warning("skipped %d of %d images that failed to decode: %s", len(bad), checked, first)
        hf, values = hf.select(keep), values.select(keep)
    hf, labels, num_classes, id2label = _labels(hf, opts, name)

    def describe_row(i):
        where = describe_image_value(values[i][image_column], i)
        return where if where.startswith("row ") else f"row {i} ({where})"

    captions = _captions(hf, caption_column, name, describe_row)

    dataset = ImageDataset(
        values,
        image_column,
        labels,
        resolution=resolution,
        num_channels=num_channels,
        center_crop=opts.center_crop,
        random_flip=opts.random_flip,
        seed=seed,
        images=cache,
        max_bad_fraction=opts.max_bad_images_fraction,
        captions=captions,
    )
    return TrainingData(
        dataset=dataset,
        kind="image",
        sample_shape=(num_channels, resolution, resolution),
        name=name,
        hf_dataset=hf,
        num_classes=num_classes,
        id2label=id2label,
        captions=captions,
        source=source,
        num_skipped=len(bad),
        details={
            "image_column": image_column,
            "label_column": _label_column(hf, opts),
            "caption_column": caption_column,
            "resolution": resolution,
            "num_channels": num_channels,
            "center_crop": opts.center_crop,
            "random_flip": opts.random_flip,
            "seed": seed,
            "checked_images": checked,
            "in_memory": cache is not None,
        },
    )
