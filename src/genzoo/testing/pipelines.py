"""The pipeline contract: what every genzoo pipeline must do, as plain check functions.

Each check takes a pipeline -- a tiny one, the checks sample it a few dozen times -- or a factory that builds one
(called with no arguments; the checks then work on fresh pipelines), samples it on the CPU, writes only into a
temporary folder (under ``tmp_dir`` when given), and raises ``AssertionError`` naming the pipeline class and what went
wrong. A pipeline given as such is deep-copied for each check, never changed.

- ``output_types``: images come as PIL images (the default), ``"np"`` ``(B, H, W, C)`` and ``"pt"`` ``(B, C, H, W)``
  in [0, 1], the same values each; vectors as ``"np"`` and ``"pt"`` ``(B, D)``, and ``"pil"`` is a ``ValueError``;
  ``return_dict=False`` gives a one-element tuple; ``"latent"`` is the sampling loop's final state, which ``"pt"``
  maps to [0, 1], where the pipeline lists it in ``output_types``, and a ``ValueError`` naming it elsewhere;
- ``determinism``: a seeded generator fixes the samples (another seed changes them); with a list of generators,
  sample i depends on generator i only; a list of the wrong length is a ``ValueError`` naming both numbers;
- ``latents``: given ``latents`` (the starting noise, ``(B, *latent shape)``), the same seed gives the same samples;
  latents of the wrong shape are a ``ValueError`` naming the expected and the given shape;
- ``save_load_round_trip``: ``save_pretrained`` writes safetensors only and a ``model_index.json`` naming the class;
  the class's ``from_pretrained``, ``genzoo.load_pipeline`` and Diffusers' ``DiffusionPipeline.from_pretrained(...,
  trust_remote_code=True)`` give back the class, its components' classes and the same seeded samples;
- ``dtypes``: moved to bfloat16, the pipeline reports that dtype and still returns finite float32 samples;
- ``refusals``: a ``batch_size`` or ``num_inference_steps`` that is not a positive integer, an unknown
  ``output_type``, a ``generator`` that is not one, ``save_pretrained(safe_serialization=False)`` and an unknown
  keyword of ``from_pretrained`` are errors naming the argument and the value.

The latent shape is the pipeline's ``latent_shape`` where it has one, else that of its sampling model
(``labelled_component``: a generator's ``latent_shape``, a denoiser's sample shape).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._common import fresh_folder, reported, run_checks

__all__ = ["PIPELINE_CHECKS", "check_pipeline"]

BATCH, STEPS = 3, 3  # samples per call and sampling steps of the checks' calls


# ------------------------------------------------------------------------------------------------ helpers
class _Pipelines:
    """Fresh pipelines of one class: deep copies of a given pipeline, or what a factory builds."""

    def __init__(self, pipeline_or_factory):
        from diffusers import DiffusionPipeline

        if isinstance(pipeline_or_factory, DiffusionPipeline):
            self._make = lambda: copy.deepcopy(pipeline_or_factory)
        elif callable(pipeline_or_factory):
            self._make = pipeline_or_factory
        else:
            raise TypeError(f"check_pipeline takes a pipeline or a function that builds one, got "
                            f"{type(pipeline_or_factory).__name__}.")
        self._next = self._make()
        if not isinstance(self._next, DiffusionPipeline):
            raise TypeError(f"the pipeline factory returned a {type(self._next).__name__}, not a pipeline.")
        self.name = type(self._next).__name__

    def __call__(self):
        pipe, self._next = self._next if self._next is not None else self._make(), None
        pipe.set_progress_bar_config(disable=True)
        return pipe


def _require(condition, pipelines: _Pipelines, message: str) -> None:
    if not condition:
        raise AssertionError(f"{pipelines.name}: {message}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _values(out):
    """The samples of a pipeline output (``images`` or ``samples``), or the first element of a tuple."""
    if isinstance(out, tuple):
        return out[0]
    return out.images if hasattr(out, "images") else out.samples


def _samples(pipe, seed=0, batch_size=BATCH, **kwargs) -> torch.Tensor:
    """Seeded samples as a tensor ("pt"), whatever the pipeline and the kind of data."""
    return _values(pipe(batch_size=batch_size, generator=_generator(seed), num_inference_steps=STEPS, output_type="pt",
                        **kwargs))


def _expect_error(pipelines: _Pipelines, call: Callable, names: list[str], what: str, error=ValueError) -> None:
    """``call()`` must raise ``error`` whose message contains every string in ``names``."""
    try:
        call()
    except error as raised:
        missing = [n for n in names if n not in str(raised)]
        _require(not missing, pipelines, f"{what} raised {error.__name__}({str(raised)!r}), which does not name "
                 f"{missing}.")
        return
    except Exception as raised:  # noqa: BLE001 -- a clear report of the wrong error type
        raise AssertionError(f"{pipelines.name}: {what} raised {type(raised).__name__}({raised}), not "
                             f"{error.__name__}.") from raised
    raise AssertionError(f"{pipelines.name}: {what} did not raise {error.__name__}.")


def latent_shape(pipe) -> tuple[int, ...]:
    """The per-sample shape of ``pipe``'s starting noise: its ``latent_shape``, else its sampling model's (a
    generator's ``latent_shape``, a denoiser's sample shape)."""
    from ..models import denoiser_sample_shape

    if hasattr(pipe, "latent_shape"):
        return tuple(pipe.latent_shape)
    model = pipe.components[pipe.labelled_component]
    return tuple(model.latent_shape) if hasattr(model, "latent_shape") else tuple(denoiser_sample_shape(model))


def _contract_check(function):
    """A check of ``pipeline_or_factory`` (or of the fresh pipelines of one), which reports any error other than its
    own AssertionError as an AssertionError too, naming the pipeline class, the check and the error."""
    checked = reported(lambda pipelines: pipelines.name)(function)

    @functools.wraps(function)
    def check(pipeline_or_factory, tmp_dir=None) -> None:
        is_fresh = isinstance(pipeline_or_factory, _Pipelines)
        checked(pipeline_or_factory if is_fresh else _Pipelines(pipeline_or_factory), tmp_dir=tmp_dir)

    return check


# ------------------------------------------------------------------------------------------------ the checks
@_contract_check
def check_output_types(pipelines, tmp_dir=None) -> None:
    """``"pil"``/``"np"``/``"pt"`` images or ``"np"``/``"pt"`` vectors agree; ``return_dict=False`` gives a tuple;
    ``"latent"`` is the loop's final state where listed in ``output_types``, else refused."""
    from diffusers import ImagePipelineOutput
    from PIL import Image

    from ..pipelines import VectorPipelineOutput

    pipe = pipelines()
    call = lambda **kwargs: pipe(batch_size=BATCH, generator=_generator(0), num_inference_steps=STEPS, **kwargs)  # noqa: E731
    as_pt = _values(call(output_type="pt"))
    as_np = _values(call(output_type="np"))
    if as_pt.ndim == 4:
        out = call()
        _require(isinstance(out, ImagePipelineOutput) and len(out.images) == BATCH, pipelines,
                 f"the default output_type gave a {type(out).__name__}, not an ImagePipelineOutput of {BATCH} images.")
        _require(all(isinstance(image, Image.Image) for image in out.images), pipelines,
                 "the default output_type ('pil') did not give PIL images.")
        b, c, h, w = as_pt.shape
        _require(as_np.shape == (b, h, w, c) and out.images[0].size == (w, h), pipelines,
                 f"'pt' {tuple(as_pt.shape)}, 'np' {as_np.shape} and PIL {out.images[0].size} images disagree in shape.")
        _require(as_np.min() >= 0 and as_np.max() <= 1, pipelines, "'np' images are not in [0, 1].")
        _require(np.array_equal(as_pt.permute(0, 2, 3, 1).numpy(), as_np), pipelines, "'pt' and 'np' images differ.")
        expected = (as_np[1] * 255).round().astype(np.uint8)
        _require(np.array_equal(np.asarray(out.images[1]), expected[..., 0] if c == 1 else expected), pipelines,
                 "PIL images are not the 'np' images scaled to 0..255.")
    else:
        out = call(output_type="np")
        _require(isinstance(out, VectorPipelineOutput) and out.samples.shape == tuple(as_pt.shape)
                 and as_pt.ndim == 2, pipelines, f"'np' gave a {type(out).__name__} of shape "
                 f"{getattr(out, 'samples', np.zeros(0)).shape}, 'pt' a tensor of {tuple(as_pt.shape)}.")
        _require(np.array_equal(as_pt.numpy(), out.samples), pipelines, "'pt' and 'np' samples differ.")
        _expect_error(pipelines, lambda: pipe(batch_size=2, num_inference_steps=2, output_type="pil"),
                      ["'pil'", "'np'", "'pt'"], "output_type='pil' for vector data")
    tup = call(output_type="pt", return_dict=False)
    _require(isinstance(tup, tuple) and len(tup) == 1 and torch.equal(tup[0], as_pt), pipelines,
             "return_dict=False must return the tuple (samples,).")
    if "latent" in pipe.output_types:
        state = _values(call(output_type="latent"))
        expected = ((state + 1) / 2).clamp(0, 1) if state.ndim == 4 else state
        _require(torch.allclose(expected.float(), as_pt, atol=1e-6, rtol=0), pipelines,
                 "'pt' is not the 'latent' state mapped from [-1, 1] to [0, 1] (images) or as it is (vectors).")
    else:
        _expect_error(pipelines, lambda: pipe(batch_size=1, num_inference_steps=2, output_type="latent"),
                      ["output_type='latent'"], "output_type='latent', which output_types does not list,")


