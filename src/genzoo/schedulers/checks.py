"""The checks every genzoo scheduler runs on what it is given -- tensors, timesteps, generators, devices, grids -- and
the end every ``step`` shares (:func:`finish_step`): NaN/inf refused with the timestep named, outputs in the sample's
dtype, Diffusers' ``return_dict``. Each failure is a one-line ``ValueError`` naming the argument, its value and what
is allowed. The path math lives in :mod:`genzoo.schedulers.paths`; this module holds none.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from ..checks import describe, is_real

#: The most training timesteps (and, for flow matching, sampling steps) a scheduler takes: every one of them is held
#: in memory, and no published schedule comes near it.
MAX_TIMESTEPS = 1_000_000


def check_tensor(name: str, value) -> torch.Tensor:
    """``value`` must be a floating-point ``torch.Tensor`` (what a model outputs and a scheduler steps)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"{name} must be a floating-point torch.Tensor, got {describe(value)} (type {type(value).__name__})."
        )
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got a tensor of dtype {value.dtype}.")
    return value


def check_same_shape(model_output: torch.Tensor, sample: torch.Tensor, allowed_channels=None) -> None:
    """``step`` inputs must agree in shape (``allowed_channels`` lists extra widths of dim 1 to accept)."""
    if model_output.shape == sample.shape:
        return
    if (
        allowed_channels
        and model_output.ndim == sample.ndim
        and model_output.shape[0] == sample.shape[0]
        and model_output.shape[2:] == sample.shape[2:]
        and model_output.shape[1] in allowed_channels
    ):
        return
    raise ValueError(
        f"model_output has shape {tuple(model_output.shape)} but sample has shape {tuple(sample.shape)}; "
        "they must match" + (f" (or have {allowed_channels} channels in dim 1)" if allowed_channels else "") + "."
    )


def check_step_inputs(model_output, sample, min_ndim: int = 0, learned_variance: bool = False) -> None:
    """What every ``step`` needs of its tensors: both floating-point tensors on one device, a non-empty sample with at
    least ``min_ndim`` dimensions, and the same shape (for a learned variance: twice the sample's channels in dim 1).
    Finiteness is checked with the outputs, in one synchronisation (:func:`check_step_finite`)."""
    check_tensor("model_output", model_output)
    check_tensor("sample", sample)
    if model_output.device != sample.device:
        raise ValueError(f"model_output is on {model_output.device} but sample is on {sample.device}; they must match.")
    if sample.ndim < max(min_ndim, 2 if learned_variance else 0) or sample.numel() == 0:
        need = max(min_ndim, 2 if learned_variance else 0)
        raise ValueError(
            f"sample must be a non-empty tensor with at least {need} dimension(s) (batch first"
            + (", channels second for a learned variance" if learned_variance else "")
            + f"), got shape {tuple(sample.shape)}."
        )
    check_same_shape(model_output, sample, allowed_channels=[2 * sample.shape[1]] if learned_variance else None)


def check_generator(generator, batch_size: int) -> None:
    """``None``, a ``torch.Generator`` or a list of one per sample (Diffusers' ``randn_tensor`` convention)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) in (1, batch_size):
            return
        raise ValueError(
            f"generator is a list of {len(generator)} generators; give one, or one per sample ({batch_size})."
        )
    raise ValueError(
        f"generator must be None, a torch.Generator or a list of them, got {describe(generator)} "
        f"(type {type(generator).__name__})."
    )


def check_device(device):
    """``device`` as ``set_timesteps`` takes it (``None``, a string such as ``'cpu'``, a ``torch.device``, a CUDA
    index), checked to name a device: a ``ValueError`` instead of torch's ``RuntimeError``/``TypeError``."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise ValueError(f"device must be None, a string such as 'cpu' or a torch.device, got {describe(device)}.")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"device={describe(device)} is not a device torch knows: {first_line}") from None


def move_to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """``tensor.to(device)`` with a one-line ``ValueError`` when the device is not available here."""
    try:
        return tensor.to(device)
    except (RuntimeError, AssertionError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"device={describe(device)} is not available: {first_line}") from None


def as_number_array(name: str, values, wanted: str) -> np.ndarray:
    """``values`` -- a list, tuple or other iterable of real numbers (or one-element tensors), a numpy array or a
    tensor -- as a float64 numpy array (any shape; huge integers become inf). Anything else (strings, bools, None,
    nested lists of unequal length, a single number) is a one-line ``ValueError`` saying ``name`` must be ``wanted``.
    The caller checks the shape, finiteness and range, with its own words."""

    def fail(note: str = ""):
        raise ValueError(f"{name} must be {wanted}, got {describe(values)}{note}.")

    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_complex():
            fail(f" (a tensor of dtype {values.dtype})")
        return values.detach().to("cpu", torch.float64).numpy()
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf":
            fail(f" (an array of dtype {values.dtype})")
        with np.errstate(over="ignore"):
            return values.astype(np.float64)
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        fail(f" (type {type(values).__name__})")

    def number(item):
        if isinstance(item, torch.Tensor):
            if item.numel() == 1 and item.dtype != torch.bool and not item.is_complex():
                return float(item)
        elif isinstance(item, np.ndarray):
            return as_number_array(name, item, wanted).tolist()
        elif is_real(item):
            return _float(item)
        elif isinstance(item, (list, tuple)):
            return [number(i) for i in item]
        fail(f": {describe(item)} is not a number")

    items = [number(item) for item in values]
    try:
        return np.asarray(items, dtype=np.float64)
    except ValueError:  # nested lists of unequal lengths
        fail(" (a ragged nesting of lists)")


