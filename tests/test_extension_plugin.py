"""One package adds a data set, a probability path and a whole pipeline family to genzoo -- tests/extension_plugin,
whose ``entry_points.txt`` is its only registration -- and each addition appears everywhere a built-in of its kind
does: the registry and ``genzoo list``, the trainer, evaluation, model cards, the demo's menus and the benchmark, and
the plugin contract of ``genzoo.testing`` runs over it. Nothing in genzoo is edited for it."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import genzoo
from genzoo import registry
from genzoo.cli import main
from genzoo.data import dataset_names
from genzoo.demo import DemoBackend
from genzoo.hub import data_kind, make_model_card
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.schedulers.paths import get_path, path_names
from genzoo.testing import check_method, check_pipeline, run_training
from helpers import installed

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = Path(__file__).resolve().parent / "extension_plugin"


@pytest.fixture(scope="module")
def extension():
    """"Install" tests/extension_plugin (its .dist-info makes importlib.metadata see the entry points) for this
    module's tests, and uninstall it after them."""
    with installed(EXTENSION, "genzoo_extension_plugin"):
        yield


@pytest.fixture(scope="module")
def trained(extension, tmp_path_factory):
    """The family trained on the new data set, and flow matching trained on it along the new path."""
    root = tmp_path_factory.mktemp("extension")
    run_training("gaussian-mixture", "ring", root / "mixture-ring")
    run_training("flow-matching", "ring", root / "vp-flow-ring", "--path", "vp")
    return root / "mixture-ring", root / "vp-flow-ring"


def test_the_registry_and_genzoo_list_show_each_addition(extension, capsys):
    assert registry.get("dataset", "ring").data_kind == "vector" and "ring" in dataset_names("vector")
    assert "vp" in path_names() and type(get_path("vp")).__name__ == "VPPath"
    assert "gaussian-mixture" in registry.names("method")
    assert registry.get("pipeline", "MixturePipeline").model_kind == "mixture"
    assert main(["list", "--check"]) == 0
    listed = capsys.readouterr().out
    for kind, name in [("dataset", "ring"), ("path", "vp"), ("method", "gaussian-mixture"),
                       ("pipeline", "MixturePipeline"), ("model", "GaussianMixture")]:
        line = next(line for line in listed.splitlines() if line.split()[:2] == [kind, name])
        assert "genzoo-extension-plugin" in line and line.rstrip().endswith("ok"), line


def test_the_new_path_is_a_probability_path_every_solver_runs_on(extension):
    """alpha^2 + sigma^2 = 1, the ends are noise and data, and the derivatives are those of alpha and sigma."""
    vp = get_path("vp")
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t))
    assert (vp.alpha(0.0), vp.sigma(0.0), vp.alpha(1.0), vp.sigma(1.0)) == (0.0, 1.0, 1.0, 0.0)
    h = 1e-6
    inner = t[1:-1]
    torch.testing.assert_close(vp.d_alpha(inner), (vp.alpha(inner + h) - vp.alpha(inner - h)) / (2 * h))
    torch.testing.assert_close(vp.d_sigma(inner), (vp.sigma(inner + h) - vp.sigma(inner - h)) / (2 * h))
    for name in ("FlowMatchEulerScheduler", "FlowMatchHeunScheduler"):
        scheduler = registry.get("scheduler", name)(path="vp")
        x1, x0 = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
        timesteps = scheduler.sample_timesteps(4, generator=torch.Generator().manual_seed(0))
        x_t = scheduler.add_noise(x1, x0, timesteps)
        coefficient = scheduler.path(timesteps, x1)
        torch.testing.assert_close(x_t, coefficient.alpha * x1 + coefficient.sigma * x0)


def test_the_new_family_passes_the_plugin_contract(extension, tmp_path):
    pipeline, model = registry.get("pipeline", "MixturePipeline"), registry.get("model", "GaussianMixture")
    check_pipeline(lambda: pipeline(mixture=model(num_components=3)), tmp_dir=tmp_path / "pipeline")
    check_method("gaussian-mixture", dataset="ring", output_dir=tmp_path / "method")


