"""What the trainer receives: :class:`TrainingData`, wrapping a map-style torch ``Dataset`` of images or vectors.

Images go through Diffusers' ``train_unconditional.py`` transforms -- resize the short side to ``resolution``
(bilinear), center or random crop to ``resolution`` x ``resolution``, optional horizontal flip, scale to [-1, 1] --
written with PIL and numpy (no torchvision). The random crop and flip of item ``index`` in epoch ``epoch`` are drawn
from a generator seeded by a fixed integer function of ``(seed, epoch, index)``, so a resumed run sees exactly the
augmentations it would have seen without the interruption, whatever the DataLoader's workers or order.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch

logger = logging.getLogger("genzoo.data")

#: PIL's modes of 16-bit unsigned grayscale (a 16-bit PNG or TIFF opens as one of these)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: modes whose pixels are gray levels: one channel, possibly with alpha
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "F", *SIXTEEN_BIT_MODES)
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT, _TIFF_SIGNED = 258, 339, 2


class DataError(ValueError):
    """The training data is missing, unreadable or not what the options ask for; the message says what to do."""


# ------------------------------------------------------------------------------------------------------ images
def open_image(value: dict) -> PIL.Image.Image:
    """Decode one undecoded ``datasets.Image`` value (``{"bytes": ..., "path": ...}``); raises on a bad image."""
    if value is None:
        raise ValueError("the row holds no image (None)")
    source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
    image = PIL.Image.open(source)
    image.load()  # PIL.Image.open only reads the header; a truncated or corrupt file fails here
    return image


def describe_image_value(value: Any, index: int) -> str:
    """Where an image came from, for error messages: its path when there is one, else its row."""
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    return f"row {index}"


def is_grayscale(image: PIL.Image.Image) -> bool:
    """Whether ``image`` holds gray levels only: a grayscale mode (1, L, LA, I, I;16, F), or a palette (P, PA) whose
    colours in use are all gray."""
    if image.mode in GRAYSCALE_MODES:
        return True
    if image.mode in ("P", "PA"):
        return _palette_is_gray(image)
    return False


def _palette_is_gray(image: PIL.Image.Image) -> bool:
    palette = np.asarray(image.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
    indices = np.asarray(image)
    used = np.unique(indices if indices.ndim == 2 else indices[..., 0])
    colours = palette[used[used < len(palette)]]
    return bool((colours == colours[:, :1]).all())


def _on_white(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C + 1) colour and straight alpha -> (H, W, C), composited over white, rounded."""
    colour, alpha = pixels[..., :-1].astype(np.int64), pixels[..., -1:].astype(np.int64)
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _integer_maximum(image: PIL.Image.Image) -> int:
    """The largest value the pixels of an integer image ("I", "I;16...") can hold: 65535 for 16-bit images; for
    mode "I" the bit depth the file states (TIFF), else 16 bits (older Pillow opens 16-bit PNGs as "I")."""
    if image.mode in SIXTEEN_BIT_MODES:
        return 2**16 - 1
    tags = getattr(image, "tag_v2", None) or {}
    bits = tags.get(_TIFF_BITS_PER_SAMPLE, 16)
    bits = int(bits[0] if isinstance(bits, (tuple, list)) else bits)
    signed = tags.get(_TIFF_SAMPLE_FORMAT, 1) in (_TIFF_SIGNED, (_TIFF_SIGNED,))
    return 2 ** (bits - 1 if signed else bits) - 1


