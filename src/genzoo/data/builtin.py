"""The built-in data sets: scikit-learn's handwritten digits and six 2-D toy distributions (the colour ``shapes``
are in :mod:`.shapes`), each registered (``setup.cfg``'s ``genzoo.datasets``) as the :class:`~.sets.DataSet`
instance defined beside its data: :data:`DIGITS`, :data:`MOONS`, :data:`EIGHT_GAUSSIANS`, :data:`CHECKERBOARD`,
:data:`SWISSROLL`, :data:`CIRCLES`, :data:`SPIRALS`.

The toys follow the definitions of the FFJORD toy-data code (Grathwohl et al. 2019, ``toy_data.py``), which the flow
matching papers (Lipman et al. 2023) and torchcfm reuse, so numbers measured on them compare with published ones. The
only change: every random draw comes from one ``numpy.random.Generator``, so a seed fixes the points. docs/data.md
lists each set's formula and its measured statistics.
"""

from __future__ import annotations

import numpy as np

from .sets import DataSet, PointDataSet, point_rows

DIGITS_NUM_CLASSES = 10
DIGITS_SPLITS = ("train", "test", "all")
DIGITS_TEST_SIZE = 360  # 20 % of 1797, 35-37 per class (stratified): the held-out reference split of the digits metrics
DIGITS_SPLIT_SEED = 0
_digits_arrays = None  # sklearn's (pixels uint8 (1797, 8, 8), labels int64 (1797,)), built once per process
_digits_indices = None  # {"train": ..., "test": ..., "all": ...}: sorted sklearn indices
_digits = {}  # split -> the digits datasets.Dataset, built once per process

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# The phrasings of the digits' captions; {a} is "a" or "an" before the word ("an eight").
DIGIT_CAPTION_TEMPLATES = (
    "a handwritten {word}",
    "the digit {numeral}",
    "{numeral}",
    "{a} {word}",
    "the number {word}",
    "handwritten {numeral}",
    "an image of the digit {word}",
)


def _check_split(split) -> str:
    if split not in DIGITS_SPLITS:
        from .training_data import DataError

        raise DataError(f"the digits split must be one of {', '.join(DIGITS_SPLITS)}, got {split!r}")
    return split


def digits_split_indices(split: str = "train") -> np.ndarray:
    """The indices into ``sklearn.datasets.load_digits()`` of a digits split, sorted ascending (int64, a copy).

    The 1797 digits are split once, deterministically, by
    ``train_test_split(np.arange(1797), test_size=360, stratify=labels, random_state=0)``: "test" (360 digits, 35-37 per
    class) is the held-out reference of the digits metrics (``genzoo.metrics.digits``) and is never used for training;
    "train" (the other 1437) is what ``--dataset digits`` trains on; "all" is all 1797."""
    global _digits_indices
    _check_split(split)
    if _digits_indices is None:
        from sklearn.model_selection import train_test_split

        _, labels = digits_arrays("all")
        train, test = train_test_split(
            np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
        )
        _digits_indices = {"train": np.sort(train), "test": np.sort(test), "all": np.arange(len(labels))}
        for indices in _digits_indices.values():
            indices.setflags(write=False)
    return _digits_indices[split].astype(np.int64)


def digits_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """A digits split as numpy arrays, without PIL: pixels ``uint8`` of shape (N, 8, 8) with
    pixel = round(v * 255 / 16) for sklearn's values v in 0..16, and labels ``int64`` (N,) in 0..9 (copies)."""
    global _digits_arrays
    _check_split(split)
    if _digits_arrays is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), 0..255
        _digits_arrays = (pixels, digits.target.astype(np.int64))
    pixels, labels = _digits_arrays
    if split == "all":
        return pixels.copy(), labels.copy()
    indices = digits_split_indices(split)
    return pixels[indices], labels[indices]


