"""The method contract: what every training method must do under genzoo's trainer, as plain check functions, and
the small pieces they are built from (a tiny run's arguments, its final weights, an exact-resume comparison) for a
plugin's own further tests.

Each check takes the method (its registered ``--method`` name, or its class, which must be registered: the trainer
finds methods through the registry), trains it for a few steps on the CPU with its ``smoke_test_options`` into a
fresh folder (under ``output_dir`` when given, else a temporary one), and raises ``AssertionError`` naming the method
and what went wrong:

- ``trains_saves_loads_samples``: 6 steps on each kind of data the method declares (``digits`` for images, ``moons``
  for vectors; or the ``dataset`` given): finite losses in ``metrics.json``, sample grids, checkpoints 3 and 6; the
  pipeline it saves loads with ``genzoo.load_pipeline``, samples seeded, finite and of the data's shape, and
  ``genzoo eval``'s metrics of it are finite;
- ``resumes_exactly``: stopped at step 3 and resumed, a run ends with the weights of the uninterrupted run (the
  method's own ``state_dict`` included), on vectors where the method takes them (the cheaper), else on images.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from ._common import fresh_folder, reported, run_checks

__all__ = [
    "METHOD_CHECKS", "SMOKE_DATASETS", "assert_resumes_exactly", "assert_same_weights", "check_method", "final_weights",
    "run_training", "tiny_args",
]

#: The built-in data set the checks train each kind of data on.
SMOKE_DATASETS = {"image": "digits", "vector": "moons"}
#: Steps of a tiny run, and the step of its first checkpoint (where a resumed run restarts).
STEPS, CHECKPOINT = 6, 3


# ------------------------------------------------------------------------------------------------ a tiny run
def options_to_argv(options: dict) -> list[str]:
    """``{"block_out_channels": [8, 16], "attention": True}`` -> ``["--block_out_channels", "8,16", ...]``."""
    argv = []
    for key, value in options.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = str(value).lower()
        argv += [f"--{key}", str(value)]
    return argv


def tiny_args(method: str, dataset: str, output_dir, *extra) -> list[str]:
    """The ``genzoo train`` arguments of a tiny run: 6 steps of batches of 16 with the method's own
    ``smoke_test_options``, checkpoints and sample grids every 3 steps, seed 0, no logger; ``extra`` (more arguments,
    turned into strings) come last and win. These runs check behaviour, not quality."""
    from .. import registry

    extra = [str(value) for value in extra]
    cls = registry.get("method", method)
    teacher = []
    if cls.teacher_method is not None and "--teacher" not in extra:
        conditioning = extra[extra.index("--conditioning") + 1] if "--conditioning" in extra else "none"
        teacher = ["--teacher", str(smoke_teacher(cls.teacher_method, dataset, conditioning))]
    return [
        "--method", method, "--dataset", dataset, "--output_dir", str(output_dir), "--seed", "0",
        "--train_batch_size", "16", "--max_train_steps", str(STEPS), "--checkpointing_steps", str(CHECKPOINT),
        "--save_images_steps", str(CHECKPOINT), "--num_sample_images", "4", "--num_inference_steps", "3",
        "--logger", "none", "--num_samples", "256", "--lr_warmup_steps", "2",
        *options_to_argv(cls.smoke_test_options), *teacher, *extra,
    ]


@functools.cache
def smoke_teacher(method: str, dataset: str, conditioning: str = "none") -> Path:
    """The pipeline a tiny run of ``method`` saves on ``dataset`` (conditioned on ``conditioning``): the teacher a
    method that needs one (``Method.teacher_method``) gets in its tiny runs. Trained once per process into a
    temporary folder, removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="genzoo-smoke-teacher-"))
    atexit.register(shutil.rmtree, root, True)
    output = root / f"{method}-{dataset}-{conditioning}"
    run_training(method, dataset, output, "--conditioning", conditioning, "--checkpointing_steps", "1000",
                 "--save_images_steps", "1000")
    return output


