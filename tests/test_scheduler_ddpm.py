"""genzoo.DDPMScheduler against diffusers.DDPMScheduler, option by option, step by step."""

import itertools
import json

import diffusers
import numpy as np
import pytest
import torch

import genzoo
from genzoo.schedulers.scheduling_ddpm import BETA_SCHEDULES, TIMESTEP_SPACINGS, VARIANCE_TYPES

PREDICTIONS = ("epsilon", "v_prediction", "sample")
STEP_COUNTS = (1, 13, 50)


def fake_model(sample, t, variance_type):
    """A deterministic stand-in for a trained network: a smooth function of (x_t, t).

    For learned variances it appends a second half of channels: a positive variance for ``learned``
    (Diffusers' convention) and an interpolation coefficient in (-1, 1) for ``learned_range``.
    """
    out = torch.tanh(0.7 * sample + 0.002 * float(t) - 0.3)
    if variance_type == "learned":
        return torch.cat([out, 1e-4 + 0.01 * torch.sigmoid(sample)], dim=1)
    if variance_type == "learned_range":
        return torch.cat([out, torch.tanh(sample - 0.1)], dim=1)
    return out


def run_loop(scheduler, num_inference_steps, variance_type, seed=0, shape=(3, 2, 4, 4)):
    scheduler.set_timesteps(num_inference_steps)
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(shape, generator=torch.Generator().manual_seed(123))
    originals = []
    for t in scheduler.timesteps:
        out = scheduler.step(fake_model(sample, t, variance_type), t, sample, generator=generator)
        sample = out.prev_sample
        originals.append(out.pred_original_sample)
    return sample, torch.stack(originals)


@pytest.mark.parametrize(
    "beta_schedule,variance_type,prediction_type", list(itertools.product(BETA_SCHEDULES, VARIANCE_TYPES, PREDICTIONS))
)
def test_full_sampling_loop_matches_diffusers(beta_schedule, variance_type, prediction_type):
    """Every schedule x variance x prediction x spacing x step count: same samples as Diffusers within 1e-5.

    Diffusers' ``fixed_large_log`` returns NaN (it takes the square root of log(beta)); genzoo computes
    exp(0.5 * log beta), which is exactly Diffusers' ``fixed_large``, so that is the reference there.
    """
    reference_variance = "fixed_large" if variance_type == "fixed_large_log" else variance_type
    for spacing, steps in itertools.product(TIMESTEP_SPACINGS, STEP_COUNTS):
        kwargs = dict(beta_schedule=beta_schedule, prediction_type=prediction_type, timestep_spacing=spacing)
        ours = genzoo.DDPMScheduler(variance_type=variance_type, **kwargs)
        theirs = diffusers.DDPMScheduler(variance_type=reference_variance, **kwargs)
        ours.set_timesteps(steps)
        theirs.set_timesteps(steps)
        assert torch.equal(ours.timesteps, theirs.timesteps), (spacing, steps)
        x_ours, x0_ours = run_loop(ours, steps, variance_type)
        x_theirs, x0_theirs = run_loop(theirs, steps, variance_type)
        assert torch.isfinite(x_ours).all()
        torch.testing.assert_close(x_ours, x_theirs, atol=1e-5, rtol=0, msg=f"{spacing=} {steps=}")
        torch.testing.assert_close(x0_ours, x0_theirs, atol=1e-5, rtol=0, msg=f"{spacing=} {steps=}")


@pytest.mark.parametrize(
    "options",
    [
        dict(clip_sample=False),
        dict(clip_sample=True, clip_sample_range=2.5),
        dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
        dict(steps_offset=1),
        dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
        dict(rescale_betas_zero_snr=True, prediction_type="sample", timestep_spacing="trailing"),
        dict(trained_betas=np.linspace(1e-4, 0.03, 1000).tolist()),
        dict(num_train_timesteps=100, beta_end=0.2, timestep_spacing="linspace"),
    ],
    ids=lambda o: ",".join(f"{k}={v}" if k != "trained_betas" else k for k, v in o.items()),
)
def test_other_options_match_diffusers(options):
    for steps in (1, 10, 25):
        x_ours, x0_ours = run_loop(genzoo.DDPMScheduler(**options), steps, "fixed_small")
        x_theirs, x0_theirs = run_loop(diffusers.DDPMScheduler(**options), steps, "fixed_small")
        torch.testing.assert_close(x_ours, x_theirs, atol=1e-5, rtol=0)
        torch.testing.assert_close(x0_ours, x0_theirs, atol=1e-5, rtol=0)


