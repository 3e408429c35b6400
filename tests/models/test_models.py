"""Tests for genzoo.models: shapes, config validation, save/load round trips, conditioning, dtypes, VAE API."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import load_file

from genzoo.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    DiagonalGaussianDistributionND,
    MLPDenoiser,
    MLPDiscriminator,
    MLPGenerator,
    MLPVAE,
    vae_latent_shape,
)

B = 3
D = 2


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)).to(dtype)


# --- tiny model zoo: name -> (constructor, function computing a deterministic output tensor) -------------------

def _dcgan_g():
    return DCGANGenerator(sample_size=16, out_channels=3, latent_dim=4, base_channels=4, max_channels=8)


def _dcgan_d(spectral_norm=False):
    return DCGANDiscriminator(
        sample_size=16, in_channels=3, base_channels=4, max_channels=8, spectral_norm=spectral_norm
    )


ZOO = {
    "dcgan_g": (_dcgan_g, lambda m, dt: m(_randn(B, 4, dtype=dt)).sample),
    "dcgan_d": (_dcgan_d, lambda m, dt: m(_randn(B, 3, 16, 16, dtype=dt))),
    "dcgan_d_sn": (lambda: _dcgan_d(True), lambda m, dt: m(_randn(B, 3, 16, 16, dtype=dt))),
    "mlp_g": (lambda: MLPGenerator(sample_size=D, latent_dim=3, hidden_dim=8, num_layers=2),
              lambda m, dt: m(_randn(B, 3, dtype=dt)).sample),
    "mlp_d": (lambda: MLPDiscriminator(sample_size=D, hidden_dim=8, num_layers=2),
              lambda m, dt: m(_randn(B, D, dtype=dt))),
    "mlp_d_sn": (lambda: MLPDiscriminator(sample_size=D, hidden_dim=8, num_layers=2, spectral_norm=True),
                 lambda m, dt: m(_randn(B, D, dtype=dt))),
    "denoiser": (lambda: MLPDenoiser(sample_size=D, hidden_dim=8, num_layers=2, time_embed_dim=8),
                 lambda m, dt: m(_randn(B, D, dtype=dt), torch.tensor([1, 50, 900])).sample),
    "denoiser_cls": (lambda: MLPDenoiser(sample_size=D, hidden_dim=8, num_layers=2, time_embed_dim=8,
                                         num_class_embeds=3, out_channels=2 * D, layer_norm=False),
                     lambda m, dt: m(_randn(B, D, dtype=dt), 7.5, class_labels=torch.tensor([0, 1, 2])).sample),
    "vae": (lambda: MLPVAE(sample_size=D, latent_dim=3, hidden_dim=8, num_layers=1),
            lambda m, dt: m(_randn(B, D, dtype=dt), sample_posterior=True, generator=_gen(1)).sample),
}


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ZOO[name][0]()
    # One training-mode step so BatchNorm running stats and spectral-norm u/v move off their initial values
    # (otherwise a loader that silently dropped those buffers could still pass the round trip).
    model.train()
    with torch.no_grad():
        ZOO[name][1](model, torch.float32)
    return model.eval()


# --- DCGAN ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    g = DCGANGenerator(sample_size=size, out_channels=channels, latent_dim=5, base_channels=4, max_channels=16)
    d = DCGANDiscriminator(sample_size=size, in_channels=channels, base_channels=4, max_channels=16)
    img = g(torch.randn(B, *g.latent_shape)).sample
    assert img.shape == (B, channels, size, size)
    assert img.abs().max() <= 1.0  # tanh output
    assert d(img).shape == (B,)
    # the (B, latent_dim, 1, 1) layout gives the same images, and return_dict=False gives a 1-tuple
    g.eval()
    z = torch.randn(B, 5)
    (img_tuple,) = g(z[:, :, None, None], return_dict=False)
    torch.testing.assert_close(img_tuple, g(z).sample)


def test_dcgan_widths_double_toward_4x4_and_are_capped():
    g = DCGANGenerator(sample_size=64, latent_dim=4, base_channels=4, max_channels=16)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [16, 16, 8, 4, 1]
    d = DCGANDiscriminator(sample_size=64, base_channels=4, max_channels=16)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 16, 1]


@pytest.mark.parametrize("cls", [DCGANGenerator, DCGANDiscriminator])
@pytest.mark.parametrize("bad", [12, 4, 0, 2, -8, 8.0])
def test_dcgan_rejects_bad_sample_size(cls, bad):
    with pytest.raises(ValueError, match=rf"power of two >= 8.*got {bad!r}"):
        cls(sample_size=bad)


def test_dcgan_rejects_wrong_input_shapes():
    g, d = _dcgan_g(), _dcgan_d()
    with pytest.raises(ValueError, match="latent"):
        g(torch.randn(B, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        d(torch.randn(B, 3, 8, 8))


def test_discriminator_norm_options():
    def kinds(model):
        bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        sn = any("parametrizations.weight.original" in k for k in model.state_dict())
        return bn, sn

    assert kinds(_dcgan_d()) == (True, False)
    assert kinds(_dcgan_d(spectral_norm=True)) == (False, True)
    assert kinds(DCGANDiscriminator(sample_size=16, norm="none")) == (False, False)
    assert kinds(DCGANDiscriminator(sample_size=8)) == (False, False)  # DCGAN: no norm on the first conv
    with pytest.raises(ValueError, match="spectral_norm"):
        DCGANDiscriminator(sample_size=8, norm="batch", spectral_norm=True)
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(sample_size=8, norm="layer")
    assert kinds(MLPDiscriminator(spectral_norm=True)) == (False, True)


# --- save / load ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ZOO))
def test_save_load_round_trip(name, tmp_path: Path):
    model = _build(name)
    with torch.no_grad():
        expected = ZOO[name][1](model, torch.float32)
    model.save_pretrained(tmp_path)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert "config.json" in files
    weights = [f for f in files if f.endswith(".safetensors")]
    assert len(weights) == 1 and not any(f.endswith(".bin") for f in files), files
    saved = load_file(tmp_path / weights[0])
    assert set(saved) == set(model.state_dict())
    if name.endswith("_sn"):
        assert any(k.endswith("parametrizations.weight.0._u") for k in saved)

    loaded = type(model).from_pretrained(tmp_path).eval()
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(ZOO[name][1](loaded, torch.float32), expected)


@pytest.mark.parametrize("name", list(ZOO))
def test_bf16_forward_on_cpu(name):
    model = _build(name).to(torch.bfloat16)
    with torch.no_grad():
        out = ZOO[name][1](model, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("family", ["dcgan", "mlp"])
def test_generator_gets_gradient_through_discriminator_logits(family):
    torch.manual_seed(0)
    if family == "dcgan":
        g, d = _dcgan_g(), _dcgan_d()
    else:
        g = MLPGenerator(sample_size=D, latent_dim=3, hidden_dim=8, num_layers=2)
        d = MLPDiscriminator(sample_size=D, hidden_dim=8, num_layers=2, spectral_norm=True)
    logits = d(g(torch.randn(4, *g.latent_shape)).sample)
    assert logits.shape == (4,)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    for pname, p in g.named_parameters():
        assert p.grad is not None, pname
    assert all(p.grad.abs().sum() > 0 for p in g.parameters() if p.ndim > 1)


# --- MLPDenoiser ------------------------------------------------------------------------------------------------

@pytest.fixture
def denoiser():
    torch.manual_seed(0)
    return MLPDenoiser(sample_size=D, hidden_dim=16, num_layers=2, time_embed_dim=8).eval()


def test_denoiser_timestep_forms_agree(denoiser):
    x = torch.randn(B, D)
    ref = denoiser(x, torch.full((B,), 7)).sample
    assert ref.shape == (B, D)
    for t in (7, torch.tensor(7), torch.tensor([7]), torch.full((B,), 7.0)):
        torch.testing.assert_close(denoiser(x, t).sample, ref)
    ref_f = denoiser(x, torch.full((B,), 0.25)).sample
    torch.testing.assert_close(denoiser(x, 0.25).sample, ref_f)
    torch.testing.assert_close(denoiser(x, torch.tensor(0.25, dtype=torch.float64)).sample, ref_f)
    (tup,) = denoiser(x, 7, return_dict=False)
    torch.testing.assert_close(tup, ref)


def test_denoiser_depends_on_timestep(denoiser):
    x = torch.randn(B, D)
    assert not torch.allclose(denoiser(x, 10).sample, denoiser(x, 500).sample)
    # a python float is not truncated to an int (UNet2DModel would cast it to long)
    assert not torch.allclose(denoiser(x, 0.5).sample, denoiser(x, 0).sample)
    # per-sample timesteps: each row uses its own t
    mixed = denoiser(x, torch.tensor([10, 500, 10])).sample
    torch.testing.assert_close(mixed[1], denoiser(x, 500).sample[1])
    torch.testing.assert_close(mixed[2], denoiser(x, 10).sample[2])


def test_denoiser_rejects_bad_timestep_shape(denoiser):
    with pytest.raises(ValueError, match="timestep"):
        denoiser(torch.randn(B, D), torch.zeros(B + 1))


def test_denoiser_time_embed_scale():
    torch.manual_seed(0)
    a = MLPDenoiser(sample_size=D, hidden_dim=8, time_embed_dim=8, time_embed_scale=1000.0).eval()
    torch.manual_seed(0)
    b = MLPDenoiser(sample_size=D, hidden_dim=8, time_embed_dim=8).eval()
    x = torch.randn(B, D)
    torch.testing.assert_close(a(x, 0.25).sample, b(x, 250.0).sample)


def test_denoiser_class_conditioning():
    torch.manual_seed(0)
    m = MLPDenoiser(sample_size=D, hidden_dim=16, num_layers=2, time_embed_dim=8, num_class_embeds=4).eval()
    x = torch.randn(B, D)
    y0 = m(x, 3, class_labels=torch.zeros(B, dtype=torch.long)).sample
    y1 = m(x, 3, class_labels=torch.ones(B, dtype=torch.long)).sample
    assert y0.shape == (B, D)
    assert not torch.allclose(y0, y1)
    torch.testing.assert_close(m(x, 3, class_labels=torch.tensor(1)).sample, y1)  # scalar label broadcasts
    with pytest.raises(ValueError, match="class_labels"):
        m(x, 3)
    uncond = MLPDenoiser(sample_size=D, hidden_dim=8, time_embed_dim=8)
    with pytest.raises(ValueError, match="num_class_embeds"):
        uncond(x, 3, class_labels=torch.zeros(B, dtype=torch.long))


def test_denoiser_learned_variance_output():
    m = MLPDenoiser(sample_size=D, hidden_dim=8, time_embed_dim=8, out_channels=2 * D)
    assert m(torch.randn(B, D), 1).sample.shape == (B, 2 * D)


# --- MLPVAE -----------------------------------------------------------------------------------------------------

@pytest.fixture
def vae():
    torch.manual_seed(0)
    return MLPVAE(sample_size=D, latent_dim=3, hidden_dim=16, num_layers=2).eval()


def test_vae_posterior(vae):
    x = torch.randn(B, D)
    dist = vae.encode(x).latent_dist
    assert isinstance(dist, DiagonalGaussianDistribution)
    assert dist.mean.shape == dist.logvar.shape == (B, 3)
    torch.testing.assert_close(dist.mode(), dist.mean)
    torch.testing.assert_close(dist.std, torch.exp(0.5 * dist.logvar))
    torch.testing.assert_close(dist.var, torch.exp(dist.logvar))

    s1, s2 = dist.sample(generator=_gen(3)), dist.sample(generator=_gen(3))
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, dist.sample(generator=_gen(4)))
    # noise drawn exactly like AutoencoderKL's posterior: mean + std * randn(shape, generator)
    torch.testing.assert_close(s1, dist.mean + dist.std * torch.randn(B, 3, generator=_gen(3)))

    kl = dist.kl()
    assert kl.shape == (B,)
    closed = 0.5 * (dist.mean**2 + dist.var - 1 - dist.logvar).sum(dim=1)
    torch.testing.assert_close(kl, closed)
    torch.testing.assert_close(dist.kl(dist), torch.zeros(B), atol=1e-6, rtol=0)

    z = torch.randn(B, 3)
    nll = dist.nll(z)
    expected = 0.5 * (math.log(2 * math.pi) + dist.logvar + (z - dist.mean) ** 2 / dist.var).sum(dim=1)
    torch.testing.assert_close(nll, expected)

    assert vae.decode(z).sample.shape == (B, D)
    (dec,) = vae.decode(z, return_dict=False)
    assert dec.shape == (B, D)
    assert vae(x).sample.shape == (B, D)
    torch.testing.assert_close(vae(x).sample, vae.decode(dist.mode()).sample)


def test_nd_distribution_matches_diffusers_on_4d():
    params = torch.randn(B, 4, 3, 3)
    ours, theirs = DiagonalGaussianDistributionND(params), DiagonalGaussianDistribution(params)
    other = DiagonalGaussianDistribution(torch.randn(B, 4, 3, 3))
    torch.testing.assert_close(ours.kl(), theirs.kl())
    torch.testing.assert_close(ours.kl(other), theirs.kl(other))
    z = torch.randn(B, 2, 3, 3)
    torch.testing.assert_close(ours.nll(z), theirs.nll(z))
    det = DiagonalGaussianDistributionND(torch.randn(B, 4), deterministic=True)
    assert det.kl().shape == (B,) and not det.kl().any()


def test_vae_interface_matches_autoencoder_kl(vae):
    torch.manual_seed(0)
    akl = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8,), norm_num_groups=8, latent_channels=2, sample_size=8
    ).eval()
    cases = [(akl, torch.randn(B, 3, 8, 8)), (vae, torch.randn(B, D))]
    for model, x in cases:
        with torch.no_grad():
            dist = model.encode(x).latent_dist
            z = dist.sample(generator=_gen(0))
            assert torch.equal(z, model.encode(x).latent_dist.sample(generator=_gen(0)))
            assert tuple(z.shape[1:]) == vae_latent_shape(model)
            assert dist.kl().shape == (B,)
            assert model.decode(z).sample.shape == x.shape
            assert model(x, sample_posterior=True, generator=_gen(0)).sample.shape == x.shape
    assert vae_latent_shape(akl) == (2, 8, 8)
    assert vae_latent_shape(vae) == vae.latent_shape == (3,)
    assert vae.latent_channels == 3 and "scaling_factor" in vae.config


def test_vae_latent_shape_rejects_unknown_models():
    with pytest.raises(TypeError, match="latent shape"):
        vae_latent_shape(MLPDenoiser())
