"""Data sets and pipeline families as plugins: a data set registered by another package trains, evaluates and fills a
model card like a built-in; what a pipeline generates and which likelihoods it has are what its classes declare."""

import json

import numpy as np
import pytest
import torch

import genzoo
from genzoo import registry
from genzoo.cli import main
from genzoo.hub import data_kind, eval_metrics, make_model_card
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.testing import run_training
from helpers import installed, write_distribution

#: A package that registers the data set "ring": points on a noisy unit circle, with one metric of its own.
RING = '''
import numpy as np
from genzoo.data import PointDataSet


class RingDataSet(PointDataSet):
    card_metrics = {**PointDataSet.card_metrics, "radius_error": "mean |radius - 1| of the samples"}

    def evaluate(self, pipe, samples, options):
        result = super().evaluate(pipe, samples, options)
        result["radius_error"] = float(np.abs(np.linalg.norm(samples, axis=1) - 1).mean())
        return result


def ring(n, rng):
    angle = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle)], 1) * (1 + 0.05 * rng.standard_normal((n, 1)))


RING = RingDataSet("ring", ring, "points on a noisy unit circle")
'''


@pytest.fixture
def ring_plugin(tmp_path):
    """Install the package "genzoo-ring" (its module and its genzoo.datasets entry point) for one test."""
    root = write_distribution(tmp_path / "site", "genzoo-ring", "0.1.0", "[genzoo.datasets]\nring = genzoo_ring:RING\n",
                              {"genzoo_ring.py": RING})
    with installed(root, "genzoo_ring"):
        yield


def test_a_plugin_data_set_trains_evaluates_and_fills_the_card(ring_plugin, tmp_path, capsys):
    ring = registry.get("dataset", "ring")
    assert "ring" in genzoo.data.dataset_names("vector") and ring.sample_shape == (2,)
    data = ring.load(num_samples=64, seed=3)  # what --dataset ring trains on
    assert (data.kind, data.sample_shape, len(data.dataset), data.source) == ("vector", (2,), 64, "builtin")
    np.testing.assert_allclose(np.linalg.norm(data.dataset.vectors.numpy(), axis=1), 1, atol=0.3)

    out = tmp_path / "fm-ring"
    run_training("flow-matching", "ring", out)  # --dataset ring
    pipe = genzoo.load_pipeline(out)
    result = evaluate_pipeline(pipe, "ring", num_samples=40, steps=2, likelihood_points=10, likelihood_steps=2)
    assert {"w2", "mmd2_rbf", "nll_nats", "radius_error"} <= set(result) and result["dataset"] == "ring"
    assert np.isfinite(result["radius_error"]) and result["w2"] > 0

    code = main(["eval", str(out), "--num-samples", "40", "--steps", "2", "--likelihood-steps", "2",
                 "--out", str(tmp_path / "e.json"), "--update-card"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["dataset"] == "ring"  # read from the run's recipe.yaml
    card = make_model_card(out, "user/fm-ring")
    assert "mean |radius - 1| of the samples" in card.text and "W2 to held-out data" in card.text
    assert card.data.datasets == ["ring"] and "vector-data" in card.data.tags and card.data.pipeline_tag is None
    metric_types = {m["type"] for r in card.data.to_dict()["model-index"][0]["results"] for m in r["metrics"]}
    assert {"radius_error", "w2", "nll_nats"} <= metric_types
    assert eval_metrics("ring")["radius_error"] == "mean |radius - 1| of the samples"
    assert "radius_error" not in eval_metrics("moons")


def test_an_unknown_name_is_refused_naming_the_registered_ones_plugins_included(ring_plugin):
    pipe = genzoo.FlowMatchingPipeline(genzoo.MLPDenoiser(hidden_dim=16), genzoo.FlowMatchEulerScheduler())
    with pytest.raises(ValueError, match="No reference distribution for vector data set 'rings'; registered: .*ring"):
        evaluate_pipeline(pipe, "rings", num_samples=4, steps=1)


class ScoredGANPipeline(genzoo.GANPipeline):
    """A pipeline family that is no flow, declaring an exact likelihood (here: log p = 0 everywhere)."""

    def exact_log_likelihood(self, x, num_steps=100):
        return torch.zeros(len(x))


def test_a_pipeline_gets_the_likelihoods_its_class_declares():
    generator = genzoo.MLPGenerator(hidden_dim=16)
    declared = evaluate_pipeline(ScoredGANPipeline(generator=generator), "moons", num_samples=20, likelihood_points=5)
    assert declared["nll_nats"] == 0 and "iwae_nll_nats" not in declared
    assert declared["nll_method"].endswith("5 points")
    plain = evaluate_pipeline(genzoo.GANPipeline(generator=generator), "moons", num_samples=20)
    assert "nll_nats" not in plain and plain["w2"] == declared["w2"]
    vae = evaluate_pipeline(genzoo.VAEPipeline(vae=genzoo.MLPVAE(hidden_dim=16)), "moons", num_samples=20,
                            likelihood_points=5, iwae_k=2)
    assert vae["iwae_points"] == 5 and "nll_nats" not in vae  # VAEPipeline declares nll_bound, not an exact one


def test_what_a_saved_pipeline_generates_is_what_its_classes_declare(tmp_path):
    from helpers import tiny_unet

    assert genzoo.MLPGenerator.data_kind == genzoo.MLPDenoiser.data_kind == genzoo.MLPVAE.data_kind == "vector"
    assert genzoo.GANPipeline.main_component == "generator" and genzoo.DDPMPipeline.main_component == "unet"
    genzoo.GANPipeline(generator=genzoo.MLPGenerator(hidden_dim=16)).save_pretrained(tmp_path / "points")
    genzoo.DDPMPipeline(unet=tiny_unet(), scheduler=genzoo.DDPMScheduler()).save_pretrained(tmp_path / "images")
    assert data_kind(tmp_path / "points") == "vector" and data_kind(tmp_path / "images") == "image"
