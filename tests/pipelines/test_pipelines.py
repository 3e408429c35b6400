"""Every registered pipeline passes genzoo.testing's pipeline contract (outputs, determinism, latents, save and load,
dtypes, refusals) on images and on vectors; what is particular to a family; schedulers; loading errors."""

import diffusers
import numpy as np
import pytest
import torch

import genzoo
from genzoo import registry
from genzoo.testing import PIPELINE_CHECKS, check_pipeline
from genzoo.testing.pipelines import latent_shape
from helpers import FAMILIES, registered_pipelines, samples_of, tiny_pipeline, tiny_pipeline_of

CASES = [(family, data) for family in FAMILIES for data in ("image", "vector")]
ids = [f"{f}-{d}" for f, d in CASES]


# ------------------------------------------------------------------------------ the pipeline contract
PIPELINES = registered_pipelines()
CONTRACT_CASES = [(name, data) for name in PIPELINES for data in ("image", "vector")]


@pytest.mark.parametrize("check_name", list(PIPELINE_CHECKS))
@pytest.mark.parametrize("name,data", CONTRACT_CASES, ids=[f"{n}-{d}" for n, d in CONTRACT_CASES])
def test_every_registered_pipeline_passes(name, data, check_name, example_plugins, tmp_path):
    """Every registered pipeline -- genzoo's and the example plugin's -- on images and on vectors: outputs by type,
    seeded determinism, latents, save and load, dtypes, refusals (genzoo.testing's pipeline contract)."""
    assert "ExampleFlowPipeline" in PIPELINES, "the example plugin's pipeline should be registered"
    cls = registry.get("pipeline", name)
    PIPELINE_CHECKS[check_name](lambda: tiny_pipeline_of(cls, data), tmp_dir=tmp_path)


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_latents_fix_the_samples_of_deterministic_samplers(family, data):
    """Given the starting noise, every sampler but DDPM's is a deterministic function of it; DDPM's ancestral steps
    add fresh noise from the generator."""
    pipe = tiny_pipeline(family, data)
    latents = torch.randn(2, *latent_shape(pipe), generator=torch.Generator().manual_seed(5))
    a = samples_of(pipe, seed=0, batch_size=2, latents=latents)
    b = samples_of(pipe, seed=99, batch_size=2, latents=latents)
    assert torch.equal(a, b) is (family != "ddpm")


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_output_type_is_pil_which_vector_data_refuses(family):
    with pytest.raises(ValueError, match=r"output_type='pil' is not supported for vector data.*'np', 'pt'"):
        tiny_pipeline(family, "vector")(batch_size=2, num_inference_steps=2)


def test_only_the_loop_samplers_return_their_latent_state():
    """GANs and VAEs sample in one pass and have no loop state to return: output_type="latent" is refused there
    (genzoo.testing's output_types check holds each pipeline to what it lists)."""
    assert {family: "latent" in tiny_pipeline(family, "vector").output_types for family in FAMILIES} == {
        "gan": False, "vae": False, "ddpm": True, "flow-matching": True, "flow-map": True}


# ------------------------------------------------------------------------------ the pipeline contract has teeth
class GlobalNoisePipeline(genzoo.FlowMatchingPipeline):
    """Ignores the generator it is given."""

    def __call__(self, *args, generator=None, **kwargs):
        return super().__call__(*args, **kwargs)


class Bfloat16OutPipeline(genzoo.FlowMatchingPipeline):
    """Returns its samples in the pipeline's dtype rather than float32."""

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        out.samples = out.samples.to(self.dtype)
        return out


class LenientPipeline(genzoo.FlowMatchingPipeline):
    """Quietly replaces a batch size it cannot take."""

    def __call__(self, batch_size=1, *args, **kwargs):
        return super().__call__(max(1, int(batch_size)), *args, **kwargs)


