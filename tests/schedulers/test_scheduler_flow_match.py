"""genzoo's flow-matching schedulers: exactness, convergence order, Diffusers interchange, and the known traps."""

import math

import diffusers
import numpy as np
import pytest
import torch

import genzoo
from genzoo.schedulers import DiffusersFlowMatchAdapter, shift_time


def sample_ode(scheduler, velocity, x, steps):
    """The loop every flow pipeline runs: one model call per entry of scheduler.timesteps."""
    scheduler.set_timesteps(steps)
    calls = 0
    for timestep in scheduler.timesteps:
        x = scheduler.step(velocity(x, timestep), timestep, x).prev_sample
        calls += 1
    return x, calls


def point_velocity(target, scheduler):
    """Exact velocity field of a data distribution that is a single point: v(x, t) = (x1 - x) / (1 - t)."""

    def v(x, timestep):
        t = float(timestep) / scheduler.time_scale
        return (target - x) / (1 - t)

    return v


def gaussian_velocity(mean, std, scheduler):
    """Exact velocity field when the data is N(mean, std^2 I) and the noise N(0, I).

    x_t = t*mean + s_t * x_0 with s_t^2 = t^2 std^2 + (1 - t)^2, so v(x, t) = mean + s_t'/s_t * (x - t*mean)
    and the exact endpoint of the flow from x_0 is mean + std * x_0.
    """

    def v(x, timestep):
        t = float(timestep) / scheduler.time_scale
        var = t**2 * std**2 + (1 - t) ** 2
        return mean + (t * std**2 - (1 - t)) / var * (x - t * mean)

    return v


@pytest.mark.parametrize("cls", [genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler])
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_single_point_lands_exactly(cls, steps, shift):
    scheduler = cls(shift=shift)
    target = torch.tensor([[1.5, -2.0, 0.25]])
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    x1, _ = sample_ode(scheduler, point_velocity(target, scheduler), x0, steps)
    torch.testing.assert_close(x1, target.expand(4, 3), atol=1e-6, rtol=0)


def convergence_order(cls, steps=(8, 16, 32, 64)):
    scheduler = cls(scale_timesteps=False)
    mean, std = 2.0, 0.3
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = mean + std * x0
    errors = []
    for n in steps:
        x1, _ = sample_ode(scheduler, gaussian_velocity(mean, std, scheduler), x0, n)
        errors.append((x1 - exact).abs().max().item())
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    return errors, slopes


def test_euler_is_first_order():
    errors, slopes = convergence_order(genzoo.FlowMatchEulerScheduler)
    assert all(0.85 < s < 1.15 for s in slopes), (errors, slopes)


def test_heun_is_second_order():
    errors, slopes = convergence_order(genzoo.FlowMatchHeunScheduler)
    assert all(1.8 < s < 2.2 for s in slopes), (errors, slopes)