def run_training(method: str, dataset: str, output_dir, *extra):
    """Train the tiny run of :func:`tiny_args` in this process; returns the trainer's ``TrainingResult``."""
    from ..training import parse_args, train

    return train(parse_args(tiny_args(method, dataset, output_dir, *extra)))


def final_weights(output_dir) -> dict[str, torch.Tensor]:
    """Every tensor of every saved component of the final pipeline in ``output_dir``, as ``"<component>.<name>"``."""
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(Path(output_dir).glob("*/*.safetensors")):  # Diffusers' and transformers' weight files
        tensors.update({f"{f.parent.name}.{k}": v for k, v in load_file(f).items()})
    return tensors


def assert_same_weights(a, b, atol: float = 1e-6) -> None:
    """The final pipelines in folders ``a`` and ``b`` have the same tensors, equal within ``atol``."""
    wa, wb = final_weights(a), final_weights(b)
    if not wa or wa.keys() != wb.keys():
        raise AssertionError(f"{a} and {b} hold different weights: {sorted(wa)} and {sorted(wb)}.")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0, msg=key)


def assert_resumes_exactly(method: str, output_dir, *extra, dataset: str = "digits") -> tuple[Path, Path]:
    """Train the tiny run to the end in ``output_dir/full``; resume a copy of its checkpoint 3 in
    ``output_dir/stopped``; both must end with the same weights. Returns the two folders."""
    full, stopped = Path(output_dir) / "full", Path(output_dir) / "stopped"
    run_training(method, dataset, full, *extra)
    (stopped / "checkpoints").mkdir(parents=True)
    name = f"checkpoint-{CHECKPOINT}"
    os.rename(full / "checkpoints" / name, stopped / "checkpoints" / name)
    run_training(method, dataset, stopped, *extra, "--resume_from_checkpoint", "latest")
    assert_same_weights(full, stopped)
    return full, stopped


# ------------------------------------------------------------------------------------------------ helpers
def _method_name(method) -> str:
    """The registered ``--method`` name of ``method`` (a name, or a registered ``Method`` subclass)."""
    from .. import registry

    if isinstance(method, str):
        registry.get("method", method)  # a KeyError listing the known methods
        return method
    name = getattr(method, "name", None)
    known = registry.names("method")
    if name not in known or registry.get("method", name) is not method:
        raise ValueError(
            f"{getattr(method, '__name__', method)!r} is not a registered method (registered: {', '.join(known)}); "
            "the trainer finds methods through their 'genzoo.methods' entry point: declare one and install the "
            "package (pip install -e .), then pass the class or its name."
        )
    return name


def _describe(method) -> str:
    return method if isinstance(method, str) else getattr(method, "name", None) or getattr(method, "__name__", repr(method))


def _require(condition, method, message: str) -> None:
    if not condition:
        raise AssertionError(f"{_describe(method)}: {message}")


def _datasets(name: str, dataset: str | None) -> list[str]:
    from .. import registry

    return [dataset] if dataset else [SMOKE_DATASETS[kind] for kind in registry.get("method", name).data_kinds]


def _finite_numbers(mapping: dict) -> bool:
    return all(math.isfinite(v) for v in mapping.values() if isinstance(v, (int, float)) and not isinstance(v, bool))


_contract_check = reported(_describe)


