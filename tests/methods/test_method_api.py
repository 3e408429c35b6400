"""The method API a third party builds on: typed options (the command line, recipes and --help from one dataclass),
every scheduler option reachable, schedulers chosen by registry name, and the hooks the next families need -- the EMA
copies inside the loss, a frozen teacher, the method's own checkpointed state."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import genzoo
from genzoo import registry
from genzoo.config import RecipeError
from genzoo.testing import assert_same_weights, run_training, tiny_args
from genzoo.training import TrainingError, parse_args, train
from genzoo.training.trainer import Trainer
from helpers import ROOT, registered_methods, write_distribution


# ------------------------------------------------------------------------------------------------ typed options
@pytest.mark.parametrize("method", list(registered_methods()))
def test_the_command_line_is_generated_from_the_config(method, example_plugins):
    """Every option of the method's Config is on the command line with its default and choices, and the namespace
    parse_args returns builds the Config back unchanged."""
    from genzoo.training import build_parser

    cls = registry.get("method", method)
    actions = {a.dest: a for a in build_parser(method)._actions}
    for field in dataclasses.fields(cls.Config):
        action = actions[field.name]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert action.default == cls.trainer_defaults.get(field.name, default), field.name
        choices = field.metadata.get("choices")
        if choices is not None and action.choices is not None:
            assert list(action.choices) == list(choices() if callable(choices) else choices), field.name
    args = parse_args(["--method", method])
    assert cls.Config.from_mapping(args) == cls.Config()


@pytest.mark.parametrize(
    "recipe,message",
    [
        ({"method": "ddpm", "beta_schedule": "cosine"}, r"--beta_schedule 'cosine': allowed linear, scaled_linear"),
        ({"method": "ddpm", "variance_type": "learned"}, r"--variance_type 'learned': allowed .*learned_range"),
        ({"method": "ddpm", "rescale_betas_zero_snr": True}, r"rescale_betas_zero_snr.*v_prediction or sample"),
        ({"method": "ddpm", "snr_gamma": 0}, r"--snr_gamma must be > 0, got 0"),
        ({"time_sampling": "beta"}, r"--time_sampling 'beta': allowed uniform, logit_normal"),
        ({"solver": "rk4"}, r"--solver 'rk4': allowed euler, heun"),
        ({"solver": "euler", "scheduler": "FlowMatchHeunScheduler"}, r"--solver euler means --scheduler "
         r"FlowMatchEulerScheduler, but --scheduler is FlowMatchHeunScheduler"),
        ({"scheduler": "DDPMScheduler"}, r"--scheduler 'DDPMScheduler': allowed FlowMatchEulerScheduler, FlowMatchHeunScheduler\."),
        ({"block_out_channels": [32, 0]}, r"--block_out_channels: expected positive integers"),
        ({"cond_dropout": 1.0}, r"--cond_dropout must be >= 0 and < 1, got 1.0"),
        ({"use_ema": "maybe"}, r"--use_ema: expected true or false, got 'maybe'"),
        ({"use_ema": 2}, r"--use_ema must be true or false, got 2"),
        ({"train_batch_size": 8.5}, r"--train_batch_size must be an integer, got 8.5"),
        ({"learning_rate": [0.1]}, r"--learning_rate must be a number, got \[0.1\]"),
        ({"method": "gan", "d_steps": 0}, r"--d_steps must be a positive integer, got 0"),
        ({"method": "vae", "recon_loss": "l1"}, r"--recon_loss 'l1': allowed mse, bce"),
    ],
)
def test_recipe_values_are_checked_like_the_command_line(tmp_path, recipe, message):
    """A value from a recipe never passes argparse's own checks; the typed config checks it, naming the option, the
    value and what is allowed."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match=message):
        parse_args(["--config", str(path)])


def test_bad_command_line_values_are_one_line_errors():
    with pytest.raises(RecipeError, match=r"--beta_schedule: invalid choice: 'cosine'"):
        parse_args(["--method", "ddpm", "--beta_schedule", "cosine"])
    with pytest.raises(RecipeError, match=r"--attention: expected true or false, got 'maybe'"):
        parse_args(["--attention", "maybe"])