def test_custom_timesteps_match_diffusers():
    custom = [999, 700, 420, 100, 37, 5, 0]
    ours, theirs = genzoo.DDPMScheduler(), diffusers.DDPMScheduler()
    ours.set_timesteps(timesteps=custom)
    theirs.set_timesteps(timesteps=custom)
    assert ours.timesteps.tolist() == custom
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x1 = x2 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    for t in custom:
        x1 = ours.step(fake_model(x1, t, "fixed_small"), t, x1, generator=g1).prev_sample
        x2 = theirs.step(fake_model(x2, t, "fixed_small"), t, x2, generator=g2).prev_sample
    torch.testing.assert_close(x1, x2, atol=1e-5, rtol=0)


def test_fixed_large_log_is_finite_where_diffusers_returns_nan():
    """The documented difference: Diffusers' fixed_large_log yields NaN samples, genzoo's is sqrt(beta_t)."""
    x_ours, _ = run_loop(genzoo.DDPMScheduler(variance_type="fixed_large_log"), 10, "fixed_large_log")
    x_theirs, _ = run_loop(diffusers.DDPMScheduler(variance_type="fixed_large_log"), 10, "fixed_large_log")
    x_large, _ = run_loop(diffusers.DDPMScheduler(variance_type="fixed_large"), 10, "fixed_large")
    assert torch.isfinite(x_ours).all()
    torch.testing.assert_close(x_ours, x_large, atol=1e-5, rtol=0)
    # If this ever fails, Diffusers has fixed the bug upstream: update docs/schedulers.md.
    assert torch.isnan(x_theirs).any()


def test_training_side_matches_diffusers_and_closed_form():
    ours, theirs = genzoo.DDPMScheduler(beta_schedule="squaredcos_cap_v2"), diffusers.DDPMScheduler(
        beta_schedule="squaredcos_cap_v2"
    )
    x0 = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 500, 998, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.get_velocity(x0, noise, t), theirs.get_velocity(x0, noise, t), atol=1e-6, rtol=0)
    a = ours.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(ours.add_noise(x0, noise, t), a.sqrt() * x0 + (1 - a).sqrt() * noise)
    assert torch.equal(ours.training_target(x0, noise, t), noise)
    assert torch.equal(genzoo.DDPMScheduler(prediction_type="sample").training_target(x0, noise, t), x0)
    v = genzoo.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").training_target(
        x0, noise, t
    )
    torch.testing.assert_close(v, theirs.get_velocity(x0, noise, t), atol=1e-6, rtol=0)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_exact_prediction_recovers_x0(prediction_type):
    """Feeding step() the true target gives back the true x_0 (the conversions are inverses)."""
    scheduler = genzoo.DDPMScheduler(prediction_type=prediction_type, clip_sample=False)
    scheduler.set_timesteps(20)
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    for t in scheduler.timesteps[:-1]:
        tt = t.repeat(4)
        x_t = scheduler.add_noise(x0, noise, tt)
        out = scheduler.step(scheduler.training_target(x0, noise, tt), t, x_t, generator=torch.Generator())
        torch.testing.assert_close(out.pred_original_sample, x0, atol=2e-4, rtol=1e-4)


def test_sample_timesteps_seeded_and_in_range():
    scheduler = genzoo.DDPMScheduler(num_train_timesteps=50)
    a = scheduler.sample_timesteps(1000, generator=torch.Generator().manual_seed(3))
    b = scheduler.sample_timesteps(1000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (1000,)
    assert a.min() == 0 and a.max() == 49
    assert not torch.equal(a, scheduler.sample_timesteps(1000, generator=torch.Generator().manual_seed(4)))


def test_interface_basics():
    scheduler = genzoo.DDPMScheduler(num_train_timesteps=200)
    assert len(scheduler) == 200 and scheduler.order == 1 and scheduler.init_noise_sigma == 1.0
    x = torch.randn(2, 3)
    assert scheduler.scale_model_input(x, 5) is x
    scheduler.set_timesteps(4)
    out = scheduler.step(torch.zeros(2, 3), scheduler.timesteps[0], x, generator=torch.Generator(), return_dict=False)
    assert isinstance(out, tuple) and len(out) == 2


def test_ddim_and_dpm_solver_from_genzoo_config():
    """Diffusers' other schedulers build from a genzoo DDPM config, and DDIM then matches the same DDIM built
    from a Diffusers DDPM config."""
    kwargs = dict(beta_schedule="scaled_linear", prediction_type="v_prediction", timestep_spacing="trailing")
    ddim_ours = diffusers.DDIMScheduler.from_config(genzoo.DDPMScheduler(**kwargs).config)
    ddim_ref = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler(**kwargs).config)
    results = []
    for ddim in (ddim_ours, ddim_ref):
        ddim.set_timesteps(20)
        x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        for t in ddim.timesteps:
            x = ddim.step(fake_model(x, t, "fixed_small"), t, x).prev_sample
        results.append(x)
    assert torch.isfinite(results[0]).all()
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)

    dpm = diffusers.DPMSolverMultistepScheduler.from_config(genzoo.DDPMScheduler().config)
    dpm.set_timesteps(15)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    for t in dpm.timesteps:
        x = dpm.step(fake_model(x, t, "fixed_small"), t, x).prev_sample
    assert torch.isfinite(x).all() and len(dpm.timesteps) == 15


