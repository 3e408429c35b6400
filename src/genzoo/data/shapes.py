"""``shapes``: a built-in colour data set, drawn deterministically from a seed, with class labels and compositional
captions ("a small red circle in the top left and a large blue square in the bottom right").

Each image is ``resolution`` x ``resolution`` RGB (default 32) and holds one shape (60 %) or two (40 %), each in its
own quadrant of the image. A shape has four attributes:

- ``shape``: circle, square, triangle or cross;
- ``colour``: red, green, blue or yellow (each channel jittered by up to +-20 per image);
- ``size``: small (radius 0.09 of the side) or large (0.17);
- ``position``: the quadrant, "top left", "top right", "bottom left" or "bottom right" (the centre jittered by up to
  +-0.04 of the side).

The background is a dark grey (20..90), plain or (half the images) with a smooth texture of +-12 levels. Shapes are
drawn 4x supersampled and area-averaged, so edges are anti-aliased at every resolution.

The class label is the first-named shape (a one-shape image's only shape). Compositions are held out: the four
(shape, colour) pairs of :data:`UNSEEN_PAIRS` never appear in "train" or "test"; the split "unseen" holds images in
which every image has at least one of them, to measure whether a text-conditional model composes attributes it
has only seen apart. Splits (fixed sizes, fixed seeds): "train" (10,000 images by default; ``--num_samples`` sets
it), "test" (2,000, the held-out reference of the shapes metrics) and "unseen" (1,000).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .sets import DataSet

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
#: (shape, colour) pairs that no "train" or "test" image holds; every "unseen" image holds at least one.
UNSEEN_PAIRS = (("circle", "blue"), ("square", "yellow"), ("triangle", "red"), ("cross", "green"))
SHAPES_SPLITS = ("train", "test", "unseen")
SHAPES_SPLIT_SIZES = {"train": 10_000, "test": 2_000, "unseen": 1_000}
SHAPES_SPLIT_SEEDS = {"train": 0, "test": 1, "unseen": 2}
DEFAULT_SHAPES_RESOLUTION = 32
MIN_SHAPES_RESOLUTION = 8
TWO_SHAPES_PROBABILITY = 0.4

COLOUR_RGB = {"red": (220, 45, 45), "green": (45, 185, 70), "blue": (55, 90, 235), "yellow": (235, 210, 45)}
RADIUS = {"small": 0.09, "large": 0.17}
QUADRANT_CENTRES = {"top left": (0.25, 0.25), "top right": (0.25, 0.75), "bottom left": (0.75, 0.25),
                    "bottom right": (0.75, 0.75)}  # (row, column) in units of the side
CENTRE_JITTER = 0.04
COLOUR_JITTER = 20
SUPERSAMPLING = 4

#: Phrasings of one shape; a two-shape caption joins two phrasings of the same kind with " and ". The third names
#: only colour and shape, so the model also learns prompts that leave size and position open.
OBJECT_TEMPLATES = (
    "a {size} {colour} {shape} in the {position}",
    "{size} {colour} {shape}, {position}",
    "a {colour} {shape}",
    "one {size} {colour} {shape} at the {position}",
)
#: The attributes each phrasing names (for prompt faithfulness: only named attributes are checked).
TEMPLATE_ATTRIBUTES = (
    ("shape", "colour", "size", "position"),
    ("shape", "colour", "size", "position"),
    ("shape", "colour"),
    ("shape", "colour", "size", "position"),
)
#: The phrasing evaluation prompts use (every attribute named).
FULL_TEMPLATE = 0


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of an image: its four attributes (names from SHAPES, COLOURS, SIZES, POSITIONS)."""

    shape: str
    colour: str
    size: str
    position: str

    def describe(self, template: int = FULL_TEMPLATE) -> str:
        return OBJECT_TEMPLATES[template].format(**self.__dict__)


def describe(objects, template: int = FULL_TEMPLATE) -> str:
    """The caption of an image holding ``objects`` (ShapeSpecs, in the order they are named) in phrasing
    ``template`` (an index of :data:`OBJECT_TEMPLATES`)."""
    return " and ".join(obj.describe(template) for obj in objects)


def _check_split(split) -> str:
    if split not in SHAPES_SPLITS:
        from .training_data import DataError

        raise DataError(f"the shapes split must be one of {', '.join(SHAPES_SPLITS)}, got {split!r}")
    return split


def check_shapes_resolution(resolution) -> int:
    from ..checks import check_positive_int
    from .training_data import DataError

    check_positive_int("the shapes resolution (--resolution)", resolution, error=DataError,
                       minimum=MIN_SHAPES_RESOLUTION)
    return int(resolution)


