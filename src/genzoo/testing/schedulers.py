"""The scheduler contract: what every genzoo-compatible scheduler class must do, as plain check functions.

genzoo runs it over every registered scheduler (its own and installed plugins'); a plugin author runs it over their own
class from their own test suite, with no code to copy (:mod:`genzoo.testing` exports these names)::

    from genzoo.testing import SCHEDULER_CHECKS, check_scheduler

    check_scheduler(MyScheduler)                     # every check; one AssertionError listing all that failed

    @pytest.mark.parametrize("name", sorted(SCHEDULER_CHECKS))
    def test_scheduler_contract(name):               # or one pytest test per check
        SCHEDULER_CHECKS[name](MyScheduler)

Each check takes the scheduler class (and, optionally, ``config``: constructor keyword arguments, default none), builds
what it needs on the CPU, and raises ``AssertionError`` naming the class and what went wrong. The checks assume the
model output has the sample's shape (not, e.g., DDPM's ``learned`` variances, which double the channels).

The contract, in the spirit of Diffusers' ``SchedulerCommonTest``:

- ``interface``: a ``SchedulerMixin`` + ``ConfigMixin`` with ``order``, ``init_noise_sigma``, ``len()``,
  ``scale_model_input``;
- ``config_round_trip``: ``save_pretrained``/``from_pretrained`` and ``save_config``/``from_config`` give the same
  config and the same ``step`` outputs;
- ``from_config_compatible``: the class builds from the config of every compatible class and back, unchanged --
  Diffusers' ``compatibles`` and every registered genzoo scheduler that takes the same configuration;
- ``set_timesteps_validation``: bad ``num_inference_steps`` raise ``ValueError`` naming the value;
- ``step_shapes_and_dtypes``: ``(B, C, H, W)`` and ``(B, D)`` samples, float32 and bfloat16 in, the same out;
- ``determinism``: a seeded generator fixes the outputs, whatever the global random state;
- ``training_side``: ``sample_timesteps`` is seeded and in range, ``add_noise`` is the affine path sample
  ``alpha_t * x_0 + sigma_t * noise``, and the ``training_target`` fed to ``step`` gives back x_0 as
  ``pred_original_sample``;
- ``step_after_init``: ``step`` works right after construction, without ``set_timesteps``;
- ``step_rejects_bad_input``: a model output whose shape does not match the sample is a ``ValueError`` naming both.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from typing import Callable

import torch

from ._common import reported, run_checks

__all__ = ["SCHEDULER_CHECKS", "check_scheduler", "compatible_classes"]

NUM_STEPS = 6  # the sampling grid the checks step on


# ------------------------------------------------------------------------------------------------ helpers
def _name(cls) -> str:
    return getattr(cls, "__name__", repr(cls))


def _require(condition, cls, message: str) -> None:
    if not condition:
        raise AssertionError(f"{_name(cls)}: {message}")


def _build(cls, config: dict | None):
    return cls(**(config or {}))


def _public(config) -> dict:
    """A config without Diffusers' bookkeeping keys (``_class_name``, ``_diffusers_version``, ...)."""
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


