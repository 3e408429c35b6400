"""Latent generation (``--vae``): denoisers trained in the latent space of a frozen genzoo VAE, and pipelines that
carry the VAE and decode with it, saved, loaded (by genzoo and plain Diffusers) and pushed like the others."""

from __future__ import annotations

import json
import shutil

import diffusers
import numpy as np
import pytest
import torch

import genzoo
from genzoo.data.shapes import shapes_split
from genzoo.latents import decode_latents
from genzoo.methods.latents import LatentEncoder
from genzoo.testing import assert_resumes_exactly, run_training
from genzoo.training import TrainingError
from genzoo.training.arguments import parse_args
from genzoo.training.trainer import train

pytestmark = pytest.mark.slow

RESOLUTION = 16
SHAPES = ("--resolution", str(RESOLUTION))


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    """A tiny AutoencoderKL trained for a few steps on 16x16 shapes (two levels: 8x8 latents, 4 channels)."""
    out = tmp_path_factory.mktemp("latent") / "vae"
    run_training("vae", "shapes", out, *SHAPES, "--vae_block_out_channels", "8,16", "--latent_channels", "4")
    return out


def sample(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"batch_size": 2, "num_inference_steps": 3, "output_type": "pt", **kwargs}
    return pipe(generator=torch.Generator().manual_seed(0), **kwargs).images


