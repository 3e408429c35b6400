"""Flow maps and MeanFlow: FlowMapEulerScheduler against Diffusers' FlowMapEulerDiscreteScheduler, FlowMapPipeline's
jumps computed by hand, the MeanFlow loss on a flow whose average velocity is known exactly, and training with two
processes. (Training, saving, loading, sampling, evaluating and exact resuming of ``--method meanflow`` are in the
shared tests of tests/training/test_training.py, which run every registered method.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

import diffusers
import numpy as np
import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

import genzoo
from genzoo.config import RecipeError
from genzoo.methods import MeanFlowConfig, MeanFlowMethod
from genzoo.models import MLPDenoiser, takes_time_interval
from genzoo.testing import run_training
from helpers import build, seeded, tiny_pipeline


# ------------------------------------------------------------------------------------------------ the scheduler
@pytest.mark.parametrize("steps,shift", [(1, 1.0), (3, 1.0), (4, 2.5)])
def test_flow_map_steps_match_diffusers_flow_map_scheduler(steps, shift):
    """Diffusers runs the flow backwards (sigma = 1 - t) and its model output is -u; on the same grid both schedulers
    make the same jumps x_r = x_t + (r - t) u."""
    ours = genzoo.FlowMapEulerScheduler(shift=shift)
    theirs = diffusers.FlowMapEulerDiscreteScheduler(shift=shift)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    torch.testing.assert_close(1 - theirs.sigmas.float(), ours.times, atol=1e-6, rtol=0)
    gen = seeded(0)
    a = b = torch.randn(5, 2, generator=gen)
    for i, (t, s) in enumerate(zip(ours.timesteps, theirs.timesteps)):
        u = torch.randn(5, 2, generator=gen)
        torch.testing.assert_close(ours.r_timesteps[i] - t, (theirs.sigmas[i] - theirs.sigmas[i + 1]).float() * 1000)
        a = ours.step(u, t, a).prev_sample
        b = theirs.step(-u, s, b).prev_sample
        torch.testing.assert_close(a, b.float(), atol=1e-5, rtol=0)


def test_without_r_a_flow_map_step_is_the_euler_step_and_with_r_it_jumps_there():
    euler, flow_map = genzoo.FlowMatchEulerScheduler(), genzoo.FlowMapEulerScheduler()
    for s in (euler, flow_map):
        s.set_timesteps(4)
    x, u = torch.randn(3, 2, generator=seeded(1)), torch.randn(3, 2, generator=seeded(2))
    for t in flow_map.timesteps:
        torch.testing.assert_close(flow_map.step(u, t, x).prev_sample, euler.step(u, t, x).prev_sample, atol=0, rtol=0)
    jump = flow_map.step(u, 0.0, x, r_timestep=1000.0)
    torch.testing.assert_close(jump.prev_sample, x + u) and torch.testing.assert_close(jump.pred_original_sample, x + u)
    half = flow_map.step(u, 250.0, x, r_timestep=750.0, return_dict=False)
    torch.testing.assert_close(half[0], x + 0.5 * u)
    torch.testing.assert_close(half[1], x + 0.75 * u)  # the data estimate: as if u held to t = 1
    # a model of the data x_1 jumps along its velocity (x_1 - x_t) / (1 - t): one jump from t = 0 lands on it
    x1 = torch.randn(3, 2, generator=seeded(4))
    sample_model = genzoo.FlowMapEulerScheduler(prediction_type="sample")
    torch.testing.assert_close(sample_model.step(x1, 0.0, x, r_timestep=1000.0).prev_sample, x1)
    torch.testing.assert_close(sample_model.step(x1, 0.0, x, r_timestep=500.0).prev_sample, (x + x1) / 2)


def test_flow_map_scheduler_refusals():
    scheduler = genzoo.FlowMapEulerScheduler()
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"r_timestep 250 is before timestep 500"):
        scheduler.step(x, 500.0, x, r_timestep=250.0)
    with pytest.raises(ValueError, match=r"timestep must be a finite number in \[0, 1000\].*1500"):
        scheduler.step(x, 0.0, x, r_timestep=1500.0)
    config = genzoo.FlowMapEulerScheduler(shift=2.0).config
    assert genzoo.FlowMapEulerScheduler.from_config(config).config == config


# ------------------------------------------------------------------------------------------------ the pipeline
@pytest.mark.parametrize("data", ["vector", "image"])
def test_flow_map_pipeline_jumps_feed_the_model_its_interval(data):
    pipe = tiny_pipeline("flow-map", data)
    assert takes_time_interval(pipe.unet) and pipe.default_num_inference_steps == 1
    shape = (3, 2) if data == "vector" else (3, 1, 8, 8)
    noise = torch.randn(shape, generator=seeded(3))
    with torch.no_grad():
        one = noise + pipe.unet(noise, 0.0, class_labels=torch.tensor([1000.0])).sample
        x = noise
        for k in range(2):
            x = x + 0.5 * pipe.unet(x, 500.0 * k, class_labels=torch.tensor([500.0])).sample
    got = pipe(batch_size=3, latents=noise, output_type="latent")
    torch.testing.assert_close(getattr(got, "images", None) if data == "image" else got.samples, one)
    got = pipe(batch_size=3, latents=noise, num_inference_steps=2, output_type="latent")
    torch.testing.assert_close(getattr(got, "images", None) if data == "image" else got.samples, x)


def test_flow_map_pipeline_refuses_solvers_that_cannot_feed_the_second_time():
    pipe = tiny_pipeline("flow-map", "vector")
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler cannot sample FlowMapPipeline.*FlowMapEuler"):
        pipe(batch_size=1, output_type="np")
    pipe.scheduler = genzoo.FlowMatchHeunScheduler()
    with pytest.raises(ValueError, match="has no r_timesteps to give it: use genzoo.FlowMapEulerScheduler"):
        pipe(batch_size=1, output_type="np")


def test_mlp_denoiser_second_time_checks():
    with pytest.raises(ValueError, match="cannot be combined with `num_class_embeds`"):
        MLPDenoiser(class_embed_type="timestep", num_class_embeds=3)
    with pytest.raises(ValueError, match="`class_embed_type` must be None or 'timestep', got 'identity'"):
        MLPDenoiser(class_embed_type="identity")
    with pytest.raises(ValueError, match="takes a second time"):
        MLPDenoiser(class_embed_type="timestep")(torch.zeros(2, 2), 0.0)


# ------------------------------------------------------------------------------------------------ the loss
class Polynomial(nn.Module):
    """``u(x, t, r) = x * (t + 2 (r - t))^2`` (times in flow units), a map whose derivative along the path is known
    in closed form: ``d/dt u = v * (2r - t)^2 - 2 x (2r - t)`` for the tangent ``(dx/dt, dt/dt, dr/dt) = (v, 1, 0)``."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, timestep, class_labels=None):
        s = (timestep + 2 * class_labels).reshape(-1, 1)
        return UNet2DOutput(sample=x * s**2 + 0 * self.dummy)