@_contract_check
def check_determinism(pipelines, tmp_dir=None) -> None:
    """The same seed, the same samples; another seed, others; a list of generators seeds each sample alone."""
    pipe = pipelines()
    a, b = _samples(pipe, seed=7), _samples(pipe, seed=7)
    _require(torch.equal(a, b), pipelines, "two calls with generators seeded 7 gave different samples.")
    _require(not torch.equal(a, _samples(pipe, seed=8)), pipelines, "seeds 7 and 8 gave the same samples.")
    seeds = (1, 2, 3)
    batch = _values(pipe(batch_size=len(seeds), generator=[_generator(s) for s in seeds], num_inference_steps=STEPS,
                         output_type="pt"))
    for i, seed in enumerate(seeds):
        # up to float rounding: convolution kernels sum in a different order for different batch sizes
        single = _samples(pipe, seed=seed, batch_size=1)
        _require(torch.allclose(batch[i: i + 1], single, atol=1e-5, rtol=0), pipelines,
                 f"sample {i} of a batch drawn with a list of generators differs from the one sample generator {i} "
                 "draws alone.")
    _expect_error(pipelines, lambda: pipe(batch_size=3, generator=[_generator(0), _generator(1)], num_inference_steps=2),
                  ["2 generators", "batch_size=3"], "a list of 2 generators for batch_size=3")