def test_the_trainer_makes_each_and_evaluation_measures_each(trained):
    mixture_dir, flow_dir = trained
    mixture, flow = genzoo.load_pipeline(mixture_dir), genzoo.load_pipeline(flow_dir)
    assert type(mixture).__name__ == "MixturePipeline" and flow.scheduler.config.path == "vp"
    assert data_kind(mixture_dir) == data_kind(flow_dir) == "vector"  # from GaussianMixture.data_kind, declared

    result = evaluate_pipeline(mixture, "ring", num_samples=64, likelihood_points=32)
    assert result["dataset"] == "ring" and result["num_inference_steps"] is None
    # the likelihood the family declares (exact_log_likelihood) is what evaluation reports as nll_nats
    held_out = torch.from_numpy(registry.get("dataset", "ring").reference(64, 0)[:32]).float()
    expected = -mixture.mixture.log_prob(held_out).detach().double().mean()
    assert result["nll_nats"] == pytest.approx(float(expected), rel=1e-6)
    assert np.isfinite(result["w2"]) and result["w2"] > 0

    on_path = evaluate_pipeline(flow, "ring", num_samples=64, steps=4, likelihood_points=16, likelihood_steps=4)
    assert {"w2", "mmd2_rbf", "nll_nats"} <= set(on_path) and np.isfinite(on_path["nll_nats"])
    # a velocity model's ODE is the same on every path, but what the velocity says about the data is not: the step's
    # data estimate follows the path in the saved config
    straight = type(flow.scheduler).from_config(flow.scheduler.config, path="straight")
    x, v = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), torch.ones(4, 2)
    estimates = []
    for scheduler in (flow.scheduler, straight):
        scheduler.set_timesteps(4)
        estimates.append(scheduler.step(v, scheduler.timesteps[1], x).pred_original_sample)
    vp = get_path("vp").at(0.25)
    torch.testing.assert_close(estimates[0], (x * vp.d_sigma - vp.sigma * v) / (vp.alpha * vp.d_sigma - vp.sigma * vp.d_alpha))
    assert not torch.allclose(estimates[0], estimates[1])


def test_cards_carry_the_data_sets_metrics_and_the_familys_likelihood(trained, capsys):
    mixture_dir, _ = trained
    code = main(["eval", str(mixture_dir), "--num-samples", "64", "--out", str(mixture_dir / "eval.json"),
                 "--update-card"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["dataset"] == "ring"  # from the run's recipe
    card = make_model_card(mixture_dir, "user/mixture-ring")
    assert card.data.datasets == ["ring"] and "vector-data" in card.data.tags and "gaussian-mixture" in card.data.tags
    assert "W2 to held-out data" in card.text and "NLL of held-out data" in card.text


def test_the_demo_offers_each_in_its_menus(trained):
    mixture_dir, flow_dir = trained
    for folder in trained:  # the cards a push would upload: the demo reads the data set from them
        make_model_card(folder, f"user/{folder.name}").save(folder / "README.md")
    backend = DemoBackend([str(mixture_dir), str(flow_dir)])
    assert backend.datasets() == ["ring"]  # the compare tab's menu
    one_pass = backend.describe("mixture-ring")
    assert one_pass["steps"] is None and one_pass["solvers"] == ["the model's own"]
    # genzoo's flow solvers run on any registered path; Diffusers' know only the straight one, so they are not offered
    assert backend.describe("vp-flow-ring")["solvers"] == ["the model's own", "Euler (genzoo)", "Heun (genzoo)"]
    image, seed, what = backend.generate("vp-flow-ring", 16, 0, steps=4, solver="Heun (genzoo)")
    assert image is not None and "Heun" in what and seed == 0
    image, _, what = backend.generate("mixture-ring", 16, 0)
    assert image is not None and what.startswith("MixturePipeline: 16 samples")
    assert backend.compare("ring", 8, 0)  # every model trained on ring, side by side


def test_the_benchmark_trains_the_family_on_the_new_data_set(extension, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_harness", ROOT / "benchmarks" / "harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    assert harness.data_kind("ring") == "vector"
    assert {"gaussian-mixture", "flow-matching"} <= set(harness.methods_for("ring"))
    assert "gaussian-mixture" not in harness.methods_for("digits")