def test_heun_calls_and_layout():
    scheduler = genzoo.FlowMatchHeunScheduler(scale_timesteps=False)
    _, calls = sample_ode(scheduler, lambda x, t: torch.zeros_like(x), torch.zeros(1, 2), 5)
    assert calls == 2 * 5 - 1 and scheduler.order == 2
    t = scheduler.times.tolist()
    expected = [t[0]] + [v for v in t[1:-1] for _ in range(2)]
    assert scheduler.timesteps.tolist() == pytest.approx(expected)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_sampling_through_diffusers_scheduler_matches(shift, steps):
    """One genzoo-convention model, sampled by genzoo's Euler and by Diffusers' FlowMatchEulerDiscreteScheduler
    through the documented adapter: the same samples within 1e-5."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))

    def model(x, timestep):  # a velocity model fed genzoo's time input (t * 1000)
        t = torch.as_tensor(timestep, dtype=x.dtype).expand(x.shape[0], 1) / 1000
        return net(torch.cat([x, t], dim=1))

    ours = genzoo.FlowMatchEulerScheduler(shift=shift)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x_ours, _ = sample_ode(ours, model, x0, steps)
        adapter = DiffusersFlowMatchAdapter(ours)
        theirs = adapter.make_diffusers_scheduler(steps)
        diffusers_model = adapter.wrap_genzoo_model(model)
        x = x0
        for timestep in theirs.timesteps:
            x = theirs.step(diffusers_model(x, timestep), timestep, x).prev_sample
    torch.testing.assert_close(x, x_ours, atol=1e-5, rtol=0)
    # ...and the reverse wrap gets the genzoo model back.
    back = adapter.wrap_diffusers_model(diffusers_model)
    torch.testing.assert_close(back(x0, torch.tensor(250.0)), model(x0, torch.tensor(250.0)), atol=1e-5, rtol=0)


def test_trap_shift_is_applied_once():
    """Diffusers shifts its sigma range in __init__ and then again in set_timesteps; genzoo shifts the uniform
    grid once: t_k = shift_time(k / N)."""
    ours = genzoo.FlowMatchEulerScheduler(shift=3.0)
    ours.set_timesteps(4)
    once = [k / 4 / (k / 4 + 3.0 * (1 - k / 4)) for k in range(5)]
    assert ours.times.tolist() == pytest.approx(once, abs=1e-7)
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    theirs.set_timesteps(4)
    assert not np.allclose((1 - theirs.sigmas).numpy(), once, atol=1e-3)  # the double shift, upstream


def test_trap_float_timesteps_are_not_matched_with_equality():
    """A timestep that went through half precision (or any rounding) still finds its place on the grid."""
    scheduler = genzoo.FlowMatchEulerScheduler(shift=3.0)
    scheduler.set_timesteps(10)
    x = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    v = torch.ones_like(x)
    rounded = scheduler.timesteps[2].half()
    assert float(rounded) != float(scheduler.timesteps[2])
    reference = genzoo.FlowMatchEulerScheduler(shift=3.0)
    reference.set_timesteps(10)
    reference._step_index = 2
    torch.testing.assert_close(
        scheduler.step(v, rounded, x).prev_sample, reference.step(v, reference.timesteps[2], x).prev_sample
    )
    assert scheduler.step_index == 3


def test_trap_custom_timesteps_are_used_as_given():
    scheduler = genzoo.FlowMatchEulerScheduler(shift=3.0)  # the shift must not touch custom times
    scheduler.set_timesteps(timesteps=[0.0, 0.1, 0.5])
    assert scheduler.times.tolist() == pytest.approx([0.0, 0.1, 0.5, 1.0])
    assert scheduler.timesteps.tolist() == pytest.approx([0.0, 100.0, 500.0])
    assert scheduler.num_inference_steps == 3
    scheduler.set_timesteps(timesteps=[0.2, 1.0])  # an explicit terminal 1.0 is not appended twice
    assert scheduler.times.tolist() == pytest.approx([0.2, 1.0])
    heun = genzoo.FlowMatchHeunScheduler(scale_timesteps=False)
    heun.set_timesteps(timesteps=[0.0, 0.3])
    assert heun.timesteps.tolist() == pytest.approx([0.0, 0.3, 0.3])


def test_time_input_units():
    scaled, unit = genzoo.FlowMatchEulerScheduler(), genzoo.FlowMatchEulerScheduler(scale_timesteps=False)
    scaled.set_timesteps(4)
    unit.set_timesteps(4)
    assert scaled.timesteps.tolist() == [0.0, 250.0, 500.0, 750.0]
    assert unit.timesteps.tolist() == [0.0, 0.25, 0.5, 0.75]


def test_training_side():
    scheduler = genzoo.FlowMatchEulerScheduler()
    data = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 250.0, 1000.0])
    x_t = scheduler.add_noise(data, noise, t)
    torch.testing.assert_close(x_t[0], noise[0])
    torch.testing.assert_close(x_t[1], 0.75 * noise[1] + 0.25 * data[1])
    torch.testing.assert_close(x_t[2], data[2])
    torch.testing.assert_close(scheduler.training_target(data, noise, t), data - noise)
    sample_pred = genzoo.FlowMatchEulerScheduler(prediction_type="sample")
    torch.testing.assert_close(sample_pred.training_target(data, noise, t), data)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 1000\]"):
        scheduler.add_noise(data, noise, torch.tensor([0.0, 1500.0, 3.0]))


def test_sample_timesteps_distributions():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    uniform = genzoo.FlowMatchEulerScheduler(scale_timesteps=False)
    t = uniform.sample_timesteps(20000, generator=g())
    assert torch.equal(t, uniform.sample_timesteps(20000, generator=g()))
    assert t.shape == (20000,) and t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
    assert abs(t.mean().item() - 0.5) < 0.01
    logit = genzoo.FlowMatchEulerScheduler(scale_timesteps=False, time_sampling="logit_normal", logit_mean=1.0)
    t = logit.sample_timesteps(20000, generator=g())
    assert abs(torch.logit(t).mean().item() - 1.0) < 0.03 and abs(torch.logit(t).std().item() - 1.0) < 0.03
    shifted = genzoo.FlowMatchEulerScheduler(scale_timesteps=False, shift=3.0)
    torch.testing.assert_close(shifted.sample_timesteps(100, generator=g()), shift_time(uniform.sample_timesteps(100, generator=g()), 3.0))
    scaled = genzoo.FlowMatchEulerScheduler()
    torch.testing.assert_close(scaled.sample_timesteps(100, generator=g()), 1000 * uniform.sample_timesteps(100, generator=g()))


def test_sample_prediction_follows_the_same_ode():
    """A model that predicts x_1 gives the same trajectory as the velocity model it implies."""
    scheduler_v = genzoo.FlowMatchHeunScheduler(scale_timesteps=False)
    scheduler_x = genzoo.FlowMatchHeunScheduler(scale_timesteps=False, prediction_type="sample")
    velocity = gaussian_velocity(1.0, 0.5, scheduler_v)

    def data_model(x, timestep):
        t = float(timestep)
        return x + (1 - t) * velocity(x, timestep)

    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, _ = sample_ode(scheduler_v, velocity, x0, 6)
    b, _ = sample_ode(scheduler_x, data_model, x0, 6)
    torch.testing.assert_close(a, b)


def test_step_outputs_and_dtype():
    scheduler = genzoo.FlowMatchEulerScheduler(scale_timesteps=False)
    scheduler.set_timesteps(2)
    x = torch.randn(2, 3).to(torch.bfloat16)
    v = torch.ones(2, 3, dtype=torch.bfloat16)
    out = scheduler.step(v, scheduler.timesteps[0], x)
    assert out.prev_sample.dtype == torch.bfloat16
    torch.testing.assert_close(out.prev_sample, (x.float() + 0.5).to(torch.bfloat16))
    torch.testing.assert_close(out.pred_original_sample, (x.float() + 1.0).to(torch.bfloat16))
    tup = scheduler.step(v, scheduler.timesteps[1], x, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    assert len(scheduler) == 1000 and scheduler.init_noise_sigma == 1.0 and scheduler.scale_model_input(x) is x


def test_a_second_run_restarts_cleanly():
    scheduler = genzoo.FlowMatchHeunScheduler()
    target = torch.tensor([[0.5, 0.5]])
    x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    v = point_velocity(target, scheduler)
    first, _ = sample_ode(scheduler, v, x0, 4)
    x = x0  # same grid again without calling set_timesteps: the loop starts over at the first timestep
    for timestep in scheduler.timesteps:
        x = scheduler.step(v(x, timestep), timestep, x).prev_sample
    torch.testing.assert_close(x, first)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(time_sampling="beta"), r"time_sampling='beta'.*'uniform'.*'logit_normal'"),
        (dict(prediction_type="epsilon"), r"prediction_type='epsilon'.*'velocity'"),
        (dict(shift=0.0), r"shift must be a positive number, got 0.0"),
        (dict(logit_std=-1.0), r"logit_std must be positive"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        genzoo.FlowMatchEulerScheduler(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(timesteps=[0.0, 1.2]), r"\[0, 1\].*1.2"),
        (dict(timesteps=[-0.1, 0.5]), r"\[0, 1\].*-0.1"),
        (dict(timesteps=[0.5, 0.2]), r"strictly increasing.*\[0.5, 0.2\]"),
        (dict(timesteps=[1.0]), r"nothing to integrate"),
        (dict(), r"exactly one"),
    ],
)
def test_bad_set_timesteps(kwargs, message):
    with pytest.raises(ValueError, match=message):
        genzoo.FlowMatchEulerScheduler().set_timesteps(**kwargs)


def test_off_grid_timestep_is_refused():
    """(A model output of the wrong shape, and set_timesteps with a bad value, are part of the scheduler contract.)"""
    scheduler = genzoo.FlowMatchEulerScheduler()
    scheduler.set_timesteps(4)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"timestep 333 is not on the grid.*\[0.0, 250.0, 500.0, 750.0\]"):
        scheduler.step(x, 333.0, x)


# ------------------------------------------------------------------------------ usable right after construction
@pytest.mark.parametrize("cls", [genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler])
@pytest.mark.parametrize("options", [dict(), dict(shift=3.0, scale_timesteps=False), dict(num_train_timesteps=12)])
def test_grid_after_init_is_set_timesteps_num_train_timesteps(cls, options):
    fresh, explicit = cls(**options), cls(**options)
    explicit.set_timesteps(explicit.config.num_train_timesteps)
    assert fresh.num_inference_steps == explicit.config.num_train_timesteps
    assert torch.equal(fresh.times, explicit.times) and torch.equal(fresh.timesteps, explicit.timesteps)
    assert fresh.step_index is None


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_grid_after_init_is_diffusers_grid_after_init(shift):
    """Diffusers' FlowMatchEulerDiscreteScheduler also has timesteps right after construction (shifted once there,
    unlike after its set_timesteps): the same times, through the adapter's time conversion."""
    ours = genzoo.FlowMatchEulerScheduler(shift=shift)
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    adapter = DiffusersFlowMatchAdapter(ours)
    assert len(ours.timesteps) == len(theirs.timesteps) == 1000
    torch.testing.assert_close(adapter.genzoo_timestep(theirs.timesteps), ours.timesteps, atol=1e-3, rtol=0)


