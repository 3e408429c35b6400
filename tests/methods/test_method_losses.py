"""Unit tests of the built-in methods' ``loss`` (ddpm, flow-matching, gan, vae) on a tiny batch, without the trainer.

Every expected value is re-derived here from the papers' formulas, replaying the method's random draws: the generator
handed to ``loss`` is cloned (``get_state`` / ``set_state``) and the clone draws what the method draws, in the order
the method's code draws it (``DenoisingMethod.denoise``: the dropped labels, the noise, the timesteps; ``GANMethod``:
``z``, then the WGAN-GP mixing weights; ``VAEMethod``: the posterior's ``eps``). After the replay both generators must
be in the same state, so the method draws exactly that much randomness. Models are the methods' own, at the sizes of
their ``smoke_test_options``, on 6 moons (vectors) and 6 digits (8x8 images).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from helpers import assert_same_state, batch_of, build, clone, per_example, seeded


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on one thread: intra-op threads only add synchronisation at these sizes (on a busy 2-core machine
    a 6x8x8x8 convolution takes ~40 ms with two threads and ~0.1 ms with one). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recording(torch.nn.Module):
    """Wraps a denoiser: records each call's arguments and output (a non-leaf tensor one can take gradients to)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs).sample
        self.calls.append(SimpleNamespace(args=args, kwargs=kwargs, output=out))
        return SimpleNamespace(sample=out)


# ----------------------------------------------------------------------------------------------------------- cases
#: (method, dataset, options) for the shape and determinism checks
CASES = [
    ("ddpm", "moons", {}),
    ("ddpm", "digits", {}),
    ("ddpm", "moons", {"variance_type": "learned_range"}),
    ("ddpm", "digits", {"variance_type": "learned_range"}),
    ("ddpm", "digits", {"conditioning": "class"}),
    ("flow-matching", "moons", {}),
    ("flow-matching", "digits", {}),
    ("flow-matching", "digits", {"conditioning": "class"}),
    ("gan", "moons", {}),
    ("gan", "digits", {}),
    ("gan", "moons", {"gan_loss": "wgan_gp", "r1_gamma": 1.0}),
    ("gan", "digits", {"conditioning": "class", "gan_loss": "hinge"}),
    ("vae", "moons", {}),
    ("vae", "digits", {}),
    ("vae", "digits", {"conditioning": "class", "recon_loss": "bce"}),
]
CASE_IDS = [f"{m}-{d}" + "".join(f"-{k}={v}" for k, v in o.items()) for m, d, o in CASES]


def documented_terms(method, phase: str) -> set[str]:
    """The logged terms each method's docs name."""
    name, config = method.name, method.config
    if name == "ddpm" and config.variance_type == "learned_range":
        return {"loss", "mse", "vlb_bits_per_dim"}
    if name in ("ddpm", "flow-matching"):
        return {"loss"}
    if name == "gan":
        if phase == "generator":
            return {"loss_g"}
        return {"loss_d", "d_real", "d_fake"} | ({"r1"} if config.r1_gamma > 0 else set())
    return {"loss", "recon", "kl", "beta"}


# ---------------------------------------------------------------------------------------- 1. shapes and terms
@pytest.mark.parametrize("method_name,dataset,options", CASES, ids=CASE_IDS)
def test_loss_is_a_finite_scalar_with_the_documented_terms(method_name, dataset, options):
    method, models, batch = build(method_name, dataset, **options)
    phases = method.phases(0)
    assert phases == list(method.optimizer_groups())
    for phase in phases:
        loss, terms = method.loss(phase, models, batch, 0, seeded(0))
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.dtype == torch.float32
        assert torch.isfinite(loss) and loss.requires_grad
        assert set(terms) == documented_terms(method, phase)
        for name, value in terms.items():
            assert isinstance(value, torch.Tensor) and value.ndim == 0 and torch.isfinite(value), name
        if "loss" in terms:
            torch.testing.assert_close(terms["loss"], loss)


