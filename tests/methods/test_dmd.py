"""Distribution matching distillation (--method dmd): the loss's gradient against closed-form scores, the student's
grid and stored sampling defaults, conditional teachers, refusals, and two processes."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

import genzoo
from genzoo.methods.dmd import DMDConfig, DMDMethod, distribution_matching_loss
from genzoo.schedulers import DDPMScheduler, FlowMatchEulerScheduler
from genzoo.testing import run_training
from genzoo.testing.methods import smoke_teacher
from genzoo.training import TrainingError


# ------------------------------------------------------------------------------------------------ the gradient
class GaussianDenoiser(nn.Module):
    """The exact denoiser of data ~ N(mean, std^2 I) on a scheduler's path, giving the scheduler's prediction type:
    E[x | x_t] = mean + a s^2 / (a^2 s^2 + b^2) (x_t - a mean) for x_t = a x + b noise."""

    def __init__(self, scheduler, mean: float, std: float):
        super().__init__()
        self.scheduler, self.mean, self.var = scheduler, mean, std**2

    def marginal_score(self, x_t, timesteps):
        path = self.scheduler.path(timesteps, x_t)
        a, b = path.alpha.double(), path.sigma.double()
        return -(x_t.double() - a * self.mean) / (a**2 * self.var + b**2)

    def forward(self, x_t, timesteps):
        path = self.scheduler.path(timesteps, x_t)
        a, b = path.alpha.double(), path.sigma.double()
        x = x_t.double()
        mu = self.mean + a * self.var / (a**2 * self.var + b**2) * (x - a * self.mean)
        noise = (x - a * mu) / b
        kind = self.scheduler.config.prediction_type
        out = {"epsilon": noise, "sample": mu, "velocity": path.d_alpha * mu + path.d_sigma * noise
               if path.d_alpha is not None else None}[kind]
        return types.SimpleNamespace(sample=out)


@pytest.mark.parametrize("scheduler", [FlowMatchEulerScheduler(), FlowMatchEulerScheduler(prediction_type="sample"),
                                       DDPMScheduler(prediction_type="epsilon")], ids=["flow-velocity", "flow-sample",
                                                                                      "ddpm-epsilon"])
def test_the_loss_gradient_is_the_score_difference_of_two_gaussians(scheduler):
    """Real data N(1, 0.5^2), the student's N(-0.5, 1.2^2): through the teacher scheduler's own path conversion, the
    gradient of the DMD loss in the sample is w * sigma_t^2 / alpha_t * (s_fake - s_real) with both scores in closed
    form (DMD's normalised score difference), for each kind of teacher output."""
    torch.manual_seed(0)
    real, fake = GaussianDenoiser(scheduler, 1.0, 0.5), GaussianDenoiser(scheduler, -0.5, 1.2)
    method = DMDMethod(DMDConfig(teacher="closed-form"), data=None)
    method.teacher = types.SimpleNamespace(scheduler=scheduler, unet=real, model_kind="flow")
    x = (torch.randn(64, 3, dtype=torch.float64) * 1.2 - 0.5).requires_grad_(True)
    timesteps = scheduler.sample_timesteps(64, generator=torch.Generator().manual_seed(1))
    noisy = scheduler.add_noise(x.detach(), torch.randn_like(x), timesteps)
    mu_real = method.teacher_estimate(noisy, timesteps, {}, None)
    mu_fake = method.data_estimate(fake, noisy, timesteps, {})
    distribution_matching_loss(x, mu_real, mu_fake).backward()
    path = scheduler.path(timesteps, noisy)
    score_gap = fake.marginal_score(noisy, timesteps) - real.marginal_score(noisy, timesteps)
    weight = 1 / (x.detach() - mu_real).abs().mean(dim=1, keepdim=True)
    expected = weight * path.sigma.double() ** 2 / path.alpha.double() * score_gap
    torch.testing.assert_close(x.grad * x.numel(), expected, rtol=1e-4, atol=1e-7)  # the loss computes in float32
    # and the gradient moves the student's samples towards the real distribution's mean
    assert (x.grad.sum(dim=1) > 0).float().mean() < 0.5


# ------------------------------------------------------------------------------------------------ trained runs
def test_a_two_step_student_stores_its_steps_and_samples_in_them(tmp_path):
    """--student_steps 2 saves a FlowMapPipeline whose stored defaults are 2 calls (the model is called twice, on
    the grid's two times) and guidance 1 for a conditional teacher; genzoo and plain Diffusers load them back."""
    run_training("dmd", "digits", tmp_path, "--student_steps", "2", "--conditioning", "class")
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["default_num_inference_steps"] == 2 and index["default_guidance_scale"] == 1.0
    pipe = genzoo.load_pipeline(tmp_path)
    assert isinstance(pipe, genzoo.FlowMapPipeline) and pipe.default_num_inference_steps == 2
    times = []
    pipe.unet.register_forward_pre_hook(lambda module, args: times.append(float(args[1].flatten()[0])))
    out = pipe(batch_size=3, class_labels=[1, 2, 3], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert times == [0.0, 500.0] and out.images.shape == (3, 1, 8, 8)  # one pass per step: no guidance batch
    from diffusers import DiffusionPipeline

    plain = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert plain.default_num_inference_steps == 2 and plain.default_guidance_scale == 1.0
    # a folder controls these values: out of bounds, the load is refused in one line naming them
    for key, value in (("default_num_inference_steps", 10**9), ("default_guidance_scale", "2")):
        (tmp_path / "model_index.json").write_text(json.dumps({**index, key: value}))
        with pytest.raises(genzoo.PipelineLoadError, match=rf"{key} must be .*got"):
            genzoo.load_pipeline(tmp_path)


def test_a_text_conditional_teacher_gives_a_student_that_follows_prompts_in_one_pass(tmp_path):
    """A text-conditional teacher: the student keeps its tokenizer and frozen text encoder, the real score is guided
    at --teacher_guidance, and the saved student samples with guidance 1 -- one pass of the prompt's batch, no
    unconditional half -- and its samples depend on the prompt."""
    run_training("dmd", "digits", tmp_path, "--conditioning", "text", "--teacher_guidance", "3")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["conditioning"], metrics["teacher_guidance"]) == ("text", 3.0)
    pipe = genzoo.load_pipeline(tmp_path)
    assert isinstance(pipe, genzoo.FlowMapPipeline) and pipe.text_encoder is not None
    assert (pipe.default_num_inference_steps, pipe.default_guidance_scale) == (1, 1.0)
    batches = []
    pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    seven, one = (pipe(prompt=[prompt] * 2, generator=torch.Generator().manual_seed(0), output_type="pt").images
                  for prompt in ("a handwritten seven", "the digit 1"))
    assert batches == [2, 2] and seven.shape == (2, 1, 8, 8) and not torch.equal(seven, one)


def test_the_student_starts_as_the_teacher_unless_asked_to_start_afresh(tmp_path):
    """With --student_init teacher (the default) the student begins with the teacher's weights (a run at learning rate
    0 saves them unchanged); --student_init scratch starts from a fresh initialisation."""
    teacher = genzoo.load_pipeline(smoke_teacher("flow-matching", "moons"))
    run_training("dmd", "moons", tmp_path / "run", "--max_train_steps", "2", "--use_ema", "false",
                 "--learning_rate", "0")
    student = genzoo.load_pipeline(tmp_path / "run").unet
    for (name, a), b in zip(student.state_dict().items(), teacher.unet.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # learning rate 0: still the teacher
    run_training("dmd", "moons", tmp_path / "scratch", "--max_train_steps", "2", "--use_ema", "false",
                 "--learning_rate", "0", "--student_init", "scratch")
    fresh = genzoo.load_pipeline(tmp_path / "scratch").unet
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), teacher.unet.state_dict().values()))