def digit_captions(label: int) -> list[str]:
    """Every phrasing of the captions of digit ``label`` (0..9), e.g. for 7: "a handwritten seven", "the digit 7",
    "7", "a seven", "the number seven", "handwritten 7", "an image of the digit seven"."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < DIGITS_NUM_CLASSES:
        from .training_data import DataError

        raise DataError(f"a digit label is an int from 0 to {DIGITS_NUM_CLASSES - 1}, got {label!r}")
    word = DIGIT_WORDS[label]
    article = "an" if word == "eight" else "a"  # "an eight", but "a one" (said "wun")
    return [template.format(word=word, numeral=int(label), a=article) for template in DIGIT_CAPTION_TEMPLATES]


def digits_captions(split: str = "train") -> list[str]:
    """The caption of each digit of a split, in row order. The phrasing is fixed by the digit's index into
    ``load_digits()``: the k-th digit of its class there (counting from 0) gets phrasing k mod 7 of
    :func:`digit_captions`, so a digit has the same caption in every split and each class uses every phrasing
    equally often."""
    _check_split(split)
    _, every_label = digits_arrays("all")
    rank = np.zeros(len(every_label), dtype=np.int64)  # rank[i]: how many digits of i's class come before it
    for label in range(DIGITS_NUM_CLASSES):
        rows = np.flatnonzero(every_label == label)
        rank[rows] = np.arange(len(rows))
    phrasings = [digit_captions(label) for label in range(DIGITS_NUM_CLASSES)]
    return [
        phrasings[every_label[i]][rank[i] % len(DIGIT_CAPTION_TEMPLATES)] for i in digits_split_indices(split)
    ]


def digits_dataset(split: str = "train"):
    """scikit-learn's handwritten digits as a ``datasets.Dataset``: an ``image`` column of 8x8 grayscale ("L") PIL
    images, pixel = round(v * 255 / 16) for sklearn's values v in 0..16, a ``label`` ClassLabel "0".."9", and a
    ``caption`` string (one of the phrasings of :func:`digit_captions`, chosen by :func:`digits_captions`).

    ``split``: "train" (default, 1437 digits: what ``--dataset digits`` trains on), "test" (the 360 held-out digits,
    35-37 per class, that the digits metrics use as reference: never train on them) or "all" (1797). Rows keep
    scikit-learn's order; :func:`digits_split_indices` gives each row's index into ``load_digits()``."""
    _check_split(split)
    if split not in _digits:
        import datasets
        import PIL.Image

        pixels, labels = digits_arrays(split)
        features = datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=[str(i) for i in range(DIGITS_NUM_CLASSES)]),
                "caption": datasets.Value("string"),
            }
        )
        _digits[split] = datasets.Dataset.from_dict(
            {
                "image": [PIL.Image.fromarray(p) for p in pixels],
                "label": labels.tolist(),
                "caption": digits_captions(split),
            },
            features=features,
        )
    return _digits[split]


class DigitsDataSet(DataSet):
    """``--dataset digits``: the 1437 "train" digits (8x8 grayscale, labels, captions); evaluated by the shipped
    digits classifier (:mod:`genzoo.metrics.digits`) against the 360 held-out "test" digits."""

    name = "digits"
    data_kind = "image"
    sample_shape = (1, 8, 8)
    description = "scikit-learn's handwritten digits, 8x8 grayscale, 10 classes, with captions"
    card_metrics = {
        "digits_fd": "digits-FD (not Inception FID)",
        "precision": "precision (k-NN manifolds)",
        "recall": "recall (k-NN manifolds)",
        "coverage": "class coverage",
        "class_entropy": "class entropy (nats)",
        "class_accuracy": "accuracy on the asked-for class (the data set's classifier)",
    }
    summary_metrics = ("digits_fd", "precision", "recall", "coverage")
    headline_metrics = {"digits_fd": "lower", "coverage": "higher"}
    eval_samples = 500
    #: The test suite repeats each digits card's evaluation (DDPM's 100 steps included) with 200 samples.
    check_samples = 200
    check_metrics = ("digits_fd", "coverage", "precision", "recall")
    #: precision and recall look at each sample's 5 nearest neighbours among the others
    min_samples = 6

    def rows(self, opts, seed: int):
        if opts.num_samples is not None:  # a recipe shared by toys and images may set it: not an error
            from .training_data import logger

            logger.warning(
                "--num_samples applies to the 2-D toy data sets only; ignored for %r (--max_train_samples caps rows)",
                self.name,
            )
        return digits_dataset()

    def reference(self, num_samples: int, seed: int = 0, resolution: int = 8):
        """The first ``num_samples`` of the 360 held-out "test" digits (all of them at most), float32 (N, 1, R, R) in
        [-1, 1], resized to ``resolution`` as the training data is."""
        from ..metrics.digits import digits_reference_images

        return digits_reference_images("test", resolution)[:num_samples]

    def evaluate(self, pipe, samples, options) -> dict:
        """digits-FD, precision, recall, class coverage and entropy (and, for conditional pipelines, the accuracy on
        the asked-for digit); the IWAE bound of the held-out digits for pipelines that declare ``nll_bound``."""
        import torch

        from ..metrics.digits import digits_reference_images, evaluate_digits
        from ..metrics.evaluate import asked_labels, declares, iwae_bound

        conditioning = pipe.conditioning
        asked = None
        if conditioning != "none":
            asked = asked_labels(options.num_samples, len(pipe.id2label) if conditioning == "class" else 10)
        result = evaluate_digits(samples, reference="test", seed=options.seed, asked_labels=asked)
        if options.likelihood and declares(pipe, "nll_bound"):
            held_out = digits_reference_images(resolution=samples.shape[1])
            labels = None
            if conditioning == "class":  # a conditional VAE bounds -log p(x | y) with the held-out digits' own labels
                labels = torch.from_numpy(digits_arrays("test")[1])
            result.update(iwae_bound(pipe, held_out, options.iwae_k, options.seed, options.recon_loss, labels))
        return result

    def real_data_floor(self, num_samples: int, seed: int = 0, resolution: int = 8) -> dict:
        """The digits metrics of ``num_samples`` real "train" digits (a seeded subset; all 1437 at most) at
        ``resolution`` against the "test" split: all of them score digits-FD about ``digits_fd_floor`` (8.6 at 8x8),
        360 of them 20-27."""
        from ..metrics.digits import digits_reference_images, evaluate_digits

        real = digits_reference_images("train", resolution)
        if num_samples < len(real):
            real = real[np.sort(np.random.default_rng(seed).choice(len(real), num_samples, replace=False))]
        return evaluate_digits(real, reference="test", seed=seed, value_range=(-1.0, 1.0))


DIGITS = DigitsDataSet()


# ---------------------------------------------------------------------------------------------------------- toys
def _sklearn_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def _moons(n, rng):
    from sklearn.datasets import make_moons

    x = make_moons(n_samples=n, noise=0.1, random_state=_sklearn_seed(rng))[0].astype(np.float32)
    return x * 2 + np.array([-1.0, -0.2])


def _8gaussians(n, rng):
    s = 1 / np.sqrt(2)
    centers = 4.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
    points = centers[rng.integers(0, 8, size=n)] + 0.5 * rng.standard_normal((n, 2))
    return points / 1.414


def _checkerboard(n, rng):
    x1 = rng.random(n) * 4 - 2
    x2_ = rng.random(n) - rng.integers(0, 2, size=n) * 2
    x2 = x2_ + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2


def _swissroll(n, rng):
    from sklearn.datasets import make_swiss_roll

    x = make_swiss_roll(n_samples=n, noise=1.0, random_state=_sklearn_seed(rng))[0]
    return x[:, [0, 2]] / 5


def _circles(n, rng):
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=_sklearn_seed(rng))[0] * 3


def _spirals(n, rng):
    # FFJORD's "2spirals": two mirrored arms of n // 2 points; we make ceil(n / 2) per arm and keep n after shuffling.
    half = (n + 1) // 2
    t = np.sqrt(rng.random((half, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.random((half, 1)) * 0.5
    d1y = np.sin(t) * t + rng.random((half, 1)) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    return x + rng.standard_normal(x.shape) * 0.1


MOONS = PointDataSet("moons", _moons, "two interleaved half circles (scikit-learn's make_moons, noise 0.1)")
EIGHT_GAUSSIANS = PointDataSet("8gaussians", _8gaussians, "eight Gaussians on a circle of radius 4 / 1.414")
CHECKERBOARD = PointDataSet("checkerboard", _checkerboard, "uniform on the black squares of a 4x4 checkerboard")
SWISSROLL = PointDataSet("swissroll", _swissroll, "a 2-D swiss roll (scikit-learn's make_swiss_roll, noise 1)")
CIRCLES = PointDataSet("circles", _circles, "two concentric circles (scikit-learn's make_circles)")
SPIRALS = PointDataSet("spirals", _spirals, "two interleaved spirals (FFJORD's 2spirals)")


def point_set(name: str) -> PointDataSet:
    """The registered point data set ``name`` (a toy, or a plugin's :class:`~.sets.PointDataSet`)."""
    from .sets import get_dataset, registered_datasets
    from .training_data import DataError

    data = get_dataset(name)
    if not isinstance(data, PointDataSet):
        toys = [n for n, data in registered_datasets().items() if isinstance(data, PointDataSet)]
        raise DataError(f"unknown toy data set {name!r}; the toys are {', '.join(toys)}")
    return data


def toy_points(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of the 2-D toy ``name`` (a registered :class:`~.sets.PointDataSet`: ``dataset_names("vector")``)
    as a float32 array of shape (n, 2), shuffled, every random draw taken from ``rng``."""
    return point_set(name).points(n, rng)


def toy_dataset(name: str, num_samples: int = 10000, seed: int | None = 0):
    """The toy ``name`` as a ``datasets.Dataset`` with one column ``x`` of float32 pairs, generated with
    ``numpy.random.default_rng(seed)`` (``None`` counts as 0: the data is always reproducible)."""
    return point_rows(toy_points(name, num_samples, np.random.default_rng(0 if seed is None else seed)))
