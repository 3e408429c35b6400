"""The GAN loss of the one-call models (genzoo.methods.adversarial), on MeanFlow and rectified-flow distillation:
the discriminator scores exactly the samples the saved pipeline draws, it is updated first and each phase trains its
own model, resuming is exact with it, and the options that cannot work are refused. (dmd's use of the same pieces
is in test_dmd.py.)"""

from __future__ import annotations

import pytest
import torch

from genzoo.config import RecipeError
from genzoo.methods import MeanFlowConfig, MeanFlowMethod, RectifiedFlowConfig
from genzoo.methods.base import randn_like
from genzoo.testing import assert_resumes_exactly
from genzoo.testing.methods import smoke_teacher
from helpers import build, data_for, seeded

GAN = {"gan_weight": 0.1}
CASES = [("meanflow", {}, 1), ("rectified-flow", {"teacher": "unused", "distill_steps": 1}, 1),
         ("rectified-flow", {"teacher": "unused", "distill_steps": 2, "shift": 2.0}, 2)]


@pytest.mark.parametrize("method_name, options, steps", CASES, ids=["meanflow", "distill-1", "distill-2-shifted"])
def test_the_discriminator_scores_the_samples_the_saved_pipeline_draws(method_name, options, steps):
    method, models, batch = build(method_name, "moons", **GAN, **options)
    with torch.no_grad():
        generated = method.generated(models, batch, seeded(3))
        pipe = method.make_pipeline(models)
        pipe.set_progress_bar_config(disable=True)
        noise = randn_like(batch["sample"], seeded(3))
        drawn = pipe(batch_size=len(noise), latents=noise, num_inference_steps=steps, output_type="pt").samples
    torch.testing.assert_close(generated, drawn, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dataset", ["moons", "digits"])
def test_the_discriminator_updates_first_and_each_phase_trains_its_own_model(dataset):
    plain, plain_models, _ = build("meanflow", dataset)
    assert set(plain_models) == {"unet"} and plain.optimizer_groups() == {"model": ["unet"]}
    method, models, batch = build("meanflow", dataset, **GAN, r1_gamma=1.0)
    assert method.optimizer_groups() == {"discriminator": ["discriminator"], "model": ["unet"]}
    assert method.phases(0) == ["discriminator", "model"] and method.ema_models() == ["unet"]
    for phase, trained, frozen, names in (("discriminator", "discriminator", "unet", {"loss_d", "d_real", "d_fake",
                                                                                         "r1"}),
                                          ("model", "unet", "discriminator", {"loss", "mse", "loss_g"})):
        for model in models.values():
            model.zero_grad(set_to_none=True)
        models[frozen].requires_grad_(False)
        models[trained].requires_grad_(True)
        loss, terms = method.loss(phase, models, batch, 0, seeded(0))
        loss.backward()
        assert set(terms) == names and torch.isfinite(loss), phase
        assert all(p.grad is not None for p in models[trained].parameters()), phase
        assert all(p.grad is None for p in models[frozen].parameters()), phase
    assert method.describe()["gan_weight"] == 0.1


def test_with_the_gan_loss_the_model_loss_is_the_plain_loss_plus_the_weighted_generator_loss():
    """Same draws, same weights: the regression term is unchanged and the generator term is gan_weight times
    softplus(-D(x)) on the one-step samples, which follow the regression's draws."""
    method, models, batch = build("meanflow", "moons", gan_weight=0.5)
    plain = MeanFlowMethod(MeanFlowConfig(**{**type(method).smoke_test_options}), data_for("moons"))
    generator = seeded(1)
    loss, terms = method.loss("model", models, batch, 0, generator)
    replay = seeded(1)
    base, _ = plain.loss("model", {"unet": models["unet"]}, batch, 0, replay)
    fake = method.generated(models, batch, replay)
    expected = base + 0.5 * torch.nn.functional.softplus(-models["discriminator"](fake).float()).mean()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    assert torch.equal(generator.get_state(), replay.get_state())


@pytest.mark.slow
@pytest.mark.parametrize("method_name, extra", [
    ("meanflow", ()),
    ("rectified-flow", ("--distill_steps", "2", "--num_pairs", "64", "--teacher_steps", "4")),
], ids=["meanflow", "distill-2"])
def test_resume_with_the_discriminator_is_exact(method_name, extra, tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    teacher = ("--teacher", smoke_teacher("flow-matching", "moons")) if method_name == "rectified-flow" else ()
    assert_resumes_exactly(method_name, tmp_path, "--gan_weight", "0.1", "--r1_gamma", "1", *teacher, *extra,
                           dataset="moons")


@pytest.mark.parametrize("config, options, message", [
    (RectifiedFlowConfig, {"gan_weight": 0.1}, r"--gan_weight 0\.1 needs --teacher"),
    (RectifiedFlowConfig, {"teacher": "t", "gan_weight": 0.1}, r"--gan_weight 0\.1 with a reflow.*--distill_steps"),
    (MeanFlowConfig, {"gan_weight": 0.1, "gan_loss": "wgan_gp"}, "--gan_loss wgan_gp is --method gan's own"),
    (MeanFlowConfig, {"r1_gamma": 1.0}, r"--r1_gamma 1\.0 needs the GAN loss"),
    (MeanFlowConfig, {"gan_weight": -1.0}, "gan_weight"),
])
def test_options_that_cannot_work_are_refused(config, options, message):
    with pytest.raises(RecipeError, match=message):
        config(**options)


def test_a_latent_model_with_the_gan_loss_is_refused_before_anything_loads():
    method = MeanFlowMethod(MeanFlowConfig(gan_weight=0.1, vae="no/such-vae"), data_for("digits"))
    with pytest.raises(ValueError, match=r"--gan_weight 0\.1 with --vae: the GAN loss on latents is not supported"):
        method.check_data()