@_contract_check
def check_latents(pipelines, tmp_dir=None) -> None:
    """Given latents, the same seed gives the same samples; latents of the wrong shape are refused."""
    pipe = pipelines()
    shape = latent_shape(pipe)
    latents = torch.randn(2, *shape, generator=_generator(5))
    a = _samples(pipe, seed=0, batch_size=2, latents=latents)
    _require(tuple(a.shape[:1]) == (2,) and torch.equal(a, _samples(pipe, seed=0, batch_size=2, latents=latents)),
             pipelines, "the same latents and seed gave different samples.")
    _expect_error(pipelines, lambda: pipe(batch_size=3, latents=latents, num_inference_steps=2),
                  [str((3, *shape)), str(tuple(latents.shape))], f"latents of shape {tuple(latents.shape)} for "
                  "batch_size=3")


@_contract_check
def check_save_load_round_trip(pipelines, tmp_dir=None) -> None:
    """Saved (safetensors only) and loaded by the class, ``genzoo.load_pipeline`` and Diffusers, the same pipeline."""
    import diffusers

    import genzoo

    pipe = pipelines()
    cls = type(pipe)
    expected = _samples(pipe)
    with fresh_folder(tmp_dir, "save-load") as folder:
        pipe.save_pretrained(folder)
        index = json.loads((Path(folder) / "model_index.json").read_text())
        _require(index.get("_class_name") == ["genzoo_hub", cls.__name__], pipelines,
                 f"model_index.json names _class_name={index.get('_class_name')!r}.")
        weights = sorted(p.name for p in Path(folder).rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt"))
        _require(weights and all(name.endswith(".safetensors") for name in weights), pipelines,
                 f"save_pretrained wrote the weight files {weights}, not safetensors only.")
        loaders = {
            f"{cls.__name__}.from_pretrained": lambda: cls.from_pretrained(folder),
            "genzoo.load_pipeline": lambda: genzoo.load_pipeline(folder),
            "diffusers.DiffusionPipeline.from_pretrained": lambda: diffusers.DiffusionPipeline.from_pretrained(
                folder, trust_remote_code=True),
        }
        for how, load in loaders.items():
            loaded = load()
            loaded.set_progress_bar_config(disable=True)
            _require(type(loaded) is cls, pipelines, f"{how} built a {type(loaded).__name__}.")
            for name, component in pipe.components.items():
                got = type(loaded.components.get(name))
                _require(got is type(component), pipelines,
                         f"{how} loaded {name} as a {got.__name__}, not a {type(component).__name__}.")
            _require(torch.equal(_samples(loaded), expected), pipelines, f"the pipeline loaded by {how} samples "
                     "differently.")


@_contract_check
def check_dtypes(pipelines, tmp_dir=None) -> None:
    """In bfloat16 the pipeline reports that dtype and returns finite float32 samples."""
    pipe = pipelines().to(torch.bfloat16)
    _require(pipe.dtype == torch.bfloat16, pipelines, f"moved to bfloat16, the pipeline reports dtype {pipe.dtype}.")
    out = _samples(pipe, batch_size=2)
    _require(out.dtype == torch.float32 and bool(torch.isfinite(out).all()), pipelines,
             f"in bfloat16 it returned {out.dtype} samples{'' if torch.isfinite(out).all() else ' that are not finite'}"
             ", not finite float32 ones.")


@_contract_check
def check_refusals(pipelines, tmp_dir=None) -> None:
    """Bad arguments of ``__call__``, ``save_pretrained`` and ``from_pretrained`` are errors naming them."""
    pipe = pipelines()
    for name, bad in (("batch_size", 0), ("batch_size", 2.5), ("num_inference_steps", 0), ("num_inference_steps", "3")):
        arguments = {"batch_size": 2, "num_inference_steps": 2, "output_type": "pt", name: bad}
        _expect_error(pipelines, lambda: pipe(**arguments), [name, repr(bad)], f"{name}={bad!r}")
    _expect_error(pipelines, lambda: pipe(batch_size=2, output_type="jpeg"), ["'jpeg'"], "output_type='jpeg'")
    _expect_error(pipelines, lambda: pipe(batch_size=2, generator=7, output_type="pt"), ["generator", "int"],
                  "generator=7")
    cls = type(pipe)
    with fresh_folder(tmp_dir, "refusals") as folder:
        _expect_error(pipelines, lambda: pipe.save_pretrained(folder, safe_serialization=False),
                      ["safetensors", "safe_serialization=False"], "save_pretrained(safe_serialization=False)")
        pipe.save_pretrained(folder)
        _expect_error(pipelines, lambda: cls.from_pretrained(folder, not_a_component=None), ["'not_a_component'"],
                      "from_pretrained(folder, not_a_component=None)", error=TypeError)


#: name -> check(pipeline_or_factory, tmp_dir=None); every genzoo pipeline passes all of them.
PIPELINE_CHECKS: dict[str, Callable[..., None]] = {
    "output_types": check_output_types,
    "determinism": check_determinism,
    "latents": check_latents,
    "save_load_round_trip": check_save_load_round_trip,
    "dtypes": check_dtypes,
    "refusals": check_refusals,
}


def check_pipeline(pipeline_or_factory, tmp_dir: str | os.PathLike | None = None,
                   checks: list[str] | None = None) -> None:
    """Run the pipeline contract's ``checks`` on a pipeline; one ``AssertionError`` lists every check that failed.

    Args:
        pipeline_or_factory (DiffusionPipeline | Callable[[], DiffusionPipeline]): a tiny pipeline (deep-copied for
            each check), or a function that builds one (called for each check).
        tmp_dir: where the checks save pipelines, in new subfolders removed afterwards (default: a temporary folder).
        checks (list[str] | None): names of checks to run (default: all of ``PIPELINE_CHECKS``).

    Raises:
        AssertionError: listing every check that failed, with its message.
        ValueError: for a check name that does not exist.
        TypeError: for something that is neither a pipeline nor a function that builds one.
    """
    pipelines = _Pipelines(pipeline_or_factory)
    run_checks("pipeline", PIPELINE_CHECKS, pipelines.name, checks, lambda check: check(pipelines, tmp_dir=tmp_dir))
