"""What the trainer promises about the files it writes and reads (docs/guarantees.md): checkpoints are data and a
hostile one is refused, an output folder holding a run is never mixed with or replaced by another by accident, a
resume with other options is refused, the final save and checkpoints are all-or-nothing (a write that fails at any
byte leaves the previous pipeline and `latest` intact), and nothing non-finite is saved."""

import builtins
import errno
import json
import io
import os
import pickle
import re
import shutil
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

import genzoo
from genzoo.cli import main as cli_main
from genzoo.testing import final_weights, tiny_args
from genzoo.training import RecipeError, TrainingError, list_checkpoints, parse_args, train
from genzoo.training.checkpoints import resolve_resume
from genzoo.training.errors import CheckpointError
from genzoo.training.trainer import Trainer, reset_accelerate_state
from helpers import copy_tree

pytestmark = pytest.mark.slow


def fm_args(output_dir, *extra):
    """Two steps of the smallest flow-matching model on moons, a checkpoint after each."""
    return tiny_args("flow-matching", "moons", output_dir, "--max_train_steps", "2", "--checkpointing_steps", "1",
                     "--save_images_steps", "2", "--num_sample_images", "2", *extra)


def fm_run(output_dir, *extra):
    return train(parse_args(fm_args(output_dir, *extra)))


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (except logs) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "logs" not in p.parts}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished two-step run (pipeline, recipe, checkpoints 1 and 2), copied by tests that change it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    fm_run(folder)
    return folder


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return copy_tree(finished_run, tmp_path / "run")


