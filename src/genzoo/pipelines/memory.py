"""The memory a sampling request needs, estimated before anything is drawn: a request for more samples than the
machine can hold is refused with the estimate in the message, instead of running out of memory part-way (or
swapping for minutes). ``GenzooPipeline._check_sampling_memory`` asks it before every call's starting noise."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..checks import is_int

#: Copies of the sample tensor a sampling loop holds at once (the sample, the model's prediction, the scheduler's
#: next sample), and copies of the model's widest full-resolution activation alive during one model call; see
#: :func:`check_sampling_memory`.
SAMPLE_COPIES = 3
ACTIVATION_COPIES = 2
GIB = 2**30


def check_sampling_memory(model, itemsize: int, device, batch_size: int, noise_shape=(), model_batch: int | None = None,
                          owner: str = "this pipeline") -> None:
    """Refuse, with the estimate in the message, a request whose sample tensors alone would not fit in memory.

    The estimate, a lower bound: per sample, the larger of the starting noise (``noise_shape``) and the sample
    shape the ``model``'s config gives (``sample_size`` with ``out_channels`` / ``in_channels``), held
    :data:`SAMPLE_COPIES` times; plus, for each of the ``model_batch`` model inputs (twice ``batch_size`` under
    classifier-free guidance), :data:`ACTIVATION_COPIES` copies of the model's widest full-resolution activation
    (``block_out_channels[0]``, ``base_channels`` or ``hidden_dim`` wide), times ``itemsize`` (the bytes of the
    pipeline's dtype). Available (:func:`available_memory`): free memory of the CUDA ``device``, else
    ``MemAvailable`` of ``/proc/meminfo`` (capped by the cgroup's limit; ``os.sysconf`` where there is no
    ``/proc``). Unknown: no check. ``owner`` (the pipeline class's name) is named when ``noise_shape`` is broken.
    """
    if any(not is_int(d) or d < 1 for d in noise_shape):
        raise ValueError(
            f"The sample shape {tuple(noise_shape)} that {owner}'s model gives (from its config) is "
            "not a shape of positive integers; the model's config is broken."
        )
    model_batch = batch_size if model_batch is None else model_batch
    shape, sample, activation = sample_sizes(model, tuple(noise_shape))
    needed = itemsize * (SAMPLE_COPIES * batch_size * sample + ACTIVATION_COPIES * model_batch * activation)
    available, source = available_memory(device)
    if available is None or needed <= available:
        return
    shown = "x".join(map(str, shape)) if shape else "unknown shape"
    raise ValueError(
        f"batch_size={batch_size} samples of shape {shown} need about {needed / GIB:.1f} GiB for the sample "
        f"tensors and the model's activations alone; this machine has {available / GIB:.1f} GiB available "
        f"({source}). Ask for fewer samples per call (and call several times)."
    )


def sample_sizes(model, noise_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """``(sample shape, elements per sample, elements of the widest full-resolution activation per sample)`` for
    :func:`check_sampling_memory`, from the starting noise's shape and, where the model's config
    says, the shape of what it outputs and its width (see there). Lower bounds; config values that are not sizes
    are ignored."""
    noise = math.prod(noise_shape) if noise_shape else 0
    shape, sample, activation = noise_shape, noise, noise
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "get"):
        return shape, max(sample, 1), max(activation, 1)
    size = config.get("sample_size")
    channels = config.get("out_channels") or config.get("in_channels")
    width = None
    for key in ("block_out_channels", "base_channels", "hidden_dim"):
        value = config.get(key)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if is_int(value) and value > 0:
            width = int(value)
            break
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(d) and d > 0 for d in size):
        height, breadth = size
    elif is_int(size) and size > 0:
        height = breadth = size
    else:
        height = breadth = None
    if height is not None and is_int(channels) and channels > 0:  # images: channels x H x W
        out_shape = (int(channels), int(height), int(breadth))
        out, act = math.prod(out_shape), (width or int(channels)) * height * breadth
    elif is_int(size) and size > 0:  # vectors of sample_size
        out_shape, out, act = (int(size),), int(size), width or int(size)
    else:
        out_shape, out, act = shape, noise, noise
    if out >= noise:
        shape = out_shape
    sample = max(noise, out, 1)
    return shape, sample, max(act, sample)


def available_memory(device) -> tuple[int | None, str]:
    """``(bytes available for new tensors on device, where the figure comes from)``; ``(None, ...)`` if unknown.
    CUDA: the device's free memory. Elsewhere (the CPU, and unified-memory devices): ``MemAvailable`` of
    ``/proc/meminfo``, capped by a cgroup v2 memory limit, else ``os.sysconf``'s available physical pages."""
    device = torch.device(device)
    if device.type == "cuda":
        try:  # free on the device, plus what PyTorch's caching allocator holds but does not use
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(free + max(cached, 0)), f"free on {device}"
        except Exception:
            return None, "unknown"
    available, source = None, "unknown"
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available, source = int(line.split()[1]) * 1024, "MemAvailable"
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            source = "free physical memory"
        except (OSError, ValueError, AttributeError):
            return None, "unknown"
    try:  # a container's limit: what is left of it, not counting the page cache the kernel can drop
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit.isdigit():
            used = int((cgroup / "memory.current").read_text().strip())
            for line in (cgroup / "memory.stat").read_text().splitlines():
                if line.startswith("inactive_file "):
                    used -= int(line.split()[1])
            room = int(limit) - max(used, 0)
            if room < available:
                available, source = max(room, 0), "the cgroup's memory limit"
    except (OSError, ValueError, IndexError):
        pass
    return available, source
