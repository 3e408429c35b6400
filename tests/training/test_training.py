"""The trainer: every registered method passes genzoo.testing's method contract (trains, saves, loads, samples,
evaluates, resumes exactly); exact resume (also after SIGKILL), checkpoints, NaN, recipes, bad input, a third-party
method, and two processes with `accelerate launch`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import genzoo
from genzoo import registry
from genzoo.testing import (METHOD_CHECKS, assert_resumes_exactly, assert_same_weights, check_method, run_training,
                            tiny_args)
from genzoo.training import RecipeError, TrainingError, list_checkpoints, parse_args, train
from helpers import ROOT, registered_methods, smoke_cases, write_distribution

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method,dataset", smoke_cases())
def test_every_registered_method_trains_saves_loads_samples_and_evaluates(method, dataset, tmp_path, example_plugins):
    """Every method in the registry -- genzoo's and the example plugin's -- on every kind of data it declares."""
    METHOD_CHECKS["trains_saves_loads_samples"](method, dataset=dataset, output_dir=tmp_path)


@pytest.mark.parametrize("method", list(registered_methods()))
def test_every_registered_method_resumes_exactly(method, tmp_path, example_plugins):
    """Stopped at step 3 and resumed, every method ends with the weights of the uninterrupted run (on vector data
    where it takes them, the cheaper; the example plugin's running bandwidth travels in its method state)."""
    METHOD_CHECKS["resumes_exactly"](method, output_dir=tmp_path)


@pytest.mark.parametrize(
    "method,extra",
    [
        ("flow-matching", ["--gradient_accumulation_steps", "2"]),
        ("gan", ["--d_steps", "2", "--r1_gamma", "1.0"]),
        ("vae", ["--kl_warmup_steps", "4"]),
    ],
)
def test_resume_from_a_checkpoint_is_exact(method, extra, tmp_path):
    """Stopped at step 3 and resumed, a run ends with the same weights as the uninterrupted run (EMA, optimisers,
    schedules, RNG, data order and the trainer's generator all restored)."""
    assert_resumes_exactly(method, tmp_path, *extra)


def test_resume_across_an_epoch_with_a_dropped_partial_accumulation(tmp_path):
    """256 moons / batch 16 = 16 batches per epoch; with 3 batches per update an epoch makes 5 updates and drops one
    batch, so checkpoint-6 sits one update into the second epoch."""
    extra = ["--gradient_accumulation_steps", "3", "--max_train_steps", "8", "--checkpointing_steps", "6"]
    run_training("flow-matching", "moons", tmp_path / "full", *extra)
    stopped = tmp_path / "stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    os.rename(tmp_path / "full" / "checkpoints" / "checkpoint-6", stopped / "checkpoints" / "checkpoint-6")
    run_training("flow-matching", "moons", stopped, *extra, "--resume_from_checkpoint", "latest")
    assert_same_weights(tmp_path / "full", stopped)


@pytest.mark.subprocess
@pytest.mark.parametrize("method, dataset", [("flow-matching", "digits"), ("dmd", "moons")])
def test_resume_after_sigkill(method, dataset, tmp_path):
    """A real interruption: the process is killed with SIGKILL mid-training, then resumed from 'latest'. All three
    runs are processes with the same thread count, as float sums must be added in the same order to agree. dmd
    (student, fake denoiser, discriminator with R1, three optimisers) resumes every one of its models exactly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    longer = ["--max_train_steps", "60", "--checkpointing_steps", "10", "--save_images_steps", "1000"]

    def command(output_dir, *extra):
        return [sys.executable, str(ROOT / "train" / "train.py"), *tiny_args(method, dataset, output_dir), *longer,
                *extra]

    proc = subprocess.Popen(command(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not any(int(p.name.split("-")[1]) >= 20 for p in list_checkpoints(tmp_path / "killed")):
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in list_checkpoints(tmp_path / "killed"))
    assert killed_at < 60 and not (tmp_path / "killed" / "model_index.json").exists()
    # The resume and the uninterrupted run side by side (one thread each on two cores), each in its own process.
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for args in
            (command(tmp_path / "killed", "--resume_from_checkpoint", "latest"), command(tmp_path / "full"))]
    for run in runs:
        _, err = run.communicate(timeout=1800)
        assert run.returncode == 0, err[-3000:]
    assert_same_weights(tmp_path / "full", tmp_path / "killed")
    # the last checkpoints agree too: every model (student, fake denoiser, discriminator), EMA and random state
    last = [list_checkpoints(tmp_path / run)[-1] for run in ("full", "killed")]
    files = [sorted(p.relative_to(folder) for p in folder.rglob("*.safetensors")) for folder in last]
    assert files[0] == files[1] and len(files[0]) >= 2, files
    for name in files[0]:
        a, b = (load_file(folder / name) for folder in last)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_half_written_checkpoints_are_never_latest(tmp_path):
    run_training("flow-matching", "moons", tmp_path)
    root = tmp_path / "checkpoints"
    (root / "checkpoint-9.partial").mkdir()  # a save interrupted before its rename
    (root / "checkpoint-12").mkdir()  # a folder without the trainer state written last
    assert list_checkpoints(tmp_path)[-1].name == "checkpoint-6"
    with pytest.raises(TrainingError, match="not a complete checkpoint"):
        run_training("flow-matching", "moons", tmp_path, "--resume_from_checkpoint", root / "checkpoint-12")


def test_checkpoints_total_limit(tmp_path):
    run_training("flow-matching", "moons", tmp_path, "--checkpointing_steps", "1", "--checkpoints_total_limit", "2")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-6"]
    assert not list((tmp_path / "checkpoints").glob("*.partial"))


def test_nan_stops_with_the_step_and_the_term(tmp_path, example_plugins):
    with pytest.raises(TrainingError, match=r"Non-finite loss at step 5, phase 'model': .*mmd2=nan.*checkpoint-3"):
        run_training("moment-matching", "moons", tmp_path, "--nan_at_step", "5")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3"]
    assert not (tmp_path / "model_index.json").exists()


def test_init_from_starts_the_models_from_a_saved_pipeline_and_refuses_one_that_does_not_fit(tmp_path):
    """--init_from copies a saved pipeline's components into the method's models of the same name (a run at learning
    rate 0 saves them unchanged; the GAN loss's discriminator, which the pipeline lacks, starts fresh); a component
    built with other options, or a pipeline with no component the method trains, is refused in one line."""
    source = tmp_path / "source"
    run_training("meanflow", "digits", source)  # a UNet: its config holds tuples, saved as lists
    run_training("meanflow", "digits", tmp_path / "tuned", "--init_from", source, "--gan_weight", "0.1",
                 "--learning_rate", "0", "--use_ema", "false", "--max_train_steps", "2")
    tuned, saved = (genzoo.load_pipeline(tmp_path / name).unet.state_dict() for name in ("tuned", "source"))
    assert tuned.keys() == saved.keys() and all(torch.equal(tuned[k], saved[k]) for k in tuned)
    with pytest.raises(TrainingError, match=r"--init_from .*source: its unet is a UNet2DModel built with other options "
                                            r"than this recipe's UNet2DModel \(differing: block_out_channels\)"):
        run_training("meanflow", "digits", tmp_path / "wider", "--init_from", source, "--block_out_channels", "8,24")
    run_training("gan", "moons", tmp_path / "gan")
    with pytest.raises(TrainingError, match=r"--init_from .*gan: none of its components \(.*generator.*\) is one of "
                                            r"this method's models \(unet\)"):
        run_training("meanflow", "moons", tmp_path / "from-gan", "--init_from", tmp_path / "gan")
    assert not any((tmp_path / name / "model_index.json").exists() for name in ("wider", "from-gan"))


def test_recipe_file_and_command_line_precedence(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"method": "ddpm", "dataset": "moons", "learning_rate": "3e-4",
                                      "train_batch_size": 32, "snr_gamma": 5.0, "use_ema": False}))
    args = parse_args(["--config", str(recipe), "--train_batch_size", "8"])
    assert args.method == "ddpm" and args.dataset == "moons" and args.snr_gamma == 5.0
    assert args.learning_rate == 3e-4 and args.train_batch_size == 8 and args.use_ema is False
    defaults = parse_args(["--method", "gan"])  # the method's preferred defaults
    assert defaults.learning_rate == 2e-4 and defaults.adam_beta1 == 0.5 and defaults.use_ema is True
    assert defaults.output_dir == str(Path("runs") / "gan-digits")


@pytest.mark.parametrize(
    "content,message",
    [
        ({"learnig_rate": 1e-3}, r"unknown option\(s\) learnig_rate for method 'flow-matching'"),
        ({"method": "diffusion"}, r"No genzoo method named 'diffusion'.*ddpm, dmd, flow-matching, gan, meanflow, rectified-flow, vae"),
        ({"train_batch_size": 0}, r"--train_batch_size must be a positive integer, got 0"),
        ("- just\n- a list\n", r"must hold a mapping"),
    ],
)
def test_bad_recipes(tmp_path, content, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(RecipeError, match=message):
        parse_args(["--config", str(recipe)])


def test_data_the_model_cannot_take_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"power of two >= 8; got 12x12"):
        run_training("gan", "digits", tmp_path, "--resolution", "12")
    with pytest.raises(ValueError, match=r"divisible by 16; got 8x8"):
        run_training("flow-matching", "digits", tmp_path, "--block_out_channels", "8,8,8,8,8")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.subprocess
def test_two_processes_with_accelerate_launch(two_process_runs, example_plugins):
    """accelerate launch --multi_gpu --num_processes 2 on CPU (gloo): both ranks keep identical weights, each sees
    its own shard of every batch, and the saved pipeline loads."""
    out = two_process_runs.check("moment-matching")
    records = [[json.loads(line) for line in (out / f"record-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]] == list(range(6))
    for step0, step1 in zip(*records):
        assert len(step0["indices"]) == len(step1["indices"]) == 8
        assert not set(step0["indices"]) & set(step1["indices"])  # different shards of the same global batch
        assert step0["checksum"] == step1["checksum"]  # identical weights on both ranks, every step
    assert len({r["checksum"] for r in records[0]}) == 6  # and they do change
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    pipe = genzoo.load_pipeline(out)
    assert pipe(batch_size=4, output_type="np").samples.shape == (4, 2)


@pytest.mark.parametrize("method", ["flow-matching", "gan", "vae"])
def test_bf16_mixed_precision_on_cpu(method, tmp_path):
    """bf16 autocast on the CPU, including the GAN's two optimisers."""
    run_training(method, "digits", tmp_path, "--mixed_precision", "bf16", "--gan_loss", "hinge") if method == "gan" \
        else run_training(method, "digits", tmp_path, "--mixed_precision", "bf16")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mixed_precision"] == "bf16" and all(np.isfinite(v) for v in metrics["final_losses"].values())


def test_wgan_gp_trains(tmp_path):
    run_training("gan", "8gaussians", tmp_path, "--gan_loss", "wgan_gp", "--d_steps", "3")
    terms = json.loads((tmp_path / "metrics.json").read_text())["final_losses"]
    assert {"loss_d", "d_real", "d_fake", "loss_g"} <= set(terms)


def test_tensorboard_gets_losses_and_sample_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_training("ddpm", "moons", tmp_path, "--logger", "tensorboard", "--snr_gamma", "5.0")
    events = EventAccumulator(str(next((tmp_path / "logs").rglob("events.out.tfevents.*")).parent)).Reload()
    assert "train/loss" in events.Tags()["scalars"] and len(events.Scalars("train/loss")) == 6
    images = events.Images("samples")
    assert [i.step for i in images] == [3, 6]


def test_a_run_writes_the_recipe_that_reproduces_it(tmp_path):
    run_training("gan", "moons", tmp_path / "first", "--gan_loss", "hinge", "--hub_token", "secret")
    recipe = tmp_path / "first" / "recipe.yaml"
    text = recipe.read_text()
    assert "secret" not in text and "hub_token" not in text
    again = parse_args(["--config", str(recipe), "--output_dir", str(tmp_path / "second")])
    assert again.gan_loss == "hinge" and again.max_train_steps == 6 and again.num_samples == 256
    train(again)
    assert_same_weights(tmp_path / "first", tmp_path / "second")


# ------------------------------------------------------------------------------ the method contract has teeth
FORGETFUL = '''
from genzoo_example_plugin.methods import MomentMatchingMethod


class ForgetfulMomentMatching(MomentMatchingMethod):
    """Keeps its running bandwidth out of checkpoints, so a resumed run restarts it."""

    name = "forgetful-moment-matching"

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
'''


def test_the_method_contract_catches_an_inexact_resume(tmp_path, example_plugins, monkeypatch):
    root = write_distribution(tmp_path / "site", "genzoo-forgetful", "1.0",
                              "[genzoo.methods]\nforgetful-moment-matching = genzoo_forgetful:ForgetfulMomentMatching\n",
                              {"genzoo_forgetful.py": FORGETFUL})
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    try:
        with pytest.raises(AssertionError) as raised:
            check_method("forgetful-moment-matching", output_dir=tmp_path / "runs", checks=["resumes_exactly"])
    finally:
        sys.modules.pop("genzoo_forgetful", None)
        registry.refresh()
    message = str(raised.value)
    assert message.startswith("forgetful-moment-matching fails the genzoo method contract:\n  resumes_exactly: ")
    assert "resumed at step 3 on moons" in message and not list((tmp_path / "runs").iterdir())


def test_check_method_refuses_unknown_checks_and_unregistered_classes():
    from genzoo.methods import FlowMatchingMethod

    with pytest.raises(ValueError, match=r"Unknown method checks \['speed'\]; allowed: trains_saves_loads_samples"):
        check_method("flow-matching", checks=["speed"])

    class Unregistered(FlowMatchingMethod):
        name = "unregistered-flow"

    with pytest.raises(ValueError, match=r"'Unregistered' is not a registered method .*'genzoo.methods' entry point"):
        check_method(Unregistered)
    with pytest.raises(KeyError, match="No genzoo method named 'flow-matchin'"):
        check_method("flow-matchin")