class Marker:
    """A pickle that, if ever unpickled, creates ``path``: proof that a file in a checkpoint ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ------------------------------------------------------------------------------------------------ nothing run
def test_a_checkpoint_with_a_pickle_accelerate_would_run_is_refused_before_anything_is_read(run_copy, tmp_path):
    marker = tmp_path / "ran"
    checkpoint = list_checkpoints(run_copy)[-1]
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl"))  # genzoo writes none
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(CheckpointError, match=r"custom_checkpoint_0.pkl: Accelerate would unpickle it"):
        fm_run(run_copy, "--resume_from_checkpoint", "latest", "--max_train_steps", "3")
    assert not marker.exists()


def test_a_hostile_optimizer_state_is_refused_with_a_one_line_error(run_copy, tmp_path, capsys):
    marker = tmp_path / "ran"
    checkpoint = list_checkpoints(run_copy)[-1]
    torch.save({"state": Marker(marker)}, checkpoint / "optimizer.bin")
    code = cli_main(["train", *fm_args(run_copy, "--resume_from_checkpoint", "latest", "--max_train_steps", "3")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not marker.exists()
    assert err.startswith("genzoo: error:") and "weights_only=True" in err and "checkpoint-2" in err


# ------------------------------------------------------------------------------------------------ nothing lost
def test_a_second_run_into_a_folder_holding_a_run_is_refused_and_changes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    code = cli_main(["train", *fm_args(run_copy, "--seed", "1")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "already holds a genzoo run (a pipeline, recipe.yaml, 2 checkpoint(s), the last checkpoint-2)" in err
    assert "--overwrite_output_dir" in err and "--resume_from_checkpoint latest" in err
    assert snapshot(run_copy) == before


def test_overwrite_replaces_the_whole_run_and_another_method_leaves_no_stale_components(run_copy):
    (run_copy / "eval.json").write_text("{}")  # described the old pipeline
    (run_copy / "notes.txt").write_text("mine")  # not genzoo's: kept
    train(parse_args(tiny_args("gan", "moons", run_copy, "--max_train_steps", "2", "--checkpointing_steps", "2",
                               "--overwrite_output_dir")))
    names = sorted(p.name for p in run_copy.iterdir())
    assert "unet" not in names and "scheduler" not in names and "eval.json" not in names
    assert {"generator", "model_index.json", "recipe.yaml", "notes.txt"} <= set(names)
    assert [p.name for p in list_checkpoints(run_copy)] == ["checkpoint-2"]  # only the new run's
    assert type(genzoo.load_pipeline(run_copy)).__name__ == "GANPipeline"
    assert (run_copy / "notes.txt").read_text() == "mine"


def test_a_run_that_fails_early_leaves_the_folder_as_it_was(run_copy):
    before = snapshot(run_copy)
    with pytest.raises(RecipeError):
        fm_run(run_copy, "--overwrite_output_dir", "--mixed_precision", "fp16")
    assert snapshot(run_copy) == before


def test_resume_with_options_that_change_the_model_is_refused_naming_them(run_copy, capsys):
    argv = fm_args(run_copy, "--resume_from_checkpoint", "latest", "--max_train_steps", "3", "--hidden_dim", "48",
                   "--seed", "5")
    assert cli_main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "was written with other options" in err
    assert re.search(r"hidden_dim: \d+ in the checkpoint, 48 now", err) and "seed: 0 in the checkpoint, 5 now" in err
    assert "max_train_steps" not in err  # a resume may train longer


def test_resume_latest_with_no_checkpoint_in_a_finished_folder_is_refused(run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    with pytest.raises(CheckpointError, match="has no checkpoint to resume but already holds a genzoo run"):
        fm_run(run_copy, "--resume_from_checkpoint", "latest")


@pytest.mark.parametrize("damage,message", [
    ("rm model.safetensors", "lacks model.safetensors"),
    ("rm trainer_rng_0.safetensors", "lacks trainer_rng_0.safetensors"),
    ("rm lr_schedulers.json", "lacks lr_schedulers.json"),
    ("corrupt trainer_state.json", r"trainer_state.json cannot be read: Expecting property name"),
    ("processes", "was written by 2 process\\(es\\) and this run has 1"),
    ("truncate model.safetensors", "cannot be resumed: SafetensorError"),
])
def test_a_damaged_checkpoint_is_refused_naming_what_is_wrong(run_copy, damage, message):
    checkpoint = list_checkpoints(run_copy)[-1]
    action, _, name = damage.partition(" ")
    if action == "rm":
        (checkpoint / name).unlink()
    elif action == "corrupt":
        (checkpoint / name).write_text("{not json")
    elif action == "truncate":
        data = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(data[: len(data) // 2])
    else:
        state = (checkpoint / "trainer_state.json")
        state.write_text(state.read_text().replace('"num_processes": 1', '"num_processes": 2'))
    with pytest.raises(CheckpointError, match=message):
        fm_run(run_copy, "--resume_from_checkpoint", "latest", "--max_train_steps", "3")


# ------------------------------------------------------------------------------------------------ nothing wrong
def test_fp16_on_the_cpu_is_refused_instead_of_training_in_fp32(tmp_path):
    with pytest.raises(RecipeError, match="--mixed_precision fp16: .*use --mixed_precision bf16 or no"):
        fm_run(tmp_path / "run", "--mixed_precision", "fp16")
    assert not (tmp_path / "run" / "model_index.json").exists()


def test_a_one_step_run_that_diverges_saves_nothing(tmp_path, monkeypatch):
    """Weights that turn NaN in an update whose loss was finite (here: the optimiser's step is made to write one
    NaN) are caught only by a check of the weights, before the checkpoint and the pipeline are written."""
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"Not saving checkpoint 1: after step 1 the weights hold non-finite "
                                            r"values \(unet: \d+\)"):
        fm_run(out, "--max_train_steps", "1")
    assert not (out / "model_index.json").exists() and not list_checkpoints(out)


def test_a_learning_rate_beyond_any_use_is_refused():
    with pytest.raises(RecipeError, match=r"--learning_rate must be >= 0 and <= 1e\+06, got 1e\+39"):
        parse_args(["--learning_rate", "1e39"])


# ------------------------------------------------------------------------------------------------ fault injection
class DiskFull:
    """Every byte genzoo, Diffusers, Accelerate, PIL and safetensors write goes through ``open``; this lets the
    first ``budget`` bytes through and then fails like a full disk (the file half-written). ``budget=None`` only
    counts, recording each file's first and last byte."""

    def __init__(self, monkeypatch, budget=None):
        self.budget, self.written, self.files = budget, 0, []
        real_open, real_torch_save = builtins.open, torch.save
        faults = self

        class Handle:
            def __init__(self, handle):
                self._handle = handle

            def write(self, data):
                size = len(data)
                if faults.budget is not None and faults.written + size > faults.budget:
                    allowed = max(0, faults.budget - faults.written)
                    self._handle.write(data[:allowed])
                    faults.written += allowed
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                faults.written += size
                return self._handle.write(data)

            def __getattr__(self, name):
                return getattr(self._handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._handle.close()

            def __iter__(self):
                return iter(self._handle)

        def fake_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+"):
                faults.files.append((str(file), faults.written))
                return Handle(handle)
            return handle

        def save_file(tensors, filename, metadata=None):  # safetensors writes from Rust: route through open
            with fake_open(filename, "wb") as handle:
                handle.write(safetensors.torch.save(tensors, metadata=metadata))

        def torch_save(obj, f, *args, **kwargs):  # torch writes from C++: route through open
            buffer = io.BytesIO()
            real_torch_save(obj, buffer, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)):
                with fake_open(f, "wb") as handle:
                    handle.write(buffer.getvalue())
            else:
                f.write(buffer.getvalue())

        originals = {safetensors.torch.save_file: save_file, real_torch_save: torch_save}
        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        for module in list(sys.modules.values()):  # every module-level reference, e.g. `from ... import save_file`
            for name, value in list(getattr(module, "__dict__", {}).items()):
                try:
                    replacement = originals.get(value)
                except TypeError:
                    continue
                if replacement is not None:
                    monkeypatch.setattr(module, name, replacement)