def _init_keys(cls) -> set[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fake_model(sample: torch.Tensor, timestep) -> torch.Tensor:
    """A deterministic stand-in for a network: a smooth function of the sample and the time input."""
    t = float(torch.as_tensor(timestep).float().mean())
    return torch.tanh(0.5 * sample.float() + 1e-3 * t - 0.2).to(sample.dtype)


def _run(scheduler, sample: torch.Tensor, num_calls: int, seed: int) -> list[torch.Tensor]:
    """The first ``num_calls`` steps of a sampling loop over ``scheduler.timesteps``; every output, in order."""
    generator = _generator(seed)
    outputs = []
    for t in list(scheduler.timesteps)[:num_calls]:
        out = scheduler.step(_fake_model(sample, t), t, sample, generator=generator)
        outputs.append(out.prev_sample)
        if getattr(out, "pred_original_sample", None) is not None:
            outputs.append(out.pred_original_sample)
        sample = out.prev_sample
    return outputs


def _same_outputs(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _expect_value_error(cls, call: Callable, names: list[str], what: str) -> None:
    """``call()`` must raise ValueError whose message contains every string in ``names``."""
    try:
        call()
    except ValueError as error:
        missing = [n for n in names if n not in str(error)]
        _require(not missing, cls, f"{what} raised ValueError({str(error)!r}), which does not name {missing}.")
        return
    except Exception as error:  # noqa: BLE001 -- a clear report of the wrong error type
        raise AssertionError(f"{_name(cls)}: {what} raised {type(error).__name__}({error}), not ValueError.") from error
    raise AssertionError(f"{_name(cls)}: {what} did not raise ValueError.")


def compatible_classes(cls) -> list[type]:
    """Classes ``cls`` must convert to and back with ``from_config``: Diffusers' ``compatibles`` of ``cls`` (the
    check skips those whose optional dependencies, e.g. torchsde, are missing), then every registered scheduler
    whose constructor takes exactly ``cls``'s arguments (e.g. FlowMatchEulerScheduler <-> FlowMatchHeunScheduler)."""
    from .. import registry

    found: list[type] = []
    for other in getattr(cls, "_get_compatibles", lambda: [])():
        if other is not cls and other not in found:
            found.append(other)
    keys = _init_keys(cls)
    for entry in registry.entries("scheduler"):
        try:
            other = entry.load()
        except ImportError:
            continue  # broken plugins are reported by `genzoo list --check`, and are not this class's business
        if other is not cls and other not in found and isinstance(other, type) and _init_keys(other) == keys:
            found.append(other)
    return found


#: Makes a check report any error other than its own AssertionError as an AssertionError naming the class.
_contract_check = reported(_name)


# ------------------------------------------------------------------------------------------------ the checks
@_contract_check
def check_interface(cls, config: dict | None = None) -> None:
    """A Diffusers scheduler: ``SchedulerMixin`` and ``ConfigMixin``, ``order``, ``init_noise_sigma``, ``len()``,
    ``scale_model_input`` keeping the shape, and a non-empty 1-D ``timesteps`` right after construction."""
    from diffusers import ConfigMixin, SchedulerMixin

    _require(issubclass(cls, SchedulerMixin) and issubclass(cls, ConfigMixin), cls, "must subclass "
             "diffusers.SchedulerMixin and diffusers.ConfigMixin (save_pretrained, from_pretrained, from_config).")
    scheduler = _build(cls, config)
    _require(isinstance(scheduler.order, int) and scheduler.order >= 1, cls, f"order={scheduler.order!r} is not >= 1.")
    _require(float(scheduler.init_noise_sigma) > 0, cls, f"init_noise_sigma={scheduler.init_noise_sigma!r} is not > 0.")
    _require(len(scheduler) == scheduler.config.num_train_timesteps, cls, "len(scheduler) must be num_train_timesteps.")
    timesteps = getattr(scheduler, "timesteps", None)
    _require(isinstance(timesteps, torch.Tensor) and timesteps.ndim == 1 and len(timesteps) > 0, cls,
             f"timesteps right after construction must be a non-empty 1-D tensor, got {timesteps!r}.")
    x = torch.randn(2, 3, generator=_generator(0))
    _require(scheduler.scale_model_input(x, timesteps[0]).shape == x.shape, cls, "scale_model_input changed the shape.")


@_contract_check
def check_config_round_trip(cls, config: dict | None = None) -> None:
    """save_pretrained -> from_pretrained and save_config -> load_config -> from_config: the same config (and
    ``_class_name``), every saved key a constructor argument, and the same step outputs."""
    scheduler = _build(cls, config)
    with tempfile.TemporaryDirectory() as folder:
        scheduler.save_pretrained(folder)
        with open(os.path.join(folder, "scheduler_config.json")) as f:
            saved = json.load(f)
        _require(saved.get("_class_name") == cls.__name__, cls,
                 f"scheduler_config.json names _class_name={saved.get('_class_name')!r}.")
        unknown = sorted(set(_public(saved)) - _init_keys(cls))
        _require(not unknown, cls, f"scheduler_config.json holds {unknown}, which {cls.__name__}.__init__ does not "
                 "take (from_pretrained would warn and drop them); a subclass must re-declare its parent's whole "
                 "signature.")
        from_pretrained = cls.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as folder:
        scheduler.save_config(folder)
        from_config = cls.from_config(cls.load_config(folder))
    sample = torch.randn(2, 3, generator=_generator(0))
    reference = None
    for how, loaded in (("original", scheduler), ("from_pretrained", from_pretrained), ("from_config", from_config)):
        _require(type(loaded) is cls, cls, f"{how} built a {type(loaded).__name__}.")
        _require(_public(loaded.config) == _public(scheduler.config), cls,
                 f"{how} changed the config: {_public(scheduler.config)} -> {_public(loaded.config)}.")
        loaded.set_timesteps(NUM_STEPS)
        outputs = _run(loaded, sample, 2 * loaded.order, seed=1)
        if reference is None:
            reference = outputs
        _require(_same_outputs(outputs, reference), cls, f"the scheduler loaded by {how} steps differently.")


@_contract_check
def check_from_config_compatible(cls, config: dict | None = None) -> None:
    """For every class in :func:`compatible_classes`: ``Other.from_config(config)`` works and
    ``cls.from_config`` of that scheduler's config gives back the original config, differing at most in keys
    ``cls`` does not take."""
    from diffusers.utils import logging as diffusers_logging

    scheduler = _build(cls, config)
    original = _public(scheduler.config)
    init_keys = _init_keys(cls)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # unused-key warnings are expected across scheduler families
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # other libraries' numpy deprecations
            for other in compatible_classes(cls):
                try:
                    converted = other.from_config(scheduler.config)
                except ImportError:
                    continue  # an optional backend of that class (e.g. torchsde) is missing
                back = cls.from_config(converted.config)
                _require(type(back) is cls, cls,
                         f"from_config of a {other.__name__} config built a {type(back).__name__}.")
                kept = {k: v for k, v in _public(back.config).items() if k in original}
                _require(kept == original, cls, f"the config changed through {other.__name__}: {original} -> {kept}.")
                gained = sorted((set(_public(back.config)) - set(original)) & init_keys)
                _require(not gained, cls, f"through {other.__name__} the config gained constructor arguments {gained}.")
    finally:
        diffusers_logging.set_verbosity(verbosity)


@_contract_check
def check_set_timesteps_validation(cls, config: dict | None = None) -> None:
    """``set_timesteps(n)`` fills ``timesteps`` (at least n of them) and ``num_inference_steps``; a bad n is a
    ``ValueError`` naming it."""
    scheduler = _build(cls, config)
    scheduler.set_timesteps(NUM_STEPS)
    _require(scheduler.num_inference_steps == NUM_STEPS, cls,
             f"set_timesteps({NUM_STEPS}) left num_inference_steps={scheduler.num_inference_steps!r}.")
    timesteps = scheduler.timesteps
    _require(timesteps.ndim == 1 and len(timesteps) >= NUM_STEPS, cls,
             f"set_timesteps({NUM_STEPS}) gave timesteps {timesteps.tolist()}.")
    for bad in (0, -3, 2.5, "10"):
        _expect_value_error(cls, lambda: _build(cls, config).set_timesteps(bad), [repr(bad)],
                            f"set_timesteps({bad!r})")


@_contract_check
def check_step_shapes_and_dtypes(cls, config: dict | None = None) -> None:
    """Image-shaped ``(B, C, H, W)`` and vector-shaped ``(B, D)`` samples, in float32 and bfloat16: ``prev_sample``
    and ``pred_original_sample`` have the sample's shape and dtype and are finite; ``return_dict=False`` gives the
    same ``prev_sample`` first in a tuple."""
    for shape in ((2, 3, 4, 4), (3, 5)):
        for dtype in (torch.float32, torch.bfloat16):
            what = f"step on a {dtype} sample of shape {shape}"
            sample = torch.randn(shape, generator=_generator(0)).to(dtype)
            scheduler = _build(cls, config)
            scheduler.set_timesteps(NUM_STEPS)
            t = scheduler.timesteps[0]
            out = scheduler.step(_fake_model(sample, t), t, sample, generator=_generator(1))
            for field in ("prev_sample", "pred_original_sample"):
                value = getattr(out, field, None)
                if value is None and field == "pred_original_sample":
                    continue
                _require(value.shape == sample.shape and value.dtype == dtype, cls,
                         f"{what}: {field} has shape {tuple(value.shape)} and dtype {value.dtype}.")
                _require(bool(torch.isfinite(value.float()).all()), cls, f"{what}: {field} is not finite.")
            again = _build(cls, config)
            again.set_timesteps(NUM_STEPS)
            tup = again.step(_fake_model(sample, t), t, sample, generator=_generator(1), return_dict=False)
            _require(isinstance(tup, tuple) and torch.equal(tup[0], out.prev_sample), cls,
                     f"{what}: return_dict=False must return a tuple starting with prev_sample.")


@_contract_check
def check_determinism(cls, config: dict | None = None) -> None:
    """Two runs with the same seeded generator give identical outputs, whatever the global random state."""
    sample = torch.randn(2, 3, 4, 4, generator=_generator(0))
    runs = []
    with torch.random.fork_rng(devices=[]):  # leaves the caller's global random state as it was
        for global_seed in (11, 12):
            torch.manual_seed(global_seed)
            scheduler = _build(cls, config)
            scheduler.set_timesteps(NUM_STEPS)
            runs.append(_run(scheduler, sample, 3 * scheduler.order, seed=5))
    _require(_same_outputs(*runs), cls, "the same generator seed gave different step outputs (does step draw from "
             "the global random state instead of `generator`?).")


@_contract_check
def check_training_side(cls, config: dict | None = None) -> None:
    """``sample_timesteps`` is seeded, shaped ``(B,)`` and in ``[0, num_train_timesteps]``; ``add_noise`` is the
    affine path sample ``alpha_t * x_0 + sigma_t * noise`` with per-sample coefficients; and feeding
    ``training_target(x_0, noise, t)`` to ``step`` at a grid timestep t recovers x_0 as ``pred_original_sample``."""
    scheduler = _build(cls, config)
    T = scheduler.config.num_train_timesteps
    a = scheduler.sample_timesteps(64, generator=_generator(3))
    b = scheduler.sample_timesteps(64, generator=_generator(3))
    _require(a.shape == (64,) and torch.equal(a, b), cls,
             "sample_timesteps(64) with the same seed must give the same shape-(64,) timesteps.")
    _require(bool((a >= 0).all() and (a <= T).all()), cls,
             f"sample_timesteps gave values from {float(a.min())} to {float(a.max())}, outside [0, {T}].")

    x0 = torch.rand(4, 3, generator=_generator(4)) * 1.8 - 0.9  # inside DDPM's default clip range [-1, 1]
    noise = torch.randn(4, 3, generator=_generator(5))
    timesteps = a[:4]
    x_t = scheduler.add_noise(x0, noise, timesteps)
    alpha = scheduler.add_noise(torch.ones_like(x0), torch.zeros_like(noise), timesteps)
    sigma = scheduler.add_noise(torch.zeros_like(x0), torch.ones_like(noise), timesteps)
    _require(bool((alpha == alpha[:, :1]).all() and (sigma == sigma[:, :1]).all()), cls,
             "add_noise coefficients must depend on the sample's timestep only.")
    torch.testing.assert_close(x_t, alpha * x0 + sigma * noise, atol=1e-6, rtol=1e-5,
                               msg=lambda m: f"{_name(cls)}: add_noise is not alpha_t * x_0 + sigma_t * noise: {m}")

    scheduler.set_timesteps(NUM_STEPS)
    for index in (0, len(scheduler.timesteps) // 2):
        fresh = _build(cls, config)
        fresh.set_timesteps(NUM_STEPS)
        t = fresh.timesteps[index]
        batch_t = t.reshape(1).repeat(x0.shape[0])
        x_t = fresh.add_noise(x0, noise, batch_t)
        target = fresh.training_target(x0, noise, batch_t)
        out = fresh.step(target, t, x_t, generator=_generator(6))
        torch.testing.assert_close(
            out.pred_original_sample, x0, atol=1e-3, rtol=1e-3,
            msg=lambda m: f"{_name(cls)}: step at t={float(t):g} fed the training target did not recover x_0: {m}",
        )


@_contract_check
def check_step_after_init(cls, config: dict | None = None) -> None:
    """Right after construction, without ``set_timesteps``, a loop over the first ``timesteps`` steps."""
    scheduler = _build(cls, config)
    sample = torch.randn(2, 3, generator=_generator(0))
    outputs = _run(scheduler, sample, 2 * scheduler.order, seed=1)
    _require(all(o.shape == sample.shape and bool(torch.isfinite(o).all()) for o in outputs), cls,
             "step without set_timesteps gave outputs of the wrong shape or non-finite ones.")


@_contract_check
def check_step_rejects_bad_input(cls, config: dict | None = None) -> None:
    """A model output whose shape does not match the sample is a ``ValueError`` naming both shapes."""
    scheduler = _build(cls, config)
    scheduler.set_timesteps(NUM_STEPS)
    sample, wrong = torch.randn(2, 3), torch.randn(2, 4)
    _expect_value_error(cls, lambda: scheduler.step(wrong, scheduler.timesteps[0], sample), ["(2, 4)", "(2, 3)"],
                        "step with a (2, 4) model output for a (2, 3) sample")


#: name -> check(cls, config=None); every genzoo-compatible scheduler class passes all of them.
SCHEDULER_CHECKS: dict[str, Callable[..., None]] = {
    "interface": check_interface,
    "config_round_trip": check_config_round_trip,
    "from_config_compatible": check_from_config_compatible,
    "set_timesteps_validation": check_set_timesteps_validation,
    "step_shapes_and_dtypes": check_step_shapes_and_dtypes,
    "determinism": check_determinism,
    "training_side": check_training_side,
    "step_after_init": check_step_after_init,
    "step_rejects_bad_input": check_step_rejects_bad_input,
}


def check_scheduler(cls, config: dict | None = None, checks=None) -> None:
    """Run the scheduler contract's ``checks`` on ``cls``; one ``AssertionError`` lists every check that failed.

    Args:
        cls (type): the scheduler class under test.
        config: constructor arguments for the instances the checks build (default: the class's defaults).
        checks (list[str] | None): names of checks to run (default: all of ``SCHEDULER_CHECKS``).

    Raises:
        AssertionError: listing every check that failed, with its message.
        ValueError: for a check name that does not exist.
    """
    run_checks("scheduler", SCHEDULER_CHECKS, _name(cls), checks, lambda check: check(cls, config=config))
