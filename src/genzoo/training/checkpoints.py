"""Checkpoint I/O of the trainer: where checkpoints live, which are complete, and the state genzoo adds to
Accelerate's (the EMA copies, the trainer's random generator, the learning-rate schedules, the method's own state),
all written as safetensors and JSON -- data, never pickles.

A checkpoint is ``<output_dir>/checkpoints/checkpoint-<step>``. It is written as ``checkpoint-<step>.partial`` and
renamed when complete (``trainer_state.json`` written last), so one that was half-written when the process died is
never listed or resumed.

Nothing in a checkpoint is loaded in a way that can execute code: genzoo's own files are safetensors, JSON and YAML
read with ``safe_load``; Accelerate's model weights are safetensors and its optimiser and sampler states are read
with ``torch.load(weights_only=True)``. The one file Accelerate would unpickle with ``weights_only=False``
(``custom_checkpoint_<i>.pkl``, where it keeps registered objects) is never written, and a checkpoint holding one is
refused before anything is read (:func:`check_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

logger = logging.getLogger("genzoo.training")

CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"
TRAINER_STATE = "trainer_state.json"


RECIPE = "recipe.yaml"
LR_SCHEDULERS = "lr_schedulers.json"
#: Files of Accelerate's that it unpickles with ``weights_only=False``: never in a genzoo checkpoint.
UNSAFE_FILES = re.compile(r"^custom_checkpoint_\d+\.pkl$")


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss or weights, or a method that cannot run. The message says what to do."""


class TrainingInterrupted(BaseException):
    """The run was stopped by a signal (SIGTERM, SIGINT): raised at the end of the step the signal arrived in (or at
    once while the run is still setting up). A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way swallows it; the command line prints its message as one line and exits with
    ``128 + signum``, the shell's convention for a process ended by a signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class CheckpointError(TrainingError, OSError):
    """An output folder or checkpoint that cannot be used as asked: another run's folder, a resume whose recipe
    differs, a damaged, foreign or unsafe checkpoint, a checkpoint that could not be written. Like every
    ``OSError``, the command line reports it as one ``error:`` line with exit status 2."""


# ------------------------------------------------------------------------------------------------ where they are
def checkpoint_dir(output_dir, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"checkpoint-{step}"


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first (see the module docstring).

    Args:
        output_dir (str | os.PathLike): a run's folder.

    Returns:
        The ``checkpoints/checkpoint-<step>`` folders that hold a complete checkpoint, by step.
    """
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        name = path.name
        if path.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
            if (path / TRAINER_STATE).is_file():
                found.append(path)
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def remove_partial_checkpoints(output_dir) -> None:
    """Remove the ``checkpoint-<step>.partial`` folders that interrupted checkpoint writes left."""
    import shutil

    root = Path(output_dir) / CHECKPOINTS
    if root.is_dir():
        for stale in root.glob(f"*{PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)


def resolve_resume(output_dir, resume: str | None) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint`` names: ``latest`` (``None`` if there is none yet) or a folder."""
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s yet; starting from scratch.", output_dir)
            return None
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(
            f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {TRAINER_STATE}); use 'latest' or a "
            f"folder from {Path(output_dir) / CHECKPOINTS}."
        )
    return path


# ------------------------------------------------------------------------------------------------ what genzoo adds
def save_ema(ema: EMAModel, folder) -> None:
    """An ``EMAModel``'s full state (shadow weights as safetensors, counters as JSON), for any model class -- also
    ``transformers`` models, which ``EMAModel.save_pretrained`` cannot rebuild."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    os.makedirs(folder, exist_ok=True)
    save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)},
              os.path.join(folder, "shadow_params.safetensors"))
    Path(folder, "ema_state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_ema(ema: EMAModel, folder) -> None:
    tensors = load_file(os.path.join(folder, "shadow_params.safetensors"))
    state = json.loads(Path(folder, "ema_state.json").read_text())
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    ema.load_state_dict(state)


def save_tensors_and_json(state: dict, folder, stem: str) -> None:
    """``state``'s tensors to ``<stem>.safetensors`` and its other (JSON) values to ``<stem>.json``."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    values = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    try:
        text = json.dumps(values, indent=2) + "\n"
    except TypeError as exc:
        raise TrainingError(
            f"The method's state_dict() holds a value that is neither a tensor nor JSON ({exc}); checkpoints hold "
            "data only (safetensors and JSON)."
        ) from None
    save_file(tensors, os.path.join(folder, f"{stem}.safetensors"))
    Path(folder, f"{stem}.json").write_text(text)


def load_tensors_and_json(folder, stem: str) -> dict:
    """What :func:`save_tensors_and_json` wrote (tensors on the CPU)."""
    return {**json.loads(Path(folder, f"{stem}.json").read_text()),
            **load_file(os.path.join(folder, f"{stem}.safetensors"))}


def read_trainer_state(path: Path) -> dict:
    """A checkpoint's ``trainer_state.json``; an unreadable one is a :class:`CheckpointError` naming the file."""
    file = Path(path) / TRAINER_STATE
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} cannot be read: {' '.join(str(exc).split())}") from None
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int) or state["global_step"] < 0:
        raise CheckpointError(f"{file} is not a genzoo trainer state (no non-negative integer global_step).")
    return state


def check_checkpoint(path: Path, expected: list[str]) -> None:
    """Refuse a checkpoint holding a file Accelerate would unpickle unsafely, or lacking one of ``expected`` (file
    names relative to ``path``), before anything in it is read."""
    path = Path(path)
    unsafe = sorted(p.name for p in path.iterdir() if UNSAFE_FILES.match(p.name))
    if unsafe:
        raise CheckpointError(
            f"{path} holds {', '.join(unsafe)}: Accelerate would unpickle it with weights_only=False, which can run "
            "any code, so genzoo refuses the checkpoint (genzoo writes none; it comes from an older genzoo or from "
            "someone else). Resume from a checkpoint written by this genzoo, or start again."
        )
    missing = [name for name in expected if not (path / name).exists()]
    if missing:
        raise CheckpointError(
            f"{path} cannot be resumed: it lacks {', '.join(missing)} (a damaged checkpoint, or one written by "
            "another version of genzoo or with other options). Resume from another checkpoint."
        )


def save_lr_schedulers(schedulers: dict, folder) -> None:
    """The learning-rate schedules' states (``LambdaLR``: counters and learning rates) as JSON."""
    states = {}
    for group, scheduler in schedulers.items():
        state = scheduler.state_dict()
        if any(v is not None for v in state.get("lr_lambdas", [])):
            raise TrainingError(f"The learning-rate schedule of group {group!r} holds callable objects; checkpoints "
                                "hold data only.")
        states[group] = state
    Path(folder, LR_SCHEDULERS).write_text(json.dumps(states, indent=2) + "\n")


def load_lr_schedulers(schedulers: dict, folder) -> None:
    file = Path(folder, LR_SCHEDULERS)
    try:
        states = json.loads(file.read_text())
        for group, scheduler in schedulers.items():
            scheduler.load_state_dict(states[group])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{file} cannot be read: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
