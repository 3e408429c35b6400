"""Point-cloud distances (W2, MMD^2), the flow-matching exact likelihood and the VAE IWAE bound, each checked
against a case with a known answer."""

import copy
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.metrics import flow_log_likelihood
from genzoo.metrics.point_clouds import MMD_BANDWIDTHS, mmd_rbf, wasserstein2
from genzoo.metrics import iwae_nll
from genzoo.models.mlp_vae import DiagonalGaussianDistributionND

from helpers import tiny_autoencoder


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- wasserstein2
def test_w2_of_a_cloud_with_itself_is_zero():
    x = rng().standard_normal((50, 3))
    assert wasserstein2(x, x) == 0.0
    assert wasserstein2(x, x[::-1].copy()) == pytest.approx(0.0, abs=1e-12)  # order does not matter


def test_w2_of_a_translation_is_the_shift_length():
    x = rng(1).standard_normal((200, 3))
    c = np.array([0.3, -1.2, 2.0])
    assert wasserstein2(x, x + c) == pytest.approx(np.linalg.norm(c), rel=1e-12)
    assert wasserstein2(torch.from_numpy(x), torch.from_numpy(x + c)) == pytest.approx(np.linalg.norm(c), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_w2_matches_brute_force_over_permutations(seed):
    r = rng(seed)
    x, y = r.standard_normal((6, 2)), r.standard_normal((6, 2)) * 2 + 0.5
    best = min(np.mean(np.sum((x - y[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(6)))
    assert wasserstein2(x, y) == pytest.approx(math.sqrt(best), rel=1e-12)
    assert wasserstein2(y, x) == pytest.approx(math.sqrt(best), rel=1e-12)


def test_w2_between_gaussian_samples():
    r = rng(3)
    x, y = r.standard_normal((1000, 2)), r.standard_normal((1000, 2))
    shift = np.array([3.0, 0.0])
    same = wasserstein2(x, y)
    shifted = wasserstein2(x, y + shift)
    assert same < 0.3  # finite-sample W2 between two samples of one distribution
    # W2(N(0, I), N(c, I)) = |c|; empirically within the finite-sample error, and never below the mean gap
    assert shifted == pytest.approx(3.0, abs=0.1)
    assert shifted >= np.linalg.norm(y.mean(0) + shift - x.mean(0)) - 1e-12


def test_w2_rejects_unequal_sizes_and_dimensions():
    with pytest.raises(ValueError, match=r"10 points.*12 points"):
        wasserstein2(np.zeros((10, 2)), np.zeros((12, 2)))
    with pytest.raises(ValueError, match="same dimension"):
        wasserstein2(np.zeros((10, 2)), np.zeros((10, 3)))


# --------------------------------------------------------------------------- mmd_rbf
def test_mmd_bandwidths_are_the_default():
    assert MMD_BANDWIDTHS == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def test_mmd_matches_the_unbiased_estimator_by_hand():
    r = rng(4)
    x, y = r.standard_normal((5, 2)), r.standard_normal((4, 2)) + 0.7
    h = (0.3, 1.0)

    def k(a, b):
        return sum(math.exp(-np.sum((a - b) ** 2) / (2 * s * s)) for s in h)

    kxx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    kyy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    kxy = sum(k(a, b) for a in x for b in y) / 20
    assert mmd_rbf(x, y, bandwidths=h) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12, abs=1e-14)


def test_mmd_same_vs_shifted_and_symmetric():
    r = rng(5)
    x, y = r.standard_normal((600, 2)), r.standard_normal((500, 2))
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, y + np.array([0.5, 0.0]))
    assert abs(same) < 0.01
    assert shifted > 0.05 and shifted > 10 * abs(same)
    assert mmd_rbf(y, x) == pytest.approx(same, abs=1e-12)
    assert mmd_rbf(torch.from_numpy(x).float(), y) == pytest.approx(same, abs=1e-5)  # tensors, float32 accepted
    with pytest.raises(ValueError, match="at least 2"):
        mmd_rbf(x[:1], y)
    with pytest.raises(ValueError, match="positive"):
        mmd_rbf(x, y, bandwidths=(1.0, 0.0))


# --------------------------------------------------------------------------- flow_log_likelihood
class GaussianVelocity(torch.nn.Module):
    """The exact flow-matching velocity when the data is N(mean, std^2 I) and the noise N(0, I):
    v(x, t) = mean + (t std^2 - (1 - t)) / (t^2 std^2 + (1 - t)^2) * (x - t mean), t = timestep / time_scale."""

    def __init__(self, mean, std, time_scale):
        super().__init__()
        self.mean, self.std, self.time_scale = torch.as_tensor(mean, dtype=torch.float64), std, time_scale

    def forward(self, x, timestep):
        assert timestep.shape == (x.shape[0],)
        t = (timestep.double() / self.time_scale)[:, None]
        var = t**2 * self.std**2 + (1 - t) ** 2
        v = self.mean + (t * self.std**2 - (1 - t)) / var * (x.double() - t * self.mean)
        return SimpleNamespace(sample=v.to(x.dtype))


def gaussian_log_pdf(x, mean, std):
    d = x.shape[1]
    return -0.5 * ((x.double() - mean) ** 2).sum(1) / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def gaussian_case(d, std, scale_timesteps=True, n=64):
    scheduler = genzoo.FlowMatchEulerScheduler(scale_timesteps=scale_timesteps)
    mean = torch.linspace(-1.0, 1.5, d, dtype=torch.float64)
    model = GaussianVelocity(mean, std, scheduler.time_scale)
    x = mean + 1.5 * std * torch.randn(n, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    return model, scheduler, x, gaussian_log_pdf(x, mean, std), mean


@pytest.mark.parametrize("d,std,scale", [(2, 0.5, True), (2, 0.5, False), (1, 2.0, True), (3, 0.3, True)])
def test_flow_likelihood_of_an_exact_gaussian_flow(d, std, scale):
    model, scheduler, x, exact, mean = gaussian_case(d, std, scale)
    log_p, noise = flow_log_likelihood(model, scheduler, x, num_steps=100, return_noise=True)
    assert log_p.shape == (x.shape[0],) and log_p.dtype == torch.float64
    torch.testing.assert_close(log_p, exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(noise, (x - mean) / std, atol=1e-6, rtol=0)  # the flow maps x0 to mean + std * x0
    # float32 points: the ODE still runs in float64
    log_p32 = flow_log_likelihood(model, scheduler, x.float(), num_steps=100)
    torch.testing.assert_close(log_p32, gaussian_log_pdf(x.float(), mean, std), atol=1e-4, rtol=0)


def test_flow_likelihood_converges_with_steps():
    model, scheduler, x, exact, _ = gaussian_case(2, 0.5)
    rk4 = [(flow_log_likelihood(model, scheduler, x, num_steps=n) - exact).abs().max().item() for n in (5, 10, 20)]
    assert rk4[0] > 8 * rk4[1] > 64 * rk4[2]  # fourth order: ~16x per doubling
    euler = [(flow_log_likelihood(model, scheduler, x, num_steps=n, method="euler") - exact).abs().max().item()
             for n in (25, 50, 100)]
    assert 1.6 < euler[0] / euler[1] < 2.5 and 1.6 < euler[1] / euler[2] < 2.5  # first order
    assert euler[2] > 100 * rk4[2]


def test_flow_likelihood_on_an_mlp_denoiser():
    torch.manual_seed(0)
    model = genzoo.MLPDenoiser(sample_size=2, hidden_dim=32, num_layers=2).eval()
    scheduler = genzoo.FlowMatchEulerScheduler()
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    log_p = flow_log_likelihood(model, scheduler, x, num_steps=20)
    assert log_p.shape == (40,) and torch.isfinite(log_p).all()
    assert all(p.grad is None and p.requires_grad for p in model.parameters())  # no gradients left behind
    assert not log_p.requires_grad
    model64 = copy.deepcopy(model).double()
    torch.testing.assert_close(flow_log_likelihood(model64, scheduler, x.double(), num_steps=20), log_p,
                               atol=1e-5, rtol=0)
    # each point's value does not depend on the rest of the batch
    torch.testing.assert_close(flow_log_likelihood(model, scheduler, x[:3], num_steps=20), log_p[:3],
                               atol=1e-6, rtol=0)


def rough_mlp_denoiser():
    """A randomly initialised MLPDenoiser with its output scaled up: a velocity field far from any Gaussian flow."""
    torch.manual_seed(0)
    model = genzoo.MLPDenoiser(sample_size=2, hidden_dim=32, num_layers=2).eval()
    with torch.no_grad():
        model.proj_out.weight.mul_(3)
        model.proj_out.bias.mul_(3)
    return model


def test_flow_likelihood_is_a_normalised_density():
    model, scheduler = rough_mlp_denoiser(), genzoo.FlowMatchEulerScheduler()
    h = 0.25  # midpoint rule on [-8, 8]^2
    g = torch.arange(-8, 8, h) + h / 2
    grid = torch.stack([c.flatten() for c in torch.meshgrid(g, g, indexing="ij")], dim=1)
    log_p = flow_log_likelihood(model, scheduler, grid, num_steps=20)
    assert (log_p.exp() * h * h).sum().item() == pytest.approx(1.0, abs=2e-3)  # measured 1.00011
    gauss = -0.5 * (grid.double() ** 2).sum(1) - math.log(2 * math.pi)
    assert (log_p - gauss)[log_p.exp() > 1e-3].abs().max() > 1.0  # and not just N(0, I)


@pytest.mark.parametrize("scale", [True, False])
def test_flow_likelihood_inverts_the_sampling_pipeline(scale):
    """Backward integration lands where the pipeline's forward sampling started: same direction, same time units."""
    model = rough_mlp_denoiser()
    pipe = genzoo.FlowMatchingPipeline(unet=model, scheduler=genzoo.FlowMatchHeunScheduler(scale_timesteps=scale))
    pipe.set_progress_bar_config(disable=True)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))
    x1 = pipe(batch_size=16, latents=x0, num_inference_steps=100, output_type="pt", return_dict=False)[0]
    assert (x1 - x0).abs().max() > 1.0
    _, noise = flow_log_likelihood(model, genzoo.FlowMatchEulerScheduler(scale_timesteps=scale), x1, num_steps=50,
                                   return_noise=True)
    torch.testing.assert_close(noise.float(), x0, atol=1e-2, rtol=0)  # measured 2e-3 (Heun's error, mostly)


def test_flow_likelihood_rejects_what_it_cannot_do():
    model, scheduler, x, _, _ = gaussian_case(2, 0.5, n=4)
    with pytest.raises(ValueError, match="velocity"):
        flow_log_likelihood(model, genzoo.FlowMatchEulerScheduler(prediction_type="sample"), x)
    with pytest.raises(ValueError, match="method"):
        flow_log_likelihood(model, scheduler, x, method="heun")
    with pytest.raises(ValueError, match="num_steps"):
        flow_log_likelihood(model, scheduler, x, num_steps=0)
    with pytest.raises(ValueError, match="time_scale"):
        flow_log_likelihood(model, genzoo.DDPMScheduler(), x)


# --------------------------------------------------------------------------- iwae_nll
class LinearGaussianVAE(torch.nn.Module):
    """z ~ N(0, I), x = W z + b + N(0, I/2): p(x) = N(b, W W^T + I/2). W has orthogonal columns, so the true
    posterior is diagonal: cov = diag(1 / (1 + 2 |W_j|^2)), mean = cov * 2 W^T (x - b). ``mean_error`` and
    ``logvar_error`` perturb the encoder away from it."""

    def __init__(self, d=4, latent=2, mean_error=0.0, logvar_error=0.0):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(d, latent, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        self.W = q * torch.tensor([1.5, 0.7], dtype=torch.float64)[:latent]
        self.b = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)
        self.mean_error, self.logvar_error = mean_error, logvar_error

    def encode(self, x):
        var = 1.0 / (1.0 + 2.0 * (self.W**2).sum(0))
        mean = var * (2.0 * (x - self.b) @ self.W) + self.mean_error
        logvar = torch.log(var).expand_as(mean) + self.logvar_error
        return SimpleNamespace(latent_dist=DiagonalGaussianDistributionND(torch.cat([mean, logvar], dim=1)))

    def decode(self, z):
        return SimpleNamespace(sample=z @ self.W.T + self.b)

    def sample_data(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=torch.float64)
        noise = torch.randn(n, self.W.shape[0], generator=g, dtype=torch.float64)
        return self.decode(z).sample + math.sqrt(0.5) * noise

    def exact_nll(self, x):
        cov = self.W @ self.W.T + 0.5 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return -torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_iwae_is_exact_with_the_true_posterior():
    vae = LinearGaussianVAE()
    x = vae.sample_data(20)
    for k in (1, 5):  # every importance weight equals p(x): zero variance, for any k
        nll = iwae_nll(vae, x, k=k, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(nll, vae.exact_nll(x), atol=1e-9, rtol=0)


def test_iwae_tightens_with_k_towards_the_exact_nll():
    vae = LinearGaussianVAE(mean_error=0.4, logvar_error=0.8)
    x = vae.sample_data(300)
    exact = vae.exact_nll(x).mean().item()
    bounds = [iwae_nll(vae, x, k=k, generator=torch.Generator().manual_seed(0)).mean().item() for k in (1, 4, 32, 256)]
    assert bounds[0] > bounds[1] > bounds[2] > bounds[3] > exact - 1e-3
    assert bounds[3] - exact < 0.1 * (bounds[0] - exact)


def vae_and_points(n=64):
    torch.manual_seed(0)
    vae = genzoo.MLPVAE(sample_size=2, latent_dim=3, hidden_dim=32).eval()
    return vae, torch.randn(n, 2, generator=torch.Generator().manual_seed(1))


def test_iwae_on_an_mlp_vae_is_deterministic_and_batch_size_free():
    vae, x = vae_and_points()
    a = iwae_nll(vae, x, k=16, generator=torch.Generator().manual_seed(3))
    b = iwae_nll(vae, x, k=16, generator=torch.Generator().manual_seed(3), batch_size=37)
    c = iwae_nll(vae, x, k=16, generator=torch.Generator().manual_seed(4))
    assert a.shape == (64,) and a.dtype == torch.float64 and not a.requires_grad
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(a, c)
    assert all(p.grad is None for p in vae.parameters())


def test_iwae_k1_is_the_elbo_of_the_training_draws():
    vae, x = vae_and_points()
    nll = iwae_nll(vae, x, k=1, generator=torch.Generator().manual_seed(7))
    # the training loss's draw with the same seed, and its single-sample negative ELBO
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=torch.Generator().manual_seed(7))
        recon = (vae.decode(z).sample - x).pow(2).sum(1).double()  # VAEMethod's "mse"
        q = torch.distributions.Normal(posterior.mean.double(), posterior.std.double())
        log_q = q.log_prob(z.double()).sum(1)
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z.double()).sum(1)
        kl = posterior.kl().double()
    torch.testing.assert_close(nll, recon + math.log(math.pi) + log_q - log_p, atol=1e-5, rtol=0)  # D/2 = 1
    # and in expectation the sampled KL is the analytic one: -(ELBO) = recon + (D/2) log pi + KL
    gap = (log_q - log_p) - kl
    assert abs(gap.mean().item()) < 4 * gap.std().item() / math.sqrt(len(gap))


def test_iwae_on_an_mlp_vae_tightens_with_k_on_average():
    vae, x = vae_and_points(n=200)
    bounds = [iwae_nll(vae, x, k=k, generator=torch.Generator().manual_seed(0)).mean().item() for k in (1, 8, 64)]
    assert bounds[0] > bounds[1] > bounds[2]


def test_iwae_bce_on_an_autoencoder_kl():
    torch.manual_seed(0)
    vae = tiny_autoencoder(channels=1, size=8).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    nll = iwae_nll(vae, x, k=1, generator=torch.Generator().manual_seed(5), recon_loss="bce")
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(5))
        z = posterior.mean + posterior.std * eps
        probs = ((vae.decode(z).sample + 1) / 2).clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(probs, (x + 1) / 2, reduction="none").flatten(1).sum(1).double()
        log_q = torch.distributions.Normal(posterior.mean, posterior.std).log_prob(z).flatten(1).sum(1).double()
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1).double()
    torch.testing.assert_close(nll, bce + log_q - log_p, atol=1e-3, rtol=1e-5)
    k4 = iwae_nll(vae, x, k=4, generator=torch.Generator().manual_seed(5), recon_loss="bce", batch_size=5)
    assert k4.shape == (3,) and torch.isfinite(k4).all()


def test_iwae_rejects_bad_arguments():
    vae, x = vae_and_points(n=4)
    with pytest.raises(ValueError, match="recon_loss"):
        iwae_nll(vae, x, recon_loss="l1")
    with pytest.raises(ValueError, match="k must"):
        iwae_nll(vae, x, k=0)


def test_the_real_data_floor_of_a_point_set_is_real_points_against_its_reference():
    """Two independent 1000-point draws of the true moons are about 0.11 apart in W2 (docs/few-step.md): what a
    perfect model scores against the held-out reference of evaluate_pipeline."""
    from genzoo.data import get_dataset
    from genzoo.data.sets import REFERENCE_SEED_OFFSET

    moons = get_dataset("moons")
    floor = moons.real_data_floor(1000, seed=0)
    assert 0.08 < floor["w2"] < 0.16 and abs(floor["mmd2_rbf"]) < 0.01 and floor["num_samples"] == 1000
    real = moons.points(1000, np.random.default_rng(0)).astype(np.float64)
    reference = moons.points(1000, np.random.default_rng(REFERENCE_SEED_OFFSET)).astype(np.float64)
    assert floor["w2"] == wasserstein2(real, reference) and np.array_equal(moons.reference(1000, 0), reference)