@pytest.mark.parametrize(
    "dataset,extra,message",
    [
        ("digits", ["--conditioning", "class"], r"is unconditional and --conditioning is class.*use --conditioning none"),
        ("moons", ["--r1_gamma", "1", "--gan_weight", "0"], r"--r1_gamma 1.0 needs the GAN loss"),
        ("moons", ["--gan_loss", "wgan_gp"], r"--gan_loss wgan_gp is --method gan's own.*use non_saturating or hinge"),
    ],
)
def test_refusals_are_one_line(tmp_path, dataset, extra, message):
    from genzoo.config import RecipeError

    if "--conditioning" in extra:  # the tiny teacher would follow --conditioning: give the unconditional one
        extra = [*extra, "--teacher", smoke_teacher("flow-matching", dataset)]
    with pytest.raises((TrainingError, ValueError, RecipeError), match=message) as info:
        run_training("dmd", dataset, tmp_path, *extra)
    assert "\n" not in str(info.value)


def test_without_a_teacher_it_says_what_it_needs(tmp_path):
    from genzoo.testing import tiny_args
    from genzoo.training import parse_args, train

    args = tiny_args("dmd", "moons", tmp_path, "--teacher", "unused")
    i = args.index("--teacher")
    del args[i : i + 2]
    with pytest.raises((TrainingError, ValueError), match=r"--method dmd needs --teacher"):
        train(parse_args(args))
    assert not (tmp_path / "model_index.json").exists()