def to_l_or_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """``image`` as 8-bit "L" (gray levels) or "RGB", scaled by its own bit depth; what every image mode becomes:

    - "L", "RGB": as they are; "1": black 0, white 255;
    - 16-bit grayscale ("I;16", "I;16B", ...): v * 255 / 65535, rounded; "I" (32-bit int): scaled by the bit depth
      its file states (TIFF), else taken as 16-bit; negative values or values beyond the bit depth are refused;
    - "F" (32-bit float): read as intensities in [0, 1] (v * 255, rounded); values outside [0, 1], NaN or inf are
      refused, as no bit depth says what they mean;
    - alpha ("LA", "RGBA", "PA", premultiplied "La", "RGBa", a palette with transparency): composited over white;
    - palette ("P"): its colours, "L" when every colour in use is gray;
    - others ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"): PIL's conversion to "RGB".
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        pixels = np.asarray(image).astype(np.int64)
        maximum = _integer_maximum(image)
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > maximum:
            raise ValueError(
                f"an integer image (mode {mode!r}) with values from {low} to {high}, outside 0 .. {maximum} (its bit "
                "depth); save it as an 8- or 16-bit image"
            )
        return PIL.Image.fromarray(np.round(pixels * (255.0 / maximum)).astype(np.uint8), "L")
    if mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        finite = pixels[np.isfinite(pixels)]
        if finite.size < pixels.size or (finite.size and (finite.min() < 0.0 or finite.max() > 1.0)):
            values = [f"values from {finite.min():g} to {finite.max():g}"] if finite.size else []
            values += ["NaN or inf"] if finite.size < pixels.size else []
            raise ValueError(
                f"a 32-bit float image (mode 'F') with {' and '.join(values)}; float pixels are read as intensities "
                "in [0, 1]: rescale them to [0, 1], or save the images as 8- or 16-bit"
            )
        return PIL.Image.fromarray(np.round(pixels * 255.0).astype(np.uint8), "L")
    gray = is_grayscale(image)
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    elif mode in ("La", "RGBa"):  # premultiplied alpha
        image = image.convert("LA" if mode == "La" else "RGBA")
    if image.mode == "LA":
        image = PIL.Image.fromarray(_on_white(np.asarray(image))[..., 0], "L")
    elif image.mode == "RGBA":
        image = PIL.Image.fromarray(_on_white(np.asarray(image)), "RGB")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image.convert("L") if gray and image.mode == "RGB" else image


def resize_short_side(image: PIL.Image.Image, resolution: int, num_channels: int) -> np.ndarray:
    """Convert to "L" or "RGB" (:func:`to_l_or_rgb`, then to the ``num_channels`` asked for), resize so the short
    side is ``resolution`` (bilinear, as torchvision's ``Resize(resolution)`` on a PIL image) and return a uint8 array
    (H, W, C)."""
    image = to_l_or_rgb(image).convert("L" if num_channels == 1 else "RGB")
    w, h = image.size
    if min(w, h) != resolution:
        if w <= h:
            size = (resolution, int(resolution * h / w))
        else:
            size = (int(resolution * w / h), resolution)
        image = image.resize(size, PIL.Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)  # a writable copy
    return array[:, :, None] if array.ndim == 2 else array


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the generator that draws item ``index``'s crop and flip in ``epoch``: a fixed integer function
    (numpy's SeedSequence hash), the same on every platform and in every process."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ImageDataset(torch.utils.data.Dataset):
    """Item ``i`` -> ``{"sample": (C, resolution, resolution) float32 in [-1, 1], "index": i[, "label": int]
    [, "caption": str]}`` (the default DataLoader collate makes the captions of a batch a list of strings).

    ``images`` optionally holds every row already decoded and resized (``resize_short_side``), so nothing is decoded
    again during training; without it each item is decoded from ``hf_dataset`` (an undecoded ``Image`` column). An item
    that fails to decode then is replaced by the next good one (with that row's label and caption), counted, and
    logged; past ``max_bad_fraction`` of the items tried (counted once ``min_tries_to_refuse`` have been tried) it
    raises :class:`DataError`.
    """

    min_tries_to_refuse = 1000

    def __init__(
        self,
        hf_dataset,
        image_column: str,
        labels: np.ndarray | None,
        resolution: int,
        num_channels: int,
        center_crop: bool = False,
        random_flip: bool = False,
        seed: int = 0,
        images: list[np.ndarray] | None = None,
        max_bad_fraction: float = 0.01,
        captions: list[str] | None = None,
    ):
        self.hf_dataset = hf_dataset
        self.image_column = image_column
        self.resolution = resolution
        self.num_channels = num_channels
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.seed = seed
        self.images = images
        self.max_bad_fraction = max_bad_fraction
        self.labels = labels
        self.captions = captions
        # shared memory: DataLoader workers (also persistent ones) see set_epoch calls made in the main process
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._tried = 0
        self._failed = 0

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations ``__getitem__`` draws (Accelerate's ``DataLoaderShard.set_epoch``
        calls this too). Call it before iterating the epoch."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def augmentation_free(self) -> bool:
        """Whether item ``i`` is the same at every epoch: no random flips, and no random crops (center crops, or
        images held in memory already at the training resolution)."""
        if self.random_flip:
            return False
        r = self.resolution
        return self.center_crop or (self.images is not None and all(a.shape[:2] == (r, r) for a in self.images))

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        """The resized image of row ``index`` and that row, or of the next row that decodes (its label and caption
        go with it)."""
        if self.images is not None:
            return self.images[index], index
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            value = self.hf_dataset[i][self.image_column]
            self._tried += 1
            try:
                return resize_short_side(open_image(value), self.resolution, self.num_channels), i
            except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBomb...)
                self._failed += 1
                logger.warning(
                    "skipped an image that failed to decode (%d of %d tried so far): %s: %s",
                    self._failed, self._tried, describe_image_value(value, i), err,
                )
                if self._tried >= self.min_tries_to_refuse and self._failed > self.max_bad_fraction * self._tried:
                    raise DataError(
                        f"{self._failed} of {self._tried} images failed to decode, more than "
                        f"--max_bad_images_fraction={self.max_bad_fraction}; fix or remove the bad files"
                    ) from err
        raise DataError("no image in the data set could be decoded")

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        array, row = self._load(index)
        h, w = array.shape[:2]
        r = self.resolution
        generator = None
        if self.random_flip or (not self.center_crop and (h, w) != (r, r)):
            generator = torch.Generator().manual_seed(augmentation_seed(self.seed, self.epoch, index))
        if self.center_crop or generator is None:
            # torchvision's CenterCrop rounds the offset half-way cases to the nearest int
            top, left = int(round((h - r) / 2.0)), int(round((w - r) / 2.0))
        else:
            top = int(torch.randint(0, h - r + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - r + 1, (1,), generator=generator))
        array = array[top : top + r, left : left + r]
        if self.random_flip and float(torch.rand((), generator=generator)) < 0.5:
            array = array[:, ::-1]
        sample = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        item = {"sample": sample, "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[row])
        if self.captions is not None:
            item["caption"] = self.captions[row]
        return item


class VectorDataset(torch.utils.data.Dataset):
    """Item ``i`` -> ``{"sample": (D,) float32 in data units, "index": i[, "label": int][, "caption": str]}``."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray | None = None, captions: list[str] | None = None):
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        self.labels = labels
        self.captions = captions

    def set_epoch(self, epoch: int) -> None:
        """Vectors are not augmented; present so every genzoo dataset takes ``set_epoch``."""

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} vectors")
        item = {"sample": self.vectors[index], "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item


# ------------------------------------------------------------------------------------------------- TrainingData
@dataclass
class TrainingData:
    """The training data, ready for a DataLoader, and what a method or model card needs to know about it."""

    dataset: torch.utils.data.Dataset
    kind: str  # "image" | "vector"
    sample_shape: tuple[int, ...]  # (C, H, W) or (D,)
    name: str  # "digits", "8gaussians", a path or a Hub id
    hf_dataset: Any  # the datasets.Dataset behind it, after validation
    num_classes: int | None = None
    id2label: dict[int, str] | None = None
    captions: list[str] | None = None  # one per item, in dataset order, when captions were read (--caption_column)
    source: str = "builtin"  # "builtin" | "imagefolder" | "disk" | "hub"
    num_skipped: int = 0  # undecodable images dropped at load time
    details: dict = field(default_factory=dict)  # the resolved options (image_column, resolution, seed, ...)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Call at the start of every epoch: random crops and flips are a function of (seed, epoch, index)."""
        self.dataset.set_epoch(epoch)

    def describe(self) -> str:
        """One line, e.g. ``digits: 1437 images 1x8x8, 10 classes`` (``..., 10 classes, 70 distinct captions`` with
        captions)."""
        if self.kind == "image":
            text = f"{self.name}: {len(self)} images {'x'.join(map(str, self.sample_shape))}"
        else:
            text = f"{self.name}: {len(self)} vectors of dimension {self.sample_shape[0]}"
        if self.num_classes is not None:
            text += f", {self.num_classes} classes"
        if self.captions is not None:
            text += f", {len(set(self.captions))} distinct captions"
        if self.num_skipped:
            text += f" ({self.num_skipped} undecodable images skipped)"
        return text