@pytest.mark.parametrize("flow_ratio", [0.0, 0.5])
def test_the_meanflow_target_is_the_identity_computed_in_closed_form(flow_ratio):
    """Replaying the method's draws (noise, two times, which examples get r = t), the loss's regression error is
    exactly that against ``v + (r - t) du/dt`` with the derivative in closed form: the identity's sign, the interval
    convention (the model's second time is r - t) and the time units are pinned."""
    data = SimpleNamespace(kind="vector", sample_shape=(2,), name="points", id2label=None)
    method = MeanFlowMethod(MeanFlowConfig(flow_ratio=flow_ratio, adaptive_p=0.0), data)
    assert method.training_scheduler.time_scale == 1.0  # the model is fed flow time: d/dt of a 1000 t embedding is huge
    x1 = torch.randn(64, 2, generator=seeded(5))
    gen = seeded(0)
    _, terms = method.loss("model", {"unet": Polynomial()}, {"sample": x1}, 0, gen)
    replay = seeded(0)
    x0 = torch.randn(64, 2, generator=replay)
    a, b = torch.rand(64, generator=replay), torch.rand(64, generator=replay)
    same = torch.rand(64, generator=replay) < flow_ratio
    t, r = torch.minimum(a, b), torch.where(same, torch.minimum(a, b), torch.maximum(a, b))
    assert 0 < int(same.sum()) < 64 if flow_ratio else not same.any()
    t_, r_ = t[:, None], r[:, None]
    xt, v = (1 - t_) * x0 + t_ * x1, x1 - x0
    u = xt * (2 * r_ - t_) ** 2
    target = v + (r_ - t_) * (v * (2 * r_ - t_) ** 2 - 2 * xt * (2 * r_ - t_))
    expected = (u - target).pow(2).mean(dim=1).mean()
    torch.testing.assert_close(terms["mse"], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(gen.get_state(), replay.get_state())  # and it drew nothing else


def test_meanflow_draws_a_fraction_of_r_equal_t_and_its_gradient_reaches_the_model():
    method, models, batch = build("meanflow", "moons", flow_ratio=1.0)
    loss, terms = method.loss("model", models, batch, 0, seeded(0))
    loss.backward()
    assert all(p.grad is not None for p in models["unet"].parameters())
    assert set(terms) == {"loss", "mse"} and torch.isfinite(loss)


def test_meanflow_options_and_refusals():
    with pytest.raises(RecipeError, match=r"--flow_ratio.*1\.5"):
        MeanFlowConfig(flow_ratio=1.5)
    method, models, _ = build("meanflow", "digits")
    assert models["unet"].config.class_embed_type == "timestep" and not models["unet"].config.add_attention
    with pytest.raises(ValueError, match="--attention true cannot train with --method meanflow.*--attention false"):
        build("meanflow", "digits", attention=True)
    with pytest.raises(ValueError, match="--conditioning 'class' is not supported by method 'meanflow'"):
        build("meanflow", "digits", conditioning="class")


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.slow
def test_meanflow_trains_to_a_pipeline_that_samples_in_one_call_by_default(tmp_path):
    run_training("meanflow", "moons", tmp_path, "--coupling", "ot")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["coupling"] == "ot" and metrics["flow_ratio"] == 0.75
    pipe = genzoo.load_pipeline(tmp_path)
    assert type(pipe) is genzoo.FlowMapPipeline and type(pipe.scheduler) is genzoo.FlowMapEulerScheduler
    pipe.set_progress_bar_config(disable=True)
    calls = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    out = pipe(batch_size=4, generator=seeded(0), output_type="np").samples
    assert len(calls) == 1 and out.shape == (4, 2) and np.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_train_meanflow(two_process_runs):
    """accelerate launch, 2 CPU processes (gloo): the JVP inside the distributed-wrapped loss runs, beside the GAN
    loss's discriminator."""
    out = two_process_runs.check("meanflow")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["global_step"] == 3 and metrics["gan_weight"] == 0.1
    assert {"loss_d", "loss_g", "mse"} <= set(metrics["final_losses"])
    assert all(np.isfinite(v) for v in metrics["final_losses"].values())
    assert genzoo.load_pipeline(out)(batch_size=4, output_type="np").samples.shape == (4, 2)
