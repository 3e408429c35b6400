"""The trainer's checkpoints: where they live, which are complete, which one a run resumes and whether it may, and
the :class:`CheckpointManager` that writes, prunes and loads them with the state genzoo adds to Accelerate's (the
EMA copies, the trainer's random generator, the learning-rate schedules, the method's own state), all written as
safetensors and JSON -- data, never pickles.

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
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .arguments import read_saved_recipe, recipe_differences, write_recipe
from .errors import SAVE_ERRORS, CheckpointError, TrainingError

logger = logging.getLogger("genzoo.training")

CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"
TRAINER_STATE = "trainer_state.json"


RECIPE = "recipe.yaml"
LR_SCHEDULERS = "lr_schedulers.json"
#: Files of Accelerate's that it unpickles with ``weights_only=False``: never in a genzoo checkpoint.
UNSAFE_FILES = re.compile(r"^custom_checkpoint_\d+\.pkl$")


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


# ------------------------------------------------------------------------------------------------ resuming
def check_resumable(path: Path, method: str, num_processes: int, args) -> None:
    """Refuse a checkpoint of another method or recipe (``args``: this run's recipe), one written by another number
    of processes, or one that lacks a file or holds an unsafe one, before anything else in it is read."""
    state = read_trainer_state(path)
    if state.get("method") != method:
        raise CheckpointError(f"{path} is a checkpoint of method {state.get('method')!r}, not {method!r}.")
    processes = state.get("num_processes")
    if processes != num_processes:
        raise CheckpointError(
            f"{path} was written by {processes} process(es) and this run has {num_processes}; "
            "resume with the same number of processes (each has its own random state)."
        )
    check_checkpoint(path, [RECIPE, LR_SCHEDULERS])
    differences = recipe_differences(read_saved_recipe(path / RECIPE), args)
    if differences:
        shown = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, (old, new) in differences.items())
        raise CheckpointError(
            f"{path} was written with other options, and a resume may change only how long the run trains and "
            f"how it checkpoints, logs and samples: {shown}. Use the checkpoint's options, or start a new run in "
            "another --output_dir."
        )


# ------------------------------------------------------------------------------------------------ the manager
class CheckpointManager:
    """Writes, prunes and loads a run's checkpoints.

    Accelerate's ``save_state`` / ``load_state`` write and read the models, the optimisers and the data sampler; the
    state hooks this manager registers with the ``accelerator`` add genzoo's part: each process's random generator
    and method state, and on the main process the learning-rate schedules, the recipe and the EMAs. A checkpoint is
    written as ``checkpoint-<step>.partial`` and renamed when complete; a write that fails leaves the checkpoints as
    they were.

    Args:
        accelerator (accelerate.Accelerator): the run's accelerator, its models and optimisers prepared.
        output_dir (pathlib.Path): the run's folder (checkpoints go to its ``checkpoints`` folder).
        args (argparse.Namespace): the run's recipe, written into every checkpoint.
        config (TrainerConfig): the trainer's options (``method``, ``checkpoints_total_limit``).
        method (Method): the run's method (its ``state_dict`` / ``load_state_dict``).
        generator (torch.Generator): the trainer's own random generator.
        lr_schedulers (dict): optimiser group -> learning-rate schedule.
        emas (ModelEMAs): the run's EMA copies (:mod:`genzoo.training.ema`).
        num_groups (int): the number of optimiser groups (one prepared model and optimiser each).
    """

    def __init__(self, accelerator, output_dir, args, config, method, generator, lr_schedulers, emas, num_groups):
        self.accelerator, self.output_dir, self.args, self.config = accelerator, Path(output_dir), args, config
        self.method, self.generator, self.lr_schedulers, self.emas = method, generator, lr_schedulers, emas
        self.num_groups = num_groups
        # The learning-rate schedules are saved by the hooks as JSON: registering them with Accelerate would pickle
        # them (custom_checkpoint_<i>.pkl), and Accelerate unpickles those with weights_only=False.
        accelerator.register_save_state_pre_hook(self._save_hook)
        accelerator.register_load_state_pre_hook(self._load_hook)

    def _save_hook(self, models, weights, output_dir):
        rank = self.accelerator.process_index
        save_file({"generator": self.generator.get_state()}, os.path.join(output_dir, f"trainer_rng_{rank}.safetensors"))
        state = self.method.state_dict()
        if state:
            save_tensors_and_json(state, output_dir, f"method_state_{rank}")
        if self.accelerator.is_main_process:
            save_lr_schedulers(self.lr_schedulers, output_dir)
            write_recipe(self.args, Path(output_dir) / RECIPE)
            self.emas.save(output_dir)

    def _load_hook(self, models, input_dir):
        rank = self.accelerator.process_index
        self.generator.set_state(load_file(os.path.join(input_dir, f"trainer_rng_{rank}.safetensors"))["generator"])
        load_lr_schedulers(self.lr_schedulers, input_dir)
        if os.path.isfile(os.path.join(input_dir, f"method_state_{rank}.json")):
            self.method.load_state_dict(load_tensors_and_json(input_dir, f"method_state_{rank}"))
        elif self.method.state_dict():
            raise TrainingError(
                f"{input_dir} holds no state of method {self.config.method!r} for process {rank} (method_state_{rank}"
                ".json), which it needs to resume exactly; it was written by another version of the method."
            )
        self.emas.load(input_dir, self.accelerator.device)

    def save(self, step: int) -> Path:
        """Write ``checkpoint-<step>`` (every process takes part), then drop the oldest beyond
        ``--checkpoints_total_limit``; a write that fails is a :class:`CheckpointError` that names the last
        complete checkpoint, with nothing else changed. Returns the checkpoint's folder."""
        accelerator = self.accelerator
        final = checkpoint_dir(self.output_dir, step)
        partial = final.with_name(final.name + PARTIAL)
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(partial))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                state = {"global_step": step, "method": self.config.method, "num_processes": accelerator.num_processes}
                (partial / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
                shutil.rmtree(final, ignore_errors=True)
                os.replace(partial, final)  # atomic: a checkpoint is either complete or absent
        except BaseException as exc:  # a full disk (OSError, torch's RuntimeError, SafetensorError), a signal
            if accelerator.is_main_process:
                shutil.rmtree(partial, ignore_errors=True)
            if not isinstance(exc, SAVE_ERRORS) or isinstance(exc, TrainingError):
                raise
            kept = list_checkpoints(self.output_dir)
            raise CheckpointError(
                f"Could not write checkpoint {step} to {final}: {' '.join(str(exc).split())}. Nothing else was "
                f"changed ({f'the last complete checkpoint is {kept[-1]}' if kept else 'no checkpoint was saved yet'}"
                "); free space and resume with --resume_from_checkpoint latest."
            ) from None
        if accelerator.is_main_process:
            self.prune()
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def prune(self) -> None:
        """Remove what interrupted writes left, and the oldest checkpoints beyond ``--checkpoints_total_limit``."""
        limit = self.config.checkpoints_total_limit
        remove_partial_checkpoints(self.output_dir)
        if limit is not None:
            for old in list_checkpoints(self.output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)

    def files(self) -> list[str]:
        """The files a checkpoint of this run holds (Accelerate's names for the models and optimisers)."""
        groups = self.num_groups
        files = [RECIPE, LR_SCHEDULERS, f"trainer_rng_{self.accelerator.process_index}.safetensors"]
        files += ["model.safetensors" if i == 0 else f"model_{i}.safetensors" for i in range(groups)]
        files += ["optimizer.bin" if i == 0 else f"optimizer_{i}.bin" for i in range(groups)]
        files += self.emas.files()
        return files

    def load(self, path: Path) -> int:
        """Resume from ``path`` (checked by :func:`check_resumable`); returns its step. Every file is read as data:
        safetensors, JSON, or ``torch.load(weights_only=True)`` for Accelerate's optimiser states; a file that is
        damaged, of another shape or not data is a :class:`CheckpointError` naming the checkpoint."""
        import pickle

        from safetensors import SafetensorError

        state = read_trainer_state(path)
        check_checkpoint(path, self.files())
        try:
            self.accelerator.load_state(str(path))
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, SafetensorError, RuntimeError, OSError, KeyError, ValueError, TypeError,
                EOFError) as exc:
            reason = " ".join(str(exc).split())
            if isinstance(exc, pickle.UnpicklingError):
                reason = ("a file is not plain tensor data, and genzoo loads checkpoint files with "
                          f"torch.load(weights_only=True) only ({reason[:300]})")
            raise CheckpointError(f"{path} cannot be resumed: {type(exc).__name__}: {reason[:600]}") from None
        self.emas.sync()
        logger.info("resumed from %s at step %d", path, state["global_step"])
        return state["global_step"]