def saved_scheduler(folder) -> dict:
    return json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())


@pytest.mark.slow
def test_every_ddpm_scheduler_option_reaches_the_saved_pipeline(tmp_path):
    """Options a user tunes go into the scheduler the pipeline saves; learned_range makes the denoiser predict the
    variance too (twice the outputs), trained by the hybrid loss, and the pipeline samples with it."""
    result = run_training("ddpm", "moons", tmp_path, "--beta_schedule", "squaredcos_cap_v2", "--variance_type",
                          "learned_range", "--prediction_type", "v_prediction", "--timestep_spacing", "trailing",
                          "--clip_sample", "true", "--rescale_betas_zero_snr", "true", "--snr_gamma", "5",
                          "--beta_start", "0.0002")
    config = saved_scheduler(tmp_path)
    assert {k: config[k] for k in ("beta_schedule", "variance_type", "prediction_type", "timestep_spacing",
                                   "clip_sample", "rescale_betas_zero_snr", "beta_start", "num_train_timesteps")} == {
        "beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range", "prediction_type": "v_prediction",
        "timestep_spacing": "trailing", "clip_sample": True, "rescale_betas_zero_snr": True, "beta_start": 0.0002,
        "num_train_timesteps": 50}
    assert {"mse", "vlb_bits_per_dim", "loss"} <= set(result.metrics["final_losses"])
    pipe = genzoo.load_pipeline(tmp_path)
    assert pipe.unet.config.out_channels == 4 and pipe.unet.sample_shape == (2,)
    samples = pipe(batch_size=5, generator=torch.Generator().manual_seed(0), num_inference_steps=4,
                   output_type="np").samples
    assert samples.shape == (5, 2) and torch.isfinite(torch.from_numpy(samples)).all()


@pytest.mark.slow
def test_clip_sample_follows_the_data_unless_set(tmp_path):
    """x_0 estimates are clipped to the data's range, saved in the scheduler config so that Diffusers' samplers built
    with from_config clip too: [-1, 1] for images, the vectors' largest |x| rounded up for moons (3.75 -> 4)."""
    import diffusers

    run_training("ddpm", "moons", tmp_path / "points")
    config = saved_scheduler(tmp_path / "points")
    assert config["clip_sample"] is True and config["clip_sample_range"] == 4.0
    pipe = genzoo.load_pipeline(tmp_path / "points")
    ddim = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    assert ddim.config.clip_sample is True and ddim.config.clip_sample_range == 4.0
    run_training("ddpm", "digits", tmp_path / "images")
    config = saved_scheduler(tmp_path / "images")
    assert config["clip_sample"] is True and config["clip_sample_range"] == 1.0
    run_training("ddpm", "moons", tmp_path / "unclipped", "--clip_sample", "false")
    assert saved_scheduler(tmp_path / "unclipped")["clip_sample"] is False


@pytest.mark.slow
def test_flow_matching_schedulers_are_chosen_by_registry_name(tmp_path, example_plugins):
    """--solver heun and --scheduler NAME pick registered classes -- a plugin's too, with its own defaults (the
    example plugin's ShiftedFlowScheduler shifts by 3 unless --shift is given)."""
    run_training("flow-matching", "moons", tmp_path / "heun", "--solver", "heun", "--time_sampling", "logit_normal",
                 "--shift", "2.0")
    config = saved_scheduler(tmp_path / "heun")
    assert (config["_class_name"], config["shift"], config["time_sampling"]) == (
        "FlowMatchHeunScheduler", 2.0, "logit_normal")
    run_training("flow-matching", "moons", tmp_path / "plugin", "--scheduler", "ShiftedFlowScheduler")
    pipe = genzoo.load_pipeline(tmp_path / "plugin")
    assert type(pipe.scheduler).__name__ == "ShiftedFlowScheduler" and pipe.scheduler.config.shift == 3.0