class CrashingPipeline(genzoo.FlowMatchingPipeline):
    def __call__(self, *args, **kwargs):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "cls,failing",
    [
        (GlobalNoisePipeline, {"output_types", "determinism", "save_load_round_trip"}),
        (Bfloat16OutPipeline, {"dtypes"}),
        (LenientPipeline, {"refusals"}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_the_contract_catches_broken_pipelines(cls, failing, tmp_path):
    factory = lambda: cls(**tiny_pipeline("flow-matching", "vector").components)  # noqa: E731
    with pytest.raises(AssertionError) as raised:
        check_pipeline(factory, tmp_dir=tmp_path, checks=sorted(failing))
    message = str(raised.value)
    assert message.startswith(f"{cls.__name__} fails the genzoo pipeline contract")
    reported = {line.split(":")[0].strip() for line in message.splitlines()[1:] if line.startswith("  ")}
    assert reported == failing, message
    assert not list(tmp_path.iterdir())  # what the checks saved is gone


def test_pipeline_errors_are_reported_as_assertion_errors_and_a_given_pipeline_is_left_alone():
    pipe = tiny_pipeline("flow-matching", "vector")
    check_pipeline(pipe, checks=["dtypes"])  # moved to bfloat16 on a copy
    assert pipe.dtype == torch.float32
    with pytest.raises(AssertionError, match=r"^CrashingPipeline: latents raised RuntimeError: boom$"):
        PIPELINE_CHECKS["latents"](CrashingPipeline(**pipe.components))
    with pytest.raises(ValueError, match=r"Unknown pipeline checks \['speed'\]; allowed: output_types"):
        check_pipeline(pipe, checks=["speed"])
    with pytest.raises(TypeError, match="takes a pipeline or a function that builds one, got str"):
        check_pipeline("FlowMatchingPipeline")


def test_diffusers_without_trust_remote_code_says_what_to_do(tmp_path):
    tiny_pipeline("flow-matching", "vector").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        diffusers.DiffusionPipeline.from_pretrained(tmp_path)


def test_loading_the_wrong_pipeline_class(tmp_path):
    tiny_pipeline("gan", "vector").save_pretrained(tmp_path)
    with pytest.raises(genzoo.PipelineLoadError, match="holds a GANPipeline, not a DDPMPipeline.*load_pipeline"):
        genzoo.DDPMPipeline.from_pretrained(tmp_path)


def test_component_overrides_and_unknown_arguments(tmp_path):
    pipe = tiny_pipeline("ddpm", "vector")
    pipe.save_pretrained(tmp_path)
    ddim = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    loaded = genzoo.DDPMPipeline.from_pretrained(tmp_path, scheduler=ddim)
    assert loaded.scheduler is ddim
    with pytest.raises(TypeError, match=r"unexpected arguments \['decoder'\]"):
        genzoo.DDPMPipeline.from_pretrained(tmp_path, decoder=None)


def test_saving_pickles_is_refused(tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        tiny_pipeline("gan", "vector").save_pretrained(tmp_path, safe_serialization=False)


@pytest.mark.parametrize("data", ["image", "vector"])
def test_ddpm_with_diffusers_ddim_in_50_steps(data):
    pipe = tiny_pipeline("ddpm", data)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    out = samples_of(pipe, steps=50)
    assert torch.isfinite(out).all()
    assert len(pipe.scheduler.timesteps) == 50
    assert torch.equal(out, samples_of(pipe, steps=50))


@pytest.mark.parametrize("data", ["image", "vector"])
def test_flow_matching_with_heun(data):
    pipe = tiny_pipeline("flow-matching", data)
    pipe.scheduler = genzoo.FlowMatchHeunScheduler.from_config(pipe.scheduler.config)
    calls = []
    original_forward = pipe.unet.forward
    pipe.unet.forward = lambda *a, **k: calls.append(1) or original_forward(*a, **k)
    out = samples_of(pipe, steps=6)
    assert torch.isfinite(out).all() and len(calls) == 2 * 6 - 1


def test_progress_bar_can_be_switched_off(capsys):
    pipe = tiny_pipeline("flow-matching", "vector")
    pipe.set_progress_bar_config(disable=False)
    pipe(batch_size=2, num_inference_steps=3, output_type="np")
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(batch_size=2, num_inference_steps=3, output_type="np")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_bfloat16_on_cpu(family, data):
    pipe = tiny_pipeline(family, data).to(torch.bfloat16)
    assert pipe.dtype == torch.bfloat16
    out = samples_of(pipe, batch_size=2, steps=3)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_sampling_uses_eval_mode_and_restores_training_mode():
    """Batch norm must use running statistics while sampling (else a sample depends on its batch), and a trainer
    sampling mid-training gets its modules back in training mode."""
    pipe = tiny_pipeline("gan", "image")
    pipe.generator.train()
    one = samples_of(pipe, seed=3, batch_size=1)
    many = pipe(batch_size=4, generator=[torch.Generator().manual_seed(s) for s in (3, 4, 5, 6)], output_type="pt").images
    torch.testing.assert_close(many[:1], one, atol=1e-5, rtol=0)
    assert pipe.generator.training and all(m.training for m in pipe.generator.modules())


def test_vae_encode_reconstruct_interpolate():
    pipe = tiny_pipeline("vae", "image")
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 1, 8, 8, generator=g) * 2 - 1, torch.rand(1, 1, 8, 8, generator=g) * 2 - 1
    code = pipe.encode(a)
    assert code.shape == (1, *pipe.latent_shape)
    drawn = pipe.encode(a, generator=torch.Generator().manual_seed(1), sample_posterior=True)
    assert torch.equal(drawn, pipe.encode(a, generator=torch.Generator().manual_seed(1), sample_posterior=True))
    assert not torch.equal(drawn, code)
    path = pipe.interpolate(a, b, steps=5).images
    assert path.shape == (5, 1, 8, 8)
    # the path decodes 5 latents in one batch, reconstruct one: convolution kernels may differ with the batch size
    torch.testing.assert_close(path[:1], pipe.reconstruct(a).images, atol=1e-5, rtol=0)
    torch.testing.assert_close(path[-1:], pipe.reconstruct(b).images, atol=1e-5, rtol=0)
    # PIL input is accepted and scaled to [-1, 1].
    as_pil = pipe.reconstruct(genzoo.pipelines.base.images_to_pil(((a + 1) / 2).permute(0, 2, 3, 1).numpy()))
    assert as_pil.images.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        pipe.interpolate(a, b, steps=1)
    vectors = tiny_pipeline("vae", "vector")
    line = vectors.interpolate(torch.zeros(1, 2), torch.ones(1, 2), steps=3, output_type="np").samples
    assert line.shape == (3, 2)


def test_denoiser_sample_shape():
    from genzoo.models import denoiser_sample_shape
    from helpers import tiny_unet

    assert denoiser_sample_shape(genzoo.MLPDenoiser(sample_size=5)) == (5,)
    assert denoiser_sample_shape(tiny_unet(channels=3, size=8)) == (3, 8, 8)
    with pytest.raises(TypeError, match="sample_shape"):
        denoiser_sample_shape(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.subprocess
def test_plain_diffusers_in_a_process_that_never_imports_genzoo(tmp_path):
    """The user who has never heard of genzoo: only diffusers is imported; genzoo is merely installed."""
    import subprocess
    import sys

    pipe = tiny_pipeline("ddpm", "vector")
    pipe.save_pretrained(tmp_path / "repo")
    expected = samples_of(pipe).numpy()
    code = (
        "import sys, diffusers, numpy, torch\n"
        "assert 'genzoo' not in sys.modules\n"
        f"pipe = diffusers.DiffusionPipeline.from_pretrained({str(tmp_path / 'repo')!r}, trust_remote_code=True)\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "out = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=4, output_type='np')\n"
        f"numpy.save({str(tmp_path / 'out.npy')!r}, out.samples)\n"
        "print(type(pipe).__module__, type(pipe).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["genzoo.pipelines.pipeline_ddpm", "DDPMPipeline"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
