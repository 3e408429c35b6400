"""Diffusers' schedulers swapped onto genzoo pipelines (``pipe.scheduler = ...``): flow-matching models sampled by
FlowMatchEulerDiscreteScheduler, DPM-Solver++ and UniPC in Diffusers' flow convention, DDPM models by UniPC, and
the one-line refusal of a scheduler that would sample a model in the wrong convention.

The models are exact: for Gaussian data N(MEAN, STD^2) and N(0, I) noise the flow's velocity and the DDPM noise
predictor are known in closed form, and so is where the deterministic flow takes each starting noise, so every
sampler is checked against the true answer, not only against another sampler."""

import diffusers
import pytest
import torch

import genzoo
from genzoo.schedulers import diffusers_scheduler

MEAN = torch.tensor([2.0, -1.0])
STD = torch.tensor([0.3, 0.6])
BATCH = 64


class GaussianFlow(genzoo.MLPDenoiser):
    """The exact flow-matching model of N(MEAN, STD^2) data, fed genzoo's time input ``t * 1000``:
    v(x, t) = MEAN + (t STD^2 - (1 - t)) / (t^2 STD^2 + (1 - t)^2) * (x - t MEAN); with ``predicts="sample"`` it
    outputs the data estimate x + (1 - t) v instead."""

    def __init__(self, predicts="velocity"):
        super().__init__(hidden_dim=4, num_layers=1, time_embed_dim=4)
        self.predicts = predicts
        self.time_inputs = []

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1)[:1] / 1000
        self.time_inputs.append(float(t))
        x = sample.double()
        var = t**2 * STD.double() ** 2 + (1 - t) ** 2
        v = MEAN + (t * STD.double() ** 2 - (1 - t)) / var * (x - t * MEAN)
        out = v if self.predicts == "velocity" else x + (1 - t) * v
        return diffusers.models.unets.unet_2d.UNet2DOutput(sample=out.to(sample.dtype))


class GaussianNoisePredictor(genzoo.MLPDenoiser):
    """The exact epsilon model of N(MEAN, STD^2) data under the DDPM noise schedule ``alphas_cumprod``:
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) MEAN) / (ab STD^2 + 1 - ab)."""

    def __init__(self, alphas_cumprod):
        super().__init__(hidden_dim=4, num_layers=1, time_embed_dim=4)
        self.alphas_cumprod = alphas_cumprod.double()

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        ab = self.alphas_cumprod[int(torch.as_tensor(timestep).reshape(-1)[0])]
        x = sample.double()
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * MEAN) / (ab * STD.double() ** 2 + 1 - ab)
        return diffusers.models.unets.unet_2d.UNet2DOutput(sample=eps.to(sample.dtype))


def start_noise(seed=0):
    return torch.randn(BATCH, 2, generator=torch.Generator().manual_seed(seed))


def flow_pipe(shift=1.0, predicts="velocity"):
    scheduler = genzoo.FlowMatchEulerScheduler(shift=shift, prediction_type=predicts)
    pipe = genzoo.FlowMatchingPipeline(unet=GaussianFlow(predicts), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, steps, noise=None, seed=0):
    noise = start_noise() if noise is None else noise
    out = pipe(batch_size=len(noise), latents=noise, num_inference_steps=steps, output_type="pt",
               generator=torch.Generator().manual_seed(seed))
    return out.samples if hasattr(out, "samples") else out[0]


def flow_error(pipe, steps):
    """Largest distance of the samples from where the exact flow takes the same noise (MEAN + STD * x0)."""
    noise = start_noise()
    return (sample(pipe, steps, noise) - (MEAN + STD * noise)).abs().max().item()


def swapped(pipe, name):
    """``pipe`` with Diffusers' ``name`` scheduler: plain ``from_config`` for the flow-only class, the helper for the
    multistep ones."""
    cls = getattr(diffusers, name)
    if name == "FlowMatchEulerDiscreteScheduler":
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    else:
        pipe.scheduler = diffusers_scheduler(cls, pipe)
    return pipe


