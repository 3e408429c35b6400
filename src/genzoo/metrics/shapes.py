"""Sample-quality metrics for the colour ``shapes`` data set (:mod:`genzoo.data.shapes`) from a small classifier that
reads every quadrant: shapes-FD, precision/recall, attribute statistics and prompt faithfulness.

A :class:`ShapesClassifier` (a 4-conv CNN on 32x32 RGB, 162,780 parameters, 652 kB) is trained by ``python -m
genzoo.metrics.train_shapes_classifier`` on freshly drawn images from a seed stream of its own (never an image of
the "train", "test" or "unseen" splits) and shipped as ``shapes_classifier.safetensors`` with a JSON sidecar (held-out
accuracies per attribute on "test" and "unseen", seed, architecture, versions, sha256). For each quadrant it predicts
the shape there or "empty" (5 classes), its colour (4) and its size (2); the position of a shape is the quadrant its
head fires in. It is a measuring instrument, so it is trained on **every** composition, the held-out
(shape, colour) pairs of :data:`~genzoo.data.shapes.UNSEEN_PAIRS` included: it must read what a model composes,
whether or not that model ever saw the combination. Its 128-d penultimate features (pre-activations, as in
:mod:`.digits`) play the role of Inception's in FID; it was also trained to give uniform probabilities on noise
images (outlier exposure), so that noise lands away from the data in feature space.

.. warning::
   **shapes-FD is not FID.** It is a Fréchet distance in the feature space of a tiny classifier of 32x32 shapes,
   not of Inception-v3, so its numbers are **not comparable with any published FID**, nor with digits-FD, nor with
   shapes-FD from another classifier checkpoint. Report it with its floor, :func:`shapes_fd_floor`: the shapes-FD
   between the real "train" split (10,000) and the real "test" split (2,000) at the same resolution, about what a
   perfect model scores (fewer samples score higher: FD is biased upwards at small sample sizes).

Images: as :mod:`.digits` (:func:`~genzoo.metrics.features.image_batch`), in [0, 1] by default -- pipelines' outputs
with ``output_type="np"`` ((B, H, W, 3)) or ``"pt"`` ((B, 3, H, W)), PIL images, uint8 arrays as 0..255 -- or
``value_range=(-1, 1)`` for model-space samples; three channels are required. Any resolution is brought to 32x32
first: larger images by area averaging (``F.interpolate(mode="area")``: the exact mean of s x s blocks when the side
is 32 s), smaller ones by bilinear upsampling (``align_corners=False``). The reference of samples at resolution R is
the "test" split rendered at R (shapes are drawn at the training resolution, not resized, so that is what a model
trained with ``--resolution R`` saw) and taken through the same resize.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.shapes import (
    COLOURS,
    FULL_TEMPLATE,
    MIN_SHAPES_RESOLUTION,
    POSITIONS,
    SHAPES,
    SIZES,
    UNSEEN_PAIRS,
    ShapeSpec,
    describe,
    shapes_split,
)
from .features import frechet_distance, image_batch, load_weights, precision_recall_at_equal_size

IMAGE_SIZE = 32
FEATURE_DIM = 128
NUM_SLOTS = len(POSITIONS)
#: Index of "empty" among the shape head's classes (0..3 are :data:`~genzoo.data.shapes.SHAPES`).
EMPTY = len(SHAPES)
#: Per slot, the head's logits: shape-or-empty (5), colour (4), size (2).
HEAD_SIZES = (len(SHAPES) + 1, len(COLOURS), len(SIZES))
ATTRIBUTES = ("shape", "colour", "size", "position")
WEIGHTS_PATH = Path(__file__).with_name("shapes_classifier.safetensors")
SIDECAR_PATH = Path(__file__).with_name("shapes_classifier.json")
#: A (shape, colour) pair counts as covered by ``pair_coverage`` when at least this fraction of the detected objects
#: has it.
COVERAGE_MIN_FRACTION = 0.01

__all__ = [
    "ATTRIBUTES",
    "EMPTY",
    "FEATURE_DIM",
    "ShapesClassifier",
    "classifier_info",
    "decode_slots",
    "evaluate_shapes",
    "load_shapes_classifier",
    "object_statistics",
    "predict_slots",
    "prompt_faithfulness",
    "shapes_fd",
    "shapes_fd_floor",
    "shapes_features",
    "shapes_prompts",
    "shapes_reference_features",
    "to_shapes_input",
    "weights_sha256",
]


class ShapesClassifier(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] -> per quadrant (in :data:`~genzoo.data.shapes.POSITIONS` order) logits of
    shape-or-empty (5), colour (4) and size (2); :meth:`features` gives the 128-d penultimate features.

    conv 3->16 3x3 pad 1, ReLU; conv 16->16 3x3 pad 1, ReLU, max-pool 2 (16x16); conv 16->32 3x3 pad 1, ReLU,
    max-pool 2 (8x8); conv 32->64 3x3 pad 1, ReLU, max-pool 2 (4x4); flatten (1024); linear 1024->128 (the features:
    these pre-activations), ReLU; dropout; linear 128->44 (4 quadrants x 11 logits). Two convolutions at full
    resolution tell a small circle from a small square (5.8 and 4.9 pixels across at 32x32); the flattened map keeps
    where things are, so each quadrant's head reads its own part of the image.
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, dropout: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.Linear(feature_dim, NUM_SLOTS * sum(HEAD_SIZES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        return self.fc1(x.flatten(1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 128), logits (B, 4, 11)): per quadrant 5 shape-or-empty, 4 colour, 2 size logits."""
        features = self.features(x)
        return features, self.heads(self.dropout(F.relu(features))).view(len(x), NUM_SLOTS, sum(HEAD_SIZES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def split_logits(logits) -> tuple:
    """(B, 4, 11) logits -> (shape-or-empty (B, 4, 5), colour (B, 4, 4), size (B, 4, 2)), views of the input."""
    a, b = HEAD_SIZES[0], HEAD_SIZES[0] + HEAD_SIZES[1]
    return logits[..., :a], logits[..., a:b], logits[..., b:]


def decode_slots(logits) -> np.ndarray:
    """(B, 4, 11) logits -> int64 (B, 4, 3) slots as :class:`~genzoo.data.shapes.ShapesSplit`'s: per quadrant the
    (shape, colour, size) ids of the predicted shape there, -1 where "empty" wins."""
    shape, colour, size = (np.asarray(part).argmax(-1) for part in split_logits(np.asarray(logits)))
    slots = np.stack([shape, colour, size], axis=-1).astype(np.int64)
    slots[shape == EMPTY] = -1
    return slots


def load_shapes_classifier(path: str | Path | None = None) -> ShapesClassifier:
    """The shipped classifier (or the safetensors file at ``path``), on CPU, in eval mode, without gradients."""
    return load_weights(ShapesClassifier(), WEIGHTS_PATH if path is None else Path(path), "shapes")


@functools.lru_cache(maxsize=1)
def _shipped_classifier() -> ShapesClassifier:
    return load_shapes_classifier()


def classifier_info() -> dict:
    """The JSON sidecar of the shipped weights: held-out accuracies per attribute, seed, architecture, versions."""
    return json.loads(SIDECAR_PATH.read_text())


def weights_sha256(path: str | Path | None = None) -> str:
    return hashlib.sha256(Path(WEIGHTS_PATH if path is None else path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------------ inputs
def resize_to_classifier(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 32, 32): area averaging when both sides are at least 32, else bilinear
    (``align_corners=False``); unchanged at 32x32."""
    if tuple(x.shape[-2:]) == (IMAGE_SIZE, IMAGE_SIZE):
        return x
    if min(x.shape[-2:]) >= IMAGE_SIZE:
        return F.interpolate(x, size=IMAGE_SIZE, mode="area")
    return F.interpolate(x, size=IMAGE_SIZE, mode="bilinear", align_corners=False)


def to_shapes_input(images, value_range=(0.0, 1.0), resize: bool = True) -> torch.Tensor:
    """Images in any of the accepted layouts (module docstring) -> float32 (B, 3, 32, 32) in [-1, 1] on CPU (with
    ``resize=False``: (B, 3, H, W))."""
    x = image_batch(images, value_range, color=True, stacklevel=3)
    if resize:
        x = resize_to_classifier(x)
    return (x * 2 - 1).float().contiguous()


@torch.no_grad()
def shapes_features(images, value_range=(0.0, 1.0), model: ShapesClassifier | None = None, batch_size: int = 1024):
    """Penultimate features (float64, (B, 128)) and logits (float64, (B, 4, 11); :func:`decode_slots` reads them) of
    the shipped classifier (or ``model``) for ``images`` (layouts and ``value_range``: module docstring).
    Deterministic, CPU."""
    model = _shipped_classifier() if model is None else model
    x = to_shapes_input(images, value_range)
    features, logits = [], []
    for start in range(0, len(x), batch_size):
        f, l = model.forward_features(x[start : start + batch_size])
        features.append(f.double().numpy())
        logits.append(l.double().numpy())
    return np.concatenate(features), np.concatenate(logits)


def predict_slots(images, value_range=(0.0, 1.0), model: ShapesClassifier | None = None) -> np.ndarray:
    """int64 (B, 4, 3): per quadrant the predicted (shape, colour, size) ids, -1 for an empty quadrant -- the layout
    of :attr:`genzoo.data.shapes.ShapesSplit.slots`, so ``predict_slots(split.pixels)`` compares with
    ``split.slots``."""
    return decode_slots(shapes_features(images, value_range, model)[1])


# ---------------------------------------------------------------------------------------------- reference data
@functools.lru_cache(maxsize=None)
def _reference(split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    features, logits = shapes_features(shapes_split(split, resolution).pixels)
    features.setflags(write=False)
    logits.setflags(write=False)
    return features, logits


def shapes_reference_features(split: str = "test", resolution: int = IMAGE_SIZE, return_logits: bool = False):
    """Features (float64, (N, 128)) of a real shapes split rendered at ``resolution`` (then resized to 32 like any
    input), cached per process: "test" (2,000, the reference of shapes-FD), "train" (10,000), "unseen" (1,000).
    With ``return_logits``, (features, logits)."""
    features, logits = _reference(split, int(resolution))
    return (features.copy(), logits.copy()) if return_logits else features.copy()


@functools.lru_cache(maxsize=None)
def shapes_fd_floor(resolution: int = IMAGE_SIZE) -> float:
    """shapes-FD between the real "train" split (10,000) and the real "test" split (2,000), both rendered at
    ``resolution``: about what a perfect model scores (with 10,000 samples; fewer score higher). Report it next to
    every shapes-FD."""
    return frechet_distance(shapes_reference_features("train", resolution), shapes_reference_features("test", resolution))


def _resolution(x: torch.Tensor) -> int:
    height, width = x.shape[-2:]
    if height != width or height < MIN_SHAPES_RESOLUTION:
        raise ValueError(
            f"shapes metrics need square images of at least {MIN_SHAPES_RESOLUTION}x{MIN_SHAPES_RESOLUTION} (the "
            f"reference is rendered at their resolution); got {height}x{width}"
        )
    return int(height)


def shapes_fd(images, reference: str = "test", value_range=(0.0, 1.0)) -> float:
    """shapes-FD (not FID: module docstring) between ``images`` and the real ``reference`` split rendered at the
    images' resolution. Compare with :func:`shapes_fd_floor` at that resolution."""
    x = image_batch(images, value_range, color=True)
    features, _ = shapes_features(x)
    return frechet_distance(features, shapes_reference_features(reference, _resolution(x)))


def shapes_prompts(num_samples: int, split: str = "test", template: int = FULL_TEMPLATE) -> tuple[list, list]:
    """(prompts, objects) for ``num_samples`` evaluation prompts: the objects of ``split``'s images in order, cycling,
    and their captions in phrasing ``template`` (default :data:`~genzoo.data.shapes.FULL_TEMPLATE`: every attribute
    named). The attributes it names are ``TEMPLATE_ATTRIBUTES[template]``."""
    objects = shapes_split(split, MIN_SHAPES_RESOLUTION).objects  # the same at every resolution: render the cheapest
    asked = [objects[i % len(objects)] for i in range(num_samples)]
    return [describe(objs, template) for objs in asked], asked


# ------------------------------------------------------------------------------------------------------ metrics
def _detected(slots_of_image) -> list[tuple[int, int, int, int]]:
    """(shape, colour, size, position) ids of the objects in one image's (4, 3) slots."""
    return [(int(s[0]), int(s[1]), int(s[2]), q) for q, s in enumerate(slots_of_image) if s[0] >= 0]


def object_statistics(slots) -> dict:
    """Attribute statistics of the objects detected in ``slots`` (int (N, 4, 3), e.g. :func:`predict_slots`):

    - ``num_objects_histogram``: images with 0, 1, 2, 3, 4 objects (the data have 1 (60 %) or 2 (40 %));
    - ``shape_fractions``, ``colour_fractions``, ``size_fractions``, ``position_fractions``: the fraction of the
      detected objects with each value (name -> fraction; all 0 when nothing is detected);
    - ``pair_coverage``: the fraction of the 16 (shape, colour) pairs that at least 1 % of the detected objects have
      (12 / 16 = 0.75 for a perfect model of "train", which holds no pair of ``UNSEEN_PAIRS``);
    - ``unseen_pair_fraction``: the fraction of detected objects with a held-out pair (about 0 for a model of
      "train");
    - ``detected_objects``: their number.
    """
    slots = np.asarray(slots)
    if slots.ndim != 3 or slots.shape[1:] != (NUM_SLOTS, 3):
        raise ValueError(f"slots must be (N, {NUM_SLOTS}, 3), got shape {slots.shape}")
    present = slots[..., 0] >= 0
    objects = slots[present]  # (M, 3)
    positions = np.nonzero(present)[1]
    total = len(objects)

    def fractions(ids, names):
        counts = np.bincount(ids, minlength=len(names)) if total else np.zeros(len(names))
        return {name: float(c / total) if total else 0.0 for name, c in zip(names, counts)}

    pairs = np.bincount(objects[:, 0] * len(COLOURS) + objects[:, 1], minlength=len(SHAPES) * len(COLOURS))
    unseen = {SHAPES.index(s) * len(COLOURS) + COLOURS.index(c) for s, c in UNSEEN_PAIRS}
    return {
        "num_objects_histogram": [int(c) for c in np.bincount(present.sum(1), minlength=NUM_SLOTS + 1)],
        "shape_fractions": fractions(objects[:, 0], SHAPES),
        "colour_fractions": fractions(objects[:, 1], COLOURS),
        "size_fractions": fractions(objects[:, 2], SIZES),
        "position_fractions": fractions(positions, POSITIONS),
        "pair_coverage": float(((pairs > 0) & (pairs >= COVERAGE_MIN_FRACTION * total)).mean()) if total else 0.0,
        "unseen_pair_fraction": float(pairs[sorted(unseen)].sum() / total) if total else 0.0,
        "detected_objects": int(total),
    }


def _named_per_image(named_attributes, n: int) -> list[tuple]:
    if named_attributes is None:
        return [ATTRIBUTES] * n
    if isinstance(named_attributes, (tuple, list)) and all(isinstance(a, str) for a in named_attributes):
        named = [tuple(named_attributes)] * n
    else:
        named = [tuple(a) for a in named_attributes]
        if len(named) != n:
            raise ValueError(f"named_attributes: {len(named)} entries for {n} images")
    for attributes in named:
        unknown = set(attributes) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}; the attributes are {', '.join(ATTRIBUTES)}")
    return named


def _ids(spec: ShapeSpec) -> tuple[int, int, int, int]:
    return SHAPES.index(spec.shape), COLOURS.index(spec.colour), SIZES.index(spec.size), POSITIONS.index(spec.position)


def prompt_faithfulness(slots, asked_objects, named_attributes=None) -> dict:
    """How faithfully images follow their prompts: ``slots`` (int (N, 4, 3), e.g. :func:`predict_slots` of the
    samples), ``asked_objects`` (N lists of :class:`~genzoo.data.shapes.ShapeSpec`: the objects each prompt asked
    for) and ``named_attributes`` (which of "shape", "colour", "size", "position" the prompts name: ``None`` for all
    four, one tuple for every image, or one tuple per image; only named attributes are checked).

    In each image the asked objects are matched one-to-one to the detected objects (or to nothing, when fewer are
    detected) so as to agree on the most named attributes (ties: the first such assignment), then:

    - ``faithfulness_shape``, ``_colour``, ``_size``, ``_position``: per attribute, the fraction of the asked
      objects naming it whose matched object has it (an unmatched object has none); absent if no prompt names it;
    - ``faithfulness_pair``: the fraction of asked objects whose matched object has both the asked shape and colour
      (the composition); ``faithfulness_heldout_pair``: the same over asked objects with a pair of
      :data:`~genzoo.data.shapes.UNSEEN_PAIRS` only (absent if none is asked);
    - ``faithfulness_objects``: the fraction of asked objects that have every named attribute;
    - ``faithfulness_count``: the fraction of images with as many detected objects as asked;
    - ``faithfulness_all``: the fraction of images in which every asked object is present with every named attribute
      **and** no other object is detected;
    - ``faithfulness_images``, ``faithfulness_asked_objects``: the numbers of images and of asked objects.
    """
    slots = np.asarray(slots)
    if slots.ndim != 3 or slots.shape[1:] != (NUM_SLOTS, 3):
        raise ValueError(f"slots must be (N, {NUM_SLOTS}, 3), got shape {slots.shape}")
    if len(asked_objects) != len(slots):
        raise ValueError(f"{len(asked_objects)} lists of asked objects for {len(slots)} images")
    named = _named_per_image(named_attributes, len(slots))
    hits = {a: 0 for a in ATTRIBUTES}
    asks = {a: 0 for a in ATTRIBUTES}
    pair, heldout_pair, heldout_asked, whole_objects, count_ok, all_ok, num_asked = 0, 0, 0, 0, 0, 0, 0
    for image_slots, asked, attributes in zip(slots, asked_objects, named):
        detected = _detected(image_slots)
        asked_ids = [_ids(spec) for spec in asked]
        checked = [ATTRIBUTES.index(a) for a in attributes]
        candidates = list(range(len(detected))) + [None] * len(asked_ids)
        best, best_score = None, -1
        for assignment in itertools.permutations(candidates, len(asked_ids)):
            score = sum(detected[d][i] == want[i] for d, want in zip(assignment, asked_ids) if d is not None
                        for i in checked)
            if score > best_score:
                best, best_score = assignment, score
        image_ok = len(detected) == len(asked_ids)
        count_ok += image_ok
        for d, want, spec in zip(best, asked_ids, asked):
            got = detected[d] if d is not None else (None,) * 4
            match = {a: got[i] == want[i] for i, a in enumerate(ATTRIBUTES)}
            for a in attributes:
                asks[a] += 1
                hits[a] += match[a]
            composed = match["shape"] and match["colour"]
            pair += composed
            if (spec.shape, spec.colour) in UNSEEN_PAIRS:
                heldout_asked += 1
                heldout_pair += composed
            whole = all(match[a] for a in attributes)
            whole_objects += whole
            image_ok = image_ok and whole
        num_asked += len(asked_ids)
        all_ok += image_ok
    n = max(len(slots), 1)
    result = {f"faithfulness_{a}": hits[a] / asks[a] for a in ATTRIBUTES if asks[a]}
    result["faithfulness_pair"] = pair / max(num_asked, 1)
    if heldout_asked:
        result["faithfulness_heldout_pair"] = heldout_pair / heldout_asked
    result.update({
        "faithfulness_objects": whole_objects / max(num_asked, 1),
        "faithfulness_count": count_ok / n,
        "faithfulness_all": all_ok / n,
        "faithfulness_images": int(len(slots)),
        "faithfulness_asked_objects": int(num_asked),
    })
    return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in result.items()}


def evaluate_shapes(
    images, reference: str = "test", seed: int = 0, k: int = 5, value_range=(0.0, 1.0), asked_labels=None,
    asked_objects=None, named_attributes=None,
) -> dict:
    """All shapes metrics of ``images`` (generated samples; layouts and ``value_range`` as :func:`shapes_features`,
    default [0, 1] as pipelines return them) against the real ``reference`` split ("test": held out from all
    training) rendered at the images' resolution. JSON-ready dict:

    - ``shapes_fd``: FD between the features of all ``images`` and of the reference (not FID -- module docstring);
      ``shapes_fd_floor``: the same between the real "train" and "test" splits at that resolution, for scale;
    - ``precision``, ``recall``: :func:`~genzoo.metrics.features.precision_recall` with ``k``, at equal sizes -- the
      larger set is subsampled (without replacement, ``numpy.random.default_rng(seed)``) to the smaller's size,
      ``precision_recall_size``;
    - the attribute statistics of the detected objects (:func:`object_statistics`);
    - ``num_samples``, ``reference_size``, ``resolution`` (of the images; the reference is rendered at it);
    - with ``asked_labels`` (the shape id each image was asked for, by a class-conditional model; the label of a
      shapes image is its first-named shape): ``class_accuracy``, the fraction of images in which **some** detected
      object has the asked shape (the classifier reads quadrants, not the order in which a caption names them);
    - with ``asked_objects`` (and ``named_attributes``): the prompt faithfulness of :func:`prompt_faithfulness`.
    """
    x = image_batch(images, value_range, color=True)
    resolution = _resolution(x)
    features, logits = shapes_features(x)
    slots = decode_slots(logits)
    ref = shapes_reference_features(reference, resolution)
    precision, recall, n = precision_recall_at_equal_size(ref, features, k=k, seed=seed)
    extra = {}
    if asked_labels is not None:
        asked_labels = np.asarray(asked_labels)
        if asked_labels.shape != (len(slots),):
            raise ValueError(f"asked_labels must hold one shape id per image ({len(slots)}), got {asked_labels.shape}")
        extra["class_accuracy"] = float((slots[..., 0] == asked_labels[:, None]).any(1).mean())
    if asked_objects is not None:
        extra.update(prompt_faithfulness(slots, asked_objects, named_attributes))
    return {
        "shapes_fd": frechet_distance(features, ref),
        "shapes_fd_floor": shapes_fd_floor(resolution),
        "precision": precision,
        "recall": recall,
        "precision_recall_k": k,
        "precision_recall_size": n,
        **object_statistics(slots),
        "num_samples": int(len(features)),
        "reference_size": int(len(ref)),
        "resolution": resolution,
        **extra,
    }