# ---------------------------------------------------------------------------------- 2. hand-computed values
def replay_labels(method, batch, replay):
    """The class labels the denoiser must get: each replaced by the null label (K, one past the last of the K
    classes) with probability cond_dropout, one uniform draw per example."""
    if method.config.conditioning != "class":
        return {}
    labels = batch["label"]
    null = method.data.num_classes
    drop = torch.rand(labels.shape, generator=replay) < method.config.cond_dropout
    return {"class_labels": torch.where(drop, torch.full_like(labels, null), labels)}


def flow_matching_reference(method, models, batch, replay):
    """Straight-path flow matching: t drawn by time_sampling and shifted, x_t = (1 - t) noise + t x, the model fed
    t times the scheduler's time scale, target x - noise (velocity) or x (sample), mean squared error."""
    config, scheduler = method.config, method.training_scheduler
    x = batch["sample"]
    size = x.shape[0]
    cond = replay_labels(method, batch, replay)
    noise = torch.randn(x.shape, generator=replay)
    if config.time_sampling == "uniform":
        t = torch.rand(size, generator=replay)
    else:
        t = torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(size, generator=replay))
    shift = scheduler.config.shift if config.shift is None else config.shift
    if shift != 1:
        t = t / (t + shift * (1 - t))  # SD3's shift, sigma' = shift sigma / (1 + (shift - 1) sigma)
    scale = scheduler.config.num_train_timesteps if scheduler.config.scale_timesteps else 1
    tb = per_example(t, x)
    x_t = (1 - tb) * noise + tb * x
    prediction = models["unet"](x_t, t * scale, **cond).sample
    target = x if config.prediction_type == "sample" else x - noise
    return (prediction - target).pow(2).mean()


FLOW_CASES = [
    ("moons", {}),
    ("digits", {}),
    ("moons", {"time_sampling": "logit_normal", "logit_mean": 0.5, "logit_std": 0.8, "shift": 3.0}),
    ("moons", {"prediction_type": "sample", "shift": 0.5}),
    ("digits", {"conditioning": "class", "cond_dropout": 0.5}),
]


@pytest.mark.parametrize("dataset,options", FLOW_CASES, ids=[f"{d}-{o}" for d, o in FLOW_CASES])
def test_flow_matching_loss_matches_the_hand_computed_value(dataset, options):
    method, models, batch = build("flow-matching", dataset, **options)
    generator = seeded(3)
    replay = clone(generator)
    loss, _ = method.loss("model", models, batch, 0, generator)
    expected = flow_matching_reference(method, models, batch, replay)
    assert_same_state(generator, replay)
    torch.testing.assert_close(loss, expected)


def ddpm_alpha_bar(config) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s) of DDPM's linear schedule (float32, like the scheduler)."""
    assert config.beta_schedule == "linear"
    betas = torch.linspace(config.beta_start, config.beta_end, config.num_train_timesteps, dtype=torch.float32)
    return torch.cumprod(1 - betas, dim=0)


def ddpm_replay(method, models, batch, replay):
    """``(x, noise, t, x_t, output)``: t uniform on {0, ..., T - 1}, x_t = sqrt(abar) x + sqrt(1 - abar) noise."""
    x = batch["sample"]
    cond = replay_labels(method, batch, replay)
    noise = torch.randn(x.shape, generator=replay)
    t = torch.randint(0, method.config.num_train_timesteps, (x.shape[0],), generator=replay)
    abar = per_example(ddpm_alpha_bar(method.config)[t], x)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    return x, noise, t, x_t, models["unet"](x_t, t, **cond).sample


def ddpm_mse_reference(config, prediction, x, noise, t):
    """The regression onto noise / x_0 / v (Salimans & Ho), each example's mean squared error weighted by min-SNR
    (Hang et al. 2023): min(snr, gamma) / snr for epsilon, / (snr + 1) for v, min(snr, gamma) for x_0."""
    alpha_bar = ddpm_alpha_bar(config)[t]
    a, s = per_example(alpha_bar.sqrt(), x), per_example((1 - alpha_bar).sqrt(), x)
    target = {"epsilon": noise, "sample": x, "v_prediction": a * noise - s * x}[config.prediction_type]
    per_sample = (prediction - target).pow(2).flatten(1).mean(dim=1)
    if config.snr_gamma is None:
        return per_sample.mean()
    snr = alpha_bar / (1 - alpha_bar)
    clipped = torch.minimum(snr, torch.full_like(snr, config.snr_gamma))
    weight = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[config.prediction_type]
    return (weight * per_sample).mean()