FLOW_SCHEDULERS = ["FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]


def ddpm_pipe():
    scheduler = genzoo.DDPMScheduler(timestep_spacing="trailing", clip_sample=False)  # the data exceeds [-1, 1]
    pipe = genzoo.DDPMPipeline(unet=GaussianNoisePredictor(scheduler.alphas_cumprod), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ddpm_error(pipe, steps):
    """Largest distance from where the probability-flow ODE takes the noise, started at t = 999: the VP marginal
    N(sqrt(ab) MEAN, ab STD^2 + 1 - ab) is mapped affinely onto the data."""
    noise = start_noise()
    ab = pipe.unet.alphas_cumprod[999].float()
    exact = MEAN + STD * (noise - ab.sqrt() * MEAN) / (ab * STD**2 + 1 - ab).sqrt()
    return (sample(pipe, steps, noise) - exact).abs().max().item()


# Largest error from the exact flow at 200 steps, measured: Euler (genzoo's and Diffusers') 1.4e-2 (shift 1) and
# 2.6e-2 (shift 3); DPM-Solver++ 3.1e-3 / 3.8e-3 (its flow grid starts at sigma = 0.999, not 1: an O(1/1000) offset);
# UniPC 8e-5 / 4e-4. A sign or time-unit slip in the conversion gives errors of order 1.
TOLERANCE_200 = {"FlowMatchEulerDiscreteScheduler": 3e-2, "DPMSolverMultistepScheduler": 6e-3,
                 "UniPCMultistepScheduler": 1e-3}


@pytest.mark.slow
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("name", FLOW_SCHEDULERS)
def test_swapped_flow_scheduler_converges_to_the_exact_flow(name, shift):
    ours = flow_error(flow_pipe(shift), 200)
    theirs = flow_error(swapped(flow_pipe(shift), name), 200)
    assert ours < 3e-2 and theirs < TOLERANCE_200[name], (ours, theirs)
    # ...and to genzoo's own Euler at 200 steps, within both errors
    noise = start_noise()
    gap = (sample(flow_pipe(shift), 200, noise) - sample(swapped(flow_pipe(shift), name), 200, noise)).abs().max()
    assert gap < ours + TOLERANCE_200[name]


@pytest.mark.parametrize("name", FLOW_SCHEDULERS)
def test_swapped_flow_scheduler_on_a_data_predicting_model(name):
    """A genzoo model with prediction_type='sample' (it predicts x1): the helper sets prediction_type='sample' for
    the multistep solvers, and the flow-only class gets -v = (x - x1) / sigma."""
    pipe = flow_pipe(predicts="sample")
    cls = getattr(diffusers, name)
    pipe.scheduler = cls.from_config(pipe.scheduler.config) if name.startswith("FlowMatch") else diffusers_scheduler(cls, pipe)
    assert flow_error(pipe, 200) < TOLERANCE_200[name]


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
@pytest.mark.parametrize("shift,steps,factor", [(1.0, 8, 0.4), (1.0, 16, 0.25), (3.0, 16, 0.6)])
def test_multistep_solvers_beat_euler_at_few_steps(name, shift, steps, factor):
    """Same number of model calls: DPM-Solver++(2M) and UniPC land much closer to the exact flow than Euler
    (measured at 8 / 16 / 16 steps: 0.086 and 0.078 vs 0.33; 0.025 and 0.020 vs 0.17; 0.14 and 0.14 vs 0.30)."""
    euler = flow_error(flow_pipe(shift), steps)
    higher = flow_error(swapped(flow_pipe(shift), name), steps)
    assert higher < factor * euler, (higher, euler)


def test_model_is_fed_genzoo_time_from_the_float_sigmas():
    """DPM-Solver rounds its flow timesteps (sigma * 1000) down to integers; the model gets 1 - sigma exactly."""
    pipe = swapped(flow_pipe(), "DPMSolverMultistepScheduler")
    sample(pipe, 5)
    sigmas = pipe.scheduler.sigmas[:-1].double()
    assert pipe.unet.time_inputs == pytest.approx((1 - sigmas).tolist(), abs=1e-6)
    assert pipe.scheduler.timesteps.dtype == torch.int64  # what it would otherwise have been fed


def test_helper_configures_flow_mode():
    pipe = flow_pipe(shift=3.0)
    for cls in (diffusers.DPMSolverMultistepScheduler, diffusers.UniPCMultistepScheduler):
        s = diffusers_scheduler(cls, pipe)
        assert (s.config.use_flow_sigmas, s.config.prediction_type, s.config.flow_shift) == (True, "flow_prediction", 3.0)
        assert diffusers_scheduler(cls, pipe.scheduler.config).config == s.config  # a scheduler config works too
        # ...and from a scheduler the helper built (swapping one Diffusers solver for another)
        assert diffusers_scheduler(diffusers.UniPCMultistepScheduler, s).config.flow_shift == 3.0
    assert diffusers_scheduler(diffusers.FlowMatchEulerDiscreteScheduler, pipe).config.shift == 3.0
    assert diffusers_scheduler(diffusers.DPMSolverMultistepScheduler, pipe, solver_order=3).config.solver_order == 3
    with pytest.raises(ValueError, match="DDIMScheduler has no flow-matching mode"):
        diffusers_scheduler(diffusers.DDIMScheduler, pipe)
    with pytest.raises(ValueError, match="needs a velocity model"):
        diffusers_scheduler(diffusers.FlowMatchEulerDiscreteScheduler, flow_pipe(predicts="sample"))
    ddpm = ddpm_pipe()
    assert diffusers_scheduler(diffusers.UniPCMultistepScheduler, ddpm).config.use_flow_sigmas is False
    with pytest.raises(ValueError, match="is a flow-matching scheduler"):
        diffusers_scheduler(diffusers.FlowMatchEulerDiscreteScheduler, ddpm)


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_plain_from_config_of_a_multistep_solver_is_refused_on_a_flow_model(name):
    pipe = flow_pipe()
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
    with pytest.raises(ValueError) as error:
        sample(pipe, 4)
    message = str(error.value)
    assert "\n" not in message and "not set up for flow matching" in message
    assert f"genzoo.schedulers.diffusers_scheduler({name}, pipe)" in message
    assert pipe.unet.time_inputs == []  # refused before the first model call
    # what the message says to do mends it, from the refused scheduler (genzoo's non-default shift survives)
    pipe = flow_pipe(shift=3.0)
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
    pipe.scheduler = diffusers_scheduler(getattr(diffusers, name), pipe)
    assert pipe.scheduler.config.flow_shift == 3.0
    assert flow_error(pipe, 200) == pytest.approx(flow_error(swapped(flow_pipe(shift=3.0), name), 200), abs=1e-6)


def test_schedulers_in_the_wrong_convention_are_refused():
    pipe = flow_pipe()
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="DDIMScheduler has no flow-matching mode"):
        sample(pipe, 4)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True)  # flow sigmas, epsilon prediction
    with pytest.raises(ValueError, match="not set up for flow matching"):
        sample(pipe, 4)
    ddpm = ddpm_pipe()
    ddpm.scheduler = diffusers_scheduler(diffusers.UniPCMultistepScheduler, flow_pipe())
    with pytest.raises(ValueError, match="model is a diffusion"):
        sample(ddpm, 4)


