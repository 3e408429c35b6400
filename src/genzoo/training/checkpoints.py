"""Checkpoint I/O of the trainer: where checkpoints live, which are complete, and the state genzoo adds to
Accelerate's (the EMA copies, the trainer's random generator, the method's own state), all written as safetensors
and JSON -- data, never pickles.

A checkpoint is ``<output_dir>/checkpoints/checkpoint-<step>``. It is written as ``checkpoint-<step>.partial`` and
renamed when complete (``trainer_state.json`` written last), so one that was half-written when the process died is
never listed or resumed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

logger = logging.getLogger("genzoo.training")

CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"
TRAINER_STATE = "trainer_state.json"


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss, or a checkpoint that cannot be resumed. The message says what to do."""


# ------------------------------------------------------------------------------------------------ where they are
def checkpoint_dir(output_dir, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"checkpoint-{step}"


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first (see the module docstring)."""
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
        raise TrainingError(
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