DDPM_CASES = [
    ("moons", {}),
    ("digits", {}),
    ("moons", {"snr_gamma": 5.0}),
    ("digits", {"snr_gamma": 2.0}),
    ("moons", {"prediction_type": "v_prediction", "snr_gamma": 5.0}),
    ("moons", {"prediction_type": "sample", "snr_gamma": 5.0}),
    ("moons", {"prediction_type": "sample"}),
    ("digits", {"conditioning": "class", "cond_dropout": 0.5}),
]


@pytest.mark.parametrize("dataset,options", DDPM_CASES, ids=[f"{d}-{o}" for d, o in DDPM_CASES])
def test_ddpm_loss_matches_the_hand_computed_value(dataset, options):
    method, models, batch = build("ddpm", dataset, **options)
    generator = seeded(4)
    replay = clone(generator)
    loss, _ = method.loss("model", models, batch, 0, generator)
    x, noise, t, _, output = ddpm_replay(method, models, batch, replay)
    assert_same_state(generator, replay)
    torch.testing.assert_close(loss, ddpm_mse_reference(method.config, output, x, noise, t))


def vlb_reference(config, output, x, x_t, t) -> torch.Tensor:
    """Improved DDPM's L_t in bits per dimension, per example, in float64: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} |
    x_t)) for t > 0, -log p(x_0 | x_1) (a Gaussian) for t = 0.

    The chain's betas follow from its marginals, beta_t = 1 - abar_t / abar_{t-1}; the posterior has variance
    beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) and mean sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 +
    sqrt(1 - beta_t) (1 - abar_{t-1}) / (1 - abar_t) x_t; the model's reverse step has the posterior mean at its
    x_0 estimate and log-variance v log beta_t + (1 - v) log beta~_t with v = (output + 1) / 2, beta~_0 taken as
    beta~_1 (eqs. 10-15 of Nichol & Dhariwal 2021)."""
    channels = x.shape[1]
    abar = ddpm_alpha_bar(config).double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    beta = 1 - abar / abar_prev
    posterior_var = beta * (1 - abar_prev) / (1 - abar)
    posterior_var = torch.cat([posterior_var[1:2], posterior_var[1:]])

    def at(values):
        return per_example(values[t], x)

    x, x_t, output = x.double(), x_t.double(), output.double()
    prediction, v = output[:, :channels], output[:, channels:]
    a, s = at(abar).sqrt(), (1 - at(abar)).sqrt()
    x0_estimate = {"epsilon": (x_t - s * prediction) / a, "sample": prediction,
                   "v_prediction": a * x_t - s * prediction}[config.prediction_type]

    def posterior_mean(x0):
        return (at(abar_prev).sqrt() * at(beta) / (1 - at(abar)) * x0
                + (1 - at(beta)).sqrt() * (1 - at(abar_prev)) / (1 - at(abar)) * x_t)

    frac = (v + 1) / 2
    model_var = torch.exp(frac * at(beta).log() + (1 - frac) * at(posterior_var).log())
    model = Normal(posterior_mean(x0_estimate), model_var.sqrt())
    true = Normal(posterior_mean(x), at(posterior_var).sqrt())
    kl = kl_divergence(true, model).flatten(1).mean(dim=1)
    nll = -model.log_prob(x).flatten(1).mean(dim=1)
    return torch.where(t == 0, nll, kl) / math.log(2)


VLB_CASES = [
    ("moons", "epsilon"),
    ("digits", "epsilon"),
    ("moons", "v_prediction"),
    ("moons", "sample"),
]