def test_a_plugin_scheduler_is_a_choice_only_while_installed():
    with pytest.raises(RecipeError, match="invalid choice: 'ShiftedFlowScheduler'"):
        parse_args(["--scheduler", "ShiftedFlowScheduler"])
    from helpers import plugins_installed

    with plugins_installed():
        assert parse_args(["--scheduler", "ShiftedFlowScheduler"]).scheduler == "ShiftedFlowScheduler"


# ------------------------------------------------------------------------------------------------ hooks
EMA_PROBE = '''
"""A test method that reads the EMA copy of its generator in its loss and records what it sees."""
import json
from dataclasses import dataclass

import torch

from genzoo import GANPipeline, MLPGenerator
from genzoo.methods import Method, MethodConfig, randn_like


@dataclass
class EMAProbeConfig(MethodConfig):
    pass


class EMAProbeMethod(Method):
    name = "ema-probe"
    Config = EMAProbeConfig
    model_names = ("generator",)
    data_kinds = ("vector",)
    trainer_defaults = {"use_ema": True, "ema_max_decay": 0.9}
    ema_in_loss = True

    def build_models(self):
        return {"generator": MLPGenerator(sample_size=2, latent_dim=2, hidden_dim=8, num_layers=1)}

    def ema_models(self):
        return ["generator"]

    def loss(self, phase, models, batch, step, generator):
        data = batch["sample"]
        z = randn_like(data.new_empty(data.shape[0], 2), generator)
        fake, target = models["generator"](z).sample, models["generator_ema"](z).sample
        loss = (fake.mean(0) - data.mean(0)).pow(2).sum() + 0.1 * (fake - target.detach()).pow(2).mean()
        ema = models["generator_ema"]
        record = {"step": step, "ema_sum": float(sum(p.double().sum() for p in ema.parameters())),
                  "frozen": not any(p.requires_grad for p in ema.parameters()) and not ema.training,
                  "gap": float((fake - target).detach().abs().max())}
        with open(self.context.output_dir / "ema-probe.jsonl", "a") as f:
            f.write(json.dumps(record) + "\\n")
        return loss, {"loss": loss}

    def make_pipeline(self, models):
        return GANPipeline(generator=models["generator"])
'''


@pytest.fixture
def ema_probe(tmp_path, monkeypatch):
    """Install the test method "ema-probe" (a module and its entry point) for one test."""
    root = write_distribution(tmp_path / "site", "genzoo-ema-probe", "1.0",
                              "[genzoo.methods]\nema-probe = genzoo_ema_probe:EMAProbeMethod\n",
                              {"genzoo_ema_probe.py": EMA_PROBE})
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    yield
    registry.refresh()
    import sys

    sys.modules.pop("genzoo_ema_probe", None)


def probe_records(folder) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "ema-probe.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_loss_reads_the_ema_copy_frozen_and_up_to_date(tmp_path, ema_probe):
    run_training("ema-probe", "moons", tmp_path, "--checkpointing_steps", "1")
    records = probe_records(tmp_path)
    assert [r["step"] for r in records] == list(range(6)) and all(r["frozen"] for r in records)
    assert records[0]["gap"] == 0  # before the first update the EMA equals the model
    assert records[-1]["gap"] > 0
    for record in records[1:]:  # what the loss of step k saw is the EMA after k updates, as checkpoint-k holds it
        shadow = load_file(tmp_path / "checkpoints" / f"checkpoint-{record['step']}" / "generator_ema" /
                           "shadow_params.safetensors")
        assert record["ema_sum"] == pytest.approx(float(sum(t.double().sum() for t in shadow.values())), abs=1e-9)


@pytest.mark.slow
def test_a_method_reading_the_ema_resumes_exactly_and_needs_ema(tmp_path, ema_probe):
    run_training("ema-probe", "moons", tmp_path / "full")
    stopped = tmp_path / "stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-3", stopped / "checkpoints" / "checkpoint-3")
    run_training("ema-probe", "moons", stopped, "--resume_from_checkpoint", "latest")
    assert_same_weights(tmp_path / "full", stopped)
    assert probe_records(stopped) == probe_records(tmp_path / "full")[3:]
    with pytest.raises(TrainingError, match="reads the EMA copies.*--use_ema true"):
        run_training("ema-probe", "moons", tmp_path / "no-ema", "--use_ema", "false")


