"""Pairs of noise and a teacher's samples, for rectified flow (:mod:`genzoo.methods.rectified_flow`): made once, cached
on disk, and shared by every run (and every process of a run) that asks for the same ones.

A pair is ``(x0, x1)``: ``x0 ~ N(0, I)`` of the data's shape, and ``x1`` what the teacher's own sampler (its saved
scheduler, ``teacher_steps`` steps, unconditional) makes of exactly that ``x0``: the final state of its sampling
loop, in the model's data space (images in [-1, 1] as the model sees them, not the [0, 1] pictures the pipeline
returns). Only teachers whose sampler is a deterministic map of data-shaped noise qualify: flow-matching and
flow-map pipelines (``model_kind`` "flow" or "flow-map", a plugin's subclass of them included).

The noise comes from a ``torch.Generator`` seeded from the run's seed (:func:`pair_seed`), so every process and every
resumed run draws the same ``x0``; the teacher runs in batches of :data:`GENERATION_BATCH` under ``torch.no_grad()``.

Cache: a folder that ``datasets.load_from_disk`` reads, with columns ``noise`` and ``sample`` (one flattened float32
example per row) and, beside its arrow files, :data:`METADATA` (the per-example shape, the teacher, the options, the
key and how long generating took). Its default place is ``<cache>/teacher_pairs/<key>``, where ``<cache>`` is
``$GENZOO_CACHE``, else ``$XDG_CACHE_HOME/genzoo``, else ``~/.cache/genzoo``; ``<key>`` (:func:`pairs_key`) hashes
everything the pairs depend on: the bytes of the teacher's saved pipeline (``model_index.json``, component configs,
weights), its scheduler's configuration, ``teacher_steps``, ``num_pairs`` and the seed. A cache is written into a
hidden temporary sibling and renamed into place, so a generation that crashes never leaves a half cache; only the
main process writes. With several processes each loads the cache or generates the pairs itself, and process 0's
pairs are then broadcast to all (a process whose own differed says so in a warning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .files import make_staging_folder

logger = logging.getLogger(__name__)

#: Bumped whenever what a cache holds, or how it is made, changes (it is part of the key).
PAIRS_FORMAT = 1
#: Teacher samples made per pipeline call.
GENERATION_BATCH = 1000
#: The ``model_kind`` of the pipelines whose sampler is a deterministic map of data-shaped noise.
TEACHER_KINDS = ("flow", "flow-map")
#: The file beside the arrow files of a cache that describes it.
METADATA = "teacher_pairs.json"


def cache_root() -> Path:
    """genzoo's cache folder: ``$GENZOO_CACHE``, else ``$XDG_CACHE_HOME/genzoo``, else ``~/.cache/genzoo``."""
    if os.environ.get("GENZOO_CACHE"):
        return Path(os.environ["GENZOO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "genzoo"


def default_pairs_dir(key: str) -> Path:
    """Where the pairs with ``key`` are cached unless a folder is given: ``<cache>/teacher_pairs/<key>``."""
    return cache_root() / "teacher_pairs" / key


def pair_seed(seed: int) -> int:
    """The seed of the pairs' noise for run seed ``seed``: derived from it, and different from the seeds of the
    trainer's own generators (``seed * 1000 + process``), so the pairs' noise is not the stream of training draws."""
    return int.from_bytes(hashlib.sha256(f"genzoo teacher pairs {seed}".encode()).digest()[:7], "big")


@dataclass
class TeacherPairs:
    """``noise[i]`` (x0) and ``sample[i]`` (x1, the teacher's sample from it): ``(num_pairs, *shape)`` float32
    tensors on the training device."""

    noise: torch.Tensor
    sample: torch.Tensor
    folder: Path
    #: "generated" (in this run) or "cache" (loaded).
    source: str
    #: What :data:`METADATA` records: key, teacher, teacher_steps, num_pairs, seed, shape, generation_seconds, ...
    metadata: dict = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return self.noise.shape[0]

    def take(self, index: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise[index], sample[index])`` on the device and in the dtype of ``like``."""
        index = index.to(self.noise.device)
        return self.noise[index].to(like), self.sample[index].to(like)


# ------------------------------------------------------------------------------------------------ the teacher
def check_teacher(teacher, source: str, sample_shape) -> tuple[int, ...]:
    """Refuse (one-line ``ValueError`` naming ``--teacher``) a teacher whose samples cannot be paired with the data's
    noise: not a flow-matching or flow-map pipeline, conditional, or of another sample shape. Returns the shape."""
    from .models import denoiser_sample_shape

    name = type(teacher).__name__
    kind = getattr(teacher, "model_kind", None)
    if kind not in TEACHER_KINDS:
        raise ValueError(
            f"--teacher {source} is a {name}; rectified flow needs a flow-matching or flow-map pipeline (model_kind "
            f"{' or '.join(map(repr, TEACHER_KINDS))}, got {kind!r}), whose sampler is a deterministic map of noise "
            "of the data's shape (a GAN's or a VAE's starts from a latent of another shape, DDPM's adds noise at "
            "every step)."
        )
    if teacher.conditioning != "none":
        raise ValueError(
            f"--teacher {source} is a {teacher.conditioning}-conditional {name}; rectified flow from a teacher pairs "
            "noise with unconditional samples: use an unconditional teacher."
        )
    shape = tuple(denoiser_sample_shape(teacher.unet))
    if shape != tuple(sample_shape):
        raise ValueError(
            f"--teacher {source} makes samples of shape {shape}, and the data's samples have shape "
            f"{tuple(sample_shape)}; use a teacher trained on data of the same shape (or change --resolution)."
        )
    return shape


def teacher_folder(teacher, source: str | None = None) -> Path:
    """The folder the teacher was loaded from (a Hub id resolved to its snapshot in the local Hub cache)."""
    from .pipelines.resolve import resolve_pretrained_path

    source = source or teacher.name_or_path
    return resolve_pretrained_path(source, local_files_only=not Path(source).expanduser().is_dir())


def pipeline_digest(folder: Path) -> str:
    """sha256 over the files of the pipeline saved in ``folder`` (``model_index.json``, ``genzoo_hub.py`` and its
    component folders: configs and weights), by relative path and content; other files there (checkpoints, logs,
    samples) do not count."""
    from .pipelines.loading import pipeline_entries

    folder = Path(folder)
    digest = hashlib.sha256()
    files = []
    for entry in sorted(pipeline_entries(folder)):
        path = folder / entry
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def pairs_key(teacher, source: str, teacher_steps: int, num_pairs: int, seed: int) -> str:
    """The cache key of the pairs: a hash of the teacher's saved files and scheduler configuration, the steps, the
    number of pairs, the seed and :data:`PAIRS_FORMAT`."""
    scheduler_config = {k: v for k, v in dict(teacher.scheduler.config).items() if not k.startswith("_")}
    parts = {
        "format": PAIRS_FORMAT,
        "teacher_files": pipeline_digest(teacher_folder(teacher, source)),
        "teacher_class": type(teacher).__name__,
        "scheduler": [type(teacher.scheduler).__name__, scheduler_config],
        "teacher_steps": teacher_steps,
        "num_pairs": num_pairs,
        "seed": seed,
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def teacher_samples(teacher, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """What the teacher's sampler makes of ``noise`` (``(n, *shape)``) in ``steps`` steps of its own scheduler: the
    last state of its sampling loop, as a float32 CPU tensor in the model's data space."""
    with torch.no_grad():
        out = teacher(batch_size=noise.shape[0], latents=noise, num_inference_steps=steps, output_type="latent")
    samples = (out.images if hasattr(out, "images") else out.samples).float().cpu()
    if not torch.isfinite(samples).all():
        raise ValueError(
            f"The teacher ({type(teacher).__name__}) made non-finite samples (NaN or inf) with {steps} steps; its "
            "weights or its scheduler settings are broken."
        )
    return samples


def generate_pairs(teacher, shape, num_pairs: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noise, sample)``, float32 on the CPU: ``num_pairs`` draws of noise from :func:`pair_seed` ``(seed)`` and
    the teacher's samples from them, :data:`GENERATION_BATCH` at a time."""
    generator = torch.Generator(device="cpu").manual_seed(pair_seed(seed))
    noise = torch.randn((num_pairs, *shape), generator=generator, dtype=torch.float32)
    sample = torch.cat([teacher_samples(teacher, noise[start:start + GENERATION_BATCH], steps)
                        for start in range(0, num_pairs, GENERATION_BATCH)])
    return noise, sample


# ------------------------------------------------------------------------------------------------ the cache
def read_metadata(folder: Path) -> dict | None:
    """The :data:`METADATA` of a cache folder, or ``None`` where there is none (or it is not JSON)."""
    try:
        return json.loads((Path(folder) / METADATA).read_text())
    except (OSError, ValueError):
        return None


def save_pairs(folder, noise: torch.Tensor, sample: torch.Tensor, metadata: dict, replace: bool = False) -> Path:
    """Write the pairs as a ``datasets`` folder with :data:`METADATA` beside its arrow files, atomically: into a
    hidden temporary sibling, then renamed to ``folder``. A ``folder`` that another writer completed meanwhile (the
    same pairs) is kept, unless ``replace`` (a cache that could not be read); one without :data:`METADATA` (not a
    finished cache) is replaced."""
    import datasets
    import pyarrow as pa

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    width = int(noise[0].numel())
    column = datasets.List(datasets.Value("float32"), length=width)
    features = datasets.Features({"noise": column, "sample": column})
    table = {name: pa.FixedSizeListArray.from_arrays(pa.array(t.reshape(-1).numpy()), width)
             for name, t in (("noise", noise.float().cpu().contiguous()), ("sample", sample.float().cpu().contiguous()))}
    staging = make_staging_folder(folder)  # and remove what writers that were killed left beside it
    bars = datasets.is_progress_bar_enabled()
    try:
        datasets.disable_progress_bars()
        datasets.Dataset.from_dict(table, features=features).save_to_disk(str(staging))
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        if folder.is_dir() and (replace or read_metadata(folder) is None):
            shutil.rmtree(folder)
        try:
            os.rename(staging, folder)
        except OSError:
            if read_metadata(folder) is None:
                raise
            logger.info("teacher pairs: %s was written meanwhile by another run; keeping it", folder)
    finally:
        if bars:
            datasets.enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_pairs(folder) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(noise, sample, metadata)`` of a cache folder written by :func:`save_pairs`, float32 on the CPU."""
    import datasets

    folder = Path(folder)
    metadata = read_metadata(folder)
    if metadata is None:
        raise FileNotFoundError(f"{folder} holds no teacher pairs (no readable {METADATA}).")
    columns = datasets.load_from_disk(str(folder)).with_format("numpy")[:]
    shape = tuple(metadata["shape"])
    noise, sample = (torch.from_numpy(columns[name]).reshape(-1, *shape) for name in ("noise", "sample"))
    if noise.shape[0] != metadata["num_pairs"] or sample.shape != noise.shape:
        raise ValueError(f"{folder} holds {noise.shape[0]} pairs, and its {METADATA} says {metadata['num_pairs']}.")
    return noise, sample, metadata


# ------------------------------------------------------------------------------------------------ one call
def teacher_pairs(
    teacher,
    source: str,
    *,
    sample_shape,
    num_pairs: int,
    teacher_steps: int | None,
    seed: int,
    pairs_dir: str | os.PathLike | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    device: torch.device | str = "cpu",
) -> TeacherPairs:
    """The pairs of ``teacher`` (loaded from ``source``, a folder or Hub id) for these options: loaded from the
    cache if it holds them, else generated (and, on the main process, cached). See the module docstring.

    ``teacher_steps=None``: the teacher pipeline's ``default_num_inference_steps``. ``pairs_dir``: the cache folder
    (default :func:`default_pairs_dir`); one that holds other pairs, or other files, is refused with a
    ``ValueError``.
    """
    shape = check_teacher(teacher, source, sample_shape)
    steps = teacher.default_num_inference_steps if teacher_steps is None else int(teacher_steps)
    key = pairs_key(teacher, source, steps, num_pairs, seed)
    folder = Path(pairs_dir).expanduser() if pairs_dir is not None else default_pairs_dir(key)
    found = read_metadata(folder)
    if pairs_dir is not None and folder.is_dir() and any(folder.iterdir()) and (found or {}).get("key") != key:
        what = (f"the pairs of another teacher or other options (key {found.get('key')}, this run's {key})" if found
                else "files that are not teacher pairs")
        raise ValueError(f"--pairs_dir {folder} holds {what}; remove it or choose another folder.")

    pairs, unreadable = None, False
    if found is not None:
        try:
            noise, sample, metadata = load_pairs(folder)
            pairs = TeacherPairs(noise, sample, folder, "cache", metadata)
            logger.info("teacher pairs: loaded %d pairs from the cache %s", num_pairs, folder)
        except (OSError, ValueError, KeyError) as exc:
            unreadable = True
            logger.warning("teacher pairs: the cache %s cannot be read (%s); generating the pairs again", folder,
                           " ".join(str(exc).split()))
    if pairs is None:
        start = time.perf_counter()
        noise, sample = generate_pairs(teacher, shape, num_pairs, steps, seed)
        seconds = round(time.perf_counter() - start, 2)
        metadata = {"key": key, "format": PAIRS_FORMAT, "teacher": str(source), "teacher_class": type(teacher).__name__,
                    "teacher_steps": steps, "num_pairs": num_pairs, "seed": seed, "shape": list(shape),
                    "generation_seconds": seconds}
        logger.info("teacher pairs: generated %d pairs with %d teacher steps in %.1f s", num_pairs, steps, seconds)
        if process_index == 0:
            save_pairs(folder, noise, sample, metadata, replace=unreadable)
            logger.info("teacher pairs: cached in %s", folder)
        pairs = TeacherPairs(noise, sample, folder, "generated", metadata)
    pairs.noise, pairs.sample = pairs.noise.to(device), pairs.sample.to(device)
    if num_processes > 1:
        _use_process_0s(pairs, process_index)
    return pairs


def _use_process_0s(pairs: TeacherPairs, process_index: int) -> None:
    """Make every process train on process 0's pairs (broadcast), warning where a process's own differed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for name in ("noise", "sample"):
        tensor = getattr(pairs, name).contiguous()
        own = tensor.clone()
        dist.broadcast(tensor, src=0)
        setattr(pairs, name, tensor)
        differ = int((own != tensor).sum())
        if differ:
            logger.warning("teacher pairs: process %d's %s differed from process 0's in %d values; using process 0's",
                           process_index, name, differ)
