"""Sample-quality metrics for 8x8 digits from a small classifier: digits-FD, precision/recall, class coverage/entropy.

A :class:`DigitsClassifier` (a 3-conv CNN, 72,842 parameters, 292 kB) is trained by ``python -m
genzoo.metrics.train_digits_classifier`` on the **train** split of scikit-learn's digits only (1437 images; see
``genzoo.data.builtin.digits_split_indices``) and shipped as ``digits_classifier.safetensors`` with a JSON sidecar
(held-out accuracy 99.7 %, seed, sizes, architecture, versions, sha256). Its 64-d penultimate features (the last
hidden layer's pre-activations) play the role Inception's pool features play in FID, and its predicted classes give
the class histogram. It was also trained to give uniform class probabilities on noise images (outlier exposure), so
that noise lands away from the digits in feature space. The reference is the held-out **test** split (360 digits,
35-37 per class), which neither the classifier nor any ``--dataset digits`` model trains on.

.. warning::
   **digits-FD is not FID.** It is a Fréchet distance in the feature space of a tiny classifier of 8x8 digits, not
   of Inception-v3 on 299x299 images, so its numbers are **not comparable with any published FID**, nor with
   digits-FD from another classifier checkpoint. It is also estimated from few samples: 360 reference digits and 64-d
   features, and FD's estimate is biased upwards at small sample sizes (the bias grows with the feature dimension and
   shrinks roughly as 1 / N). Compare models only at the same number of samples and the same reference, and always
   report the floor: the digits-FD between the real train split (1437) and the real test split (360),
   :func:`digits_fd_floor` (8.6 at 8x8, 4.1 at 16x16 and 32x32; ``evaluate_digits`` returns it as
   ``digits_fd_floor``). Random subsets of the train split score about 11 with 1000 digits and 20-27 with 360, so
   with fewer samples expect more. Uniform noise scores about 6800 (at 8x8).

Image convention (the pipelines' one): :func:`digits_features` and :func:`evaluate_digits` take images **in [0, 1]**
by default -- what every genzoo pipeline returns with ``output_type="np"`` ((B, H, W, 1) arrays) or ``"pt"``
((B, 1, H, W) tensors), and PIL images (a list, pixel / 255). Pass ``value_range=(-1, 1)`` for model-space samples,
e.g. ``TrainingData`` items or a network's raw output. Values are clipped to the range; values far below it (below
-0.05 with the default range) raise, since they almost always mean [-1, 1] data passed as [0, 1]. uint8 arrays are
read as 0..255. Three channels are averaged to one. Any resolution is reduced to 8x8 by area averaging
(``adaptive_avg_pool2d``: the exact mean of s x s blocks when the side is 8 s). ``evaluate_digits`` compares
R x R samples (a model trained with ``--resolution R``) with the reference digits resized to R exactly as the
training data was (PIL bilinear) and reduced back the same way, since that round trip blurs and the classifier
notices (8x8 digits against their 16x16 round trip: digits-FD ~280).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import frechet_distance, image_batch, load_weights, precision_recall_at_equal_size

NUM_CLASSES = 10
FEATURE_DIM = 64
IMAGE_SIZE = 8
WEIGHTS_PATH = Path(__file__).with_name("digits_classifier.safetensors")
SIDECAR_PATH = Path(__file__).with_name("digits_classifier.json")
#: A class counts as covered by ``coverage`` when at least this fraction of the samples is predicted as it.
COVERAGE_MIN_FRACTION = 0.01

__all__ = [
    "COVERAGE_MIN_FRACTION",
    "DigitsClassifier",
    "FEATURE_DIM",
    "class_entropy",
    "class_histogram",
    "classifier_info",
    "coverage",
    "digits_fd_floor",
    "digits_features",
    "digits_reference_features",
    "digits_reference_images",
    "evaluate_digits",
    "load_digits_classifier",
    "to_classifier_input",
    "weights_sha256",
]


class DigitsClassifier(nn.Module):
    """(B, 1, 8, 8) in [-1, 1] -> 10 logits; :meth:`features` gives the 64-d penultimate features.

    conv 1->32 3x3 pad 1, ReLU; conv 32->64 3x3 pad 1, ReLU; max-pool 2 (4x4); conv 64->64 3x3 (2x2), ReLU;
    flatten (256); linear 256->64 (the features: these pre-activations), ReLU; dropout; linear 64->10.

    The features are taken before the ReLU: after it, units that are zero on every digit ("dead") make the feature
    covariance singular, and noise images collapse to the all-zero vector, which sits inside the real k-NN manifold.
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.fc1 = nn.Linear(64 * 2 * 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        return self.fc1(x.flatten(1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return features, self.fc2(self.dropout(F.relu(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def load_digits_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The shipped classifier (or the safetensors file at ``path``), on CPU, in eval mode, without gradients."""
    return load_weights(DigitsClassifier(), WEIGHTS_PATH if path is None else Path(path), "digits")


@functools.lru_cache(maxsize=1)
def _shipped_classifier() -> DigitsClassifier:
    return load_digits_classifier()


def classifier_info() -> dict:
    """The JSON sidecar of the shipped weights: held-out accuracy, seed, split sizes, architecture, versions."""
    return json.loads(SIDECAR_PATH.read_text())


def weights_sha256(path: str | Path | None = None) -> str:
    return hashlib.sha256(Path(WEIGHTS_PATH if path is None else path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------------ inputs
def to_classifier_input(images, value_range=(0.0, 1.0), resize: bool = True) -> torch.Tensor:
    """Images in any of the accepted layouts (module docstring, :func:`image_batch`) -> float32 (B, 1, 8, 8) in
    [-1, 1] on CPU (with ``resize=False``: (B, 1, H, W), not reduced to 8x8)."""
    x = image_batch(images, value_range, color=False, stacklevel=3)
    if resize and tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.adaptive_avg_pool2d(x, IMAGE_SIZE)  # area averaging
    return (x * 2 - 1).float().contiguous()


@torch.no_grad()
def digits_features(images, value_range=(0.0, 1.0), model: DigitsClassifier | None = None, batch_size: int = 1024):
    """Penultimate features (float64, (B, 64)) and logits (float64, (B, 10)) of the shipped classifier (or ``model``)
    for ``images`` (see :func:`to_classifier_input` for layouts and ``value_range``). Deterministic, CPU."""
    model = _shipped_classifier() if model is None else model
    x = to_classifier_input(images, value_range)
    features, logits = [], []
    for start in range(0, len(x), batch_size):
        f, l = model.forward_features(x[start : start + batch_size])
        features.append(f.double().numpy())
        logits.append(l.double().numpy())
    return np.concatenate(features), np.concatenate(logits)


# ---------------------------------------------------------------------------------------------- reference data
def digits_reference_images(split: str = "test", resolution: int = IMAGE_SIZE) -> torch.Tensor:
    """A digits split as float32 (N, 1, resolution, resolution) in [-1, 1], resized as ``--dataset digits
    --resolution`` resizes it (PIL bilinear); "test" (default) is the held-out reference split."""
    from ..data.builtin import digits_arrays

    pixels, _ = digits_arrays(split)
    if resolution != IMAGE_SIZE:
        import PIL.Image

        from ..data.training_data import resize_short_side

        pixels = np.stack([resize_short_side(PIL.Image.fromarray(p), resolution, 1)[:, :, 0] for p in pixels])
    return torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1)[:, None]


@functools.lru_cache(maxsize=None)
def _reference(split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    features, logits = digits_features(digits_reference_images(split, resolution), value_range=(-1.0, 1.0))
    features.setflags(write=False)
    logits.setflags(write=False)
    return features, logits


def digits_reference_features(split: str = "test", resolution: int = IMAGE_SIZE, return_logits: bool = False):
    """Features (float64, (N, 64)) of a real digits split, cached per process ("test": the 360 held-out digits, the
    reference of digits-FD; "train": 1437; "all": 1797). With ``return_logits``, (features, logits).

    ``resolution``: the digits are first resized to it as ``--dataset digits --resolution`` does (PIL bilinear), then
    reduced back to 8x8 by area averaging like any input: the reference for samples of a model trained at that
    resolution. (Bilinear upsampling followed by area averaging blurs; the classifier notices: 8x8 digits against
    their 16x16 round trip give a digits-FD far above the floor. Compare like with like.)"""
    features, logits = _reference(split, int(resolution))
    return (features.copy(), logits.copy()) if return_logits else features.copy()


@functools.lru_cache(maxsize=None)
def digits_fd_floor(resolution: int = IMAGE_SIZE) -> float:
    """digits-FD between the real train split (1437) and the real test split (360), both at ``resolution``: about
    what a perfect model scores (with 1437 samples; fewer samples score higher). Report it next to every digits-FD."""
    return frechet_distance(
        digits_reference_features("train", resolution), digits_reference_features("test", resolution)
    )


# ------------------------------------------------------------------------------------------------------ metrics
def class_histogram(logits_or_probs) -> np.ndarray:
    """Counts (int64, (10,)) of the predicted classes: the argmax of each row of (N, 10) logits or probabilities,
    or a 1-D array of integer predicted labels."""
    x = np.asarray(logits_or_probs)
    if x.ndim == 1 and np.issubdtype(x.dtype, np.integer):
        predicted = x
    elif x.ndim == 2 and x.shape[1] == NUM_CLASSES:
        predicted = x.argmax(1)
    else:
        raise ValueError(f"need (N, {NUM_CLASSES}) logits/probabilities or (N,) integer labels, got shape {x.shape}")
    if len(predicted) and (predicted.min() < 0 or predicted.max() >= NUM_CLASSES):
        raise ValueError(f"labels must be in 0..{NUM_CLASSES - 1}")
    return np.bincount(predicted, minlength=NUM_CLASSES).astype(np.int64)


def coverage(histogram, min_fraction: float = COVERAGE_MIN_FRACTION) -> float:
    """Fraction of the ten classes that receive at least ``min_fraction`` (1 %) of the predictions (and at least
    one): 1.0 when every digit is generated, 0.1 for a model that makes one digit only."""
    h = np.asarray(histogram, dtype=np.float64)
    total = h.sum()
    if total <= 0:
        return 0.0
    return float(((h > 0) & (h >= min_fraction * total)).sum() / len(h))


def class_entropy(histogram) -> float:
    """Entropy in nats of the predicted-class distribution (histogram / total); log(10) = 2.303 when uniform."""
    h = np.asarray(histogram, dtype=np.float64)
    p = h[h > 0] / h.sum()
    return float(-(p * np.log(p)).sum()) + 0.0


def evaluate_digits(
    images, reference: str = "test", seed: int = 0, k: int = 5, value_range=(0.0, 1.0), asked_labels=None
) -> dict:
    """All digits metrics of ``images`` (generated samples; layouts and ``value_range`` as :func:`digits_features`,
    default [0, 1] as pipelines return them) against the real ``reference`` split ("test": held out from all
    training), taken at the images' resolution (:func:`digits_reference_features`). JSON-ready dict:

    - ``digits_fd``: FD between the features of all ``images`` and of the reference (not FID -- module docstring);
      ``digits_fd_floor``: the same between the real train and test splits at that resolution, for scale;
    - ``precision``, ``recall``: :func:`~genzoo.metrics.features.precision_recall` with ``k``, at equal sizes -- the
      larger of the two sets is subsampled (without replacement, ``numpy.random.default_rng(seed)``) to the
      smaller's size, which is ``precision_recall_size``;
    - ``coverage``, ``class_entropy``, ``class_histogram`` (10 ints) of the predicted classes of ``images``;
    - ``num_samples``, ``reference_size``, ``resolution`` (of the images; the reference is resized to it);
    - with ``asked_labels`` (the digit each image was asked to be, for conditional models): ``class_accuracy``, the
      fraction of images classified as their asked-for digit.
    """
    x = to_classifier_input(images, value_range, resize=False)
    resolution = int(x.shape[-1]) if x.shape[-1] == x.shape[-2] else IMAGE_SIZE
    features, logits = digits_features(x, value_range=(-1.0, 1.0))
    ref = digits_reference_features(reference, resolution)
    precision, recall, n = precision_recall_at_equal_size(ref, features, k=k, seed=seed)
    histogram = class_histogram(logits)
    accuracy = {}
    if asked_labels is not None:
        accuracy["class_accuracy"] = float((logits.argmax(1) == np.asarray(asked_labels)).mean())
    return {
        "digits_fd": frechet_distance(features, ref),
        "digits_fd_floor": digits_fd_floor(resolution),
        "precision": precision,
        "recall": recall,
        "precision_recall_k": k,
        "precision_recall_size": n,
        "coverage": coverage(histogram),
        "class_entropy": class_entropy(histogram),
        "class_histogram": [int(c) for c in histogram],
        "num_samples": int(len(features)),
        "reference_size": int(len(ref)),
        "resolution": resolution,
        **accuracy,
    }