def test_a_teacher_is_loaded_frozen_and_used(tmp_path, example_plugins):
    """The example plugin distils the zoo's flow-matching moons pipeline into a one-step generator."""
    teacher_path = ROOT / "pipelines" / "flow-matching-moons"
    args = parse_args(tiny_args("moment-matching", "moons", tmp_path, "--teacher", teacher_path, "--teacher_steps", "2",
                                "--max_train_steps", "3"))
    trainer = Trainer(args)
    try:
        trainer.run()
    finally:
        from genzoo.training.trainer import reset_accelerate_state

        reset_accelerate_state()
    teacher = trainer.method.teacher
    assert type(teacher) is genzoo.FlowMatchingPipeline and not teacher.unet.training
    assert not any(p.requires_grad for p in teacher.unet.parameters())
    fresh = genzoo.load_pipeline(teacher_path)
    for (name, a), b in zip(teacher.unet.state_dict().items(), fresh.unet.state_dict().values()):
        assert torch.equal(a, b), name  # training never touched it
    batch = {"sample": torch.zeros(16, 2)}
    target = trainer.method.target(batch, torch.Generator().manual_seed(0))
    assert target.shape == (16, 2) and target.abs().sum() > 0
    torch.testing.assert_close(target, trainer.method.target(batch, torch.Generator().manual_seed(0)))


@pytest.mark.slow
def test_a_missing_teacher_is_a_clear_error(tmp_path, example_plugins):
    with pytest.raises(TrainingError, match=r"--teacher .*no-such-teacher: No such folder"):
        run_training("moment-matching", "moons", tmp_path, "--teacher", tmp_path / "no-such-teacher")


@pytest.mark.slow
def test_method_state_is_data_and_must_be_there_to_resume(tmp_path, example_plugins):
    run_training("moment-matching", "moons", tmp_path)
    checkpoint = tmp_path / "checkpoints" / "checkpoint-3"
    state = json.loads((checkpoint / "method_state_0.json").read_text())
    assert state == {} and set(load_file(checkpoint / "method_state_0.safetensors")) == {"scale"}
    for suffix in (".json", ".safetensors"):
        os.remove(checkpoint / f"method_state_0{suffix}")
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-6")
    with pytest.raises(TrainingError, match="holds no state of method 'moment-matching' for process 0"):
        run_training("moment-matching", "moons", tmp_path, "--resume_from_checkpoint", "latest")


def test_method_options_never_come_from_the_namespace(example_plugins):
    """A method gets its typed Config (and refuses anything else), not the parsed namespace."""
    from genzoo.data import load_training_data

    args = parse_args(["--method", "moment-matching", "--dataset", "moons", "--num_samples", "64"])
    cls = registry.get("method", "moment-matching")
    data = load_training_data(args)
    with pytest.raises(TypeError, match="takes a MomentMatchingConfig, got Namespace"):
        cls(args, data)
    method = cls.from_options(args, data)
    assert method.config == cls.Config() and not hasattr(method, "args")


@pytest.mark.slow
def test_recipes_written_by_a_run_still_train(tmp_path):
    """Old keys stay accepted: a recipe with flow matching's --solver and every option written by a run parses."""
    run_training("flow-matching", "moons", tmp_path / "first", "--solver", "heun")
    recipe = yaml.safe_load((tmp_path / "first" / "recipe.yaml").read_text())
    assert recipe["solver"] == "heun" and recipe["scheduler"] is None
    again = parse_args(["--config", str(tmp_path / "first" / "recipe.yaml"), "--output_dir", str(tmp_path / "second")])
    train(again)
    assert_same_weights(tmp_path / "first", tmp_path / "second")