@pytest.mark.parametrize("name", ["DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_diffusers_solvers_on_a_ddpm_pipeline(name):
    """``from_config(genzoo DDPM config)`` on a DDPMPipeline (UniPC's step takes no generator; the pipeline leaves
    it out). Each converges to the exact probability-flow endpoint (measured at 200 steps: DDIM 2.6e-2, DPM 8e-4,
    UniPC 1.5e-3), and the multistep solvers at 20 steps (0.11) beat DDIM at 20 steps (0.25)."""
    pipe = ddpm_pipe()
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
    assert ddpm_error(pipe, 200) < (4e-2 if name == "DDIMScheduler" else 3e-3)
    if name != "DDIMScheduler":
        ddim = ddpm_pipe()
        ddim.scheduler = diffusers.DDIMScheduler.from_config(ddim.scheduler.config)
        assert ddpm_error(pipe, 20) < 0.6 * ddpm_error(ddim, 20)


def test_genzoo_schedulers_sample_as_before():
    """The native path: genzoo's Euler in the pipeline is the plain loop over its timesteps."""
    pipe = flow_pipe(shift=3.0)
    noise = start_noise()
    scheduler = genzoo.FlowMatchEulerScheduler(shift=3.0)
    scheduler.set_timesteps(7)
    x = noise
    for t in scheduler.timesteps:
        x = scheduler.step(pipe.unet(x, t).sample, t, x).prev_sample
    torch.testing.assert_close(sample(pipe, 7, noise), x, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_solvers_without_clip_sample_clip_the_data_estimate_as_ddim_does(name):
    """DPM-Solver and UniPC have no ``clip_sample``; on a DDPM model whose config asks for it the pipeline clips the
    data estimate implied by the model's output, as DDIM and genzoo's DDPM sampler do (docs/few-step.md: without it,
    DPM-Solver++ on the zoo's ddpm-moons went from W2 0.6 at 4 calls to 2.2 at 32). A range wide enough to clip
    nothing leaves the samples exactly as without clipping."""
    def run(clip, bound=2.0):
        scheduler = genzoo.DDPMScheduler(timestep_spacing="trailing", clip_sample=clip, clip_sample_range=bound)
        pipe = genzoo.DDPMPipeline(unet=GaussianNoisePredictor(scheduler.alphas_cumprod), scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
        return sample(pipe, 12)

    free = run(False)
    assert free.abs().max() > 2.2  # MEAN[0] = 2: the exact model's samples reach beyond the range
    clipped = run(True)
    assert clipped.abs().max() <= 2.0 + 1e-5 and not torch.equal(clipped, free)
    torch.testing.assert_close(run(True, bound=100.0), free, atol=0, rtol=0)