@pytest.mark.parametrize("dataset,prediction_type", VLB_CASES)
def test_ddpm_vlb_term_is_the_posterior_kl_in_bits_per_dim_and_the_nll_at_t0(dataset, prediction_type):
    """``vlb_term`` at chosen timesteps (0, 1, the middle, the end) against torch.distributions' KL and log-density."""
    method, models, batch = build("ddpm", dataset, variance_type="learned_range", prediction_type=prediction_type)
    T = method.config.num_train_timesteps
    x = batch["sample"]
    gen = seeded(5)
    noise = torch.randn(x.shape, generator=gen)
    t = torch.tensor([0, 1, 2, T // 2, T - 1, 0])
    abar = per_example(ddpm_alpha_bar(method.config)[t], x)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    # a model-like output: a rough mean prediction, and variance fractions in and a little outside [-1, 1]
    output = torch.cat([0.5 * torch.randn(x.shape, generator=gen), 1.2 * torch.rand(x.shape, generator=gen) * 2 - 1.2],
                       dim=1)
    got = method.vlb_term(output, x, x_t, t)
    assert got.shape == (x.shape[0],)
    torch.testing.assert_close(got.double(), vlb_reference(method.config, output, x, x_t, t), rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize("dataset", ["moons", "digits"])
def test_ddpm_learned_range_loss_is_the_hybrid_loss(dataset):
    """L_hybrid = L_simple + lambda * T * L_t (Nichol & Dhariwal 2021, sec. 3.1), terms logged separately."""
    method, models, batch = build("ddpm", dataset, variance_type="learned_range", vlb_weight=0.01)
    generator = seeded(6)
    replay = clone(generator)
    loss, terms = method.loss("model", models, batch, 0, generator)
    x, noise, t, x_t, output = ddpm_replay(method, models, batch, replay)
    assert_same_state(generator, replay)
    channels = x.shape[1]
    assert output.shape[1] == 2 * channels
    mse = ddpm_mse_reference(method.config, output[:, :channels], x, noise, t)
    vlb = vlb_reference(method.config, output, x, x_t, t).mean()
    torch.testing.assert_close(terms["mse"], mse)
    torch.testing.assert_close(terms["vlb_bits_per_dim"].double(), vlb, rtol=1.3e-6, atol=1e-5)
    expected = mse.double() + method.config.vlb_weight * method.config.num_train_timesteps * vlb
    torch.testing.assert_close(loss.double(), expected, rtol=1.3e-6, atol=1e-5)


GAN_LOSSES = ("non_saturating", "hinge", "wgan_gp")


def input_gradient(D, inputs, labels):
    inputs = inputs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(inputs, labels).sum(), inputs)
    return grad.flatten(1)


def gan_reference(method, models, batch, phase, replay, gamma_r1):
    """The GAN losses on the discriminator's logits, in float64: non-saturating (-log sigmoid(D(x)) - log(1 -
    sigmoid(D(G(z)))) for D, -log sigmoid(D(G(z))) for G), hinge (E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] for D,
    -E[D(G(z))] for G), WGAN-GP (E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x^)|| - 1)^2] on x^ = a x + (1 - a) G(z),
    a ~ U(0, 1) per example; -E[D(G(z))] for G), plus gamma / 2 E[||grad D(x)||^2] on real data (R1)."""
    config = method.config
    G, D = models["generator"], models["discriminator"]
    real = batch["sample"]
    labels = batch["label"] if config.conditioning == "class" else None
    z = torch.randn((real.shape[0], config.latent_dim), generator=replay)
    if phase == "generator":
        d_fake = D(G(z, labels).sample, labels).double()
        if config.gan_loss == "non_saturating":
            return -torch.log(torch.sigmoid(d_fake)).mean()
        return -d_fake.mean()
    with torch.no_grad():
        fake = G(z, labels).sample
    d_real, d_fake = D(real, labels).double(), D(fake, labels).double()
    if config.gan_loss == "non_saturating":
        loss = -torch.log(torch.sigmoid(d_real)).mean() - torch.log(1 - torch.sigmoid(d_fake)).mean()
    elif config.gan_loss == "hinge":
        loss = torch.clamp(1 - d_real, min=0).mean() + torch.clamp(1 + d_fake, min=0).mean()
    else:
        a = per_example(torch.rand(real.shape[0], generator=replay), real)
        norms = input_gradient(D, a * real + (1 - a) * fake, labels).double().norm(dim=1)
        loss = d_fake.mean() - d_real.mean() + config.gp_weight * (norms - 1).pow(2).mean()
    if gamma_r1 > 0:
        loss = loss + gamma_r1 / 2 * input_gradient(D, real, labels).double().pow(2).sum(dim=1).mean()
    return loss


GAN_CASES = [
    (dataset, gan_loss, phase, r1)
    for dataset in ("moons", "digits")
    for gan_loss in GAN_LOSSES
    for phase in ("discriminator", "generator")
    for r1 in ((0.0, 2.0) if phase == "discriminator" else (0.0,))
] + [("digits", "non_saturating", phase, 0.0, "class") for phase in ("discriminator", "generator")]


@pytest.mark.parametrize("case", GAN_CASES, ids=["-".join(map(str, c)) for c in GAN_CASES])
def test_gan_losses_match_the_hand_computed_values(case):
    dataset, gan_loss, phase, r1_gamma, *conditioning = case
    options = {"gan_loss": gan_loss, "r1_gamma": r1_gamma, "gp_weight": 3.0}
    if conditioning:
        options["conditioning"] = conditioning[0]
    method, models, batch = build("gan", dataset, **options)
    generator = seeded(7)
    replay = clone(generator)
    loss, terms = method.loss(phase, models, batch, 0, generator)
    expected = gan_reference(method, models, batch, phase, replay, r1_gamma)
    assert_same_state(generator, replay)
    torch.testing.assert_close(loss.double(), expected, rtol=1.3e-6, atol=1e-5)
    if phase == "discriminator":
        D = models["discriminator"]
        labels = batch["label"] if conditioning else None
        torch.testing.assert_close(terms["d_real"], D(batch["sample"], labels).mean())


def vae_reference(method, models, batch, step, replay):
    """ELBO: z = mu + sigma eps (eps from the generator), recon = sum of squared errors or the Bernoulli NLL of the
    pixels mapped to [0, 1] (probabilities (x_hat + 1) / 2 kept within [1e-6, 1 - 1e-6]) plus how far each output
    lies outside [-1, 1], KL(N(mu, sigma^2) || N(0, I)) summed over the latent, loss = mean(recon + beta * KL)."""
    config, vae = method.config, models["vae"]
    x = batch["sample"]
    labels = {"class_labels": batch["label"]} if config.conditioning == "class" else {}
    posterior = vae.encode(x, **labels).latent_dist
    mu, std = posterior.mean, torch.exp(0.5 * posterior.logvar)
    z = mu + std * torch.randn(mu.shape, generator=replay)
    x_hat = vae.decode(z, **labels).sample
    if config.recon_loss == "mse":
        recon = (x_hat - x).pow(2).flatten(1).sum(dim=1)
    else:
        p, y = ((x_hat + 1) / 2).clamp(1e-6, 1 - 1e-6), (x + 1) / 2
        recon = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).flatten(1).sum(dim=1)
        recon = recon + torch.relu(x_hat.abs() - 1).flatten(1).sum(dim=1)
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(std))).flatten(1).sum(dim=1)
    warmup = config.kl_warmup_steps
    beta = config.beta * (min(1.0, (step + 1) / warmup) if warmup else 1.0)  # update step + 1 of a linear ramp
    return (recon + beta * kl).mean(), recon.mean(), kl.mean(), beta