def _float(value) -> float:
    """A real number as a float; integers too large for one become +-inf (and fail the finiteness checks)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def as_timestep_tensor(name: str, timesteps) -> torch.Tensor:
    """Training timesteps as a non-empty tensor of real numbers (a number, a list, a numpy array or a tensor);
    bools, complex numbers and anything else are a one-line ``ValueError``."""
    if isinstance(timesteps, torch.Tensor):
        t = timesteps
    elif is_real(timesteps):
        value = timesteps
        if isinstance(value, numbers.Integral) and -(2**63) <= value < 2**63:
            t = torch.tensor(int(value))
        else:
            t = torch.tensor(_float(value), dtype=torch.float64)
    else:
        t = torch.from_numpy(as_number_array(name, timesteps, "a number or a tensor of numbers"))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be a number or a tensor of real numbers, got a tensor of dtype {t.dtype}.")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); give one timestep, or one per sample.")
    return t


def check_batch_timesteps(timesteps: torch.Tensor, like: torch.Tensor, name: str = "timesteps") -> None:
    """``timesteps`` holds one value for the whole batch or one per sample of ``like`` (``like.shape[0]``)."""
    n = timesteps.numel()
    if n == 1 or (like.ndim >= 1 and n == like.shape[0]):
        return
    raise ValueError(
        f"{name} has {n} values for samples of shape {tuple(like.shape)}; give one timestep, or one per sample "
        f"({like.shape[0] if like.ndim else 1})."
    )


def check_training_inputs(original_samples, noise) -> None:
    """``add_noise``/``training_target`` take two floating-point tensors of one shape on one device."""
    check_tensor("original_samples", original_samples)
    check_tensor("noise", noise)
    if noise.shape != original_samples.shape:
        raise ValueError(
            f"noise has shape {tuple(noise.shape)} but original_samples has shape {tuple(original_samples.shape)}; "
            "they must match."
        )
    if noise.device != original_samples.device:
        raise ValueError(
            f"noise is on {noise.device} but original_samples is on {original_samples.device}; they must match."
        )


def finite_flags(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """``torch.isfinite(t).all()`` of each tensor, not yet read: callers stack them with other statistics so that the
    whole validation costs one device synchronisation."""
    return [torch.isfinite(t).all() for t in tensors]


def check_step_finite(owner: str, timestep, model_output, sample, *outputs) -> None:
    """After a ``step``: a ``ValueError`` if the model output or the sample holds NaN/inf (checked, not propagated:
    a clamp could hide it), or if finite inputs still gave a non-finite output (overflow). One synchronisation."""
    flags = torch.stack(finite_flags(model_output, sample, *outputs)).tolist()
    if all(flags):
        return
    where = f"{owner}.step at timestep {_show_timestep(timestep)}"
    if not flags[0]:
        raise ValueError(f"{where}: model_output contains NaN or inf; the model diverged or its input was invalid.")
    if not flags[1]:
        raise ValueError(f"{where}: sample contains NaN or inf.")
    biggest = max(float(model_output.abs().max()), float(sample.abs().max()))
    raise ValueError(
        f"{where}: finite inputs (largest magnitude {biggest:.3g}) gave a non-finite result; they are too large "
        f"for this step's {outputs[0].dtype} arithmetic."
    )


def _show_timestep(timestep) -> str:
    if isinstance(timestep, torch.Tensor) and timestep.numel() == 1:
        timestep = timestep.item()
    return f"{timestep:g}" if isinstance(timestep, float) else describe(timestep)


def finish_step(output_class, owner: str, timestep, model_output, sample, prev_sample, pred_original_sample,
                return_dict: bool = True, dtype: torch.dtype | None = None):
    """The end of every genzoo ``step``: :func:`check_step_finite` (a ``ValueError`` naming ``owner`` and the timestep
    before anything is returned, so a refused call leaves the scheduler as it was once the caller advances its state
    only after this returns), the two outputs cast to ``dtype`` (the ODE solvers compute in float32 and return the
    sample's dtype; ``None``: as computed), then ``output_class(prev_sample, pred_original_sample)`` or, with
    ``return_dict=False``, the tuple of the two (Diffusers' convention)."""
    check_step_finite(owner, timestep, model_output, sample, prev_sample, pred_original_sample)
    if dtype is not None and prev_sample.dtype != dtype:
        prev_sample = prev_sample.to(dtype)
    if dtype is not None and pred_original_sample.dtype != dtype:
        pred_original_sample = pred_original_sample.to(dtype)
    if not return_dict:
        return (prev_sample, pred_original_sample)
    return output_class(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