def test_a_teacher_of_another_kind_or_shape_is_refused(tmp_path):
    """A GAN, an OT-coupled flow (its recipe says so) and a teacher of other samples are refused in one line."""
    gan = tmp_path / "gan"
    run_training("gan", "moons", gan)
    with pytest.raises((TrainingError, ValueError), match=r"holds a GANPipeline; --method dmd distils a DDPM or flow"):
        run_training("dmd", "moons", tmp_path / "a", "--teacher", gan)
    ot = tmp_path / "ot"
    run_training("flow-matching", "moons", ot, "--coupling", "ot")
    with pytest.raises((TrainingError, ValueError), match=r"was trained with --coupling ot: its model is the conditional "
                                                          r"mean of that coupling"):
        run_training("dmd", "moons", tmp_path / "c", "--teacher", ot)
    digits_teacher = smoke_teacher("flow-matching", "digits")
    with pytest.raises((TrainingError, ValueError), match=r"makes samples of shape \(1, 8, 8\), and moons's samples "
                                                          r"have shape \(2,\)"):
        run_training("dmd", "moons", tmp_path / "b", "--teacher", digits_teacher)


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_processes_train_dmd(two_process_runs):
    """Student, fake denoiser and discriminator under DDP on two CPU processes: the run saves a pipeline whose
    metrics say two processes."""
    out = two_process_runs.check("dmd")
    assert json.loads((out / "metrics.json").read_text())["num_processes"] == 2
    assert genzoo.load_pipeline(out)(batch_size=4, output_type="np").samples.shape == (4, 2)


def test_nan_is_refused_in_a_teacher_and_stops_a_diverging_run(tmp_path):
    """A teacher whose weights hold NaN is refused before training, naming it; a run that diverges (an absurd
    learning rate) stops at its first non-finite loss with the trainer's one line; neither saves a pipeline."""
    import shutil

    from safetensors.torch import load_file, save_file

    teacher = shutil.copytree(smoke_teacher("flow-matching", "moons"), tmp_path / "teacher",
                              ignore=shutil.ignore_patterns("checkpoints"))
    weights = next((teacher / "unet").glob("*.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(weights).items()}, weights)
    with pytest.raises((TrainingError, ValueError), match=r"--teacher .*teacher: Component 'unet': .* non-finite"):
        run_training("dmd", "moons", tmp_path / "a", "--teacher", teacher)
    with pytest.raises(TrainingError, match=r"Non-finite loss at step \d+, phase '(fake|student)'") as info:
        run_training("dmd", "moons", tmp_path / "b", "--learning_rate", "1e6", "--max_train_steps", "40",
                     "--fake_updates_per_step", "1")
    assert "\n" not in str(info.value)
    assert not any((tmp_path / name / "model_index.json").exists() for name in "ab")
