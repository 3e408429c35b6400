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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "saver,loader", [(genzoo, diffusers), (diffusers, genzoo)], ids=["genzoo->diffusers", "diffusers->genzoo"]
)
def test_save_in_one_library_load_in_the_other_then_step_identically(tmp_path, saver, loader):
    """The config file is Diffusers': either library loads what the other saved, and the loaded scheduler steps
    exactly like the one that was saved. (Saving and loading within genzoo is part of the scheduler contract.)"""
    options = dict(beta_schedule="sigmoid", variance_type="learned_range", steps_offset=1, prediction_type="sample")
    saved = saver.DDPMScheduler(**options)
    saved.save_pretrained(tmp_path)
    loaded = loader.DDPMScheduler.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if k in options} == options
    torch.testing.assert_close(loaded.alphas_cumprod, saved.alphas_cumprod, atol=0, rtol=0)
    x_saved, x0_saved = run_loop(saved, 7, "learned_range")
    x_loaded, x0_loaded = run_loop(loaded, 7, "learned_range")
    torch.testing.assert_close(x_loaded, x_saved, atol=1e-5, rtol=0)
    torch.testing.assert_close(x0_loaded, x0_saved, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ stepping without set_timesteps
def run_chain(scheduler, variance_type, timesteps, shape=(2, 3, 4, 4)):
    """A sampling loop over ``timesteps`` with no set_timesteps call."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=torch.Generator().manual_seed(123))
    for t in timesteps:
        sample = scheduler.step(fake_model(sample, t, variance_type), t, sample, generator=generator).prev_sample
    return sample


@pytest.mark.parametrize(
    "options",
    [dict(), dict(prediction_type="v_prediction", variance_type="fixed_large", beta_schedule="squaredcos_cap_v2")],
    ids=["defaults", "v_prediction,fixed_large,cosine"],
)
def test_full_chain_without_set_timesteps_matches_diffusers(options):
    """Right after construction both schedulers hold the whole chain T-1, ..., 0 and step t -> t - 1: the full
    1000-step loop over Python ints (as Diffusers' own test runs it) gives the same sample."""
    ours, theirs = genzoo.DDPMScheduler(**options), diffusers.DDPMScheduler(**options)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert ours.timesteps.tolist() == list(range(999, -1, -1))
    variance_type = options.get("variance_type", "fixed_small")
    ints = range(len(ours) - 1, -1, -1)
    x_ours, x_theirs = run_chain(ours, variance_type, ints), run_chain(theirs, variance_type, ints)
    assert torch.isfinite(x_ours).all()
    torch.testing.assert_close(x_ours, x_theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variance_type", VARIANCE_TYPES)
def test_short_chain_without_set_timesteps_matches_diffusers(variance_type):
    """Every variance type on a whole (short) training chain, without set_timesteps."""
    options = dict(num_train_timesteps=60, beta_end=0.2, variance_type=variance_type)
    reference = dict(options, variance_type="fixed_large") if variance_type == "fixed_large_log" else options
    ours, theirs = genzoo.DDPMScheduler(**options), diffusers.DDPMScheduler(**reference)
    torch.testing.assert_close(
        run_chain(ours, variance_type, ours.timesteps), run_chain(theirs, variance_type, theirs.timesteps),
        atol=1e-5, rtol=0,
    )


@pytest.mark.parametrize("t", [0, 1, 500, 998, 999])
def test_single_steps_without_set_timesteps_match_diffusers(t):
    ours, theirs = genzoo.DDPMScheduler(), diffusers.DDPMScheduler()
    assert int(ours.previous_timestep(t)) == int(theirs.previous_timestep(t)) == t - 1
    sample = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(t))
    outputs = [
        s.step(fake_model(sample, t, "fixed_small"), t, sample, generator=torch.Generator().manual_seed(1))
        for s in (ours, theirs)
    ]
    torch.testing.assert_close(outputs[0].prev_sample, outputs[1].prev_sample, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs[0].pred_original_sample, outputs[1].pred_original_sample, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ timesteps off the grid
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_on_grid_previous_timestep_is_diffusers(spacing):
    for steps in (1, 7, 50):
        ours, theirs = genzoo.DDPMScheduler(timestep_spacing=spacing), diffusers.DDPMScheduler(timestep_spacing=spacing)
        ours.set_timesteps(steps)
        theirs.set_timesteps(steps)
        for t in ours.timesteps:
            assert int(ours.previous_timestep(t)) == int(theirs.previous_timestep(t)), (steps, int(t))


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_off_grid_timestep_uses_the_documented_rule(spacing):
    """Off the grid of set_timesteps(n), a timestep t steps to t - T // n (the end, alpha_bar = 1, below 0).
    Diffusers' reference: its own scheduler on the custom grid [t, t - T // n] (or [t] at the end)."""
    n, T = 7, 1000
    ours = genzoo.DDPMScheduler(timestep_spacing=spacing)
    ours.set_timesteps(n)
    grid = set(ours.timesteps.tolist())
    for t in (998, 613, 500, 140, 100, 3):
        if t in grid:
            continue
        expected = t - T // n
        assert int(ours.previous_timestep(t)) == max(expected, -1)
        reference = diffusers.DDPMScheduler(timestep_spacing=spacing)
        reference.set_timesteps(timesteps=[t, expected] if expected >= 0 else [t])
        sample = torch.randn(2, 3, generator=torch.Generator().manual_seed(t))
        ours_out, ref_out = (
            s.step(fake_model(sample, t, "fixed_small"), t, sample, generator=torch.Generator().manual_seed(2))
            for s in (ours, reference)
        )
        torch.testing.assert_close(ours_out.prev_sample, ref_out.prev_sample, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours_out.pred_original_sample, ref_out.pred_original_sample, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ _get_variance
def test_get_variance_is_always_the_variance():
    """genzoo's _get_variance is the variance sigma_t^2 for every variance_type. Diffusers' agrees for
    fixed_small, fixed_large and learned, and returns the standard deviation for fixed_small_log and the
    log-variance for fixed_large_log and learned_range."""
    ours, theirs = genzoo.DDPMScheduler(), diffusers.DDPMScheduler()
    predicted = torch.tensor([[-0.8, 0.0, 0.5]])
    as_variance = {  # Diffusers' return value -> the variance
        "fixed_small": lambda v: v,
        "fixed_large": lambda v: v,
        "learned": lambda v: v,
        "fixed_small_log": lambda v: v**2,
        "fixed_large_log": torch.exp,
        "learned_range": torch.exp,
    }
    for steps in (None, 10):
        if steps is not None:
            ours.set_timesteps(steps)
            theirs.set_timesteps(steps)
        for t in (ours.timesteps[0], ours.timesteps[len(ours.timesteps) // 2], ours.timesteps[-1]):
            for variance_type, convert in as_variance.items():
                pv = predicted.abs() * 1e-3 if variance_type == "learned" else predicted
                got = ours._get_variance(t, predicted_variance=pv, variance_type=variance_type)
                expected = convert(theirs._get_variance(t, predicted_variance=pv, variance_type=variance_type))
                torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-5, msg=f"{variance_type} {steps} {t}")
    # The configured variance_type is the default; Diffusers' own test values at t = 0 and t = T - 1.
    chain = genzoo.DDPMScheduler()
    assert float(chain._get_variance(0)) == pytest.approx(0.0, abs=1e-12)
    beta_last = float(chain.betas[-1])
    alpha_bar = chain.alphas_cumprod
    posterior_last = (1 - alpha_bar[-2]) / (1 - alpha_bar[-1]) * beta_last
    assert float(chain._get_variance(999)) == pytest.approx(float(posterior_last), rel=1e-6)
    assert float(chain._get_variance(999, variance_type="fixed_large")) == pytest.approx(beta_last, rel=1e-6)


@pytest.mark.parametrize("variance_type", VARIANCE_TYPES)
def test_step_adds_sqrt_of_get_variance_times_the_noise(variance_type):
    """What _get_variance means is what step uses: two steps differing only in the generator's seed differ by
    sqrt(_get_variance(t)) * (noise_1 - noise_2)."""
    scheduler = genzoo.DDPMScheduler(variance_type=variance_type)
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[3]
    sample = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    model_output = fake_model(sample, t, variance_type)
    a = scheduler.step(model_output, t, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    b = scheduler.step(model_output, t, sample, generator=torch.Generator().manual_seed(2)).prev_sample
    noise_a = torch.randn(sample.shape, generator=torch.Generator().manual_seed(1))
    noise_b = torch.randn(sample.shape, generator=torch.Generator().manual_seed(2))
    predicted = model_output[:, sample.shape[1] :] if variance_type.startswith("learned") else None
    variance = scheduler._get_variance(t, predicted_variance=predicted)
    torch.testing.assert_close(a - b, variance**0.5 * (noise_a - noise_b), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------ deliberate differences
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(rescale_betas_zero_snr=True), r"rescale_betas_zero_snr=True.*'epsilon'.*'v_prediction'.*'sample'"),
        (dict(variance_type="other"), r"variance_type='other'; allowed: 'fixed_small'.*'learned_range'"),
        (dict(trained_betas=[0.1, 0.3]), r"trained_betas.*num_train_timesteps=1000.*\(2,\)"),
    ],
    ids=["zero_snr_epsilon", "unknown_variance_type", "trained_betas_length"],
)
def test_deliberate_refusals_that_diffusers_accepts(kwargs, message):
    """docs/schedulers.md lists these differences; if Diffusers starts refusing them too, update it."""
    diffusers.DDPMScheduler(**kwargs)  # accepted upstream
    with pytest.raises(ValueError, match=message):
        genzoo.DDPMScheduler(**kwargs)


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
        (dict(num_inference_steps=1001), r"num_inference_steps must be at most num_train_timesteps=1000, got 1001"),
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
    """Timesteps step() has no rule for; the wrong number of channels for a learned variance. (A model output of the
    wrong shape, and set_timesteps with a bad value, are part of the scheduler contract.)"""
    scheduler = genzoo.DDPMScheduler()
    x = torch.randn(2, 3)
    for t in (-1, 1000):
        with pytest.raises(ValueError, match=rf"timestep {t} is outside the training chain \[0, 999\]"):
            scheduler.step(x, t, x)
    with pytest.raises(ValueError, match=r"integers, got timestep 500.5"):
        scheduler.step(x, 500.5, x)
    with pytest.raises(ValueError, match=r"one timestep.*\[3, 4\]"):
        scheduler.step(x, torch.tensor([3, 4]), x)
    scheduler.set_timesteps(timesteps=[900, 500, 100])
    with pytest.raises(ValueError, match=r"timestep 901 is not on the custom sampling grid.*\[900, 500, 100\]"):
        scheduler.step(x, 901, x)
    scheduler.set_timesteps(10)  # back to a regular grid: off-grid timesteps follow the documented rule
    assert int(scheduler.previous_timestep(901)) == 801
    learned = genzoo.DDPMScheduler(variance_type="learned_range")
    learned.set_timesteps(10)
    with pytest.raises(ValueError, match="twice the channels"):
        learned.step(x, 900, x)
    with pytest.raises(ValueError, match="variance_type='learned_range' needs the model's predicted_variance"):
        learned._get_variance(900)
    with pytest.raises(ValueError, match=r"variance_type='tiny'; allowed"):
        learned._get_variance(900, variance_type="tiny")
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 999\]"):
        scheduler.add_noise(x, x, torch.tensor([1000, 0]))