@pytest.mark.parametrize("method", ["flow-matching", "ddpm", "meanflow", "rectified-flow"])
def test_every_denoising_method_trains_in_the_latent_space_and_its_pipeline_decodes(method, vae_folder, tmp_path):
    run_training(method, "shapes", tmp_path, *SHAPES, "--vae", str(vae_folder))
    pipe = genzoo.load_pipeline(tmp_path)
    assert isinstance(pipe.vae, diffusers.AutoencoderKL) and pipe.vae_scale_factor == 2
    assert pipe.unet.config.sample_size == RESOLUTION // 2 and pipe.unet.config.in_channels == 4
    images = sample(pipe)
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION)
    latents = sample(pipe, output_type="latent")
    assert latents.shape == (2, 4, RESOLUTION // 2, RESOLUTION // 2)
    decoded = ((decode_latents(pipe.vae, latents) + 1) / 2).clamp(0, 1)  # what "pt" is: the decoded latents
    torch.testing.assert_close(images, decoded, atol=1e-6, rtol=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["latent_shape"] == [4, RESOLUTION // 2, RESOLUTION // 2] and metrics["latent_cache"] is True


def test_the_latents_scale_is_measured_on_the_training_data_and_saved_in_the_vae_config(vae_folder, tmp_path):
    run_training("flow-matching", "shapes", tmp_path, *SHAPES, "--vae", str(vae_folder))
    vae = genzoo.load_pipeline(vae_folder).vae.eval()
    pixels = shapes_split("train", RESOLUTION, 256).pixels  # tiny_args trains on --num_samples 256
    images = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        dist = vae.encode(images).latent_dist
    z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(0))
    saved = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert saved["shift_factor"] == pytest.approx(float(z.mean()), abs=1e-5)
    assert saved["scaling_factor"] == pytest.approx(float(1 / z.std()), rel=1e-5)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["latent_scaling_factor"] == saved["scaling_factor"] and metrics["vae"] == str(vae_folder)
    # the frozen VAE is saved unchanged, apart from the two factors
    before = genzoo.load_pipeline(vae_folder).vae.state_dict()
    after = genzoo.load_pipeline(tmp_path).vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cached_and_uncached_latents_are_the_same_draws(vae_folder):
    """The cache (augmentation-free data) changes the cost of a batch, not its latents."""
    from argparse import Namespace

    from genzoo.data import load_training_data

    data = load_training_data(Namespace(dataset="shapes", resolution=RESOLUTION, num_samples=64))
    vae = genzoo.load_pipeline(vae_folder).vae.eval()
    cached, uncached = (LatentEncoder(vae, data.dataset, data.sample_shape) for _ in range(2))
    cached.prepare(cache=True, seed=0)
    facts = uncached.prepare(cache=False, seed=0)
    assert cached.mean is not None and uncached.mean is None and facts["latent_cache"] is False
    batch = {"sample": torch.stack([data.dataset[i]["sample"] for i in (3, 7, 9)]), "index": torch.tensor([3, 7, 9])}
    a = cached.latents(batch, torch.Generator().manual_seed(5))
    b = uncached.latents(batch, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_latent_run_resumes_exactly(vae_folder, tmp_path):
    assert_resumes_exactly("flow-matching", tmp_path, *SHAPES, "--vae", str(vae_folder), dataset="shapes")


@pytest.mark.parametrize("conditioning", ["class", "text"])
def test_conditional_latent_models_sample_what_they_are_asked(conditioning, vae_folder, tmp_path):
    extra = ("--max_prompt_length", "24") if conditioning == "text" else ()
    run_training("flow-matching", "shapes", tmp_path, *SHAPES, "--vae", str(vae_folder), "--conditioning",
                 conditioning, *extra)
    pipe = genzoo.load_pipeline(tmp_path)
    assert pipe.conditioning == conditioning and pipe.vae is not None
    asked = {"class_labels": ["circle", "cross"]} if conditioning == "class" else {
        "prompt": ["a small red circle in the top left", "a large blue square in the bottom right"]}
    images = sample(pipe, **asked)
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION)
    again = sample(genzoo.load_pipeline(tmp_path), **asked)
    assert torch.equal(images, again)


def test_push_and_load_by_hub_id_with_a_vae_given_by_hub_id(hub, vae_folder, tmp_path):
    """The VAE is read from the Hub by --vae, and the latent pipeline pushed and loaded back by id."""
    genzoo.load_pipeline(vae_folder).push_to_hub("user/vae-shapes", token=hub.token)
    run_training("flow-matching", "shapes", tmp_path / "run", *SHAPES, "--vae", "user/vae-shapes")
    local = genzoo.load_pipeline(tmp_path / "run")
    local.push_to_hub("user/latent-fm-shapes", token=hub.token)
    shutil.rmtree(hub.cache_dir, ignore_errors=True)
    by_genzoo = genzoo.load_pipeline("user/latent-fm-shapes")
    by_diffusers = diffusers.DiffusionPipeline.from_pretrained("user/latent-fm-shapes", trust_remote_code=True)
    assert type(by_diffusers) is genzoo.FlowMatchingPipeline and isinstance(by_diffusers.vae, diffusers.AutoencoderKL)
    expected = sample(local)
    assert torch.equal(sample(by_genzoo), expected) and torch.equal(sample(by_diffusers), expected)


def _refusal(tmp_path, *argv) -> str:
    with pytest.raises((ValueError, TrainingError)) as caught:
        train(parse_args(["--output_dir", str(tmp_path / "refused"), "--max_train_steps", "1", "--logger", "none",
                          "--train_batch_size", "8", *argv]))
    assert not (tmp_path / "refused" / "model_index.json").exists()
    return str(caught.value)


def test_bad_vae_options_are_refused_naming_the_vae(vae_folder, tmp_path):
    fm = tmp_path / "fm"
    run_training("flow-matching", "moons", fm)
    message = _refusal(tmp_path, "--method", "flow-matching", "--dataset", "shapes", *SHAPES, "--num_samples", "32",
                       "--vae", str(fm))
    assert f"--vae {fm}" in message and "FlowMatchingPipeline" in message and "AutoencoderKL" in message
    message = _refusal(tmp_path, "--method", "flow-matching", "--dataset", "shapes", *SHAPES, "--num_samples", "32",
                       "--vae", str(tmp_path / "missing"))
    assert "--vae" in message and "missing" in message
    message = _refusal(tmp_path, "--method", "flow-matching", "--dataset", "moons", "--vae", str(vae_folder))
    assert "--vae" in message and "vectors" in message
    message = _refusal(tmp_path, "--method", "flow-matching", "--dataset", "digits", "--vae", str(vae_folder))
    assert "3-channel" in message and "1x8x8" in message
    message = _refusal(tmp_path, "--method", "rectified-flow", "--dataset", "shapes", *SHAPES, "--num_samples", "32",
                       "--vae", str(vae_folder), "--teacher", str(fm))
    assert "--vae with --teacher" in message