VAE_CASES = [
    ("moons", {}, 0),
    ("digits", {}, 0),
    ("digits", {"recon_loss": "bce", "beta": 0.5}, 0),
    ("moons", {"beta": 2.0, "kl_warmup_steps": 4}, 1),
    ("digits", {"conditioning": "class", "kl_warmup_steps": 3}, 5),
]


@pytest.mark.parametrize("dataset,options,step", VAE_CASES, ids=[f"{d}-{o}-step{s}" for d, o, s in VAE_CASES])
def test_vae_loss_matches_the_hand_computed_elbo(dataset, options, step):
    method, models, batch = build("vae", dataset, **options)
    generator = seeded(8)
    replay = clone(generator)
    loss, terms = method.loss("model", models, batch, step, generator)
    expected, recon, kl, beta = vae_reference(method, models, batch, step, replay)
    assert_same_state(generator, replay)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], kl)
    assert float(terms["beta"]) == pytest.approx(beta)


@pytest.mark.parametrize("beta,warmup", [(1.0, 0), (1.0, 1), (0.5, 4), (3.0, 10)])
def test_vae_beta_ramps_linearly_to_beta_over_the_warmup_steps(beta, warmup):
    method, _, _ = build("vae", "moons", beta=beta, kl_warmup_steps=warmup)
    values = [method.beta_at(step) for step in range(2 * warmup + 3)]
    if warmup == 0:
        assert values == [beta] * len(values)
        return
    ramp = values[:warmup]
    assert 0 < ramp[0] < beta or warmup == 1
    steps = [b - a for a, b in zip(ramp, ramp[1:])]
    for d in steps:  # linear: equal increments of beta / warmup
        assert d == pytest.approx(beta / warmup)
    assert values[warmup - 1] == pytest.approx(beta)  # full beta at the warmup-th update (step warmup - 1) ...
    assert values[warmup - 1:] == [pytest.approx(beta)] * len(values[warmup - 1:])  # ... and from then on