def test_save_load_round_trip(tmp_path):
    scheduler = genzoo.DDPMScheduler(beta_schedule="sigmoid", variance_type="learned_range", steps_offset=1)
    scheduler.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "DDPMScheduler" and saved["beta_schedule"] == "sigmoid"
    loaded = genzoo.DDPMScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(scheduler.config)
    assert torch.equal(loaded.alphas_cumprod, scheduler.alphas_cumprod)


def test_unknown_config_key_warns_and_loads(tmp_path, diffusers_logs):
    genzoo.DDPMScheduler().save_pretrained(tmp_path)
    path = tmp_path / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["made_up_option"] = 3
    path.write_text(json.dumps(config))
    loaded = genzoo.DDPMScheduler.from_pretrained(tmp_path)
    assert loaded.config.num_train_timesteps == 1000
    assert "made_up_option" in diffusers_logs.text


def test_malformed_config_names_the_file(tmp_path):
    (tmp_path / "scheduler_config.json").write_text("{not json")
    with pytest.raises(EnvironmentError, match="scheduler_config.json.*not a valid JSON"):
        genzoo.DDPMScheduler.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(beta_schedule="cosine"), r"beta_schedule='cosine'.*'linear'.*'squaredcos_cap_v2'"),
        (dict(variance_type="small"), r"variance_type='small'.*'fixed_small'.*'learned_range'"),
        (dict(prediction_type="velocity"), r"prediction_type='velocity'.*'epsilon'.*'v_prediction'"),
        (dict(timestep_spacing="uniform"), r"timestep_spacing='uniform'.*'leading'"),
        (dict(rescale_betas_zero_snr=True), r"rescale_betas_zero_snr.*v_prediction"),
        (dict(trained_betas=[0.1, 0.2]), r"trained_betas.*1000"),
    ],
)
def test_bad_config_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        genzoo.DDPMScheduler(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_inference_steps=0), r"num_inference_steps.*\[1, num_train_timesteps=1000\].*0"),
        (dict(num_inference_steps=1001), r"num_inference_steps.*1001"),
        (dict(num_inference_steps=2.5), r"num_inference_steps.*2.5"),
        (dict(timesteps=[10, 20, 5]), r"strictly decreasing.*\[10, 20, 5\]"),
        (dict(timesteps=[10, 10]), r"strictly decreasing"),
        (dict(timesteps=[1000, 5]), r"\[0, 999\]"),
        (dict(timesteps=[5, -1]), r"\[0, 999\]"),
        (dict(num_inference_steps=5, timesteps=[4, 3]), r"exactly one"),
        (dict(), r"exactly one"),
    ],
)
def test_bad_set_timesteps(kwargs, message):
    with pytest.raises(ValueError, match=message):
        genzoo.DDPMScheduler().set_timesteps(**kwargs)


def test_steps_offset_past_the_end_is_an_error():
    with pytest.raises(ValueError, match="steps_offset=1"):
        genzoo.DDPMScheduler(steps_offset=1).set_timesteps(1000)


def test_bad_step_calls():
    scheduler = genzoo.DDPMScheduler()
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 999, x)
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"shape \(2, 4\).*\(2, 3\)"):
        scheduler.step(torch.randn(2, 4), 900, x)
    with pytest.raises(ValueError, match="timestep 901 is not on the sampling grid"):
        scheduler.step(x, 901, x)
    learned = genzoo.DDPMScheduler(variance_type="learned_range")
    learned.set_timesteps(10)
    with pytest.raises(ValueError, match="twice the channels"):
        learned.step(x, 900, x)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 999\]"):
        scheduler.add_noise(x, x, torch.tensor([1000, 0]))
