"""Probability paths apart from the solvers: every registered path (genzoo.paths entry points) under every genzoo flow
solver -- the path math, the training side, exact sampling, the refusals, and a model trained on the cosine path."""

import math

import diffusers
import pytest
import torch

import genzoo
from genzoo.pipelines.drivers import solver_choices
from genzoo.schedulers import DiffusersFlowMatchAdapter, ProbabilityPath, diffusers_scheduler
from genzoo.schedulers.kinds import registered_schedulers
from genzoo.schedulers.paths import get_path, path_names
from genzoo.training import RecipeError, parse_args, train

PATHS = path_names()
#: genzoo's flow solvers: every registered scheduler of a flow-matching model (a velocity or a flow map).
SOLVERS = {**registered_schedulers("flow"), **registered_schedulers("flow-map")}


def test_genzoo_registers_the_straight_and_the_cosine_path():
    assert {"straight", "cosine"} <= set(PATHS)
    assert type(get_path("straight")) is genzoo.schedulers.StraightPath
    assert type(get_path("cosine")) is genzoo.schedulers.CosinePath


@pytest.mark.parametrize("name", PATHS)
def test_every_path_runs_from_noise_to_data_with_its_derivatives(name):
    """alpha: 0 -> 1, sigma: 1 -> 0; d_alpha, d_sigma are the derivatives (central differences in float64); the same
    numbers for a float and a tensor time."""
    path = get_path(name)
    assert isinstance(path, ProbabilityPath)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    at, h = path.at(t), 1e-6
    assert float(path.alpha(0.0)) == pytest.approx(0.0, abs=1e-12) and float(path.sigma(0.0)) == pytest.approx(1.0)
    assert float(path.alpha(1.0)) == pytest.approx(1.0) and float(path.sigma(1.0)) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(at.d_alpha, (path.alpha(t + h) - path.alpha(t - h)) / (2 * h), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(at.d_sigma, (path.sigma(t + h) - path.sigma(t - h)) / (2 * h), atol=1e-6, rtol=1e-6)
    for value in (0.25, 0.7):
        as_tensor = torch.tensor(value, dtype=torch.float64)
        assert float(path.alpha(value)) == pytest.approx(float(path.alpha(as_tensor)))
        assert float(path.d_sigma(value)) == pytest.approx(float(path.d_sigma(as_tensor)))


def test_the_cosine_path_is_variance_preserving():
    path, t = get_path("cosine"), torch.rand(50, dtype=torch.float64)
    torch.testing.assert_close(path.alpha(t) ** 2 + path.sigma(t) ** 2, torch.ones_like(t))
    torch.testing.assert_close(path.alpha(t), torch.sin(math.pi / 2 * t))


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("prediction_type", ["velocity", "sample"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_on_every_path_gives_the_data_back_from_the_training_target(solver, prediction_type, name):
    """add_noise is alpha_t x_1 + sigma_t x_0 of the chosen path, and a step fed the exact training target returns the
    data as pred_original_sample (the contract's training_side check, on every path)."""
    scheduler = SOLVERS[solver](path=name, prediction_type=prediction_type)
    assert scheduler.config.path == name
    path = get_path(name)
    x1 = torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(5)
    for index in range(len(scheduler.timesteps)):
        scheduler.set_timesteps(5)
        t = scheduler.timesteps[index]
        flow_time = float(t) / scheduler.time_scale
        batch_t = t.reshape(1).repeat(4)
        x_t = scheduler.add_noise(x1, x0, batch_t)
        torch.testing.assert_close(x_t, path.alpha(flow_time) * x1 + path.sigma(flow_time) * x0)
        target = scheduler.training_target(x1, x0, batch_t)
        out = scheduler.step(target, t, x_t)
        torch.testing.assert_close(out.pred_original_sample, x1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PATHS)
def test_euler_and_heun_converge_on_every_path_at_their_order(name):
    """Data N(m, s^2): on any affine path x_t ~ N(alpha m, alpha^2 s^2 + sigma^2), whose velocity field is known and
    carries noise x_0 to m + s x_0. Euler's error falls as 1/N, Heun's as 1/N^2 (and is the smaller)."""
    path, m, s = get_path(name), 2.0, 0.3

    def velocity(x, timestep, scheduler):
        t = float(timestep) / scheduler.time_scale
        a, g, da, dg = path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t)
        return da * m + (da * a * s**2 + dg * g) / (a**2 * s**2 + g**2) * (x - a * m)

    x0 = torch.randn(200, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = {}
    for cls in (genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler):
        for steps in (8, 16):
            scheduler = cls(path=name)
            scheduler.set_timesteps(steps)
            x = x0
            for t in scheduler.timesteps:
                x = scheduler.step(velocity(x, t, scheduler), t, x).prev_sample
            errors[cls.order, steps] = float((x - (m + s * x0)).abs().max())
    assert 1.7 < errors[1, 8] / errors[1, 16] < 2.3
    assert errors[2, 8] / errors[2, 16] > 3.0
    assert errors[2, 16] < errors[1, 16] / 2


def test_the_default_path_is_the_straight_one_to_the_bit():
    """path="straight" is what every flow scheduler did before paths were objects: x_t + (1 - t) v, t and 1 - t."""
    sample = torch.randn(3, 2, generator=torch.Generator().manual_seed(3))
    output = torch.randn(3, 2, generator=torch.Generator().manual_seed(4))
    for cls in SOLVERS.values():
        for prediction_type in ("velocity", "sample"):
            default = cls(prediction_type=prediction_type)
            straight = cls(prediction_type=prediction_type, path="straight")
            assert default.config.path == "straight"
            default.set_timesteps(4)
            straight.set_timesteps(4)
            t = default.timesteps[1]
            a, b = default.step(output, t, sample), straight.step(output, t, sample)
            assert torch.equal(a.prev_sample, b.prev_sample)
            assert torch.equal(a.pred_original_sample, b.pred_original_sample)
            time = default._grid[1]
            v = output if prediction_type == "velocity" else (output - sample) / (1 - time)
            torch.testing.assert_close(a.pred_original_sample, sample + (1 - time) * v)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_the_path_is_saved_with_the_scheduler(solver, tmp_path):
    scheduler = SOLVERS[solver](path="cosine", shift=2.0)
    scheduler.save_pretrained(tmp_path)
    loaded = SOLVERS[solver].from_pretrained(tmp_path)
    assert loaded.config.path == "cosine" and type(loaded.probability_path) is genzoo.schedulers.CosinePath
    heun = genzoo.FlowMatchHeunScheduler.from_config(loaded.config)
    assert type(heun.probability_path) is genzoo.schedulers.CosinePath


@pytest.mark.parametrize("bad", ["bogus", "", 3, None])
def test_an_unregistered_path_is_refused_naming_the_allowed_ones(bad):
    with pytest.raises(ValueError, match=r"Unknown path=.*allowed: 'cosine', 'straight'.*genzoo.paths"):
        genzoo.FlowMatchEulerScheduler(path=bad)


def test_diffusers_flow_schedulers_refuse_another_path():
    """Diffusers' flow schedulers know only the straight path: the adapter, diffusers_scheduler and a pipeline whose
    scheduler was swapped by plain from_config all refuse a cosine model, naming the path."""
    cosine = genzoo.FlowMatchEulerScheduler(path="cosine")
    with pytest.raises(ValueError, match=r"DiffusersFlowMatchAdapter: .* path 'cosine'.*straight"):
        DiffusersFlowMatchAdapter(cosine)
    for cls in (diffusers.DPMSolverMultistepScheduler, diffusers.UniPCMultistepScheduler,
                diffusers.FlowMatchEulerDiscreteScheduler):
        with pytest.raises(ValueError, match=rf"diffusers_scheduler\({cls.__name__}, ...\): .*path 'cosine'"):
            diffusers_scheduler(cls, cosine)
    torch.manual_seed(0)
    pipe = genzoo.FlowMatchingPipeline(unet=genzoo.MLPDenoiser(sample_size=2, hidden_dim=8, num_layers=1),
                                       scheduler=cosine)
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(cosine.config)
    with pytest.raises(ValueError, match=r"FlowMatchEulerDiscreteScheduler on FlowMatchingPipeline: .*'cosine'"):
        pipe(batch_size=2, num_inference_steps=2, output_type="np")
    DiffusersFlowMatchAdapter(genzoo.FlowMatchEulerScheduler(path="straight"))  # the straight path still converts


def test_solver_choices_come_from_declared_attributes():
    """The samplers a pipeline can swap in: genzoo's of its model_kind by their declared labels, then Diffusers'."""
    assert solver_choices("flow") == {
        "Euler (genzoo)": genzoo.FlowMatchEulerScheduler, "Heun (genzoo)": genzoo.FlowMatchHeunScheduler,
        "DPM-Solver++ (Diffusers)": diffusers.DPMSolverMultistepScheduler,
        "UniPC (Diffusers)": diffusers.UniPCMultistepScheduler}
    assert list(solver_choices("diffusion")) == ["DDPM (genzoo)", "DDIM (Diffusers)", "DPM-Solver++ (Diffusers)",
                                                 "UniPC (Diffusers)"]
    assert solver_choices("flow-map") == {"Euler (genzoo)": genzoo.FlowMapEulerScheduler}
    assert solver_choices(None) == {}


def test_solver_choices_offer_a_plugin_scheduler_by_its_name_and_package(example_plugins):
    from genzoo_example_plugin import ShiftedFlowScheduler

    choices = solver_choices("flow")
    assert choices["ShiftedFlowScheduler (genzoo-example-plugin)"] is ShiftedFlowScheduler
    assert choices["Euler (genzoo)"] is genzoo.FlowMatchEulerScheduler  # the subclass does not take its label


# ------------------------------------------------------------------------------------------------ training
def cosine_run(tmp_path, *extra):
    return ["--method", "flow-matching", "--dataset", "moons", "--output_dir", str(tmp_path), "--seed", "0",
            "--train_batch_size", "16", "--max_train_steps", "2", "--checkpointing_steps", "100",
            "--save_images_steps", "100", "--num_sample_images", "4", "--num_inference_steps", "2", "--logger", "none",
            "--num_samples", "64", "--hidden_dim", "16", "--num_layers", "1", "--path", "cosine", *extra]


def test_a_flow_matching_model_trains_on_the_cosine_path_and_samples_with_euler_and_heun(tmp_path):
    """--path cosine: the training regression is on the cosine path, the saved scheduler carries it, and every genzoo
    solver samples the loaded pipeline on it."""
    result = train(parse_args(cosine_run(tmp_path)))
    assert result.global_step == 2
    pipe = genzoo.load_pipeline(tmp_path)
    assert pipe.scheduler.config.path == "cosine"
    for cls in (genzoo.FlowMatchEulerScheduler, genzoo.FlowMatchHeunScheduler):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        assert type(pipe.scheduler.probability_path) is genzoo.schedulers.CosinePath
        out = pipe(batch_size=3, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
        assert out.samples.shape == (3, 2) and torch.isfinite(torch.as_tensor(out.samples)).all()


def test_path_bogus_is_refused_naming_the_allowed_paths(tmp_path):
    with pytest.raises(RecipeError, match=r"--path: invalid choice: 'bogus' \(choose from 'cosine', 'straight'\)"):
        parse_args(cosine_run(tmp_path, "--path", "bogus"))
    with pytest.raises(RecipeError, match=r"--path .* with --distill_steps"):
        parse_args(["--method", "rectified-flow", "--teacher", "t", "--distill_steps", "1", "--path", "cosine"])