# ------------------------------------------------------------------------------------------------ the checks
@_contract_check
def check_trains_saves_loads_samples(method, dataset: str | None = None, output_dir=None) -> None:
    """6 steps on each kind of data ``method`` declares (or on ``dataset``): finite losses, sample grids, checkpoints
    3 and 6, and a saved pipeline that loads, samples seeded and finite samples of the data's shape, and evaluates
    to finite metrics."""
    import genzoo
    from ..data import load_training_data
    from ..metrics.evaluate import evaluate_pipeline
    from ..training import list_checkpoints, parse_args, train

    name = _method_name(method)
    for data in _datasets(name, dataset):
        with fresh_folder(output_dir, f"{name}-{data}") as folder:
            folder, where = Path(folder), f"trained on {data}"
            args = parse_args(tiny_args(name, data, folder))
            result = train(args)
            _require(result.global_step == STEPS, method, f"{where}, the run stopped at step {result.global_step}.")
            metrics = json.loads((folder / "metrics.json").read_text())
            losses = metrics.get("final_losses") or {}
            _require(metrics.get("method") == name and metrics.get("global_step") == STEPS and losses, method,
                     f"{where}, metrics.json names method {metrics.get('method')!r}, step {metrics.get('global_step')}"
                     f" and losses {losses}.")
            _require(_finite_numbers(losses), method, f"{where}, the final losses are not finite: {losses}.")
            grid = folder / "samples" / f"step-{CHECKPOINT:06d}.png"
            _require((folder / "samples.png").is_file() and grid.is_file(), method,
                     f"{where}, samples.png or {grid.relative_to(folder)} is missing.")
            checkpoints = [p.name for p in list_checkpoints(folder)]
            _require(checkpoints == [f"checkpoint-{CHECKPOINT}", f"checkpoint-{STEPS}"], method,
                     f"{where}, the checkpoints are {checkpoints}.")
            pipe = genzoo.load_pipeline(folder)
            pipe.set_progress_bar_config(disable=True)

            def draw():
                out = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=2,
                           output_type="pt")
                return out.images if hasattr(out, "images") else out.samples

            samples = draw()
            shape = tuple(load_training_data(args).sample_shape)
            _require(tuple(samples.shape) == (3, *shape), method,
                     f"{where}, its {type(pipe).__name__} sampled shape {tuple(samples.shape)}, not {(3, *shape)}.")
            _require(bool(torch.isfinite(samples).all()), method, f"{where}, its samples are not finite.")
            _require(torch.equal(samples, draw()), method, f"{where}, the same seed gave different samples.")
            scores = evaluate_pipeline(pipe, data, num_samples=40, steps=2, likelihood=False)
            _require(_finite_numbers(scores), method, f"{where}, its metrics are not finite: {scores}.")


@_contract_check
def check_resumes_exactly(method, dataset: str | None = None, output_dir=None) -> None:
    """Stopped at step 3 and resumed, a run ends with the weights of the uninterrupted run (on ``dataset``, else on
    vectors where the method takes them, else on images)."""
    from .. import registry

    name = _method_name(method)
    kinds = registry.get("method", name).data_kinds
    data = dataset or SMOKE_DATASETS["vector" if "vector" in kinds else "image"]
    with fresh_folder(output_dir, f"{name}-resume") as folder:
        try:
            assert_resumes_exactly(name, folder, dataset=data)
        except AssertionError as error:
            raise AssertionError(f"{_describe(method)}: resumed at step {CHECKPOINT} on {data}, the run ended with "
                                 f"other weights than the uninterrupted one: {error}") from None


#: name -> check(method, dataset=None, output_dir=None); every genzoo training method passes all of them.
METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "trains_saves_loads_samples": check_trains_saves_loads_samples,
    "resumes_exactly": check_resumes_exactly,
}


def check_method(method, dataset: str | None = None, output_dir: str | os.PathLike | None = None,
                 checks: list[str] | None = None) -> None:
    """Run the method contract's ``checks`` on ``method``; one ``AssertionError`` lists every check that failed.

    Args:
        method (str | type): the registered ``--method`` name, or the registered ``Method`` subclass.
        dataset: train on this data set only (default: ``digits`` and/or ``moons``, as the method's ``data_kinds``).
        output_dir: where the runs go, one new subfolder each, removed afterwards (default: a temporary folder).
        checks (list[str] | None): names of checks to run (default: all of ``METHOD_CHECKS``).

    Raises:
        AssertionError: listing every check that failed, with its message.
        ValueError: for a check name that does not exist, or a method class that is not registered.
    """
    name = _method_name(method)
    run_checks("method", METHOD_CHECKS, name, checks,
               lambda check: check(method, dataset=dataset, output_dir=output_dir))