# -------------------------------------------------------------------------------------- 3. where gradients go
def grad_norm(module) -> float:
    return sum(float(p.grad.norm()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("dataset", ["moons", "digits"])
@pytest.mark.parametrize("gan_loss", GAN_LOSSES)
def test_gan_discriminator_phase_never_reaches_the_generator(dataset, gan_loss):
    method, models, batch = build("gan", dataset, gan_loss=gan_loss, r1_gamma=1.0)
    G, D = models["generator"], models["discriminator"]
    assert all(p.requires_grad for p in G.parameters())  # on, as a careless caller might leave it
    loss, _ = method.loss("discriminator", models, batch, 0, seeded(0))
    loss.backward()
    assert all(p.grad is None for p in G.parameters())
    assert grad_norm(D) > 0

    D.zero_grad(set_to_none=True)
    loss, _ = method.loss("generator", models, batch, 0, seeded(0))
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())
    assert grad_norm(G) > 0


@pytest.mark.parametrize("dataset", ["moons", "digits"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_learned_variance_vlb_trains_only_the_variance_and_mse_only_the_mean(dataset, prediction_type):
    method, models, batch = build("ddpm", dataset, variance_type="learned_range", prediction_type=prediction_type)
    models = {"unet": Recording(models["unet"])}
    _, terms = method.loss("model", models, batch, 0, seeded(1))
    (call,) = models["unet"].calls
    output, channels = call.output, batch["sample"].shape[1]
    (d_vlb,) = torch.autograd.grad(terms["vlb_bits_per_dim"], output, retain_graph=True)
    (d_mse,) = torch.autograd.grad(terms["mse"], output)
    assert torch.count_nonzero(d_vlb[:, :channels]) == 0  # the mean's gradient is stopped in L_vlb
    assert torch.all(d_vlb[:, channels:] != 0)
    assert torch.count_nonzero(d_mse[:, channels:]) == 0  # L_simple does not see the variance
    assert torch.all(d_mse[:, :channels] != 0)


@pytest.mark.parametrize("dataset,recon_loss", [("moons", "mse"), ("digits", "mse"), ("digits", "bce")])
def test_vae_gradients_reach_encoder_and_decoder_through_the_sample(dataset, recon_loss):
    """Through the reparameterisation trick the reconstruction alone trains the encoder as well as the decoder."""
    method, models, batch = build("vae", dataset, recon_loss=recon_loss)
    vae = models["vae"]
    _, terms = method.loss("model", models, batch, 0, seeded(2))
    terms["recon"].backward(retain_graph=True)
    assert grad_norm(vae.encoder) > 0 and grad_norm(vae.decoder) > 0
    vae.zero_grad(set_to_none=True)
    terms["kl"].backward()
    assert grad_norm(vae.encoder) > 0 and grad_norm(vae.decoder) == 0


@pytest.mark.parametrize("method_name", ["ddpm", "flow-matching"])
@pytest.mark.parametrize("probability", [0.1, 0.5])
def test_cond_dropout_uses_the_null_label_with_the_configured_probability(method_name, probability):
    method, models, _ = build(method_name, "digits", conditioning="class", cond_dropout=probability)
    num_classes = method.data.num_classes
    assert models["unet"].config.num_class_embeds == num_classes + 1  # K classes and the null label K
    n = 20_000
    labels = torch.arange(n) % num_classes

    def draw(generator):
        return method.conditions(models, {"label": labels}, generator, torch.device("cpu"))["class_labels"]

    out = draw(seeded(0))
    dropped = out == num_classes
    assert torch.equal(out[~dropped], labels[~dropped])
    assert abs(float(dropped.float().mean()) - probability) < 5 * math.sqrt(probability * (1 - probability) / n)
    assert torch.equal(draw(seeded(0)), out)  # from the passed generator
    assert not torch.equal(draw(seeded(1)), out)


@pytest.mark.parametrize("method_name", ["ddpm", "flow-matching"])
def test_the_denoiser_gets_the_dropped_labels_drawn_from_the_generator(method_name):
    method, models, batch = build(method_name, "digits", conditioning="class", cond_dropout=0.5)
    batch = batch_of("digits", 32)
    models = {"unet": Recording(models["unet"])}
    generator = seeded(9)
    replay = clone(generator)
    method.loss("model", models, batch, 0, generator)
    expected = replay_labels(method, batch, replay)["class_labels"]
    got = models["unet"].calls[0].kwargs["class_labels"]
    assert torch.equal(got, expected)
    assert 0 < int((got == method.data.num_classes).sum()) < len(got)


@pytest.mark.parametrize("method_name", ["ddpm", "flow-matching"])
def test_no_cond_dropout_keeps_every_label(method_name):
    method, models, batch = build(method_name, "digits", conditioning="class", cond_dropout=0.0)
    models = {"unet": Recording(models["unet"])}
    method.loss("model", models, batch, 0, seeded(0))
    assert torch.equal(models["unet"].calls[0].kwargs["class_labels"], batch["label"])


# ------------------------------------------------------------------------------------------ 4. determinism
@pytest.mark.parametrize("method_name,dataset,options", CASES, ids=CASE_IDS)
def test_same_generator_state_same_loss_other_seed_other_loss(method_name, dataset, options):
    method, models, batch = build(method_name, dataset, **options)
    for phase in method.phases(0):
        first, _ = method.loss(phase, models, batch, 0, seeded(11))
        again, _ = method.loss(phase, models, batch, 0, seeded(11))
        other, _ = method.loss(phase, models, batch, 0, seeded(12))
        assert torch.equal(first, again), phase
        assert not torch.equal(first, other), phase


# ------------------------------------------------------------------------------ problems found by these tests
def test_vae_bce_reconstruction_still_has_a_gradient_when_the_decoder_overshoots():
    """The Bernoulli means are the clamped pixels (the loss's value is the likelihood of what the pipeline shows),
    but a decoder output beyond [-1, 1] must still be pulled back: Kingma & Welling's decoder takes sigmoid(logits),
    which never saturates to a zero gradient; a plain clamp does."""
    method, models, batch = build("vae", "digits", recon_loss="bce")
    vae = models["vae"]
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(5.0)  # every pixel far above 1 (white), most of the digits are black (-1)
    _, terms = method.loss("model", models, batch, 0, seeded(0))
    if not float(terms["recon"].detach()) > 0.5 * batch["sample"][0].numel():
        pytest.fail("the overshooting decoder should reconstruct the digits very badly")
    terms["recon"].backward()
    assert grad_norm(vae.decoder) > 0  # ...must be corrected by training
    assert vae.decoder.conv_out.bias.grad.sum() > 0  # a descent step lowers the overshooting pixels


def test_wgan_gp_critic_scores_each_sample_independently_of_the_batch():
    """WGAN-GP penalises each example's gradient, so its critic has no batch normalisation (Gulrajani et al. 2017,
    sec. 4), also on images large enough for the DCGAN critic to have normalised layers."""
    method, models, batch = build("gan", "digits16", gan_loss="wgan_gp")
    D = models["discriminator"]
    if method.data.sample_shape != (1, 16, 16):
        pytest.fail("this check needs 16x16 images")
    x = batch["sample"]
    torch.testing.assert_close(D(x)[:2], D(x[:2]))
