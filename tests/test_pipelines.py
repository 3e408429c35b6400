"""The four pipelines on images and on vectors: outputs, determinism, schedulers, dtypes, save and load."""

import json

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ImagePipelineOutput
from helpers import FAMILIES, samples_of, tiny_pipeline

import genzoo

CASES = [(family, data) for family in FAMILIES for data in ("image", "vector")]
ids = [f"{f}-{d}" for f, d in CASES]


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_outputs_by_type(family, data):
    pipe = tiny_pipeline(family, data)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    if data == "image":
        out = pipe(batch_size=2, generator=g(), num_inference_steps=3)
        assert isinstance(out, ImagePipelineOutput) and len(out.images) == 2
        assert isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (8, 8)
        as_np = pipe(batch_size=2, generator=g(), num_inference_steps=3, output_type="np").images
        assert as_np.shape == (2, 8, 8, 1) and as_np.min() >= 0 and as_np.max() <= 1
        as_pt = pipe(batch_size=2, generator=g(), num_inference_steps=3, output_type="pt").images
        assert as_pt.shape == (2, 1, 8, 8)
        np.testing.assert_array_equal(as_pt.permute(0, 2, 3, 1).numpy(), as_np)
        np.testing.assert_array_equal(np.asarray(out.images[1]), (as_np[1, ..., 0] * 255).round().astype(np.uint8))
    else:
        out = pipe(batch_size=5, generator=g(), num_inference_steps=3, output_type="np")
        assert isinstance(out, genzoo.VectorPipelineOutput) and out.samples.shape == (5, 2)
        as_pt = pipe(batch_size=5, generator=g(), num_inference_steps=3, output_type="pt").samples
        np.testing.assert_array_equal(as_pt.numpy(), out.samples)
        with pytest.raises(ValueError, match=r"output_type='pil' is not supported for vector data.*'np', 'pt'"):
            pipe(batch_size=2, num_inference_steps=2)
    tup = pipe(batch_size=2, generator=g(), num_inference_steps=3, output_type="pt", return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 1
    if family in ("gan", "vae"):
        with pytest.raises(ValueError, match="output_type='latent'"):
            pipe(batch_size=1, num_inference_steps=2, output_type="latent")
    else:  # the sampling loop's final state, unconverted: images in the model's [-1, 1] (what "pt" maps to [0, 1])
        state = pipe(batch_size=2, generator=g(), num_inference_steps=3, output_type="latent")
        state = state.images if data == "image" else state.samples
        converted = pipe(batch_size=2, generator=g(), num_inference_steps=3, output_type="pt")
        converted = converted.images if data == "image" else converted.samples
        expected = ((state + 1) / 2).clamp(0, 1) if data == "image" else state
        torch.testing.assert_close(expected, converted, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_seeded_determinism_and_per_sample_generators(family, data):
    pipe = tiny_pipeline(family, data)
    a, b = samples_of(pipe, seed=7), samples_of(pipe, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, samples_of(pipe, seed=8))
    # A list of generators: sample i depends on generator i only, not on the batch around it (up to float
    # rounding: convolution kernels sum in a different order for different batch sizes).
    batch = pipe(
        batch_size=3, generator=[torch.Generator().manual_seed(s) for s in (1, 2, 3)], num_inference_steps=4, output_type="pt"
    )
    batch = batch.images if data == "image" else batch.samples
    for i, seed in enumerate((1, 2, 3)):
        single = samples_of(pipe, seed=seed, batch_size=1)
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="list of 2 generators for batch_size=3"):
        pipe(batch_size=3, generator=[torch.Generator(), torch.Generator()], num_inference_steps=2)


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_latents_are_the_starting_noise(family, data):
    pipe = tiny_pipeline(family, data)
    if family == "gan":
        shape = pipe.generator.latent_shape
    elif family == "vae":
        shape = pipe.latent_shape
    else:
        shape = (1, 8, 8) if data == "image" else (2,)
    latents = torch.randn(2, *shape, generator=torch.Generator().manual_seed(5))
    a = samples_of(pipe, seed=0, batch_size=2, latents=latents)
    b = samples_of(pipe, seed=99, batch_size=2, latents=latents)
    if family == "ddpm":  # DDPM's ancestral steps add fresh noise from the generator
        assert not torch.equal(a, b)
        torch.testing.assert_close(a, samples_of(pipe, seed=0, batch_size=2, latents=latents))
    else:  # everything else is a deterministic function of the starting noise
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"latents must have shape \(3, "):
        pipe(batch_size=3, latents=latents, num_inference_steps=2)


@pytest.mark.parametrize("family,data", CASES, ids=ids)
def test_save_and_load_round_trip(family, data, tmp_path):
    pipe = tiny_pipeline(family, data)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["genzoo_hub", type(pipe).__name__]
    weights = sorted(p.name for p in tmp_path.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt"))
    assert weights and all(name.endswith(".safetensors") for name in weights)
    expected = samples_of(pipe)
    loaders = {
        "class": lambda: type(pipe).from_pretrained(tmp_path),
        "load_pipeline": lambda: genzoo.load_pipeline(tmp_path),
        "diffusers": lambda: diffusers.DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True),
    }
    for how, load in loaders.items():
        loaded = load()
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is type(pipe), how
        for name, component in pipe.components.items():
            assert type(loaded.components[name]) is type(component), (how, name)
        assert torch.equal(samples_of(loaded), expected), how


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