def draw_objects(rng: np.random.Generator, split: str) -> list[ShapeSpec]:
    """The shapes of one image of ``split``, drawn from ``rng``: one or two, in distinct quadrants; in "train" and
    "test" no shape has a pair of :data:`UNSEEN_PAIRS`, in "unseen" at least one has."""
    count = 2 if rng.random() < TWO_SHAPES_PROBABILITY else 1
    positions = rng.permutation(len(POSITIONS))[:count]
    while True:
        objects = [
            ShapeSpec(SHAPES[rng.integers(len(SHAPES))], COLOURS[rng.integers(len(COLOURS))],
                      SIZES[rng.integers(len(SIZES))], POSITIONS[p])
            for p in positions
        ]
        unseen = [(o.shape, o.colour) in UNSEEN_PAIRS for o in objects]
        if (split == "unseen") == any(unseen):
            return objects


def _mask(spec: ShapeSpec, rows: np.ndarray, cols: np.ndarray, centre) -> np.ndarray:
    r = RADIUS[spec.size]
    dy, dx = rows - centre[0], cols - centre[1]
    if spec.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if spec.shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if spec.shape == "triangle":  # pointing up: apex at (-r, 0), base at row 0.75 r from (-r, r) to (r, r)
        top, bottom = -r, 0.75 * r
        half_width = r * (dy - top) / (bottom - top)
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= half_width)
    arm = 0.33 * r  # cross
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


def render(objects, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """An image (uint8, (resolution, resolution, 3)) of ``objects``; the background, the texture, the jitter of
    colours and of centres are drawn from ``rng``."""
    n = resolution * SUPERSAMPLING
    coords = (np.arange(n) + 0.5) / n
    rows, cols = coords[:, None], coords[None, :]
    level = rng.uniform(20, 90)
    background = np.full((resolution, resolution), level)
    if rng.random() < 0.5:  # a smooth texture: 4x4 uniform noise, bilinearly upsampled
        import PIL.Image

        noise = rng.uniform(-12, 12, size=(4, 4)).astype(np.float32)
        up = PIL.Image.fromarray(noise).resize((resolution, resolution), PIL.Image.BILINEAR)
        background = background + np.asarray(up, dtype=np.float64)
    canvas = np.repeat(np.repeat(background, SUPERSAMPLING, 0), SUPERSAMPLING, 1)[..., None].repeat(3, axis=2)
    for spec in objects:
        centre = np.asarray(QUADRANT_CENTRES[spec.position]) + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2)
        colour = np.clip(np.asarray(COLOUR_RGB[spec.colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3),
                         0, 255)
        canvas[_mask(spec, rows, cols, centre)] = colour
    image = canvas.reshape(resolution, SUPERSAMPLING, resolution, SUPERSAMPLING, 3).mean(axis=(1, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@dataclass
class ShapesSplit:
    """A split as arrays: ``pixels`` uint8 (N, R, R, 3); ``slots`` int64 (N, 4, 3): for each quadrant (in
    :data:`POSITIONS` order) the ids of (shape, colour, size) of the shape there, -1 where it is empty;
    ``labels`` int64 (N,) (the first-named shape); ``objects`` (a list of ShapeSpecs per image, in the order named);
    ``captions`` (one per image)."""

    pixels: np.ndarray
    slots: np.ndarray
    labels: np.ndarray
    objects: list
    captions: list


def objects_to_slots(objects) -> np.ndarray:
    """(4, 3) int64: per quadrant the (shape, colour, size) ids of the shape there, -1 for an empty quadrant."""
    slots = np.full((len(POSITIONS), 3), -1, dtype=np.int64)
    for o in objects:
        slots[POSITIONS.index(o.position)] = (SHAPES.index(o.shape), COLOURS.index(o.colour), SIZES.index(o.size))
    return slots


@functools.lru_cache(maxsize=8)
def _split(split: str, resolution: int, num_samples: int) -> ShapesSplit:
    rng = np.random.default_rng([SHAPES_SPLIT_SEEDS[split], 0x5A7E5])
    pixels = np.empty((num_samples, resolution, resolution, 3), dtype=np.uint8)
    objects, captions = [], []
    for i in range(num_samples):
        objs = draw_objects(rng, split)
        pixels[i] = render(objs, resolution, rng)
        objects.append(objs)
        captions.append(describe(objs, i % len(OBJECT_TEMPLATES)))
    slots = np.stack([objects_to_slots(o) for o in objects])
    labels = np.asarray([SHAPES.index(o[0].shape) for o in objects], dtype=np.int64)
    for array in (pixels, slots, labels):
        array.setflags(write=False)
    return ShapesSplit(pixels, slots, labels, objects, captions)


def shapes_split(split: str = "train", resolution: int = DEFAULT_SHAPES_RESOLUTION,
                 num_samples: int | None = None) -> ShapesSplit:
    """A shapes split as arrays (:class:`ShapesSplit`, read-only, cached per process). The first ``num_samples``
    images (default: the split's size, :data:`SHAPES_SPLIT_SIZES`) are the same at every ``num_samples`` and the
    same attributes at every resolution: the draws of image ``i`` never depend on the resolution or on later images.
    Caption ``i`` uses phrasing ``i mod 4`` of :data:`OBJECT_TEMPLATES`."""
    from ..checks import check_positive_int
    from .training_data import DataError

    _check_split(split)
    resolution = check_shapes_resolution(resolution)
    size = SHAPES_SPLIT_SIZES[split] if num_samples is None else num_samples
    check_positive_int("the number of shapes images (--num_samples)", size, error=DataError)
    return _split(split, resolution, int(size))


def shapes_dataset(split: str = "train", resolution: int = DEFAULT_SHAPES_RESOLUTION, num_samples: int | None = None):
    """The shapes split as a ``datasets.Dataset`` (built once per process for each split, resolution and size):
    ``image`` (RGB PIL images), ``label`` (ClassLabel of :data:`SHAPES`: the first-named shape), ``caption``
    (string), and the attributes of the shapes in the order they are named: ``shapes``, ``colours``, ``sizes``,
    ``positions`` (lists of one or two strings)."""
    data = shapes_split(split, resolution, num_samples)  # checks the arguments
    return _shapes_dataset(split, int(resolution), len(data.labels))


@functools.lru_cache(maxsize=4)
def _shapes_dataset(split: str, resolution: int, num_samples: int):
    import datasets
    import PIL.Image

    data = shapes_split(split, resolution, num_samples)
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(SHAPES)),
        "caption": datasets.Value("string"),
        **{column: datasets.List(datasets.Value("string")) for column in ("shapes", "colours", "sizes", "positions")},
    })
    return datasets.Dataset.from_dict(
        {
            "image": [PIL.Image.fromarray(p) for p in data.pixels],
            "label": data.labels.tolist(),
            "caption": list(data.captions),
            "shapes": [[o.shape for o in objs] for objs in data.objects],
            "colours": [[o.colour for o in objs] for objs in data.objects],
            "sizes": [[o.size for o in objs] for objs in data.objects],
            "positions": [[o.position for o in objs] for objs in data.objects],
        },
        features=features,
    )


