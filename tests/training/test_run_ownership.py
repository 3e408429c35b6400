"""Runs own their folder, stop cleanly on signals and fail saves in one line (docs/guarantees.md, "Putting genzoo in
public"): a second run, a resume or an overwrite into a folder a live run holds is refused at once; a lock left by a
killed run is recognised; SIGTERM to `genzoo train` (one process or several) stops every process at the end of a
step, with a checkpoint there under --checkpoint_on_signal; staging folders of interrupted writes are cleaned up;
a full disk in safetensors' writer is one line and leaves no partial checkpoint; refusals in multi-process runs are
one line, exit 2; `genzoo eval` writes only where --out says.

Real processes, real signals: each run here is a subprocess of the test, stopped by the test with bounded waits."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import safetensors
import torch

from genzoo.cli import main as cli_main
from genzoo.files import LOCK_FILE, STAGING_TAG, make_staging_folder, remove_stale_staging
from genzoo.teacher_pairs import save_pairs
from genzoo.testing import tiny_args
from genzoo.training import list_checkpoints
from helpers import ROOT

pytestmark = pytest.mark.slow

TEACHER = ROOT / "pipelines" / "flow-matching-moons"
#: Longest wait for a subprocess to reach a point (start-up on a loaded 2-core machine takes a while).
WAIT = 240


def long_args(output_dir, *extra):
    """A tiny flow-matching run that would take hours (a checkpoint every 3 steps): stopped by the test."""
    return tiny_args("flow-matching", "moons", output_dir, "--max_train_steps", "1000000", "--save_images_steps",
                     "1000000", *extra)


def environment(tmp_path, **extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), **extra}


def start(tmp_path, argv, preamble="", **env):
    """``genzoo <argv>`` in a subprocess (after ``preamble``, Python run first in it), stderr captured."""
    code = f"import sys\n{preamble}\nfrom genzoo.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], env=environment(tmp_path, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}:\n"
                                 f"{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)


def finish(process, timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, err


def lock_record(folder: Path) -> dict:
    text = (folder / LOCK_FILE).read_text() if (folder / LOCK_FILE).is_file() else ""
    return json.loads(text) if text.strip() else {}


def one_line(err: str) -> str:
    """The one line a refused or stopped run prints (everything else on stderr is logging and progress bars)."""
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith(("genzoo:", "train.py:"))
             and not line.startswith("genzoo: running")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ the folder's lock
@pytest.mark.subprocess
def test_a_second_run_a_resume_or_an_overwrite_into_a_folder_in_use_is_refused_and_a_dead_runs_lock_recognised(
        tmp_path, capsys, caplog):
    out = tmp_path / "run"
    first = start(tmp_path, ["train", *long_args(out)])
    try:
        wait_for(lambda: list_checkpoints(out), first, "a first checkpoint")
        holder = lock_record(out)
        assert holder["pid"] == first.pid
        for extra in ([], ["--resume_from_checkpoint", "latest"], ["--overwrite_output_dir"]):
            before = sorted(p.name for p in out.iterdir())
            assert cli_main(["train", *long_args(out, *extra)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"genzoo: error: --output_dir {out} is in use by a genzoo "
                                                           f"training run (flow-matching) (pid {first.pid} on ")
            assert "wait for it to finish or stop it, or choose another folder" in err
            assert sorted(p.name for p in out.iterdir()) == before and first.poll() is None  # nothing touched
    finally:
        first.kill()  # SIGKILL: no handler runs; the system drops the lock, the record stays
        first.wait(timeout=60)
    assert lock_record(out)["pid"] == first.pid
    last = list_checkpoints(out)[-1]
    step = int(last.name.split("-")[1])
    caplog.set_level("WARNING", logger="genzoo.training")
    result = cli_main(["train", *long_args(out, "--resume_from_checkpoint", "latest", "--max_train_steps", step + 1)])
    assert result == 0, capsys.readouterr().err
    assert f"a genzoo training run (flow-matching) (pid {first.pid} on" in caplog.text
    assert "ended without releasing the folder (killed?)" in caplog.text
    assert lock_record(out) == {}  # released: the next run finds no stale record
    assert (out / "model_index.json").is_file()


# ------------------------------------------------------------------------------------------------ signals
#: Options of a run to be stopped by a signal: no regular checkpoint, a sample grid every 2 steps (which shows
#: that the run is in its training loop), a checkpoint at the signal.
AT_SIGNAL = ("--checkpointing_steps", "1000000", "--save_images_steps", "2", "--checkpoint_on_signal")


def in_the_loop(out: Path):
    return lambda: (out / "samples" / "step-000002.png").is_file()


@pytest.fixture(scope="module")
def stopped_by_sigterm(tmp_path_factory):
    """A one-process run stopped by SIGTERM in its training loop: (its folder, exit status, stderr)."""
    tmp_path = tmp_path_factory.mktemp("sigterm")
    out = tmp_path / "run"
    run = start(tmp_path, ["train", *long_args(out, *AT_SIGNAL)])
    wait_for(in_the_loop(out), run, "a second step")
    run.send_signal(signal.SIGTERM)
    code, err = finish(run)
    return out, code, err


@pytest.mark.subprocess
def test_sigterm_stops_a_run_at_the_end_of_a_step_with_a_checkpoint_there(stopped_by_sigterm):
    out, code, err = stopped_by_sigterm
    line = one_line(err)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    step = int(line.split("genzoo: Stopped by SIGTERM after step ")[1].split()[0])
    checkpoints = list_checkpoints(out)
    assert [p.name for p in checkpoints] == [f"checkpoint-{step}"]  # the step it stopped at, checkpointed
    assert line == (f"genzoo: Stopped by SIGTERM after step {step} of 1000000: the last complete checkpoint is "
                    f"{checkpoints[-1]}; continue with --resume_from_checkpoint latest.")
    assert json.loads((checkpoints[-1] / "trainer_state.json").read_text())["global_step"] == step
    assert not (out / "model_index.json").exists()  # the run did not go on to save a final pipeline
    assert not list((out / "checkpoints").glob("*.partial"))
    assert lock_record(out) == {}  # released on the way out


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.subprocess
@pytest.mark.slow
def test_sigterm_to_a_multi_process_run_reaches_every_process_and_a_refused_resume_is_one_line(tmp_path,
                                                                                                stopped_by_sigterm):
    """`genzoo train --num_processes 2` is the launcher itself: SIGTERM to it (what `timeout` sends) stops both
    training processes at one step, with one checkpoint and one line; no process is left behind. A resume with two
    processes of a checkpoint that one process wrote is refused by both in one line, exit 2, without a launcher
    traceback."""
    out = tmp_path / "ddp"
    run = start(tmp_path, ["train", "--num_processes", "2", *long_args(out, *AT_SIGNAL)])
    wait_for(in_the_loop(out), run, "a second step")
    workers = descendants(run.pid)
    assert len([p for p in workers if "genzoo.training" in " ".join(p.cmdline())]) == 2
    run.send_signal(signal.SIGTERM)  # to the launcher only, as `timeout` does
    code, err = finish(run, timeout=180)
    line = one_line(err)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    step = int(line.split("train.py: Stopped by SIGTERM after step ")[1].split()[0])
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"left running: {alive}"
    assert not (out / "model_index.json").exists()
    (checkpoint,) = list_checkpoints(out)
    assert checkpoint.name == f"checkpoint-{step}"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["num_processes"] == 2
    # A one-process run resumed with two processes: every process refuses, one line is printed.
    single = shutil.copytree(stopped_by_sigterm[0], tmp_path / "single")
    resume = start(tmp_path, ["train", "--num_processes", "2", *long_args(single, "--resume_from_checkpoint", "latest")])
    code, err = finish(resume, timeout=180)
    assert code == 2, err[-3000:]
    assert "was written by 1 process(es) and this run has 2" in one_line(err)


@pytest.mark.subprocess
def test_sigterm_while_teacher_pairs_are_written_leaves_no_staging_and_a_killed_writers_staging_is_removed(tmp_path):
    """A rectified-flow run writing its teacher pairs (the write slowed down here, so that the signal lands in it)
    stops at once on SIGTERM and removes its half-written cache; one killed outright (SIGKILL) leaves the staging
    folder, which the next write of the same cache removes."""
    (tmp_path / "slow_pairs.py").write_text(
        "import time\nimport datasets\n_save = datasets.Dataset.save_to_disk\n\n\n"
        "def save_to_disk(self, path, *args, **kwargs):\n    _save(self, path, *args, **kwargs)\n    time.sleep(120)\n\n\n"
        "datasets.Dataset.save_to_disk = save_to_disk\n")
    pairs = tmp_path / "cache" / "teacher_pairs"

    def args(out):
        return tiny_args("rectified-flow", "moons", out, "--teacher", TEACHER, "--num_pairs", "64", "--teacher_steps",
                         "4")

    def staging():
        return [p for p in pairs.glob(f".*{STAGING_TAG}*")] if pairs.is_dir() else []

    for stop in (signal.SIGTERM, signal.SIGKILL):
        run = start(tmp_path, ["train", *args(tmp_path / f"rf-{stop.name}")], preamble="import slow_pairs")
        wait_for(lambda: any((p / "dataset_info.json").exists() for p in staging()), run, "the pairs' staging folder")
        run.send_signal(stop)
        code, err = finish(run)
        if stop == signal.SIGTERM:
            assert code == 128 + signal.SIGTERM and one_line(err).startswith(
                "genzoo: Stopped by SIGTERM while setting up"), err[-3000:]
            assert staging() == [] and list(pairs.iterdir()) == []
        else:
            assert code == -signal.SIGKILL and len(staging()) == 1
    (stale,) = staging()  # the next write of the same cache (what the next such run does) removes it
    key = stale.name[1:].split(STAGING_TAG)[0]
    save_pairs(pairs / key, torch.zeros(4, 2), torch.ones(4, 2), {"note": "the next run's pairs"})
    assert staging() == [] and [p.name for p in pairs.iterdir()] == [key]


@pytest.mark.subprocess
def test_stale_staging_is_removed_only_when_its_writer_is_dead(tmp_path):
    target = tmp_path / "cache"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".cache{STAGING_TAG}new-{dead.pid}-0000abcd"
    stale.mkdir()
    (stale / "half.arrow").write_bytes(b"x")
    live = make_staging_folder(target)  # this process's own write in progress
    other = tmp_path / f".cache{STAGING_TAG}file-{os.getppid()}-0000abcd.json"  # another live process's
    other.write_text("{}")
    remove_stale_staging(target)
    assert not stale.exists() and live.is_dir() and other.is_file()


# ------------------------------------------------------------------------------------------------ full disks
def test_a_full_disk_in_safetensors_writer_is_one_line_and_leaves_no_partial(tmp_path, capsys, monkeypatch):
    """safetensors reports a full disk as a SafetensorError (not an OSError): at a checkpoint's EMA write and at
    the final save, the run stops with one line, exit 2, and no half-written checkpoint or staging folder."""
    import genzoo.training.ema as ema

    out = tmp_path / "run"
    real = ema.save_file

    def full(tensors, filename, *args, **kwargs):
        if "shadow_params" in str(filename):
            raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os "
                                              "error 28)")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ema, "save_file", full)
    assert cli_main(["train", *tiny_args("flow-matching", "moons", out, "--use_ema", "true")]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"genzoo: error: Could not write checkpoint 3 to {out}")
    assert "No space left on device" in err and "no checkpoint was saved yet" in err
    assert list((out / "checkpoints").iterdir()) == []
    monkeypatch.setattr(ema, "save_file", real)

    def no_space(*args, **kwargs):  # Diffusers writes a model's weights through safetensors.torch.save_file
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("safetensors.torch.save_file", no_space)
    assert cli_main(["train", *tiny_args("flow-matching", "moons", out, "--use_ema", "true")]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"genzoo: error: Could not save the pipeline to {out}: "), err
    assert "No space left on device" in err and f"the last complete checkpoint is {out / 'checkpoints'}" in err
    assert not [p for p in tmp_path.iterdir() if STAGING_TAG in p.name]  # no half-written pipeline beside it
    assert not (out / "model_index.json").exists() and [p.name for p in list_checkpoints(out)] == [
        "checkpoint-3", "checkpoint-6"]


# ------------------------------------------------------------------------------------------------ genzoo eval
def test_genzoo_eval_writes_only_where_out_says(tmp_path, capsys):
    folder = shutil.copytree(TEACHER, tmp_path / "fm")
    published = (folder / "eval.json").read_bytes()
    argv = ["eval", str(folder), "--num-samples", "20", "--steps", "2", "--likelihood-steps", "2"]
    assert cli_main([*argv, "--out", str(tmp_path / "check.json")]) == 0
    assert (folder / "eval.json").read_bytes() == published  # the published figure stays
    assert json.loads((tmp_path / "check.json").read_text())["num_samples"] == 20
    assert cli_main([*argv, "--out", str(tmp_path / "check2.json"), "--update-card"]) == 0
    assert json.loads((folder / "eval.json").read_text()) == json.loads((tmp_path / "check2.json").read_text())
    capsys.readouterr()
    assert cli_main(["eval", "user/model", "--update-card", "--out", str(tmp_path / "x.json")]) == 2
    assert "--update-card writes PATH/eval.json of a local pipeline folder" in capsys.readouterr().err


def test_a_multi_process_run_gets_the_token_through_its_environment_and_prints_none(monkeypatch, capsys):
    import genzoo.cli

    launched = []
    monkeypatch.setattr(genzoo.cli, "launch_processes", lambda command, env=None: launched.append((command, env)) or 0)
    token = "hf_aVeryPrivateTokenValue"
    assert cli_main(["train", "--num_processes", "2", "--hub_token", token, "--method", "ddpm", "--push_to_hub"]) == 0
    (command, env), = launched
    assert env == {"HF_TOKEN": token} and token not in " ".join(command)  # not on any process's command line
    assert command[-3:] == ["--method", "ddpm", "--push_to_hub"]
    assert token not in capsys.readouterr().err