def fault_points(monkeypatch, save) -> list[int]:
    """The byte budgets to fail at: the start and the middle of every file ``save`` writes (counted on a dry run
    that is then undone by the caller)."""
    with monkeypatch.context() as patch:
        counter = DiskFull(patch)
        save()
    starts = [start for _, start in counter.files] + [counter.written]
    return sorted({p for a, b in zip(starts, starts[1:]) for p in (a, (a + b) // 2)} - {counter.written})


@pytest.fixture
def live_trainer(tmp_path):
    """A trainer that has run two steps (its folder holds pipeline A and checkpoints 1, 2), with its models
    changed afterwards so that a new save would write a different pipeline B."""
    out = tmp_path / "run"
    trainer = Trainer(parse_args(fm_args(out)))
    trainer.run()
    with torch.no_grad():
        averages = trainer.emas.averages.values()
        for p in [*trainer.raw["unet"].parameters(), *(q for ema in averages for q in ema.shadow_params)]:
            p.add_(0.5)
    yield trainer
    reset_accelerate_state()


def test_a_final_save_that_fails_at_any_byte_leaves_the_previous_pipeline_whole(live_trainer, monkeypatch):
    out = live_trainer.output_dir
    old_weights = final_weights(out)
    metrics = {"method": "flow-matching"}
    pristine = copy_tree(out, out.parent / "pristine")  # pipeline A: each injection starts from it
    points = fault_points(monkeypatch, lambda: live_trainer.save_run(dict(metrics)))
    assert len(points) >= 10  # a pipeline, its configs, samples.png, metrics.json, recipe.yaml
    for budget in points:
        shutil.rmtree(out)
        copy_tree(pristine, out)
        with monkeypatch.context() as patch:
            DiskFull(patch, budget)
            with pytest.raises(OSError, match="No space left"):
                live_trainer.save_run(dict(metrics))
        assert snapshot(out) == snapshot(pristine), f"failing after {budget} bytes changed the folder"
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".run")], "staging left behind"
    genzoo.load_pipeline(out)  # still loads
    live_trainer.save_run(dict(metrics))  # and without a fault, B replaces A
    new = final_weights(out)
    assert new.keys() == old_weights.keys()
    assert any(not torch.equal(new[k], old_weights[k]) for k in new)


def test_a_checkpoint_that_fails_at_any_byte_leaves_latest_resumable(live_trainer, monkeypatch, capsys):
    out = live_trainer.output_dir
    live_trainer.global_step = 3
    points = fault_points(monkeypatch, live_trainer.save_checkpoint)
    shutil.rmtree(list_checkpoints(out)[-1])  # undo the dry run's checkpoint-3
    assert len(points) >= 10
    for budget in points:
        with monkeypatch.context() as patch:
            DiskFull(patch, budget)
            with pytest.raises(CheckpointError, match=r"Could not write checkpoint 3 to .*checkpoint-3: .*No space "
                                                      r"left.*the last complete checkpoint is .*checkpoint-2"):
                live_trainer.save_checkpoint()
        assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    reset_accelerate_state()
    assert resolve_resume(out, "latest").name == "checkpoint-2"
    result = fm_run(out, "--resume_from_checkpoint", "latest", "--max_train_steps", "3")
    assert result.global_step == 3


def test_a_run_into_the_working_directory_saves_there_and_the_process_stays_in_it(tmp_path, monkeypatch):
    """``--output_dir .``: the final save swaps the folder the process works in; the process follows it."""
    monkeypatch.chdir(tmp_path)
    fm_run(".")
    fm_run(".", "--resume_from_checkpoint", "latest", "--max_train_steps", "3")
    assert Path.cwd() == tmp_path and os.path.samefile(".", tmp_path)
    assert json.loads(Path("metrics.json").read_text())["global_step"] == 3
    genzoo.load_pipeline(".")
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.genzoo-")]