# ------------------------------------------------------------------------------------------ the registration
class ShapesDataSet(DataSet):
    """``--dataset shapes``: the "train" split (10,000 images, ``--num_samples`` sets it) at ``--resolution`` (32
    by default), with labels and captions; evaluated by the shipped shapes classifier (:mod:`genzoo.metrics.shapes`)
    against the held-out "test" split, and text-conditional models also on the "unseen" compositions."""

    name = "shapes"
    data_kind = "image"
    sample_shape = (3, DEFAULT_SHAPES_RESOLUTION, DEFAULT_SHAPES_RESOLUTION)
    description = "one or two coloured shapes per image, 32x32 RGB, 4 classes, with compositional captions"
    card_metrics = {
        "shapes_fd": "shapes-FD (shapes classifier; not Inception FID)",
        "precision": "precision (k-NN manifolds)",
        "recall": "recall (k-NN manifolds)",
        "class_accuracy": "accuracy on the asked-for class (the data set's classifier)",
        "faithfulness_all": "prompt faithfulness: every named attribute of every asked shape, nothing extra",
        "unseen_faithfulness_all": "prompt faithfulness on held-out shape-colour compositions",
    }
    summary_metrics = ("shapes_fd", "precision", "recall", "class_accuracy", "faithfulness_all")
    headline_metrics = {"shapes_fd": "lower", "precision": "higher"}
    eval_samples = 500
    check_samples = 50
    check_metrics = ("shapes_fd", "precision", "recall")
    #: precision and recall look at each sample's 5 nearest neighbours among the others
    min_samples = 6
    #: Text-conditional models are also asked for held-out compositions: this many samples per 4 samples of the
    #: main draw (at least 2), from the seed ``seed + unseen_seed_offset``.
    unseen_share = 0.25
    unseen_seed_offset = 10_000

    def rows(self, opts, seed: int):
        resolution = DEFAULT_SHAPES_RESOLUTION if opts.resolution is None else opts.resolution
        return shapes_dataset("train", resolution, opts.num_samples)

    def reference(self, num_samples: int, seed: int = 0, resolution: int = DEFAULT_SHAPES_RESOLUTION):
        """The first ``num_samples`` images of the held-out "test" split (2,000 at most) rendered at ``resolution``,
        uint8 (N, R, R, 3)."""
        return shapes_split("test", resolution).pixels[:num_samples]

    def check_pipeline(self, pipe) -> None:
        if pipe.conditioning == "class" and [str(name) for name in pipe.id2label.values()] != list(SHAPES):
            raise ValueError(f"{type(pipe).__name__} is conditioned on the classes {list(pipe.id2label.values())}, not "
                             f"on the shapes ({', '.join(SHAPES)}): was it trained with --dataset shapes?")

    def refuses(self, pipe, samples) -> str | None:
        if samples.ndim != 2 and samples.shape[-1] != 3:
            return (f"{type(pipe).__name__} makes grayscale images, and the shapes classifier reads colour: 'shapes' "
                    "needs RGB samples")
        return super().refuses(pipe, samples)

    def example_prompts(self, num: int) -> list[str]:
        """``num`` captions of the "train" grammar (compositions the models were trained on), in each phrasing in turn;
        drawn from a fixed seed, nothing rendered."""
        rng = np.random.default_rng(SHAPES_SPLIT_SEEDS["train"])
        return [describe(draw_objects(rng, "train"), i % len(OBJECT_TEMPLATES)) for i in range(num)]

    def prompts(self, pipe, num_samples: int) -> list[str] | None:
        """Captions (every attribute named) of the "test" split's images, in order."""
        from ..metrics.shapes import shapes_prompts

        return shapes_prompts(num_samples, "test")[0]

    def evaluate(self, pipe, samples, options) -> dict:
        """shapes-FD, precision, recall and attribute statistics; the accuracy on the asked-for shape (class
        conditioning) or the prompt faithfulness on "test" captions and, in a second, smaller draw, on "unseen" ones
        (``unseen_*``; text conditioning); the IWAE bound of held-out images for pipelines that declare
        ``nll_bound``."""
        import torch

        from ..metrics.evaluate import asked_labels, declares, draw_samples, iwae_bound
        from ..metrics.shapes import evaluate_shapes, predict_slots, prompt_faithfulness, shapes_prompts

        conditioning = pipe.conditioning
        labels = asked_labels(options.num_samples, len(pipe.id2label)) if conditioning == "class" else None
        asked = shapes_prompts(options.num_samples, "test")[1] if conditioning == "text" else None
        result = evaluate_shapes(samples, reference="test", seed=options.seed, asked_labels=labels,
                                 asked_objects=asked)
        if conditioning == "text":  # held-out compositions: prompts of the "unseen" split
            n = max(2, int(round(options.num_samples * self.unseen_share)))
            prompts, unseen_asked = shapes_prompts(n, "unseen")
            unseen = draw_samples(pipe, n, options.steps, options.seed + self.unseen_seed_offset,
                                  guidance_scale=options.guidance_scale, prompts=prompts)
            faithfulness = prompt_faithfulness(predict_slots(unseen), unseen_asked)
            result.update({f"unseen_{key}": value for key, value in faithfulness.items()})
        if options.likelihood and declares(pipe, "nll_bound"):
            data = shapes_split("test", samples.shape[1], options.likelihood_points)  # at the samples' resolution
            held_out = torch.from_numpy(data.pixels.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2).contiguous()
            labels = torch.from_numpy(data.labels.copy()) if conditioning == "class" else None
            result.update(iwae_bound(pipe, held_out, options.iwae_k, options.seed, options.recon_loss, labels))
        return result

    def real_data_floor(self, num_samples: int, seed: int = 0, resolution: int = DEFAULT_SHAPES_RESOLUTION) -> dict:
        """The shapes metrics of the first ``num_samples`` real "train" images rendered at ``resolution`` against the
        "test" split: 2,000 of them score a little above ``shapes_fd_floor`` (all 10,000 against the 2,000)."""
        from ..metrics.shapes import evaluate_shapes

        return evaluate_shapes(shapes_split("train", resolution, num_samples).pixels, reference="test", seed=seed)


SHAPES_DATA = ShapesDataSet()