@pytest.mark.parametrize("cls", [genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler])
def test_sampling_loop_without_set_timesteps(cls):
    """A loop over the timesteps a fresh scheduler holds is the loop after set_timesteps(num_train_timesteps)."""
    target = torch.tensor([[0.5, -1.0]])
    x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    fresh = cls(num_train_timesteps=16)
    v = point_velocity(target, fresh)
    x = x0
    for timestep in fresh.timesteps:
        x = fresh.step(v(x, timestep), timestep, x).prev_sample
    expected, _ = sample_ode(cls(num_train_timesteps=16), v, x0, 16)
    torch.testing.assert_close(x, expected, atol=0, rtol=0)
    torch.testing.assert_close(x, target.expand(3, 2), atol=1e-6, rtol=0)


def test_heun_run_starting_mid_grid_begins_with_a_predictor():
    """Each inner time appears twice in Heun's timesteps (corrector, then predictor); a run that starts there (e.g.
    from a partly noised sample) starts with the predictor, as in Diffusers, and equals the run on the tail grid."""
    gaussian = lambda s: gaussian_velocity(2.0, 0.3, s)  # noqa: E731
    x_start = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mid = genzoo.FlowMatchHeunScheduler(scale_timesteps=False)
    mid.set_timesteps(6)
    k = 2  # start at t_2: timesteps[3] (corrector) and timesteps[4] (predictor)
    start = 2 * k
    assert mid.timesteps[start - 1] == mid.timesteps[start] == mid.times[k]
    x = x_start
    for timestep in mid.timesteps[start:]:
        x = mid.step(gaussian(mid)(x, timestep), timestep, x).prev_sample
    assert mid.step_index == len(mid.timesteps)
    tail = genzoo.FlowMatchHeunScheduler(scale_timesteps=False)
    tail.set_timesteps(timesteps=mid.times[k:].tolist())
    expected = x_start
    for timestep in tail.timesteps:
        expected = tail.step(gaussian(tail)(expected, timestep), timestep, expected).prev_sample
    torch.testing.assert_close(x, expected)
